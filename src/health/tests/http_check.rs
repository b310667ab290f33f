//! HTTP checks against a real axum server on 127.0.0.1.

use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::{closed_port, serve};
use crate::health::{HttpCheck, HttpOutcome, StatusClass, build_client};

async fn health_server() -> String {
    let app = Router::new()
        .route(
            "/ok",
            get(|| async { Json(json!({"status": "ok", "checks": {"db": "up", "replicas": 3}})) }),
        )
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "database down") }),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ok")]).into_response() }),
        )
        .route("/html", get(|| async { "<html>fine</html>" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        );
    serve(app).await.0
}

fn client() -> reqwest::Client {
    build_client(Duration::from_secs(10)).expect("client")
}

fn check(url: &str, expect: &str) -> HttpCheck {
    HttpCheck::new(url, expect.parse::<StatusClass>().expect("status class"))
}

#[tokio::test]
async fn passes_on_the_expected_status_and_field() {
    let base = health_server().await;
    let client = client();
    let ok = format!("{base}/ok");
    assert_eq!(
        check(&ok, "2xx").run(&client).await,
        HttpOutcome::Pass { status: 200 }
    );
    assert_eq!(
        check(&ok, "200").run(&client).await,
        HttpOutcome::Pass { status: 200 }
    );
    let db = check(&ok, "2xx").with_json("checks.db", Some(json!("up")));
    assert_eq!(db.run(&client).await, HttpOutcome::Pass { status: 200 });
    let replicas = check(&ok, "2xx").with_json("checks.replicas", Some(json!(3.0)));
    assert_eq!(
        replicas.run(&client).await,
        HttpOutcome::Pass { status: 200 }
    );
}

#[tokio::test]
async fn fails_with_the_reason_in_words() {
    let base = health_server().await;
    let client = client();
    assert_eq!(
        check(&format!("{base}/down"), "2xx").run(&client).await,
        HttpOutcome::Fail {
            status: 503,
            detail: "expected 2xx, got 503: database down".to_owned()
        }
    );
    let exact = check(&format!("{base}/ok"), "204").run(&client).await;
    assert!(
        matches!(&exact, HttpOutcome::Fail { status: 200, detail }
            if detail.starts_with("expected 204, got 200: {") && detail.contains(r#""db":"up""#)),
        "{exact:?}"
    );
    let wrong_value =
        check(&format!("{base}/ok"), "2xx").with_json("status", Some(json!("degraded")));
    assert_eq!(
        wrong_value.run(&client).await,
        HttpOutcome::Fail {
            status: 200,
            detail: r#"`status` is "ok", expected "degraded""#.to_owned()
        }
    );
    let not_json = check(&format!("{base}/html"), "2xx").with_json("status", None);
    assert!(
        matches!(not_json.run(&client).await, HttpOutcome::Fail { status: 200, detail } if detail.starts_with("the body is not JSON")),
    );
}

#[tokio::test]
async fn redirects_are_judged_not_followed() {
    let base = health_server().await;
    let client = client();
    let moved = format!("{base}/moved");
    assert_eq!(
        check(&moved, "3xx").run(&client).await,
        HttpOutcome::Pass { status: 302 }
    );
    assert!(matches!(
        check(&moved, "2xx").run(&client).await,
        HttpOutcome::Fail { status: 302, .. }
    ));
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let url = format!("http://127.0.0.1:{}/healthz", closed_port());
    let outcome = check(&url, "2xx").run(&client()).await;
    let HttpOutcome::Unreachable(detail) = outcome else {
        panic!("expected Unreachable, got {outcome:?}");
    };
    assert!(detail.starts_with(&format!("GET {url}: ")), "{detail}");
    assert!(detail.to_lowercase().contains("connect"), "{detail}");
}

#[tokio::test]
async fn a_slow_endpoint_is_unreachable_after_the_checks_own_timeout() {
    let base = health_server().await;
    let slow = check(&format!("{base}/slow"), "2xx").with_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let outcome = slow.run(&client()).await;
    let took = started.elapsed();
    assert_eq!(
        outcome,
        HttpOutcome::Unreachable(format!("GET {base}/slow: no answer within 300ms"))
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
}
