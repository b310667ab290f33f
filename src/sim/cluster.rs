//! One simulated cluster: its store, its faults, its port, and the handle
//! tests use to inspect and steer it in-process.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::JoinHandle;

use super::api_server;
use super::listener::{Gate, GateListener};
use super::options::{Faults, SimClusterSpec, SimOptions};
use super::pods::Timing;
use super::records::{ApplyRecord, ClusterInfo, ClusterReport};
use super::requests::RequestCounts;
use super::store::ClusterStore;
use super::workload::ControllerEnv;

/// State shared by the HTTP handlers and every handle of one cluster.
pub struct ClusterInner {
    pub name: String,
    pub region: String,
    store: Mutex<ClusterStore>,
    faults: Mutex<Faults>,
    gate: Arc<Gate>,
    server: Mutex<Option<JoinHandle<()>>>,
    requests: Mutex<RequestCounts>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent, so a panic elsewhere
    // must not take the whole simulated cluster down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ClusterInner {
    pub fn store(&self) -> MutexGuard<'_, ClusterStore> {
        lock(&self.store)
    }

    pub fn faults(&self) -> Faults {
        *lock(&self.faults)
    }

    pub fn request_counts(&self) -> MutexGuard<'_, RequestCounts> {
        lock(&self.requests)
    }

    pub fn addr(&self) -> SocketAddr {
        self.gate.local_addr()
    }
}

/// A cheap, cloneable handle on one running simulated cluster.
#[derive(Clone)]
pub struct SimClusterHandle {
    inner: Arc<ClusterInner>,
}

impl SimClusterHandle {
    /// Binds a free port on 127.0.0.1 and serves the cluster's API on it.
    pub(crate) async fn start(
        spec: &SimClusterSpec,
        opts: SimOptions,
        seq: Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let gate = Gate::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let env = ControllerEnv {
            timing: Timing::from_std(opts.replica_ready_after, opts.observe_delay),
            daemonset_nodes: opts.daemonset_nodes,
        };
        let inner = Arc::new(ClusterInner {
            name: spec.name.clone(),
            region: spec.region.clone(),
            store: Mutex::new(ClusterStore::new(
                &spec.name,
                &spec.region,
                env,
                seq,
                crate::clock::now(),
            )),
            faults: Mutex::new(Faults::default()),
            gate: Arc::clone(&gate),
            server: Mutex::new(None),
            requests: Mutex::new(RequestCounts::default()),
        });
        let app = api_server::router(Arc::clone(&inner));
        let name = spec.name.clone();
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(GateListener { gate }, app).await {
                tracing::error!(cluster = %name, %error, "sim: cluster server stopped");
            }
        });
        *lock(&inner.server) = Some(task);
        tracing::debug!(cluster = %spec.name, addr = %inner.addr(), "sim: cluster listening");
        Ok(Self { inner })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// `http://127.0.0.1:PORT`; stays the same across refuse/accept toggles.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr()
    }

    /// Replaces the faults. Refusing closes the port before this returns;
    /// un-refusing re-binds the same port before this returns (retrying in
    /// the background in the rare case the port is momentarily busy).
    pub fn set_faults(&self, faults: Faults) {
        let previous = std::mem::replace(&mut *lock(&self.inner.faults), faults);
        match (previous.refuse_connections, faults.refuse_connections) {
            (false, true) => self.inner.gate.close(),
            (true, false) => {
                let weak = Arc::downgrade(&self.inner);
                self.inner.gate.open_or_retry(move || {
                    weak.upgrade()
                        .is_some_and(|c| !c.faults().refuse_connections)
                });
            }
            _ => {}
        }
    }

    pub fn faults(&self) -> Faults {
        self.inner.faults()
    }

    /// Whether the port currently accepts TCP connections.
    pub fn is_accepting(&self) -> bool {
        self.inner.gate.is_open()
    }

    /// Every apply that created or changed an object, oldest first.
    pub fn apply_log(&self) -> Vec<ApplyRecord> {
        self.inner.store().apply_log()
    }

    /// Every apply request that reached the API (changed anything or not,
    /// failed validation or conflicted); requests answered by an injected
    /// 500 never reached it and are not counted.
    pub fn apply_calls(&self) -> u64 {
        self.inner.store().apply_calls()
    }

    /// How many `method` requests for `path` (no query string) reached the
    /// API: past the token check and any injected fault.
    pub fn requests(&self, method: &str, path: &str) -> u64 {
        self.inner.request_counts().get(method, path)
    }

    /// Current container images of a workload; `kind` as `Deployment`,
    /// `deployments` or `deploy`; `namespace` is ignored for cluster-scoped kinds.
    pub fn images(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<String>> {
        self.inner.store().images(kind, namespace, name)
    }

    /// Takes every pod of a workload away now; false when there is none.
    pub fn lose_pods(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.inner
            .store()
            .lose_pods(kind, namespace, name, crate::clock::now())
    }

    /// The error rate a Deployment's current images serve, with the images.
    pub fn app_error_rate(&self, namespace: &str, name: &str) -> Option<(f64, Vec<String>)> {
        self.inner.store().app_error_rate(namespace, name)
    }

    /// Overrides the app error rate for images containing `version_substring`
    /// (whole image reference is matched), from now on.
    pub fn set_error_rate(&self, version_substring: &str, rate: f64) {
        self.inner
            .store()
            .set_error_rate(version_substring, rate, crate::clock::now());
    }

    /// Objects, statuses and the apply log, as the control server reports them.
    pub fn report(&self) -> ClusterReport {
        self.inner.store().report(crate::clock::now())
    }

    /// The app metrics text `/metrics` would serve now.
    pub fn metrics_text(&self) -> String {
        self.inner.store().metrics_text(crate::clock::now())
    }

    pub fn info(&self) -> ClusterInfo {
        ClusterInfo {
            name: self.inner.name.clone(),
            region: self.inner.region.clone(),
            base_url: self.base_url(),
            apply_calls: self.apply_calls(),
        }
    }

    /// Closes the port for good and stops the server.
    pub(crate) fn stop(&self) {
        self.inner.gate.stop();
        if let Some(task) = lock(&self.inner.server).take() {
            task.abort();
        }
    }
}
