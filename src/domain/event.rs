use serde::{Deserialize, Serialize};

/// What an audit event records. Stored as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    RolloutCreated,
    RolloutStarted,
    StageStarted,
    TargetApplying,
    TargetApplied,
    TargetRolledOut,
    TargetRetrying,
    TargetFailed,
    StageBaking,
    StageHealthy,
    AwaitingApproval,
    Approved,
    Paused,
    Resumed,
    ActionRejected,
    RollbackStarted,
    TargetRestoring,
    TargetRestored,
    TargetRestoreFailed,
    GateBadReading,
    GatePaused,
    PreCheckPassed,
    PreCheckFailed,
    RolledBack,
    Succeeded,
    Failed,
    Aborted,
    Retried,
    /// Catalog changes through the API (no rollout): who changed what
    /// a rollout may touch.
    ClusterRegistered,
    ClusterUpdated,
    ApplicationRegistered,
    ApplicationUpdated,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RolloutCreated => "rollout_created",
            Self::RolloutStarted => "rollout_started",
            Self::StageStarted => "stage_started",
            Self::TargetApplying => "target_applying",
            Self::TargetApplied => "target_applied",
            Self::TargetRolledOut => "target_rolled_out",
            Self::TargetRetrying => "target_retrying",
            Self::TargetFailed => "target_failed",
            Self::StageBaking => "stage_baking",
            Self::StageHealthy => "stage_healthy",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Approved => "approved",
            Self::Paused => "paused",
            Self::Resumed => "resumed",
            Self::ActionRejected => "action_rejected",
            Self::RollbackStarted => "rollback_started",
            Self::TargetRestoring => "target_restoring",
            Self::TargetRestored => "target_restored",
            Self::TargetRestoreFailed => "target_restore_failed",
            Self::GateBadReading => "gate_bad_reading",
            Self::GatePaused => "gate_paused",
            Self::PreCheckPassed => "pre_check_passed",
            Self::PreCheckFailed => "pre_check_failed",
            Self::RolledBack => "rolled_back",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
            Self::Retried => "retried",
            Self::ClusterRegistered => "cluster_registered",
            Self::ClusterUpdated => "cluster_updated",
            Self::ApplicationRegistered => "application_registered",
            Self::ApplicationUpdated => "application_updated",
        }
    }
}

/// An event decided by the machine, not yet stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub kind: EventKind,
    pub cluster: Option<String>,
    /// `engine` for the machine's own decisions, else the operator.
    pub actor: String,
    pub message: String,
}
