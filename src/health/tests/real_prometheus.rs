//! A real Prometheus for the client's tests: `/usr/bin/prometheus` (or
//! `prometheus` on PATH) in a temporary directory, scraping the given
//! targets every second.
//!
//! A missing binary fails the test instead of skipping it: CI installs
//! Prometheus with apt, so its absence is a broken setup to notice.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use super::closed_port;

/// How long Prometheus may take to start and scrape once. Its scrape
/// manager applies new targets only every 5 s, so a first scrape takes
/// about 6 s on an idle machine.
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct TestPrometheus {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
}

impl TestPrometheus {
    /// Starts Prometheus scraping `targets` (`127.0.0.1:PORT`, served at
    /// `/metrics`) and returns once every target has been scraped
    /// successfully and is queryable.
    pub async fn start(targets: &[String]) -> TestPrometheus {
        let dir = tempfile::tempdir().expect("tempdir for prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets)).expect("write prometheus.yml");
        let log_path = dir.path().join("prometheus.log");
        let log = std::fs::File::create(&log_path).expect("create prometheus.log");
        let port = closed_port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut prometheus = TestPrometheus {
            child: Some(child),
            dir,
            port,
        };
        prometheus.wait_until_scraped(targets.len()).await;
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL and reap: the test then sees a Prometheus that is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls `/-/ready`, then `up` until `targets` series are 1.
    async fn wait_until_scraped(&mut self, targets: usize) {
        let http = crate::health::build_client(Duration::from_secs(2)).expect("client");
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let mut ready = false;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("prometheus exited early ({status}):\n{}", self.log_tail());
            }
            if !ready {
                ready = http
                    .get(format!("{}/-/ready", self.url()))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            if ready && (targets == 0 || up_count(&http, &self.url()).await == Some(targets)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus did not scrape {targets} target(s) within {START_LIMIT:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary() -> PathBuf {
    let system = PathBuf::from("/usr/bin/prometheus");
    if system.is_file() {
        return system;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prometheus is not installed (neither /usr/bin/prometheus nor on PATH); \
                 CI installs it with `apt-get install prometheus`, and these tests need it"
            )
        })
}

fn config_yaml(targets: &[String]) -> String {
    let mut yaml = String::from("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n");
    if !targets.is_empty() {
        yaml.push_str(
            "scrape_configs:\n  - job_name: sim\n    scrape_interval: 1s\n    \
             metrics_path: /metrics\n    static_configs:\n      - targets:\n",
        );
        for target in targets {
            let _ = writeln!(yaml, "          - {target:?}");
        }
    }
    yaml
}

/// How many `up` series are 1, read without `PrometheusClient` so the
/// harness does not depend on the code under test.
async fn up_count(http: &reqwest::Client, url: &str) -> Option<usize> {
    let body: Value = http
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", "up")])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let series = body.pointer("/data/result")?.as_array()?;
    Some(
        series
            .iter()
            .filter(|s| s.pointer("/value/1").and_then(Value::as_str) == Some("1"))
            .count(),
    )
}
