//! The Kubernetes side: render manifests per cluster, apply them with
//! server-side apply, read rollout status, snapshot and restore.

pub mod manifest;
pub mod render;
