//! The dashboard in a real browser: headless Chromium driven by the Node
//! scripts in `tests/browser/` (playwright-core), against a real server and
//! the simulated fleet. Needs `npm ci --prefix tests/browser` and Debian's
//! `chromium`; `.ci/run` installs both.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::support::{
    ServerBuilder, Sim, TestDb,
    api::TEST_TOKEN,
    config::{app_yaml, write_config, write_config_with},
    prometheus::Prometheus,
};

/// Longest a browser script may run before the test fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/browser/{script}` against `base`, failing the test unless it
/// exits 0. Its output is shown either way (nextest keeps it on failure).
async fn run_browser(script: &str, base: &str) {
    let root = repo();
    let dir = root.join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/browser` first (playwright-core is missing)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `apt-get install chromium`"
    );
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .current_dir(&root)
        .env("MERIDIAN_URL", base)
        .env("MERIDIAN_TOKEN", TEST_TOKEN)
        .env("SCREENSHOT_DIR", root.join("target/screenshots"))
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_LIMIT, child)
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_LIMIT:?}"))
        .expect("node runs (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!(
        "{script} took {:.1}s\n{stdout}\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

const PLANS: &str = r#"  - name: waves
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 2s}
      - {name: small, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 1, bake: 2s}
      - {name: large, clusters: {names: [use1-a, euc1-a]}, max_parallel: 2, bake: 1s}
  - name: slow
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 10m}
      - {name: rest, clusters: {names: [euw1-a]}, bake: 1s}
"#;

#[tokio::test]
async fn dashboard_signs_in_follows_a_release_live_and_pauses_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let apps = format!(
        "{}{}",
        app_yaml("shop", "waves", 2, 20),
        app_yaml("slow", "slow", 1, 20)
    );
    let config = write_config(dir.path(), &sim.kubeconfig, PLANS, &apps);
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "web")
        .start()
        .await;
    run_browser("live.mjs", &server.api.base).await;
}

#[tokio::test]
async fn dashboard_plots_a_faulty_release_above_its_threshold_and_shows_the_rollback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let prometheus = Prometheus::start(dir.path(), &sim.scrape_targets()).await;
    let plans = r#"  - name: gated
    gates:
      - name: error-rate
        prometheus: {query: "sum(rate(app_http_errors_total{cluster=\"{{ cluster }}\",app=\"{{ application }}\"}[5s])) / sum(rate(app_http_requests_total{cluster=\"{{ cluster }}\",app=\"{{ application }}\"}[5s]))", comparator: "<", threshold: 0.05}
        interval: 2s
        failure_limit: 2
        inconclusive_limit: 3
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 10s, gates: [error-rate]}
      - {name: rest, clusters: {names: [euw1-a, aps1-a]}, max_parallel: 2, bake: 2s, gates: [error-rate]}
"#;
    let config = write_config_with(
        dir.path(),
        &sim.kubeconfig,
        plans,
        &app_yaml("shop", "gated", 2, 20),
        &format!("prometheus: {{url: \"{}\"}}\n", prometheus.url()),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "web")
        .start()
        .await;
    run_browser("faulty.mjs", &server.api.base).await;
    drop(prometheus);
}

#[tokio::test]
async fn whoami_tells_any_signed_in_caller_its_own_name_and_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        PLANS,
        &app_yaml("shop", "waves", 2, 20),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "web")
        .start()
        .await;
    let api = &server.api;
    let (status, me) = api.get("/api/v1/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        serde_json::json!({"name": "bootstrap", "role": "admin"})
    );

    let (status, created) = api
        .post(
            "/api/v1/tokens",
            serde_json::json!({"name": "vera", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let viewer = api.with_token(created["token"].as_str());
    let (status, me) = viewer.get("/api/v1/whoami").await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, serde_json::json!({"name": "vera", "role": "viewer"}));

    let (status, _) = api.with_token(None).get("/api/v1/whoami").await;
    assert_eq!(status, 401);
}
