//! The knobs a caller turns: which clusters exist, how fast they move, and
//! which faults they inject.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One simulated cluster to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimClusterSpec {
    /// Cluster name; also the kubeconfig context name.
    pub name: String,
    /// Region label, carried into the app metrics.
    pub region: String,
}

impl SimClusterSpec {
    pub fn new(name: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
        }
    }
}

/// Timing of the simulated controllers; shared by every cluster of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimOptions {
    /// Time for one replica to become ready. Rollouts move one replica at a
    /// time, so a rollout of N replicas takes about N times this.
    pub replica_ready_after: Duration,
    /// Controller lag before `status.observedGeneration` catches up with a
    /// spec change; nothing moves before that.
    pub observe_delay: Duration,
    /// How many nodes a DaemonSet schedules onto.
    pub daemonset_nodes: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            replica_ready_after: Duration::from_millis(300),
            observe_delay: Duration::from_millis(50),
            daemonset_nodes: 3,
        }
    }
}

/// Failure injection for one cluster's Kubernetes API (not for `/metrics`,
/// not for the control server).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Added to every API request before it is handled.
    pub latency_ms: u64,
    /// Fraction (0.0..=1.0) of API requests answered with a 500 `Status`
    /// without being handled.
    pub error_rate: f64,
    /// Close the listening socket so TCP connections are refused, and cut
    /// open connections. Turning it off re-binds the same port; state is kept.
    pub refuse_connections: bool,
}
