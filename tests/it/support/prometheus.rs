//! A real Prometheus (`/usr/bin/prometheus`, as CI installs it with apt)
//! scraping the simulated clusters, which a test can stop mid-bake and bring
//! back on the same port with the same storage.
//!
//! A missing binary fails the test: it is a CI setup error, not a reason to
//! skip the gate tests.

#![allow(dead_code)]

use std::{
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

/// Start-up plus the first scrape. Prometheus' scrape manager only applies
/// its targets every 5 s, so the first scrape lands about 6 s after start
/// on an idle machine; a loaded CI machine gets ten times that.
const START_LIMIT: Duration = Duration::from_secs(60);

/// A clean shutdown closes the TSDB head; give it time before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(30);

pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    targets: Vec<String>,
    config: PathBuf,
    storage: PathBuf,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`127.0.0.1:PORT`) every second
    /// and returns once every target has been scraped and is queryable.
    pub async fn start(dir: &Path, targets: &[String]) -> Prometheus {
        super::install_crypto();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_yaml(targets)).expect("write prometheus.yml");
        let mut prometheus = Prometheus {
            child: None,
            port: free_port(),
            targets: targets.to_vec(),
            config,
            storage: dir.join("prometheus-data"),
            log: dir.join("prometheus.log"),
        };
        prometheus.spawn_and_wait().await;
        prometheus
    }

    /// `http://127.0.0.1:PORT`; the same across restarts.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM and wait for the exit (SIGKILL after 30 s). Queries then get
    /// connection refused until [`Prometheus::restart`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = std::time::Instant::now() + STOP_LIMIT;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same port with the same storage, and waits
    /// until every target has been scraped again: old samples survive in
    /// the storage, so a fresh scrape is what shows it really is back.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn_and_wait().await;
    }

    async fn spawn_and_wait(&mut self) {
        // Appending keeps every run's lines for the tail in a panic message.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open prometheus.log");
        let started = unix_seconds();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", self.config.display()))
            .arg(format!("--storage.tsdb.path={}", self.storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        self.child = Some(child);
        self.wait_until_scraped_since(started).await;
    }

    /// Polls `/-/ready`, then until every target has an `up` sample of 1
    /// taken after `since`.
    async fn wait_until_scraped_since(&mut self, since: f64) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("http client");
        let url = self.url();
        let deadline = tokio::time::Instant::now() + START_LIMIT;
        let mut ready = false;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("prometheus exited early ({status}):\n{}", self.log_tail());
            }
            if !ready {
                ready = http
                    .get(format!("{url}/-/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            if ready
                && (self.targets.is_empty()
                    || fresh_up_count(&http, &url, since).await == Some(self.targets.len()))
            {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let tail = self.log_tail();
                panic!(
                    "prometheus at {url} did not {} within {START_LIMIT:?}:\n{tail}",
                    if ready {
                        format!("scrape all {} target(s)", self.targets.len())
                    } else {
                        "become ready".to_owned()
                    }
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
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
                 CI installs it with `apt-get install prometheus`"
            )
        })
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
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

/// How many targets have an `up` sample of 1 taken after `since`.
/// `timestamp(up)` gives each series' sample time, not the query's, which
/// tells a fresh scrape from one stored before a restart.
async fn fresh_up_count(http: &reqwest::Client, url: &str, since: f64) -> Option<usize> {
    let up = instant(http, url, "up").await?;
    let stamps = instant(http, url, "timestamp(up)").await?;
    let instance = |s: &Value| {
        s.pointer("/metric/instance")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let value = |s: &Value| s.pointer("/value/1")?.as_str()?.parse::<f64>().ok();
    let fresh: Vec<String> = stamps
        .iter()
        .filter(|s| value(s).is_some_and(|t| t >= since))
        .filter_map(instance)
        .collect();
    Some(
        up.iter()
            .filter(|s| value(s) == Some(1.0))
            .filter_map(instance)
            .filter(|i| fresh.contains(i))
            .count(),
    )
}

async fn instant(http: &reqwest::Client, url: &str, query: &str) -> Option<Vec<Value>> {
    let body: Value = http
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body.pointer("/data/result")?.as_array().cloned()
}
