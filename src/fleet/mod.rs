//! The Kubernetes side, through `kube`: manifests rendered per cluster,
//! server-side apply under Meridian's field manager, rollout status read the
//! way `kubectl rollout status` reads it, and snapshot/restore for rollback.
//!
//! - [`render`]: templates → validated, decorated [`Manifest`]s (pure).
//! - [`status`]: "is it rolled out?" for one workload (pure).
//! - [`Fleet`]: one `kube::Client` per cluster and the calls, each bounded by
//!   a timeout and a small retry budget for transient failures.

mod budget;
mod client;
mod cluster;
mod connect;
mod error;
pub mod manifest;
mod registry;
pub mod render;
mod snapshot;
pub mod status;
mod watch;

#[cfg(test)]
mod tests;

pub use client::{Fleet, FleetOptions};
pub use error::FleetError;
pub use manifest::{Kind, Manifest};
pub use render::{
    RenderContext, RenderError, check_templates, check_templates_with_params, render,
};
pub use snapshot::{Snapshot, SnapshotObject};
pub use status::{RolloutProgress, daemonset_progress, deployment_progress, statefulset_progress};
pub use watch::{Watches, WorkloadChanged};
