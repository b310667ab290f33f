//! The API's JSON shapes as the CLI reads them. Lenient on purpose
//! (`default` everywhere, unknown fields ignored): a newer server that adds
//! fields must not break an older CLI. `-o json` prints the server's own
//! JSON, never these.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::RolloutState;

use super::exit::Exit;

#[derive(Debug, Clone, Deserialize)]
pub struct Rollout {
    pub id: Uuid,
    #[serde(default)]
    pub application: String,
    #[serde(default)]
    pub release: Release,
    pub state: String,
    #[serde(default)]
    pub current_stage: usize,
    #[serde(default)]
    pub plan: PlanRef,
    #[serde(default)]
    pub stages: Vec<Stage>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub bake_started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub links: Links,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Release {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub image: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PlanRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: i64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub dashboard: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Stage {
    pub name: String,
    #[serde(default)]
    pub bake_seconds: f64,
    #[serde(default)]
    pub approval: bool,
    #[serde(default)]
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    pub cluster: String,
    #[serde(default)]
    pub region: String,
    pub state: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: i64,
    pub kind: String,
    #[serde(default)]
    pub cluster: Option<String>,
    #[serde(default)]
    pub message: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GateReading {
    #[serde(default)]
    pub stage: Option<i64>,
    pub gate: String,
    pub cluster: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub baseline: Option<f64>,
    #[serde(default)]
    pub threshold: Option<f64>,
    pub verdict: String,
    #[serde(default)]
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Cluster {
    pub name: String,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub timezone: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

impl Rollout {
    /// The state as the domain knows it; `None` for a state newer than
    /// this CLI, which is then treated as still in progress.
    pub fn known_state(&self) -> Option<RolloutState> {
        RolloutState::parse(&self.state)
    }

    /// How the rollout ended, as an exit code; `None` while it goes on.
    pub fn outcome(&self) -> Option<Exit> {
        let state = self.known_state()?;
        match state {
            RolloutState::Succeeded => Some(Exit::Success),
            RolloutState::RolledBack => Some(Exit::RolledBack),
            RolloutState::Failed => Some(Exit::Failed),
            RolloutState::Aborted => Some(Exit::Aborted),
            RolloutState::Pending
            | RolloutState::Running
            | RolloutState::Paused
            | RolloutState::AwaitingApproval
            | RolloutState::WaitingForWindow
            | RolloutState::RollingBack => None,
        }
    }

    pub fn current(&self) -> Option<&Stage> {
        self.stages.get(self.current_stage)
    }

    /// "stage 2/3 small", or "" for a rollout without stages.
    pub fn stage_label(&self) -> String {
        match self.current() {
            Some(stage) => format!(
                "stage {}/{} {}",
                self.current_stage + 1,
                self.stages.len(),
                stage.name
            ),
            None => String::new(),
        }
    }
}
