//! `meridian serve` with no DATABASE_URL runs its own PostgreSQL.

use std::{os::unix::fs::PermissionsExt, process::Command};

use crate::support::{Api, eventually, process::binary};

#[tokio::test]
async fn serve_without_a_database_url_runs_its_own_postgres_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The unprivileged `postgres` account must reach the data folder.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dir.path().join("pg");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env("MERIDIAN_DATA_DIR", &data)
        .env("MERIDIAN_BOOTSTRAP_TOKEN", crate::support::api::TEST_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start meridian serve");
    let api = Api::new(&format!("http://127.0.0.1:{port}"));
    eventually("the service on its embedded database", || {
        let api = api.clone();
        async move { api.ready().await.then_some(()) }
    })
    .await;
    let (status, body) = api.get("/api/v1/rollouts").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        data.join("pgdata").join("PG_VERSION").exists(),
        "the data lives where it was told"
    );

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "{status}");
    assert!(
        !data.join("pgdata").join("postmaster.pid").exists(),
        "the embedded PostgreSQL was stopped with the service"
    );
}
