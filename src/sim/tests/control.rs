//! The fleet control server and the standalone runner, as another process
//! would use them.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, Client, Config};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{apply, client, deployment, fast, fleet};
use crate::sim::{ClusterInfo, ClusterReport, SimClusterSpec, run_standalone};

/// A bare HTTP/1.1 exchange, as any other process (curl, a Python script)
/// would talk to the control server: `(status code, body)`.
async fn call(base_url: &str, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("http response");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

#[tokio::test]
async fn control_server_lists_reports_and_steers() {
    let fleet = fleet(fast()).await;
    let control = fleet.control_url();
    let api: Api<Deployment> = Api::namespaced(client(&fleet, "eu-1").await, "default");
    apply(&api, &deployment("web", "web:v1", 1, json!({})), "meridian")
        .await
        .expect("apply");

    let (code, body) = call(&control, "GET", "/clusters", None).await;
    assert_eq!(code, 200);
    let listed: Vec<ClusterInfo> = serde_json::from_str(&body).expect("json");
    assert_eq!(listed.len(), 2);
    let eu = listed.iter().find(|c| c.name == "eu-1").expect("eu-1");
    assert_eq!((eu.region.as_str(), eu.apply_calls), ("europe", 1));
    assert_eq!(
        eu.base_url,
        fleet.cluster("eu-1").expect("cluster").base_url()
    );

    let (code, body) = call(&control, "GET", "/clusters/eu-1/state", None).await;
    assert_eq!(code, 200);
    let report: ClusterReport = serde_json::from_str(&body).expect("json");
    assert_eq!(report.apply_log.len(), 1);
    let web = report
        .objects
        .iter()
        .find(|o| o.kind == "Deployment")
        .expect("deployment");
    assert_eq!((web.name.as_str(), web.generation), ("web", Some(1)));
    assert_eq!(web.images, vec!["web:v1".to_owned()]);
    assert!(web.status.get("observedGeneration").is_some() || web.status == json!({}));

    let (code, _) = call(
        &control,
        "PUT",
        "/clusters/eu-1/faults",
        Some(json!({"error_rate": 1.0})),
    )
    .await;
    assert_eq!(code, 200);
    assert!(matches!(api.get("web").await, Err(kube::Error::Api(s)) if s.code == 500));
    call(&control, "PUT", "/clusters/eu-1/faults", Some(json!({}))).await;
    api.get("web").await.expect("healthy again");

    let rate = json!({"version_contains": "v1", "rate": 0.03});
    assert_eq!(
        call(&control, "PUT", "/clusters/eu-1/error-rate", Some(rate))
            .await
            .0,
        204
    );
    let (code, body) = call(&control, "GET", "/clusters/nope/state", None).await;
    assert_eq!(code, 404);
    assert!(body.contains("nope"), "{body}");
    let (code, _) = call(
        &control,
        "PUT",
        "/clusters/eu-1/error-rate",
        Some(json!({"version_contains": "v1", "rate": 2})),
    )
    .await;
    assert_eq!(code, 422);
    let (code, _) = call(
        &control,
        "PUT",
        "/clusters/eu-1/faults",
        Some(json!({"latency_ms": "slow"})),
    )
    .await;
    assert_eq!(code, 422);
    fleet.shutdown().await;
}

#[tokio::test]
async fn standalone_writes_its_files_and_stops_on_cancel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("sim");
    let stop = CancellationToken::new();
    let specs = vec![SimClusterSpec::new("eu-1", "europe")];
    let runner = tokio::spawn({
        let out = out.clone();
        let stop = stop.clone();
        async move { run_standalone(specs, fast(), &out, stop).await }
    });

    let sim_json = super::eventually(Duration::from_secs(10), || {
        let path = out.join("sim.json");
        async move { std::fs::read_to_string(path).ok() }
    })
    .await;
    let sim: Value = serde_json::from_str(&sim_json).expect("sim.json");
    let base_url = sim["clusters"]["eu-1"]
        .as_str()
        .expect("base url")
        .to_owned();
    assert!(
        sim["control_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:"))
    );

    let kubeconfig = std::fs::read_to_string(out.join("kubeconfig")).expect("kubeconfig");
    assert!(kubeconfig.contains(&base_url));
    let parsed = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("parses");
    let config = Config::from_custom_kubeconfig(parsed, &Default::default())
        .await
        .expect("config");
    let api: Api<Deployment> =
        Api::namespaced(Client::try_from(config).expect("client"), "default");
    api.list(&Default::default())
        .await
        .expect("the standalone cluster answers");

    stop.cancel();
    runner.await.expect("join").expect("clean stop");
    let gone = tokio::net::TcpStream::connect(base_url.trim_start_matches("http://")).await;
    assert!(gone.is_err(), "the port is closed after shutdown");
}
