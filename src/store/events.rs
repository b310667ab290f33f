//! Reading the append-only event log.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Result, Store};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
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
