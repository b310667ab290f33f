//! Simulated Kubernetes API servers: a **test double**, used by the tests and
//! the demo. Meridian's product path never knows about it: it talks to these
//! servers with the real `kube` client over real HTTP, exactly as it talks to
//! real clusters.
//!
//! A [`SimFleet`] runs one axum server per cluster on its own 127.0.0.1 port,
//! speaking the subset of the Kubernetes REST API Meridian uses:
//!
//! - apps/v1 Deployments, StatefulSets, DaemonSets; core/v1 ConfigMaps,
//!   Services, Secrets, Namespaces: GET, LIST (label/field selectors,
//!   `kubectl` Table printing), WATCH, server-side apply PATCH (with field
//!   ownership, conflicts, `force`, `dryRun`), DELETE; errors as `Status`.
//! - Discovery (`/version`, `/api`, `/apis`, resource lists), so `kubectl
//!   get` works against it.
//! - Rollout progress computed lazily from time: one replica becomes ready
//!   per [`SimOptions::replica_ready_after`] after an observation lag of
//!   [`SimOptions::observe_delay`]; statuses as the real controllers write
//!   them, including `ProgressDeadlineExceeded`.
//! - `GET /metrics`: per-version app traffic counters
//!   (`app_http_requests_total`, `app_http_errors_total`).
//! - [`Faults`]: added latency, random 500s, refused connections.
//!
//! Like a real cluster, namespaced objects can only be created in a
//! namespace that exists; `default`, `kube-system`, `kube-public` and
//! `kube-node-lease` exist from the start. A request with a bearer token
//! other than the generated kubeconfig's gets a 401; one without a token is
//! served (client-go never sends credentials over plain HTTP).
//!
//! Demo conventions, keyed on the image **tag**: a tag containing
//! `crashloop` never becomes ready (the rollout then exceeds its progress
//! deadline); a tag containing `faulty` becomes ready but serves 25% errors.
//!
//! Simplifications a reader of statuses should know: every Deployment rolls
//! as if `maxSurge: 1, maxUnavailable: 0` (StatefulSets and DaemonSets
//! replace one pod at a time), whatever `spec.strategy` says; `paused` and
//! `minReadySeconds` are ignored; Secret `stringData` is stored as given;
//! there is no OpenAPI document (so `kubectl apply` needs
//! `--validate=false`). A status change observed on read gets a new
//! resourceVersion, like a controller's status write.
//!
//! A separate control server ([`SimFleet::control_url`], see [`control`])
//! exposes the same inspection and steering as [`SimClusterHandle`] over
//! JSON, for other processes.

mod admission;
mod api_error;
mod api_server;
mod app_metrics;
mod auth;
mod cluster;
pub mod control;
mod discovery;
mod faults;
mod fleet;
mod images;
mod kinds;
mod kubeconfig;
mod listener;
mod options;
mod pods;
mod records;
mod requests;
mod selector;
mod ssa;
mod status;
mod store;
mod stored;
mod table;
mod timefmt;
mod watch;
mod workload;

#[cfg(test)]
mod tests;

pub use app_metrics::REQUESTS_PER_READY_POD_PER_SECOND;
pub use auth::SIM_TOKEN;
pub use cluster::SimClusterHandle;
pub use control::ErrorRateBody;
pub use fleet::{SimFleet, run_standalone};
pub use images::FAULTY_ERROR_RATE;
pub use options::{Faults, SimClusterSpec, SimOptions};
pub use records::{ApplyRecord, ClusterInfo, ClusterReport, ObjectSummary};
