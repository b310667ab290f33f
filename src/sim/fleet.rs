//! A fleet of simulated clusters plus its control server, and the
//! standalone runner behind `meridian sim --out DIR`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::cluster::SimClusterHandle;
use super::control;
use super::kubeconfig;
use super::options::{SimClusterSpec, SimOptions};

/// Running simulated clusters, each on its own 127.0.0.1 port.
pub struct SimFleet {
    /// In the order given to [`SimFleet::start`].
    clusters: Vec<SimClusterHandle>,
    control_addr: SocketAddr,
    control_stop: CancellationToken,
    control_task: JoinHandle<()>,
}

impl SimFleet {
    /// Starts every cluster and the control server. Names must be unique and
    /// non-empty (they become kubeconfig context names).
    pub async fn start(specs: Vec<SimClusterSpec>, opts: SimOptions) -> anyhow::Result<SimFleet> {
        let mut seen = BTreeSet::new();
        for spec in &specs {
            if spec.name.is_empty() {
                bail!("sim: cluster names must not be empty");
            }
            if !seen.insert(spec.name.as_str()) {
                bail!("sim: duplicate cluster name {:?}", spec.name);
            }
        }
        let seq = Arc::new(AtomicU64::new(0));
        let mut clusters = Vec::with_capacity(specs.len());
        for spec in &specs {
            let cluster = SimClusterHandle::start(spec, opts, Arc::clone(&seq))
                .await
                .with_context(|| format!("sim: starting cluster {:?}", spec.name))?;
            clusters.push(cluster);
        }

        let by_name: BTreeMap<String, SimClusterHandle> = clusters
            .iter()
            .map(|c| (c.name().to_owned(), c.clone()))
            .collect();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("sim: binding the control server")?;
        let control_addr = listener.local_addr()?;
        let control_stop = CancellationToken::new();
        let stop = control_stop.clone();
        let app = control::router(Arc::new(by_name));
        let control_task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(error) = served.await {
                tracing::error!(%error, "sim: control server stopped");
            }
        });
        Ok(SimFleet {
            clusters,
            control_addr,
            control_stop,
            control_task,
        })
    }

    /// One context per cluster (context name == cluster name), plain HTTP,
    /// a dummy bearer token.
    pub fn kubeconfig_yaml(&self) -> String {
        let pairs: Vec<(String, String)> = self
            .clusters
            .iter()
            .map(|c| (c.name().to_owned(), c.base_url()))
            .collect();
        kubeconfig::render(&pairs)
    }

    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
            .with_context(|| format!("sim: writing kubeconfig {}", path.display()))
    }

    /// `{"control_url": ..., "clusters": {name: base_url}}`.
    pub fn sim_json(&self) -> Value {
        let clusters: serde_json::Map<String, Value> = self
            .clusters
            .iter()
            .map(|c| (c.name().to_owned(), json!(c.base_url())))
            .collect();
        json!({"control_url": self.control_url(), "clusters": clusters})
    }

    /// Writes `dir/kubeconfig` and `dir/sim.json` (creating `dir`).
    pub fn write_files(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("sim: creating {}", dir.display()))?;
        self.write_kubeconfig(&dir.join("kubeconfig"))?;
        let path = dir.join("sim.json");
        let text = serde_json::to_string_pretty(&self.sim_json())?;
        std::fs::write(&path, text).with_context(|| format!("sim: writing {}", path.display()))
    }

    /// Names in start order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.name().to_owned()).collect()
    }

    pub fn cluster(&self, name: &str) -> Option<SimClusterHandle> {
        self.clusters.iter().find(|c| c.name() == name).cloned()
    }

    pub fn clusters(&self) -> &[SimClusterHandle] {
        &self.clusters
    }

    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// Stops every server; ports are released when this returns.
    pub async fn shutdown(self) {
        for cluster in &self.clusters {
            cluster.stop();
        }
        self.control_stop.cancel();
        if let Err(error) = self.control_task.await {
            tracing::warn!(%error, "sim: control server task ended abnormally");
        }
    }
}

/// Runs a fleet until `shutdown` is cancelled: `meridian sim --out DIR`.
///
/// Writes `out_dir/kubeconfig` and `out_dir/sim.json` once every server
/// listens. A caller that must write more files before blocking (the demo's
/// `meridian.yaml`) uses the same steps itself: [`SimFleet::start`],
/// [`SimFleet::write_files`], its own files, `shutdown.cancelled().await`,
/// [`SimFleet::shutdown`].
pub async fn run_standalone(
    specs: Vec<SimClusterSpec>,
    opts: SimOptions,
    out_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let fleet = SimFleet::start(specs, opts).await?;
    let written = fleet.write_files(out_dir);
    if written.is_ok() {
        tracing::info!(
            out_dir = %out_dir.display(),
            control_url = %fleet.control_url(),
            clusters = fleet.clusters.len(),
            "sim: fleet running"
        );
        shutdown.cancelled().await;
    }
    fleet.shutdown().await;
    written
}
