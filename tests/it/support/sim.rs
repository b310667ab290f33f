//! The simulated fleet as a real `meridian sim` process, steered through
//! its control API, so it outlives any `meridian serve` a test kills.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{eventually, process::binary};

pub struct Sim {
    child: Child,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub control: SimControl,
}

#[derive(Clone)]
pub struct SimControl {
    url: String,
    http: reqwest::Client,
}

#[derive(Debug, Deserialize, Clone)]
pub struct ApplyRecord {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub images: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ClusterState {
    pub apply_calls: u64,
    pub apply_log: Vec<ApplyRecord>,
    pub objects: Vec<serde_json::Value>,
}

impl Sim {
    pub async fn start(dir: &Path) -> Sim {
        super::install_crypto();
        let log = std::fs::File::create(dir.join("sim.log")).expect("sim log");
        let child = Command::new(binary())
            .arg("sim")
            .arg("--out")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start meridian sim");
        let sim_json = dir.join("sim.json");
        let control_url: String = eventually("the simulated fleet to start", || {
            let path = sim_json.clone();
            async move {
                let text = std::fs::read_to_string(&path).ok()?;
                let value: serde_json::Value = serde_json::from_str(&text).ok()?;
                value["control_url"].as_str().map(str::to_owned)
            }
        })
        .await;
        Sim {
            child,
            dir: dir.to_owned(),
            kubeconfig: dir.join("kubeconfig"),
            control: SimControl {
                url: control_url,
                http: reqwest::Client::new(),
            },
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimControl {
    pub async fn state(&self, cluster: &str) -> ClusterState {
        self.http
            .get(format!("{}/clusters/{cluster}/state", self.url))
            .send()
            .await
            .expect("sim control reachable")
            .error_for_status()
            .expect("sim state")
            .json()
            .await
            .expect("sim state json")
    }

    /// The Deployment's images on a cluster, if it exists.
    pub async fn deployment_images(&self, cluster: &str, name: &str) -> Option<Vec<String>> {
        let state = self.state(cluster).await;
        state.objects.iter().find_map(|o| {
            (o["kind"] == "Deployment" && o["name"] == name).then(|| {
                o["images"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            })
        })
    }

    pub async fn set_faults(&self, cluster: &str, error_rate: f64, refuse: bool) {
        self.http
            .put(format!("{}/clusters/{cluster}/faults", self.url))
            .json(&json!({"latency_ms": 0, "error_rate": error_rate, "refuse_connections": refuse}))
            .send()
            .await
            .expect("sim control reachable")
            .error_for_status()
            .expect("set faults");
    }
}

impl SimControl {
    /// Makes images whose name contains `version` serve `rate` errors.
    pub async fn set_error_rate(&self, cluster: &str, version: &str, rate: f64) {
        self.http
            .put(format!("{}/clusters/{cluster}/error-rate", self.url))
            .json(&json!({"version_contains": version, "rate": rate}))
            .send()
            .await
            .expect("sim control reachable")
            .error_for_status()
            .expect("set error rate");
    }
}

impl Sim {
    /// `host:port` of every simulated cluster, for Prometheus to scrape.
    pub fn scrape_targets(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("sim.json")).expect("sim.json");
        let value: serde_json::Value = serde_json::from_str(&text).expect("sim.json is JSON");
        value["clusters"]
            .as_object()
            .expect("clusters")
            .values()
            .filter_map(|url| url.as_str())
            .map(|url| {
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_owned()
            })
            .collect()
    }
}
