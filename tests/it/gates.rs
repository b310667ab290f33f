//! Health gates against a real Prometheus scraping the simulated clusters.

use std::collections::HashMap;

use serde_json::Value;

use crate::support::{
    ServerBuilder, Sim, TestDb,
    api::target_states,
    config::{app_yaml, write_config_with},
    db::{rows_read, single_connection_store},
    eventually,
    prometheus::Prometheus,
};

/// The error ratio of one cluster's traffic over the last 5 s.
const ERROR_RATIO: &str = r#"sum(rate(app_http_errors_total{cluster=\"{{ cluster }}\",app=\"{{ application }}\"}[5s])) / sum(rate(app_http_requests_total{cluster=\"{{ cluster }}\",app=\"{{ application }}\"}[5s]))"#;

fn gated_plan(stage_gates: &str, bake: &str, extra_gates: &str) -> String {
    format!(
        r#"  - name: gated
    gates:
      - name: error-rate
        prometheus: {{query: "{ERROR_RATIO}", comparator: "<", threshold: 0.05}}
        interval: 2s
        failure_limit: 2
        inconclusive_limit: 3
{extra_gates}    stages:
      - {{name: canary, clusters: {{names: [use1-canary]}}, bake: {bake}, gates: [{stage_gates}]}}
      - {{name: rest, clusters: {{names: [euw1-a, aps1-a]}}, max_parallel: 2, bake: 2s, gates: [{stage_gates}]}}
"#
    )
}

struct World {
    _db: TestDb,
    sim: Sim,
    prometheus: Prometheus,
    server: crate::support::Server,
    _dir: tempfile::TempDir,
}

