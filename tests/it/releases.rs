//! Creating releases is safe to retry, and one rollout per application is
//! active at a time.

use serde_json::json;

use crate::support::{
    ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
};

const PLAN: &str = r#"  - name: one
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

async fn post_with_key(
    base: &str,
    key: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value, bool) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/releases"))
        .bearer_auth(crate::support::api::TEST_TOKEN)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("API reachable");
    let status = response.status().as_u16();
    let replayed = response.headers().contains_key("idempotent-replayed");
    (status, response.json().await.unwrap_or_default(), replayed)
}

#[tokio::test]
async fn the_same_release_posted_three_times_with_one_idempotency_key_creates_one_release_and_one_rollout()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        PLAN,
        &app_yaml("shop", "one", 1, 20),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "idem")
        .start()
        .await;
    let base = server.api.base.clone();
    let body =
        json!({"application": "shop", "version": "1.0.0", "image": "registry.example/shop:1.0.0"});

    let mut ids = Vec::new();
    for attempt in 0..3 {
        let (status, answer, replayed) = post_with_key(&base, "ci-build-42", body.clone()).await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(replayed, attempt > 0, "attempt {attempt}");
        ids.push(answer["id"].as_str().expect("id").to_owned());
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    let (_, list) = server.api.get("/api/v1/rollouts?application=shop").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    let other =
        json!({"application": "shop", "version": "1.0.1", "image": "registry.example/shop:1.0.1"});
    let (status, problem, _) = post_with_key(&base, "ci-build-42", other).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("different body")
    );
    let (_, list) = server.api.get("/api/v1/rollouts?application=shop").await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "nothing more was created"
    );
}

#[tokio::test]
async fn a_second_release_is_rejected_while_one_is_active_unless_it_asks_to_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        PLAN,
        &app_yaml("shop", "one", 1, 20),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "queue")
        .start()
        .await;
    let api = &server.api;
    let first = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;

    let (status, problem) = api
        .post("/api/v1/releases", json!({"application": "shop", "version": "1.1.0", "image": "registry.example/shop:1.1.0"}))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&first.to_string()),
        "names the active rollout: {problem}"
    );

    let (status, queued) = api
        .post(
            "/api/v1/releases",
            json!({"application": "shop", "version": "1.1.0", "image": "registry.example/shop:1.1.0", "on_active": "queue"}),
        )
        .await;
    assert_eq!(status, 201, "{queued}");
    assert_eq!(queued["queued"], true);
    let second: uuid::Uuid = queued["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");

    let done_first = api.wait_state(first, "succeeded").await;
    let done_second = api.wait_state(second, "succeeded").await;
    let first_end = done_first["finished_at"].as_str().expect("finished");
    let second_events = api.events(second).await;
    let started = second_events
        .iter()
        .find(|e| e["kind"] == "rollout_started")
        .and_then(|e| e["created_at"].as_str())
        .expect("second started");
    let parse = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    assert!(
        parse(started) >= parse(first_end),
        "queued rollout started only after the first ended"
    );
    assert_eq!(done_second["state"], "succeeded");
    assert_eq!(
        sim.control.deployment_images("use1-canary", "shop").await,
        Some(vec!["registry.example/shop:1.1.0".to_owned()])
    );
}
