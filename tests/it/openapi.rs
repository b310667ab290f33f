//! The OpenAPI document: served without a token, complete (every documented
//! route answers, and the routes we serve are the ones it lists), and true
//! (schemathesis fuzzes every operation from it and finds no server error
//! and no answer that the document does not describe).

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::support::{api::TEST_TOKEN, config::app_yaml, world::World};

const PLAN: &str = r#"  - name: one
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

/// Every route under `/api/v1`, by method. A route added to the router
/// (and so to the document) must be added here too, and the other way
/// round: the list is the API's surface as reviewed.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/applications"),
    ("POST", "/api/v1/applications"),
    ("GET", "/api/v1/applications/{name}"),
    ("PUT", "/api/v1/applications/{name}"),
    ("GET", "/api/v1/clusters"),
    ("POST", "/api/v1/clusters"),
    ("GET", "/api/v1/clusters/{name}"),
    ("PUT", "/api/v1/clusters/{name}"),
    ("GET", "/api/v1/events/stream"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/plans"),
    ("POST", "/api/v1/plans"),
    ("POST", "/api/v1/plans/validate"),
    ("GET", "/api/v1/plans/{name}"),
    ("GET", "/api/v1/plans/{name}/versions"),
    ("GET", "/api/v1/plans/{name}/versions/{version}"),
    ("GET", "/api/v1/releases"),
    ("POST", "/api/v1/releases"),
    ("GET", "/api/v1/releases/{id}"),
    ("GET", "/api/v1/rollouts"),
    ("GET", "/api/v1/rollouts/{id}"),
    ("POST", "/api/v1/rollouts/{id}/{action}"),
    ("GET", "/api/v1/rollouts/{id}/events"),
    ("GET", "/api/v1/rollouts/{id}/gates"),
    ("GET", "/api/v1/tokens"),
    ("POST", "/api/v1/tokens"),
    ("DELETE", "/api/v1/tokens/{id}"),
    ("GET", "/api/v1/webhooks"),
    ("POST", "/api/v1/webhooks"),
    ("GET", "/api/v1/webhooks/{id}"),
    ("DELETE", "/api/v1/webhooks/{id}"),
    ("GET", "/api/v1/webhooks/{id}/deliveries"),
    ("GET", "/api/v1/whoami"),
];

/// The served document, fetched without a token.
async fn fetch_document(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/api/v1/openapi.json"))
        .await
        .expect("API reachable");
    assert_eq!(response.status(), 200, "the document needs no token");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    response.json().await.expect("the document is JSON")
}

/// (method, path) of every operation in the document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

/// A concrete URL path for a documented template: parameters get values of
/// the right type that name nothing, so handlers answer 404 for the
/// resource, never for the route.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000-0000-0000-0000-000000000000")
        .replace("{name}", "nothing-here")
        .replace("{version}", "1")
        .replace("{action}", "pause")
}

#[tokio::test]
async fn the_document_is_open_valid_and_every_documented_route_is_served() {
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "openapi").await;
    let api = &world.server.api;
    let doc = fetch_document(&api.base).await;

    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let documented = operations(&doc);
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented,
        expected,
        "documented but not in ROUTES: {:?}; in ROUTES but not documented: {:?}",
        documented.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&documented).collect::<Vec<_>>()
    );

    // Every `$ref` points at a component that exists.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let reference = piece.split('"').next().unwrap_or_default();
        let mut node = &doc["components"];
        for part in reference.split('/') {
            node = &node[part];
        }
        assert!(!node.is_null(), "dangling $ref #/components/{reference}");
    }

    // Documented → served: each operation answers something other than the
    // router's own 404 (unknown path) or 405 (unknown method).
    for (method, path) in &documented {
        let url = concrete(path);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = api.request(method.clone(), &url);
        if method == reqwest::Method::POST || method == reqwest::Method::PUT {
            request = request.json(&json!({}));
        }
        let response = tokio::time::timeout(Duration::from_secs(20), request.send())
            .await
            .expect("answers in time")
            .expect("API reachable");
        let status = response.status().as_u16();
        // The event stream never ends: its headers are the answer.
        let body = if path.ends_with("/events/stream") {
            Value::Null
        } else {
            response.json::<Value>().await.unwrap_or(Value::Null)
        };
        assert_ne!(status, 405, "{method} {path} is documented but not served");
        let unknown_route = status == 404
            && body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("no such endpoint"));
        assert!(
            !unknown_route,
            "{method} {path} is documented but not served: {body}"
        );
        assert!(status < 500, "{method} {url}: {status} {body}");
    }

    // The bearer scheme is declared and required everywhere but here.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["paths"]["/api/v1/openapi.json"]["get"]["security"].is_null());
    assert!(doc["paths"]["/api/v1/rollouts"]["get"]["security"].is_array());
    let stream = &doc["paths"]["/api/v1/events/stream"]["get"]["responses"]["200"]["content"];
    assert!(
        stream.get("text/event-stream").is_some(),
        "the stream is documented as server-sent events: {stream}"
    );
}

