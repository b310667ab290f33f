//! A Prometheus for the demo, from the machine's `prometheus` binary,
//! scraping the simulated clusters every second.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

/// How long the demo waits for Prometheus to answer before giving up on it.
const READY_DEADLINE: Duration = Duration::from_secs(30);

pub struct DemoPrometheus {
    child: Child,
    pub url: String,
}

impl Drop for DemoPrometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `prometheus` binary on PATH, if installed.
pub fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
}

/// Starts Prometheus in `dir` scraping `targets` (`host:port`) and waits
/// until it answers.
pub async fn start(
    binary: &Path,
    dir: &Path,
    targets: &[String],
) -> anyhow::Result<DemoPrometheus> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("no free port for Prometheus")?
        .port();
    let quoted: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: simulated-clusters\n    static_configs:\n      - targets: [{}]\n",
        quoted.join(", ")
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).context("cannot write prometheus.yml")?;
    let log = std::fs::File::create(dir.join("prometheus.log"))
        .context("cannot create prometheus.log")?;
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let prometheus = DemoPrometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + READY_DEADLINE;
    loop {
        let ready = client
            .get(format!("{}/-/ready", prometheus.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return Ok(prometheus);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "Prometheus did not become ready within {READY_DEADLINE:?}; see {}",
                dir.join("prometheus.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
