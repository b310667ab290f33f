//! The live event stream: every event once, in order, on every replica,
//! resumable with `Last-Event-ID`.

use futures::StreamExt;

use crate::support::{
    ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
};

/// Reads SSE events (id, kind) until `stop` says so or the stream ends.
async fn read_events(
    url: &str,
    last_event_id: Option<i64>,
    mut stop: impl FnMut(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let mut request = reqwest::Client::new()
        .get(url)
        .bearer_auth(crate::support::api::TEST_TOKEN);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("stream reachable");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let (mut id, mut kind) = (None, None);
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        while let Some(end) = text.find('\n') {
            let line: String = text.drain(..=end).collect();
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse().ok();
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = Some(v.trim().to_owned());
            } else if line.is_empty()
                && let (Some(i), Some(k)) = (id.take(), kind.take())
            {
                events.push((i, k));
                if stop(&events) {
                    return events;
                }
            }
        }
    }
    events
}

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_misses_no_event_even_on_another_replica() {
    let plan = r#"  - name: two
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 1, bake: 1s}
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        plan,
        &app_yaml("shop", "two", 1, 20),
    );
    let driver = ServerBuilder::new(&db.url, &config, dir.path(), "driver")
        .start()
        .await;
    let watcher = ServerBuilder::new(&db.url, &config, dir.path(), "watcher")
        .start()
        .await;
    let id = driver
        .api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let url = format!("{}/api/v1/events/stream?rollout={id}", watcher.api.base);

    // Read a few events, then drop the connection mid-rollout.
    let first = read_events(&url, None, |seen| seen.len() >= 4).await;
    let last_seen = first.last().map(|(i, _)| *i).expect("some events");
    let rest = read_events(&url, Some(last_seen), |seen| {
        seen.iter().any(|(_, kind)| kind == "succeeded")
    })
    .await;

    let streamed: Vec<i64> = first.iter().chain(&rest).map(|(i, _)| *i).collect();
    let stored: Vec<i64> = driver
        .api
        .events(id)
        .await
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert_eq!(streamed, stored, "every event once, in order");
    assert!(
        rest.iter().all(|(i, _)| *i > last_seen),
        "nothing repeated after resume"
    );
}