/// Where `scripts/test` installs schemathesis (a virtualenv under target/).
fn schemathesis() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/venv/schemathesis/bin/schemathesis");
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test, which installs schemathesis there",
        path.display()
    );
    path
}

/// Generated cases per operation: with ~30 operations and its several
/// phases (examples, coverage, fuzzing), this makes several hundred
/// requests in well under a minute on two cores. More with
/// `MERIDIAN_FUZZ_EXAMPLES` when hunting.
const DEFAULT_EXAMPLES: u32 = 12;
/// Fixed so that a failure in CI replays the same way locally; set
/// `MERIDIAN_FUZZ_SEED` to explore elsewhere.
const DEFAULT_SEED: &str = "20240601";
/// Fewer requests than this means schemathesis skipped most of the API.
const MIN_REQUESTS: u64 = 300;

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe() {
    let binary = schemathesis();
    let world = World::start(PLAN, &app_yaml("shop", "one", 1, 20), "fuzz").await;
    let api = &world.server.api;

    // Something in every list, so list answers are checked with real items.
    api.release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let (status, body) = api
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:9/hook", "events": ["succeeded"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api
        .post(
            "/api/v1/tokens",
            json!({"name": "fuzz-viewer", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let examples = std::env::var("MERIDIAN_FUZZ_EXAMPLES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(DEFAULT_EXAMPLES);
    let seed = std::env::var("MERIDIAN_FUZZ_SEED").unwrap_or_else(|_| DEFAULT_SEED.to_owned());
    let work = tempfile::tempdir().expect("tempdir");
    let report = work.path().join("report.ndjson");
    let started = Instant::now();
    let output = Command::new(&binary)
        // Its caches and reports stay in the scratch folder, not the repo.
        .current_dir(work.path())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", api.base))
        .args(["--header", &format!("Authorization: Bearer {TEST_TOKEN}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // The event stream never ends, so no request to it ever completes;
        // its answer is checked in the test above instead.
        .args(["--exclude-path", "/api/v1/events/stream"])
        .args(["--max-examples", &examples.to_string()])
        .args(["--seed", &seed])
        // One worker: with two, Python 3.11's `ast` (which hypothesis uses to
        // describe its strategies) can fail across threads ("AST constructor
        // recursion depth mismatch"), an error in the tool, not the API.
        .args(["--workers", "1"])
        .args(["--request-timeout", "20"])
        .args(["--generation-database", "none"])
        // NUL is the character PostgreSQL text cannot hold: keep it coming.
        .args(["--generation-allow-x00", "true"])
        .args(["--report", "ndjson", "--report-ndjson-path"])
        .arg(&report)
        .args(["--no-color", "--output-truncate", "false"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let requests = count_requests(&std::fs::read_to_string(&report).unwrap_or_default());
    println!("{stdout}\n{stderr}");
    println!(
        "schemathesis: {requests} requests in {:.1} s (seed {seed}, {examples} examples per operation)",
        elapsed.as_secs_f64()
    );
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}); server log: {}",
        output.status.code(),
        world.server.log.display()
    );
    assert!(
        requests >= MIN_REQUESTS,
        "only {requests} requests were made; expected at least {MIN_REQUESTS}"
    );
}

/// Requests made, from schemathesis' NDJSON event report: one `interactions`
/// entry per request and response.
fn count_requests(ndjson: &str) -> u64 {
    ndjson
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|event| {
            let mut n = 0;
            count_interactions(&event, &mut n);
            n
        })
        .sum()
}

fn count_interactions(value: &Value, n: &mut u64) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "interactions" {
                    if let Some(list) = inner.as_array() {
                        *n += list.len() as u64;
                    } else if let Some(object) = inner.as_object() {
                        *n += object.len() as u64;
                    }
                } else {
                    count_interactions(inner, n);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|v| count_interactions(v, n)),
        _ => {}
    }
}
