//! `meridian demo`: a simulated fleet, the sample application and plan, and
//! a release that crosses every cluster.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use crate::support::{Api, TestDb, api::target_states, process::binary};

#[tokio::test]
async fn the_demo_prints_its_addresses_and_a_good_release_reaches_all_eight_clusters() {
    let db = TestDb::new().await;
    // Port 0: the demo binds a free port and prints it. A port picked here
    // and released could be taken meanwhile, by the demo's own Prometheus.
    let mut child = Command::new(binary())
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", &db.url)
        .env("MERIDIAN_BOOTSTRAP_TOKEN", crate::support::api::TEST_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start meridian demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut guard = KillOnDrop(Some(child));
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line.contains("Ctrl-C");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .expect("read demo output");
    let text = lines.join("\n");
    let base = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix("API:"))
        .and_then(|url| url.trim().strip_suffix("/api/v1/rollouts"))
        .unwrap_or_else(|| panic!("prints the API's address: {text}"))
        .to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(text.contains("curl"), "prints a ready command: {text}");

    let api = Api::new(&base);
    let id = api
        .release("shop", "1.1.0", "registry.example/shop:1.1.0")
        .await;
    let done = api.wait_state(id, "succeeded").await;
    let states = target_states(&done);
    assert_eq!(states.len(), 8, "{done:#}");
    assert!(states.iter().all(|(_, s)| s == "rolled_out"));
    let regions: std::collections::BTreeSet<&str> = done["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["region"].as_str())
        .collect();
    assert!(regions.len() >= 5, "{regions:?}");
    assert_eq!(
        done["stages"].as_array().map(Vec::len),
        Some(4),
        "canary, small, large, global"
    );

    // Ctrl-C stops it cleanly.
    let child = guard.0.take().expect("running");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("signal");
    let mut child = child;
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "demo exits cleanly on Ctrl-C: {status}");
}

/// Kills the demo if the test fails before it stops it.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
