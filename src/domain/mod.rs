//! Pure domain logic: no IO, no clock. Everything here takes time as an
//! argument so it can be tested exhaustively.

pub mod application;
pub mod cluster;
pub mod duration;
pub mod event;
pub mod field_error;
pub mod gate;
pub mod machine;
pub mod plan;
pub mod state;

pub use application::{Application, ApplicationSpec, Parameters};
pub use cluster::{Cluster, ClusterName, ClusterSpec};
pub use duration::HumanDuration;
pub use event::{EventKind, NewEvent};
pub use field_error::FieldError;
pub use machine::{Effect, Input, OperatorAction, Progress, Rollout, Target, Tuning};
pub use plan::{ClusterSelector, FailurePolicy, Plan, PlanError, Stage};
pub use state::{RolloutState, TargetState};

#[cfg(test)]
mod machine_tests;
