//! Reading the append-only event log.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Result, Store};

/// One entry of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = Event)]
pub struct EventRecord {
    pub id: i64,
    pub rollout_id: Option<Uuid>,
    pub cluster: Option<String>,
    pub kind: String,
    pub actor: String,
    pub message: String,
    /// The engine replica that wrote it, and under which lease token.
    pub worker: Option<String>,
    pub lease_token: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// Events after `after_id` and up to `upto` (the settled horizon, see
    /// [`super::event_horizon`]) in id order, optionally of one rollout; at
    /// most `limit`.
    pub async fn events_after(
        &self,
        after_id: i64,
        upto: i64,
        rollout_id: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<EventRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, rollout_id, cluster, kind, actor, message, worker, lease_token, created_at
               FROM events
              WHERE id > $1 AND id <= $2 AND ($3::uuid IS NULL OR rollout_id = $3)
              ORDER BY id LIMIT $4",
        )
        .bind(after_id)
        .bind(upto)
        .bind(rollout_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A rollout's events in the order they happened.
    pub async fn events(&self, rollout_id: Uuid) -> Result<Vec<EventRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, rollout_id, cluster, kind, actor, message, worker, lease_token, created_at
               FROM events WHERE rollout_id = $1 ORDER BY id",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// One stored gate evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[schema(as = GateReading)]
pub struct GateReadingRecord {
    pub id: i64,
    /// The stage it judged (0-based); null for the pre-rollout check.
    pub stage: Option<i32>,
    pub gate: String,
    pub cluster: String,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    pub verdict: String,
    pub detail: Option<String>,
    pub query: String,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// A rollout's gate readings in the order they were taken.
    pub async fn gate_readings(&self, rollout_id: Uuid) -> Result<Vec<GateReadingRecord>> {
        Ok(sqlx::query_as(
            "SELECT id, stage, gate, cluster, value, baseline, threshold, verdict, detail, query, created_at
               FROM gate_readings WHERE rollout_id = $1 ORDER BY id",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
