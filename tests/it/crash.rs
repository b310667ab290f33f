//! `kill -9` of the service mid-stage loses no decision and repeats no
//! visible step.

use std::collections::HashMap;

use crate::support::{
    ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
    eventually,
};

#[tokio::test]
async fn kill_minus_nine_mid_stage_then_restart_finishes_without_extra_changes() {
    let plan = r#"  - name: waves
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a, use1-a, euc1-a]}, max_parallel: 1, bake: 1s}
"#;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        plan,
        &app_yaml("shop", "waves", 3, 30),
    );
    let builder = ServerBuilder::new(&db.url, &config, dir.path(), "crashy");
    let mut server = builder.start().await;
    let id = server
        .api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;

    // Kill it twice, each time while a cluster of the second stage is mid-way.
    for applied_before_kill in [1, 3] {
        let api = server.api.clone();
        eventually("a second-stage cluster to be in flight", || {
            let api = api.clone();
            async move {
                let events = api.events(id).await;
                let applying = events
                    .iter()
                    .filter(|e| e["kind"] == "target_applying")
                    .count();
                (applying > applied_before_kill).then_some(())
            }
        })
        .await;
        server.kill();
        server = builder.start().await;
    }
    let done = server.api.wait_state(id, "succeeded").await;

    // Every cluster changed each object exactly once: the restarted engine
    // neither lost an apply nor repeated one.
    for cluster in ["use1-canary", "euw1-a", "aps1-a", "use1-a", "euc1-a"] {
        let state = sim.control.state(cluster).await;
        let mut changes: HashMap<String, usize> = HashMap::new();
        for record in &state.apply_log {
            *changes
                .entry(format!("{}/{}", record.kind, record.name))
                .or_default() += 1;
        }
        assert_eq!(
            changes.len(),
            3,
            "{cluster}: namespace, config map, deployment: {changes:?}"
        );
        assert!(
            changes.values().all(|n| *n == 1),
            "{cluster} changed twice: {changes:?}"
        );
    }
    let events = server.api.events(id).await;
    let mut applied: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e["kind"] == "target_applied") {
        *applied
            .entry(e["cluster"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
    assert_eq!(done["state"], "succeeded");
}
