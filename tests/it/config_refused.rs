//! A bad config file is refused at start with the file, the path inside it
//! and what is wrong, and nothing is written.

use std::process::Command;

use crate::support::{
    TestDb,
    config::{app_yaml, write_config},
    process::binary,
};

fn refuse(db: &TestDb, dir: &std::path::Path, plans: &str, apps: &str) -> String {
    let config = write_config(
        dir,
        std::path::Path::new("/nonexistent/kubeconfig"),
        plans,
        apps,
    );
    let output = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &db.url)
        .output()
        .expect("run meridian serve");
    assert!(!output.status.success(), "a bad config was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains(&config.display().to_string()),
        "names the file: {stderr}"
    );
    stderr
}

async fn tables_in(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count tables");
    count
}

#[tokio::test]
async fn a_plan_naming_an_unknown_cluster_is_refused_and_nothing_is_written() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = "  - name: p\n    stages:\n      - {name: one, clusters: {names: [use1-canary, nowhere-1]}}\n";
    let stderr = refuse(&db, dir.path(), plans, &app_yaml("shop", "p", 1, 5));
    assert!(
        stderr.contains("plans[0].stages[0].clusters.names[1]"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown cluster `nowhere-1`"), "{stderr}");
    assert_eq!(tables_in(&db).await, 0, "nothing may be written");
}

#[tokio::test]
async fn an_empty_stage_is_refused_with_its_path() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = "  - name: p\n    stages:\n      - {name: all, clusters: all}\n      - {name: nothing-left, clusters: {labels: {tier: canary}}}\n";
    let stderr = refuse(&db, dir.path(), plans, &app_yaml("shop", "p", 1, 5));
    assert!(stderr.contains("plans[0].stages[1].clusters"), "{stderr}");
    assert!(stderr.contains("selects no cluster"), "{stderr}");
}

#[tokio::test]
async fn a_template_with_a_syntax_error_is_refused_with_the_template_named() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = "  - name: p\n    stages:\n      - {name: one, clusters: all}\n";
    let app = app_yaml("shop", "p", 1, 5).replace("{{ image }}", "{{ image ");
    let stderr = refuse(&db, dir.path(), plans, &app);
    assert!(stderr.contains("applications[0].templates[1]"), "{stderr}");
}

#[tokio::test]
async fn a_template_using_an_unknown_variable_is_refused() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plans = "  - name: p\n    stages:\n      - {name: one, clusters: all}\n";
    let app = app_yaml("shop", "p", 1, 5).replace("{{ image }}", "{{ imagee }}");
    let stderr = refuse(&db, dir.path(), plans, &app);
    assert!(stderr.contains("imagee"), "{stderr}");
}

#[tokio::test]
async fn reconciling_the_same_file_changes_nothing_and_a_changed_plan_is_a_new_version() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan_v1 = "  - name: p\n    stages:\n      - {name: one, clusters: all, bake: 5s}\n";
    let path = write_config(
        dir.path(),
        std::path::Path::new("kubeconfig"),
        plan_v1,
        &app_yaml("shop", "p", 1, 5),
    );
    let store = meridian::store::Store::connect(&db.url, 2)
        .await
        .expect("store");
    let config = meridian::config::Config::load(&path).expect("config");
    let first = store.reconcile(&config).await.expect("reconcile");
    assert_eq!(first.clusters_changed, 8);
    assert_eq!(first.new_plan_versions, vec![("p".to_owned(), 1)]);
    let again = store.reconcile(&config).await.expect("reconcile again");
    assert!(again.is_empty(), "{again:?}");

    let plan_v2 = plan_v1.replace("5s", "10s");
    let path = write_config(
        dir.path(),
        std::path::Path::new("kubeconfig"),
        &plan_v2,
        &app_yaml("shop", "p", 1, 5),
    );
    let config = meridian::config::Config::load(&path).expect("config");
    let changed = store.reconcile(&config).await.expect("reconcile changed");
    assert_eq!(changed.new_plan_versions, vec![("p".to_owned(), 2)]);
    assert_eq!(changed.clusters_changed, 0);
}
