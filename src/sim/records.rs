//! What the sim lets tests inspect: the apply log and object summaries, as
//! returned in-process and by the control server (hence serde both ways).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One apply that created or changed an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyRecord {
    /// Fleet-wide, strictly increasing: orders applies across clusters.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// `Deployment`, `ConfigMap`, …
    pub kind: String,
    /// Empty for cluster-scoped objects (namespaces).
    pub namespace: String,
    pub name: String,
    /// Container images after the apply; empty for non-workloads.
    pub images: Vec<String>,
    pub field_manager: String,
}

/// One stored object as the control server reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSummary {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Absent for kinds without a generation (ConfigMap, Service, …).
    pub generation: Option<i64>,
    pub images: Vec<String>,
    /// The status as a GET would return it now (`null` if the kind has none).
    pub status: Value,
}

/// `GET /clusters/{name}/state` of the control server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterReport {
    pub apply_calls: u64,
    pub apply_log: Vec<ApplyRecord>,
    pub objects: Vec<ObjectSummary>,
}

/// One entry of `GET /clusters` of the control server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub region: String,
    pub base_url: String,
    pub apply_calls: u64,
}
