//! `PrometheusClient` against a real Prometheus 2.x scraping a simulated
//! cluster's `/metrics`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::json;

use super::real_prometheus::TestPrometheus;
use super::{closed_port, serve};
use crate::health::{PromError, PrometheusClient};
use crate::sim::{SimClusterSpec, SimFleet, SimOptions};

const TIMEOUT: Duration = Duration::from_secs(2);

fn client(url: &str) -> PrometheusClient {
    PrometheusClient::new(url, TIMEOUT).expect("prometheus client")
}

/// One simulated cluster `eu-1` running `web:v1` and `api:v1`, so its
/// `/metrics` has two series per counter.
async fn busy_cluster() -> SimFleet {
    let opts = SimOptions {
        replica_ready_after: Duration::from_millis(50),
        observe_delay: Duration::from_millis(10),
        ..SimOptions::default()
    };
    let fleet = SimFleet::start(vec![SimClusterSpec::new("eu-1", "europe")], opts)
        .await
        .expect("fleet starts");
    let kubeconfig = Kubeconfig::from_yaml(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let options = KubeConfigOptions {
        context: Some("eu-1".to_owned()),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("kube config");
    let api: Api<Deployment> =
        Api::namespaced(Client::try_from(config).expect("kube client"), "default");
    for (name, image) in [("web", "web:v1"), ("api", "api:v1")] {
        let deployment: Deployment = serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": image}]}
                }
            }
        }))
        .expect("deployment");
        api.patch(
            name,
            &PatchParams::apply("health-tests"),
            &Patch::Apply(&deployment),
        )
        .await
        .expect("apply");
    }
    fleet
}

fn target(fleet: &SimFleet) -> String {
    fleet.cluster("eu-1").expect("eu-1").addr().to_string()
}

