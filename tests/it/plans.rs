//! Plans through the API, and retrying a halted stage after a fix.

use serde_json::json;

use crate::support::{config::app_yaml, world::World};

const HALT: &str = r#"  - name: careful
    on_failure: halt
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

#[tokio::test]
async fn plans_are_validated_versioned_and_listed_through_the_api() {
    let world = World::start(HALT, &app_yaml("shop", "careful", 1, 20), "plans").await;
    let server = &world.server;
    let api = &server.api;

    let good = json!({"name": "careful", "on_failure": "halt", "stages": [
        {"name": "canary", "clusters": {"names": ["use1-canary"]}, "bake": "5s"},
        {"name": "rest", "clusters": "all", "max_parallel": 3, "bake": "5s"}
    ]});
    let (status, body) = api.post("/api/v1/plans/validate", good.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (_, versions) = api.get("/api/v1/plans/careful/versions").await;
    assert_eq!(
        versions["items"].as_array().map(Vec::len),
        Some(1),
        "validate saves nothing"
    );

    let (status, saved) = api.post("/api/v1/plans", good.clone()).await;
    assert_eq!(status, 201, "{saved}");
    assert_eq!(saved["version"], 2);
    let (status, same) = api.post("/api/v1/plans", good).await;
    assert_eq!(
        (status, same["created"].as_bool()),
        (200, Some(false)),
        "{same}"
    );

    let bad = json!({"name": "careful", "stages": [
        {"name": "canary", "clusters": {"names": ["nowhere-1"]}}
    ]});
    let (status, problem) = api.post("/api/v1/plans/validate", bad).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "stages[0].clusters.names[0]");
    let typo =
        json!({"name": "careful", "stages": [{"name": "a", "clusters": "all", "bake_time": "5s"}]});
    let (status, problem) = api.post("/api/v1/plans", typo).await;
    assert_eq!(status, 422, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("bake_time"),
        "{problem}"
    );

    let (_, list) = api.get("/api/v1/plans").await;
    let latest = &list["items"][0];
    assert_eq!(
        (latest["name"].as_str(), latest["version"].as_i64()),
        (Some("careful"), Some(2))
    );
    let (status, v1) = api.get("/api/v1/plans/careful/versions/1").await;
    assert_eq!(status, 200);
    assert_eq!(v1["spec"]["stages"].as_array().map(Vec::len), Some(1));
    let (status, _) = api.get("/api/v1/plans/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_halted_stage_is_retried_after_the_cluster_is_fixed() {
    let world = World::start(HALT, &app_yaml("shop", "careful", 1, 20), "retry").await;
    let (sim, server) = (&world.sim, &world.server);
    let api = &server.api;

    sim.control.set_faults("use1-canary", 1.0, false).await;
    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let failed = api.wait_state(id, "failed").await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("use1-canary"),
        "{failed}"
    );

    // The operator fixes the cluster and re-runs the stage.
    sim.control.set_faults("use1-canary", 0.0, false).await;
    let (status, body) = api.act(id, "retry").await;
    assert_eq!(status, 202, "{body}");
    // Still `failed` until the engine takes the action, so no early exit.
    api.wait_until(id, "the retried stage to succeed", |r| {
        r["state"] == "succeeded"
    })
    .await;
    assert_eq!(
        sim.control.deployment_images("use1-canary", "shop").await,
        Some(vec!["registry.example/shop:1.0.0".to_owned()])
    );
    let events = api.events(id).await;
    assert_eq!(events.iter().filter(|e| e["kind"] == "retried").count(), 1);
    let (status, problem) = api.act(id, "retry").await;
    assert_eq!(status, 409, "nothing to retry once it succeeded: {problem}");
}
