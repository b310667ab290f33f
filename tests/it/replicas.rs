//! Several `meridian serve` processes on one database share the work and
//! never drive one rollout at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{
    ServerBuilder, Sim, TestDb,
    config::{app_yaml, write_config},
};

#[tokio::test]
async fn two_serve_processes_finish_twenty_rollouts_and_never_drive_one_together() {
    let plan = r#"  - name: two
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 2, bake: 1s}
"#;
    let apps: String = (1..=20)
        .map(|i| app_yaml(&format!("app-{i:02}"), "two", 1, 30))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(dir.path(), &sim.kubeconfig, plan, &apps);
    let a = ServerBuilder::new(&db.url, &config, dir.path(), "replica-a")
        .start()
        .await;
    let b = ServerBuilder::new(&db.url, &config, dir.path(), "replica-b")
        .start()
        .await;

    let mut ids = Vec::new();
    for i in 1..=20 {
        let api = if i % 2 == 0 { &a.api } else { &b.api };
        ids.push(
            api.release(
                &format!("app-{i:02}"),
                "1.0.0",
                "registry.example/app:1.0.0",
            )
            .await,
        );
    }
    let mut workers_seen = BTreeSet::new();
    for id in &ids {
        a.api.wait_state(*id, "succeeded").await;
        let events = b.api.events(*id).await;
        // Every lease token belongs to one worker, and tokens only grow
        // along the log: the drivers took turns, never overlapped.
        let mut owner: BTreeMap<i64, String> = BTreeMap::new();
        let mut last_token = 0;
        for e in events.iter().filter(|e| e["lease_token"].is_i64()) {
            let token = e["lease_token"].as_i64().unwrap_or_default();
            let worker = e["worker"].as_str().unwrap_or_default().to_owned();
            assert!(
                token >= last_token,
                "rollout {id}: token {token} after {last_token}"
            );
            last_token = token;
            let first = owner.entry(token).or_insert_with(|| worker.clone());
            assert_eq!(
                *first, worker,
                "rollout {id}: lease {token} used by two workers"
            );
            workers_seen.insert(worker);
        }
    }
    assert_eq!(
        workers_seen,
        BTreeSet::from(["replica-a".to_owned(), "replica-b".to_owned()]),
        "both replicas did work"
    );
    for cluster in ["use1-canary", "euw1-a", "aps1-a"] {
        let state = sim.control.state(cluster).await;
        let deployments = state
            .apply_log
            .iter()
            .filter(|r| r.kind == "Deployment")
            .count();
        assert_eq!(
            deployments, 20,
            "{cluster}: each app's Deployment changed once"
        );
    }
}