async fn world(plans: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let prometheus = Prometheus::start(dir.path(), &sim.scrape_targets()).await;
    let config = write_config_with(
        dir.path(),
        &sim.kubeconfig,
        plans,
        &app_yaml("shop", "gated", 2, 20),
        &format!("prometheus: {{url: \"{}\"}}\n", prometheus.url()),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "gated")
        .start()
        .await;
    World {
        _db: db,
        sim,
        prometheus,
        server,
        _dir: dir,
    }
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

#[tokio::test]
async fn a_faulty_release_passes_readiness_then_fails_its_error_rate_gate_and_rolls_back_before_the_next_stage()
 {
    let w = world(&gated_plan("error-rate", "10s", "")).await;
    let api = &w.server.api;
    let id = api
        .release("shop", "2.0.0", "registry.example/shop:2.0.0-faulty")
        .await;
    let done = api.wait_state(id, "rolled_back").await;

    let states: HashMap<String, String> = target_states(&done).into_iter().collect();
    assert_eq!(states["use1-canary"], "restored");
    for later in ["euw1-a", "aps1-a"] {
        assert_eq!(states[later], "pending");
        assert_eq!(
            w.sim.control.state(later).await.apply_calls,
            0,
            "{later} was touched"
        );
    }
    let events = api.events(id).await;
    assert_eq!(
        events_of(&events, "target_rolled_out").len(),
        1,
        "readiness passed first"
    );
    let failed = events_of(&events, "target_failed");
    let message = failed[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("gate `error-rate` failed"), "{message}");
    assert!(
        message.contains("app_http_errors_total"),
        "the event carries the query: {message}"
    );
    assert!(
        message.contains("use1-canary"),
        "and the cluster: {message}"
    );
    assert!(message.contains("< 0.05"), "and the threshold: {message}");

    let (status, gates) = api.get(&format!("/api/v1/rollouts/{id}/gates")).await;
    assert_eq!(status, 200);
    let readings = gates["items"].as_array().expect("items");
    let bad: Vec<f64> = readings
        .iter()
        .filter(|r| r["verdict"] == "fail")
        .filter_map(|r| r["value"].as_f64())
        .collect();
    assert!(
        bad.len() >= 2,
        "failure_limit 2 needs two bad readings: {readings:#?}"
    );
    assert!(
        bad.iter().all(|v| *v > 0.05 && *v < 0.5),
        "~25% errors: {bad:?}"
    );
    // Each reading leads to the rollout's dashboard page.
    let page = format!("/rollouts/{id}");
    assert!(
        readings.iter().all(|r| r["links"]["dashboard"]
            .as_str()
            .is_some_and(|d| d.ends_with(&page))),
        "{readings:#?}"
    );
}

#[tokio::test]
async fn a_baseline_gate_catches_an_error_rate_rising_from_one_to_three_percent_under_a_five_percent_threshold()
 {
    let baseline_gate = format!(
        "      - name: vs-baseline\n        baseline: {{query: \"{ERROR_RATIO}\", max_increase: 0.01}}\n        interval: 2s\n        failure_limit: 2\n"
    );
    let w = world(&gated_plan(
        "error-rate, vs-baseline",
        "10s",
        &baseline_gate,
    ))
    .await;
    for (cluster, ..) in meridian::demo::DEMO_CLUSTERS {
        w.sim.control.set_error_rate(cluster, "1.0.0", 0.01).await;
        w.sim.control.set_error_rate(cluster, "2.0.0", 0.03).await;
    }
    let api = &w.server.api;
    let good = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(good, "succeeded").await;

    let id = api
        .release("shop", "2.0.0", "registry.example/shop:2.0.0")
        .await;
    let done = api.wait_state(id, "rolled_back").await;
    let events = api.events(id).await;
    let failed = events_of(&events, "target_failed");
    let message = failed[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("gate `vs-baseline` failed"), "{message}");
    // The fixed threshold never tripped: 3% is under 5%.
    let (_, gates) = api.get(&format!("/api/v1/rollouts/{id}/gates")).await;
    let readings = gates["items"].as_array().expect("items");
    assert!(
        readings
            .iter()
            .filter(|r| r["gate"] == "error-rate")
            .all(|r| r["verdict"] != "fail"),
        "{readings:#?}"
    );
    assert!(
        readings
            .iter()
            .any(|r| r["gate"] == "vs-baseline" && r["verdict"] == "fail")
    );
    assert_eq!(done["state"], "rolled_back");
    assert_eq!(
        w.sim.control.deployment_images("use1-canary", "shop").await,
        Some(vec!["registry.example/shop:1.0.0".to_owned()])
    );
}

#[tokio::test]
async fn prometheus_stopped_mid_bake_pauses_the_rollout_and_it_finishes_after_resume() {
    let mut w = world(&gated_plan("error-rate", "20s", "")).await;
    let api = w.server.api.clone();
    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    // Bake has started and Prometheus said yes at least once.
    eventually("a passing reading", || {
        let api = api.clone();
        async move {
            let (_, gates) = api.get(&format!("/api/v1/rollouts/{id}/gates")).await;
            gates["items"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["verdict"] == "pass"))
                .then_some(())
        }
    })
    .await;
    w.prometheus.stop();
    let paused = api.wait_state(id, "paused").await;
    let states: HashMap<String, String> = target_states(&paused).into_iter().collect();
    assert_eq!(
        states["euw1-a"], "pending",
        "no promotion without a verdict"
    );
    assert_eq!(
        states["use1-canary"], "rolled_out",
        "and no rollback either"
    );
    let events = api.events(id).await;
    let why = events_of(&events, "gate_paused");
    assert_eq!(why.len(), 1, "{events:#?}");
    assert!(
        why[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("inconclusive")
    );

    w.prometheus.restart().await;
    let (status, body) = api.act(id, "resume").await;
    assert_eq!(status, 202, "{body}");
    api.wait_state(id, "succeeded").await;
    assert!(
        !w.sim.control.state("euw1-a").await.apply_log.is_empty(),
        "the next stage ran after resume"
    );
}

#[tokio::test]
async fn the_pre_rollout_check_refuses_to_start_on_a_fleet_that_is_already_failing() {
    let w = world(&gated_plan("error-rate", "2s", "")).await;
    let api = &w.server.api;
    let good = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(good, "succeeded").await;
    // The running release starts failing everywhere.
    for (cluster, ..) in meridian::demo::DEMO_CLUSTERS {
        w.sim.control.set_error_rate(cluster, "1.0.0", 0.4).await;
    }
    let api2 = api.clone();
    // Let a few scrapes see the new error rate.
    eventually("Prometheus to see the errors", || {
        let prom = w.prometheus.url();
        async move {
            let q = "sum(rate(app_http_errors_total{cluster=\"euw1-a\"}[5s]))";
            let body: Value = reqwest::Client::new()
                .get(format!("{prom}/api/v1/query"))
                .query(&[("query", q)])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let v: f64 = body["data"]["result"][0]["value"][1]
                .as_str()?
                .parse()
                .ok()?;
            (v > 1.0).then_some(())
        }
    })
    .await;
    let apply_calls_before = w.sim.control.state("use1-canary").await.apply_calls;
    let id = api2
        .release("shop", "1.1.0", "registry.example/shop:1.1.0")
        .await;
    let done = api2.wait_state(id, "failed").await;
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("pre-rollout check failed"), "{reason}");
    assert!(reason.contains("error-rate"), "{reason}");
    assert_eq!(
        w.sim.control.state("use1-canary").await.apply_calls,
        apply_calls_before
    );
    let events = api2.events(id).await;
    assert_eq!(events_of(&events, "pre_check_failed").len(), 1);

    // `force` starts it anyway.
    let (status, body) = api2
        .post(
            "/api/v1/releases",
            serde_json::json!({"application": "shop", "version": "1.2.0", "image": "registry.example/shop:1.2.0", "force": true}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_promql_syntax_error_in_a_plan_is_refused_at_start_with_the_query_and_prometheus_message()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let prometheus = Prometheus::start(dir.path(), &[]).await;
    let plan = gated_plan("error-rate", "2s", "").replace("[5s])) / sum(", "[5s]) / sum(");
    let config = write_config_with(
        dir.path(),
        std::path::Path::new("/nonexistent/kubeconfig"),
        &plan,
        &app_yaml("shop", "gated", 1, 5),
        &format!("prometheus: {{url: \"{}\"}}\n", prometheus.url()),
    );
    let output = std::process::Command::new(crate::support::process::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run meridian serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("plans[0].gates[0].prometheus.query"),
        "{stderr}"
    );
    assert!(stderr.contains("Prometheus refused the query"), "{stderr}");
    assert!(
        stderr.contains("app_http_errors_total"),
        "names the query: {stderr}"
    );
    assert!(
        stderr.contains("parse error"),
        "carries Prometheus's message: {stderr}"
    );
}

/// What gates call "the previous release" of each cluster: the newest
/// succeeded rollout that rolled the cluster out, whatever came later
/// (rolled back, still running) and however long the history. It is read
/// on every gate tick, so the rows it reads must not grow with history.
#[tokio::test]
async fn the_previous_release_is_read_from_the_newest_success_without_walking_history() {
    let (_db, store) = single_connection_store().await;
    sqlx::raw_sql(
        "INSERT INTO clusters (name, region, timezone, context)
              SELECT 'c' || n, 'europe', 'UTC', 'c' || n FROM generate_series(1, 4) n;
         INSERT INTO plans (name, version, spec, plan) VALUES ('p', 1, '{}', '{}');
         INSERT INTO applications (name, namespace, plan_name, templates)
              VALUES ('shop', 'shop', 'p', '[]'), ('other', 'other', 'p', '[]');
         -- (application, version, rollout state, minutes ago, clusters rolled out)
         CREATE TEMP TABLE history (app text, version text, state text, ago int, rolled_out text[]);
         INSERT INTO history
              SELECT 'shop', 'old-' || n, 'succeeded', 10000 + n, ARRAY['c1', 'c2', 'c3']
                FROM generate_series(1, 3000) n;
         INSERT INTO history VALUES
              ('shop',  '1.0', 'succeeded',   50, ARRAY['c1', 'c2', 'c3']),
              ('shop',  '1.1', 'succeeded',   40, ARRAY['c1']),
              ('shop',  '1.2', 'rolled_back', 30, ARRAY[]::text[]),
              ('shop',  '1.3', 'running',     20, ARRAY['c2']),
              ('other', '9.0', 'succeeded',   10, ARRAY['c1', 'c2', 'c3']);
         INSERT INTO releases (id, application, version, image, created_by, created_at)
              SELECT gen_random_uuid(), app, version, 'img', 'test', now() - make_interval(mins => ago)
                FROM history;
         INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                               machine, created_by, created_at)
              SELECT gen_random_uuid(), r.id, r.application, 'p', 1, h.state, '{}', 'test', r.created_at
                FROM releases r JOIN history h ON h.app = r.application AND h.version = r.version;
         -- Every rollout had a target on c1..c3; those it did not roll out
         -- were restored.
         INSERT INTO targets (rollout_id, cluster, region, stage, position, state)
              SELECT ro.id, c.cluster, 'europe', 0, c.n - 1,
                     CASE WHEN c.cluster = ANY(h.rolled_out) THEN 'rolled_out' ELSE 'restored' END
                FROM rollouts ro
                JOIN releases r ON r.id = ro.release_id
                JOIN history h ON h.app = r.application AND h.version = r.version
               CROSS JOIN unnest(ARRAY['c1', 'c2', 'c3']) WITH ORDINALITY AS c(cluster, n);
         ANALYZE;",
    )
    .execute(store.pool())
    .await
    .expect("write history");

    let before = rows_read(&store, &["targets", "rollouts"]).await;
    let versions = store
        .running_versions("shop", &["c1", "c2", "c3"])
        .await
        .expect("read versions");
    let read = rows_read(&store, &["targets", "rollouts"]).await - before;

    let expected: HashMap<String, String> = [("c1", "1.1"), ("c2", "1.0"), ("c3", "1.0")]
        .into_iter()
        .map(|(c, v)| (c.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        versions, expected,
        "c1 last succeeded with 1.1, c2 and c3 with 1.0; the rolled-back, running and other application's rollouts do not count"
    );
    assert!(
        read < 100,
        "reading 3 clusters' previous release read {read} rows of a history of 3,005 rollouts"
    );
    // A cluster no rollout of the application ever finished on has none.
    let with_new_cluster = store
        .running_versions("shop", &["c1", "c4"])
        .await
        .expect("read versions");
    assert_eq!(with_new_cluster.get("c1").map(String::as_str), Some("1.1"));
    assert!(!with_new_cluster.contains_key("c4"));
}