/// Polls `query` until `accept` takes its value, for at most 30 s.
async fn poll_until(
    prometheus: &PrometheusClient,
    query: &str,
    accept: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reading = prometheus.query_scalar(query).await;
        if let Ok(Some(value)) = reading
            && accept(value)
        {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: last reading {reading:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn reads_one_number_from_the_scraped_cluster() {
    let fleet = busy_cluster().await;
    let started = Instant::now();
    let server = TestPrometheus::start(&[target(&fleet)]).await;
    println!(
        "prometheus scraped its target {:?} after start",
        started.elapsed()
    );
    let prometheus = client(&server.url());

    let total = poll_until(
        &prometheus,
        r#"sum(app_http_requests_total{cluster="eu-1"})"#,
        |v| v > 0.0,
    )
    .await;
    assert!(total > 0.0);

    assert_eq!(
        prometheus
            .query_scalar(r#"app_http_requests_total{cluster="eu-1"}"#)
            .await,
        Err(PromError::NotScalar { series: 2 })
    );
    assert_eq!(
        prometheus
            .query_scalar(r#"sum(app_http_requests_total{cluster="nowhere"})"#)
            .await,
        Ok(None),
        "an empty result is no data"
    );
    assert_eq!(
        prometheus.query_scalar("0/0").await,
        Ok(None),
        "NaN is no data"
    );
    let scalar = prometheus
        .query_scalar(r#"scalar(sum(app_http_requests_total{cluster="eu-1"}))"#)
        .await;
    assert!(matches!(scalar, Ok(Some(v)) if v > 0.0), "{scalar:?}");
    let matrix = prometheus
        .query_scalar(r#"app_http_requests_total{app="web"}[1m]"#)
        .await;
    assert!(
        matches!(&matrix, Err(PromError::Unexpected(m)) if m.contains("range vector")),
        "{matrix:?}"
    );

    // An error rate as a gate would query it, after the sim starts failing
    // half of web's requests: windows after the change read exactly 0.5.
    fleet
        .cluster("eu-1")
        .expect("eu-1")
        .set_error_rate("web:v1", 0.5);
    let ratio = r#"sum(rate(app_http_errors_total{app="web"}[3s]))
                   / sum(rate(app_http_requests_total{app="web"}[3s]))"#;
    poll_until(&prometheus, ratio, |v| (v - 0.5).abs() < 0.01).await;
    let api_errors = r#"sum(rate(app_http_errors_total{app="api"}[3s]))"#;
    assert_eq!(prometheus.query_scalar(api_errors).await, Ok(Some(0.0)));
    fleet.shutdown().await;
}

#[tokio::test]
async fn a_syntax_error_comes_back_in_prometheus_words() {
    let server = TestPrometheus::start(&[]).await;
    let prometheus = client(&server.url());
    let broken = "sum(rate(foo[5m])";
    let error = prometheus.check_syntax(broken).await.unwrap_err();
    println!("check_syntax({broken:?}) = {error:?}");
    let PromError::BadQuery { query, message } = &error else {
        panic!("expected BadQuery, got {error:?}");
    };
    assert_eq!(query, broken);
    assert!(message.contains("parse error"), "{message}");
    assert!(message.contains("unclosed left parenthesis"), "{message}");
    assert!(!error.is_transient());

    assert_eq!(prometheus.check_syntax("sum(rate(foo[5m]))").await, Ok(()));
    assert!(matches!(
        prometheus.query_scalar(broken).await,
        Err(PromError::BadQuery { .. })
    ));
    let empty = prometheus.check_syntax("").await.unwrap_err();
    assert!(
        matches!(&empty, PromError::BadQuery { message, .. } if message.contains("no expression")),
        "{empty:?}"
    );
}

#[tokio::test]
async fn a_killed_prometheus_is_unreachable_within_the_timeout() {
    let mut server = TestPrometheus::start(&[]).await;
    let prometheus = client(&server.url());
    assert_eq!(prometheus.query_scalar("vector(1)").await, Ok(Some(1.0)));

    server.kill();
    let started = Instant::now();
    let error = prometheus.query_scalar("vector(1)").await.unwrap_err();
    let took = started.elapsed();
    println!("after kill, in {took:?}: {error}");
    assert!(
        matches!(&error, PromError::Unreachable(m) if m.starts_with(&server.url())),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert!(
        took <= TIMEOUT + Duration::from_millis(500),
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_server_that_never_answers_is_unreachable_after_the_timeout() {
    // Accepts connections and never answers: a hung Prometheus.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let prometheus = PrometheusClient::new(&url, Duration::from_millis(500)).expect("client");
    let started = Instant::now();
    let error = prometheus.query_scalar("vector(1)").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        error,
        PromError::Unreachable(format!("{url}/: no answer within 500ms"))
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(2),
        "took {took:?}"
    );
}

#[tokio::test]
async fn refused_connections_and_5xx_are_transient_other_pages_unexpected() {
    let refused = client(&format!("http://127.0.0.1:{}", closed_port()));
    let error = refused.query_scalar("up").await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");

    let app = Router::new()
        .route(
            "/broken/api/v1/query",
            get(|| async { (StatusCode::BAD_GATEWAY, "upstream connect error") }),
        )
        .route(
            "/prefixed/api/v1/query",
            get(|| async {
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"42"]}}"#
            }),
        );
    let (base, _server) = serve(app).await;
    let gateway = client(&format!("{base}/broken"))
        .query_scalar("up")
        .await
        .unwrap_err();
    assert!(
        matches!(&gateway, PromError::Unreachable(m) if m.contains("502") && m.contains("upstream connect error")),
        "{gateway:?}"
    );
    // A route prefix is kept, with or without a trailing slash.
    for prefix in ["/prefixed", "/prefixed/"] {
        assert_eq!(
            client(&format!("{base}{prefix}")).query_scalar("up").await,
            Ok(Some(42.0))
        );
    }
    let not_prometheus = client(&base).query_scalar("up").await.unwrap_err();
    assert!(
        matches!(&not_prometheus, PromError::Unexpected(m) if m.contains("HTTP 404")),
        "{not_prometheus:?}"
    );
}

#[test]
fn only_http_urls_are_accepted() {
    for bad in ["prometheus:9090", "ftp://prom", "not a url"] {
        assert!(PrometheusClient::new(bad, TIMEOUT).is_err(), "{bad}");
    }
}
