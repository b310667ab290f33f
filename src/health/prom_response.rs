//! Reading the Prometheus HTTP API's answers: the JSON envelope
//! (`status`, `data`, `errorType`, `error`) and instant-query results.
//! Pure, so it is tested with recorded answers.

use serde::Deserialize;
use serde_json::Value;

use super::PromError;

#[derive(Debug, Deserialize)]
struct Envelope {
    status: String,
    /// Kept raw: on errors `data` may hold anything.
    #[serde(default)]
    data: Option<Value>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The `data` of a successful answer, or the error the answer means.
///
/// `status` is the HTTP status code and `body` the raw body; `query` is
/// only used to name the query in [`PromError::BadQuery`].
pub(crate) fn interpret(status: u16, body: &str, query: &str) -> Result<Value, PromError> {
    let Ok(envelope) = serde_json::from_str::<Envelope>(body) else {
        // Not the API speaking: a proxy's error page, or a URL that is not
        // a Prometheus base URL at all.
        let what = format!(
            "HTTP {status} that is not a Prometheus API answer: {}",
            snippet(body)
        );
        return Err(if status >= 500 {
            PromError::Unreachable(what)
        } else {
            PromError::Unexpected(what)
        });
    };
    match envelope.status.as_str() {
        "success" if (200..300).contains(&status) => envelope
            .data
            .ok_or_else(|| PromError::Unexpected("a success answer without `data`".to_owned())),
        "error" => Err(api_error(status, envelope, query)),
        other => Err(PromError::Unexpected(format!(
            "HTTP {status} with status {other:?}: {}",
            snippet(body)
        ))),
    }
}

/// Prometheus' own error classes: `bad_data` (400, the query does not
/// parse) and `execution` (422, it parses but cannot be evaluated, e.g.
/// many-to-many matching) both need the plan's author to fix the query;
/// `timeout`, `canceled`, `internal` and `unavailable` come with 5xx codes
/// and pass with time.
fn api_error(status: u16, envelope: Envelope, query: &str) -> PromError {
    let error_type = envelope.error_type.unwrap_or_default();
    let message = envelope.error.unwrap_or_default();
    match error_type.as_str() {
        "bad_data" | "execution" => PromError::BadQuery {
            query: query.to_owned(),
            message,
        },
        _ if status >= 500 => {
            PromError::Unreachable(format!("HTTP {status} ({error_type}): {message}"))
        }
        _ => PromError::Unexpected(format!("HTTP {status} ({error_type}): {message}")),
    }
}

/// The one value of an instant query's `data`, `None` for no data.
///
/// NaN and ±Inf count as no data: they come from dividing by zero, as an
/// error ratio does while a workload serves no traffic, and say nothing
/// about whether the release is healthy.
pub(crate) fn scalar_of(data: &Value) -> Result<Option<f64>, PromError> {
    let result_type = data.get("resultType").and_then(Value::as_str);
    let result = data.get("result").unwrap_or(&Value::Null);
    match result_type {
        Some("vector") => {
            let series = result.as_array().ok_or_else(|| {
                PromError::Unexpected(format!("vector result is not a list: {result}"))
            })?;
            match series.as_slice() {
                [] => Ok(None),
                [one] => sample_value(one.get("value").unwrap_or(&Value::Null)),
                many => Err(PromError::NotScalar { series: many.len() }),
            }
        }
        Some("scalar") => sample_value(result),
        Some("matrix") => Err(PromError::Unexpected(
            "the query returned a range vector (matrix); a gate needs one instant value, \
             e.g. wrap the range selector in rate() or max_over_time() and aggregate"
                .to_owned(),
        )),
        Some(other) => Err(PromError::Unexpected(format!(
            "the query returned a {other}, not a number"
        ))),
        None => Err(PromError::Unexpected(format!(
            "`data` without `resultType`: {data}"
        ))),
    }
}

/// `[<unix time>, "<value>"]`: Prometheus sends values as strings so that
/// `NaN`, `+Inf` and `-Inf` survive JSON.
fn sample_value(sample: &Value) -> Result<Option<f64>, PromError> {
    let text = match sample.as_array().map(Vec::as_slice) {
        Some([_time, Value::String(text)]) => text,
        _ => {
            return Err(PromError::Unexpected(format!(
                "a sample is not [time, \"value\"]: {sample}"
            )));
        }
    };
    let value = match text.as_str() {
        "NaN" | "+Inf" | "-Inf" => return Ok(None),
        number => number
            .parse::<f64>()
            .map_err(|e| PromError::Unexpected(format!("sample value {number:?}: {e}")))?,
    };
    Ok(value.is_finite().then_some(value))
}

/// The start of a body, for error messages: enough to recognise an HTML
/// error page or a proxy's message without flooding the event log.
pub(crate) fn snippet(body: &str) -> String {
    const MAX: usize = 200;
    let trimmed = body.trim();
    match trimmed.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}
