use serde::{Deserialize, Serialize};

/// Where a rollout is in its life. See DESIGN.md, "Life of a rollout".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Pending,
    Running,
    Paused,
    AwaitingApproval,
    WaitingForWindow,
    RollingBack,
    Succeeded,
    RolledBack,
    Failed,
    Aborted,
}

impl RolloutState {
    pub const ALL: [RolloutState; 10] = [
        Self::Pending,
        Self::Running,
        Self::Paused,
        Self::AwaitingApproval,
        Self::WaitingForWindow,
        Self::RollingBack,
        Self::Succeeded,
        Self::RolledBack,
        Self::Failed,
        Self::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::AwaitingApproval => "awaiting_approval",
            Self::WaitingForWindow => "waiting_for_window",
            Self::RollingBack => "rolling_back",
            Self::Succeeded => "succeeded",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Terminal states need no engine attention.
    pub fn is_terminal(self) -> bool {
        match self {
            Self::Succeeded | Self::RolledBack | Self::Failed | Self::Aborted => true,
            Self::Pending
            | Self::Running
            | Self::Paused
            | Self::AwaitingApproval
            | Self::WaitingForWindow
            | Self::RollingBack => false,
        }
    }
}

/// Where one cluster is inside one rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Not touched yet.
    Pending,
    /// Decided and recorded; the apply may or may not have reached the cluster.
    Applying,
    /// Applied; waiting for the workloads to roll out.
    Progressing,
    /// Rolled out the way `kubectl rollout status` decides.
    RolledOut,
    /// Could not be applied or did not roll out.
    Failed,
    /// Decided to restore; the restore may or may not have reached the cluster.
    Restoring,
    /// Restore sent; waiting for the previous revision to be rolled out again.
    Verifying,
    /// Back on the revision it had before, verified.
    Restored,
    /// The restore could not be completed.
    RestoreFailed,
}

impl TargetState {
    pub const ALL: [TargetState; 9] = [
        Self::Pending,
        Self::Applying,
        Self::Progressing,
        Self::RolledOut,
        Self::Failed,
        Self::Restoring,
        Self::Verifying,
        Self::Restored,
        Self::RestoreFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applying => "applying",
            Self::Progressing => "progressing",
            Self::RolledOut => "rolled_out",
            Self::Failed => "failed",
            Self::Restoring => "restoring",
            Self::Verifying => "verifying",
            Self::Restored => "restored",
            Self::RestoreFailed => "restore_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for s in RolloutState::ALL {
            assert_eq!(RolloutState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in TargetState::ALL {
            assert_eq!(TargetState::parse(s.as_str()), Some(s));
        }
    }
}
