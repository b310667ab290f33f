//! Answers recorded from the Prometheus HTTP API documentation and from
//! Prometheus 2.42 itself.

use crate::health::PromError;
use crate::health::prom_response::{interpret, scalar_of};

const QUERY: &str = "sum(rate(foo[5m])";

fn value_of(status: u16, body: &str) -> Result<Option<f64>, PromError> {
    scalar_of(&interpret(status, body, QUERY)?)
}

#[test]
fn one_series_is_its_value() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{},"value":[1795749340.970,"0.25"]}]}}"#;
    assert_eq!(value_of(200, body), Ok(Some(0.25)));
}

#[test]
fn a_scalar_result_is_its_value() {
    let body =
        r#"{"status":"success","data":{"resultType":"scalar","result":[1795749340.981,"17"]}}"#;
    assert_eq!(value_of(200, body), Ok(Some(17.0)));
}

#[test]
fn an_empty_vector_is_no_data() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(value_of(200, body), Ok(None));
}

#[test]
fn nan_and_infinities_are_no_data() {
    for value in ["NaN", "+Inf", "-Inf"] {
        let vector = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[
                {{"metric":{{}},"value":[1435781451.781,"{value}"]}}]}}}}"#
        );
        assert_eq!(value_of(200, &vector), Ok(None), "{value}");
        let scalar = format!(
            r#"{{"status":"success","data":{{"resultType":"scalar","result":[1435781451.781,"{value}"]}}}}"#
        );
        assert_eq!(value_of(200, &scalar), Ok(None), "{value}");
    }
}

#[test]
fn several_series_are_not_a_scalar() {
    // The documentation's example answer to `up`.
    let body = r#"{
       "status" : "success",
       "data" : {
          "resultType" : "vector",
          "result" : [
             {"metric" : {"__name__" : "up", "job" : "prometheus", "instance" : "localhost:9090"},
              "value": [ 1435781451.781, "1" ]},
             {"metric" : {"__name__" : "up", "job" : "node", "instance" : "localhost:9100"},
              "value" : [ 1435781451.781, "0" ]}
          ]
       }
    }"#;
    assert_eq!(value_of(200, body), Err(PromError::NotScalar { series: 2 }));
}

#[test]
fn a_matrix_or_string_is_unexpected() {
    let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up"},"values":[[1795749340.878,"1"]]}]}}"#;
    assert!(
        matches!(value_of(200, matrix), Err(PromError::Unexpected(m)) if m.contains("range vector"))
    );
    let string =
        r#"{"status":"success","data":{"resultType":"string","result":[1795749341.027,"hi"]}}"#;
    assert!(matches!(value_of(200, string), Err(PromError::Unexpected(m)) if m.contains("string")));
}

#[test]
fn a_parse_error_is_a_bad_query_with_prometheus_text() {
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:18: parse error: unclosed left parenthesis"}"#;
    assert_eq!(
        interpret(400, body, QUERY),
        Err(PromError::BadQuery {
            query: QUERY.to_owned(),
            message: "invalid parameter \"query\": 1:18: parse error: unclosed left parenthesis"
                .to_owned(),
        })
    );
}

#[test]
fn an_execution_error_is_a_bad_query() {
    let body = r#"{"status":"error","errorType":"execution","error":"found duplicate series for the match group"}"#;
    assert!(matches!(
        interpret(422, body, QUERY),
        Err(PromError::BadQuery { message, .. }) if message == "found duplicate series for the match group"
    ));
}

#[test]
fn timeouts_and_server_errors_are_transient() {
    let timeout = r#"{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}"#;
    let error = interpret(503, timeout, QUERY).unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("query timed out"), "{error}");
    let proxy = interpret(502, "<html><body>Bad Gateway</body></html>", QUERY).unwrap_err();
    assert!(
        matches!(&proxy, PromError::Unreachable(m) if m.contains("HTTP 502") && m.contains("Bad Gateway")),
        "{proxy:?}"
    );
}

#[test]
fn a_page_that_is_not_the_api_is_unexpected() {
    let error = interpret(404, "404 page not found", QUERY).unwrap_err();
    assert!(
        matches!(&error, PromError::Unexpected(m) if m.contains("HTTP 404") && m.contains("404 page not found")),
        "{error:?}"
    );
    let long = "x".repeat(5000);
    let PromError::Unexpected(message) = interpret(200, &long, QUERY).unwrap_err() else {
        panic!("expected Unexpected");
    };
    assert!(
        message.len() < 400,
        "error text is not cut: {} bytes",
        message.len()
    );
}

#[test]
fn malformed_samples_are_unexpected() {
    for result in [r#"[1, 2]"#, r#"[1, "abc"]"#, r#""1""#] {
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"scalar","result":{result}}}}}"#);
        assert!(
            matches!(value_of(200, &body), Err(PromError::Unexpected(_))),
            "{result}"
        );
    }
}
