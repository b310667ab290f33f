//! Webhooks, their deliveries and attempts; the fan-out cursor; delivery
//! leases. A delivery is claimed like a rollout: `FOR UPDATE SKIP LOCKED`
//! plus a lease with a growing token, and its outcome is written only while
//! that lease still holds, so two replicas never both finish it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use super::{Result, Store, StoreError, events::EventRecord};
use crate::webhooks::{EventContext, EventFilter, Format, Secret};

/// A webhook as registered, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookRecord {
    pub id: Uuid,
    pub url: String,
    /// Event kinds, or `["*"]` for all.
    pub events: Vec<String>,
    pub format: Format,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

pub struct NewWebhook {
    pub url: url::Url,
    pub events: EventFilter,
    pub secret: Secret,
    pub format: Format,
    pub created_by: String,
}

/// One event on its way to one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = Delivery)]
pub struct DeliveryRecord {
    pub id: Uuid,
    pub webhook_id: Uuid,
    pub event_id: i64,
    pub event_kind: String,
    pub rollout_id: Option<Uuid>,
    pub state: DeliveryState,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptRecord>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet sent, or failed and due again at `next_attempt_at`.
    Pending,
    Succeeded,
    /// Every attempt allowed failed; it is not sent again.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Succeeded,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One try at sending a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DeliveryAttempt)]
pub struct AttemptRecord {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status: Option<i32>,
    pub error: Option<String>,
}

/// The right to send one delivery for a while.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryLease {
    pub delivery_id: Uuid,
    pub worker: String,
    pub token: i64,
}

/// A claimed delivery with everything needed to send it.
#[derive(Debug)]
pub struct ClaimedDelivery {
    pub lease: DeliveryLease,
    /// Attempts made before this one.
    pub attempts: i32,
    pub url: String,
    pub secret: Secret,
    pub format: Format,
    pub event: EventRecord,
    pub context: EventContext,
}

/// What became of one attempt, and so of the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedAttempt {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub next: NextStep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    Succeeded,
    RetryAfter(Duration),
    /// That was the last attempt allowed.
    Failed,
}

/// What one claim of deliveries found: those now held, and when the
/// earliest of the others may be claimed (`None` when none is pending).
#[derive(Debug)]
pub struct DeliveryClaim {
    pub deliveries: Vec<ClaimedDelivery>,
    pub next_due: Option<DateTime<Utc>>,
}

/// What one fan-out pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanOut {
    pub events_read: usize,
    pub deliveries_created: usize,
}

impl Store {
    /// Registers a webhook; it receives the events after `after_event_id`.
    /// Pass the settled horizon (see [`super::event_horizon`]), not the
    /// newest id: an id drawn before the newest may still commit, after the
    /// webhook exists, and would be below it.
    pub async fn create_webhook(
        &self,
        new: &NewWebhook,
        after_event_id: i64,
    ) -> Result<WebhookRecord> {
        let row = sqlx::query(
            "INSERT INTO webhooks (id, url, events, secret, format, after_event_id, created_by)
             VALUES ($1, $2, $3, $4, $5, $7, $6)
             RETURNING id, url, events, format, created_by, created_at",
        )
        .bind(Uuid::now_v7())
        .bind(new.url.as_str())
        .bind(new.events.names())
        .bind(new.secret.expose())
        .bind(new.format.as_str())
        .bind(&new.created_by)
        .bind(after_event_id)
        .fetch_one(&self.pool)
        .await?;
        webhook_from_row(&row)
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRecord>> {
        sqlx::query(
            "SELECT id, url, events, format, created_by, created_at
               FROM webhooks ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(webhook_from_row)
        .collect()
    }

    pub async fn webhook(&self, id: Uuid) -> Result<WebhookRecord> {
        let row = sqlx::query(
            "SELECT id, url, events, format, created_by, created_at FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("webhook {id}")))?;
        webhook_from_row(&row)
    }

    /// Removes a webhook with its delivery history; deliveries not yet
    /// sent are dropped with it.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<()> {
        let deleted = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("webhook {id}")));
        }
        Ok(())
    }

    /// A webhook's most recent deliveries, newest first, with every attempt.
    pub async fn deliveries(&self, webhook_id: Uuid, limit: i64) -> Result<Vec<DeliveryRecord>> {
        self.webhook(webhook_id).await?;
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, e.kind AS event_kind, e.rollout_id,
                    d.state, d.attempts, d.last_status, d.last_error, d.created_at,
                    d.last_attempt_at, d.next_attempt_at, d.finished_at
               FROM webhook_deliveries d JOIN events e ON e.id = d.event_id
              WHERE d.webhook_id = $1
              ORDER BY d.created_at DESC, d.event_id DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut deliveries = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.id).collect();
        let attempts = sqlx::query(
            "SELECT delivery_id, attempt, started_at, duration_ms, status, error
               FROM webhook_attempts WHERE delivery_id = ANY($1)
              ORDER BY delivery_id, attempt",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        for row in attempts {
            let delivery_id: Uuid = row.try_get("delivery_id")?;
            if let Some(d) = deliveries.iter_mut().find(|d| d.id == delivery_id) {
                d.attempt_log.push(AttemptRecord {
                    attempt: row.try_get("attempt")?,
                    started_at: row.try_get("started_at")?,
                    duration_ms: row.try_get("duration_ms")?,
                    status: row.try_get("status")?,
                    error: row.try_get("error")?,
                });
            }
        }
        Ok(deliveries)
    }

    /// Turns up to `batch` events after the cursor into deliveries for the
    /// webhooks that want them, and moves the cursor past them, in one
    /// transaction: a crash leaves either both or neither, and the unique
    /// (webhook, event) pair makes a repeat harmless anyway. While another
    /// replica holds the cursor this does nothing (it is doing the work).
    pub async fn fan_out_webhooks(&self, batch: i64, upto: i64) -> Result<FanOut> {
        // One statement, so one snapshot: a webhook registered after it
        // starts at a settled horizon at least as new as these events (see
        // `create_webhook`), so it is owed none of them. Up to the settled
        // horizon (see `event_horizon`), reading by id never skips an event
        // that commits later. The cursor row is held by one replica at a
        // time; the others find it locked (no cursor, so no batch) and do
        // nothing. KEY SHARE keeps the webhooks from being deleted under the
        // inserts. A filter of "*" (`ALL_EVENTS`) selects every kind.
        let (events_read, created): (i64, i64) = sqlx::query_as(
            "WITH cursor AS (
                SELECT last_event_id FROM webhook_cursor WHERE singleton
                   FOR UPDATE SKIP LOCKED),
             -- The cursor as a scalar bounds the index scan; joined, it
             -- was a filter, and every call read all of history.
             batch AS (
                SELECT e.id, e.kind FROM events e
                 WHERE e.id > (SELECT last_event_id FROM cursor) AND e.id <= $2
                 ORDER BY e.id LIMIT $1),
             hooks AS (
                SELECT id, events, after_event_id FROM webhooks FOR KEY SHARE),
             created AS (
                INSERT INTO webhook_deliveries (id, webhook_id, event_id, state, next_attempt_at)
                SELECT gen_random_uuid(), h.id, b.id, 'pending', now()
                  FROM batch b
                  JOIN hooks h ON b.id > h.after_event_id
                              AND ('*' = ANY (h.events) OR b.kind = ANY (h.events))
                ON CONFLICT (webhook_id, event_id) DO NOTHING
                RETURNING 1),
             moved AS (
                UPDATE webhook_cursor SET last_event_id = (SELECT max(id) FROM batch), updated_at = now()
                 WHERE singleton AND EXISTS (SELECT 1 FROM batch)
                RETURNING 1)
             SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM created)",
        )
        .bind(batch)
        .bind(upto)
        .fetch_one(&self.pool)
        .await?;
        Ok(FanOut {
            events_read: usize::try_from(events_read).unwrap_or(usize::MAX),
            deliveries_created: usize::try_from(created).unwrap_or(usize::MAX),
        })
    }

    /// Claims up to `limit` due deliveries no live lease holds, for
    /// `lease`, with what is needed to send them, and says when the next
    /// of the others may be claimed. The statement always answers one row,
    /// for that time, with the delivery's columns NULL when none was claimed.
    pub async fn claim_deliveries(
        &self,
        worker: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<DeliveryClaim> {
        let rows = sqlx::query(
            "WITH due AS (
                SELECT id FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= now()
                   AND (lease_expires_at IS NULL OR lease_expires_at < now())
                 ORDER BY next_attempt_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED),
             claimed AS (
                UPDATE webhook_deliveries d
                   SET lease_owner = $1,
                       lease_expires_at = now() + make_interval(secs => $2),
                       lease_token = d.lease_token + 1
                  FROM due WHERE d.id = due.id
                RETURNING d.id, d.lease_token, d.attempts, d.webhook_id, d.event_id),
             picked AS (
             SELECT c.id AS delivery_id, c.lease_token AS claim_token, c.attempts,
                    w.url, w.secret, w.format,
                    e.id, e.rollout_id, e.cluster, e.kind, e.actor, e.message, e.worker,
                    e.lease_token, e.created_at,
                    rel.application, rel.version
               FROM claimed c
               JOIN webhooks w ON w.id = c.webhook_id
               JOIN events e ON e.id = c.event_id
               LEFT JOIN rollouts r ON r.id = e.rollout_id
               LEFT JOIN releases rel ON rel.id = r.release_id),
             -- Those claimed here are left out: this snapshot does not see
             -- their new lease, and their sends' ends wake the worker.
             later AS (
                SELECT min(GREATEST(next_attempt_at, COALESCE(lease_expires_at, next_attempt_at)))
                       AS next_due
                  FROM webhook_deliveries
                 WHERE state = 'pending' AND id NOT IN (SELECT id FROM claimed))
             SELECT later.next_due, picked.* FROM later LEFT JOIN picked ON true",
        )
        .bind(worker)
        .bind(lease.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut claim = DeliveryClaim {
            deliveries: Vec::with_capacity(rows.len()),
            next_due: super::next_due_of(&rows)?,
        };
        for row in &rows {
            if row.try_get::<Option<Uuid>, _>("delivery_id")?.is_some() {
                claim.deliveries.push(claimed_from_row(row, worker)?);
            }
        }
        Ok(claim)
    }

    /// Records an attempt and moves the delivery on (done, or due again
    /// later), only while `lease` still holds. Returns false when it did
    /// not: another replica owns the delivery now and nothing was written.
    pub async fn finish_attempt(
        &self,
        lease: &DeliveryLease,
        attempt: i32,
        finished: &FinishedAttempt,
    ) -> Result<bool> {
        let (state, retry_secs) = match finished.next {
            NextStep::Succeeded => (DeliveryState::Succeeded, None),
            NextStep::Failed => (DeliveryState::Failed, None),
            NextStep::RetryAfter(delay) => (DeliveryState::Pending, Some(delay.as_secs_f64())),
        };
        let status = finished.status.map(i32::from);
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries
                SET attempts = $4, state = $5,
                    next_attempt_at = CASE WHEN $6::float8 IS NULL THEN NULL
                                           ELSE now() + make_interval(secs => $6) END,
                    finished_at = CASE WHEN $5 = 'pending' THEN NULL ELSE now() END,
                    last_status = $7, last_error = $8, last_attempt_at = $9,
                    lease_owner = NULL, lease_expires_at = NULL
              WHERE id = $1 AND lease_owner = $2 AND lease_token = $3 AND state = 'pending'",
        )
        .bind(lease.delivery_id)
        .bind(&lease.worker)
        .bind(lease.token)
        .bind(attempt)
        .bind(state.as_str())
        .bind(retry_secs)
        .bind(status)
        .bind(&finished.error)
        .bind(finished.started_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        insert_attempt(&mut tx, lease.delivery_id, attempt, finished).await?;
        tx.commit().await?;
        Ok(true)
    }
}

async fn insert_attempt(
    conn: &mut PgConnection,
    delivery_id: Uuid,
    attempt: i32,
    finished: &FinishedAttempt,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status, error)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(delivery_id)
    .bind(attempt)
    .bind(finished.started_at)
    .bind(i64::try_from(finished.duration.as_millis()).unwrap_or(i64::MAX))
    .bind(finished.status.map(i32::from))
    .bind(&finished.error)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn format_from_row(row: &PgRow) -> Result<Format> {
    let text: String = row.try_get("format")?;
    Format::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("webhook format `{text}`")))
}

fn webhook_from_row(row: &PgRow) -> Result<WebhookRecord> {
    Ok(WebhookRecord {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: row.try_get("events")?,
        format: format_from_row(row)?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

fn delivery_from_row(row: &PgRow) -> Result<DeliveryRecord> {
    let state: String = row.try_get("state")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_kind: row.try_get("event_kind")?,
        rollout_id: row.try_get("rollout_id")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("webhook delivery state `{state}`")))?,
        attempts: row.try_get("attempts")?,
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        last_attempt_at: row.try_get("last_attempt_at")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        finished_at: row.try_get("finished_at")?,
        attempt_log: Vec::new(),
    })
}

fn claimed_from_row(row: &PgRow, worker: &str) -> Result<ClaimedDelivery> {
    Ok(ClaimedDelivery {
        lease: DeliveryLease {
            delivery_id: row.try_get("delivery_id")?,
            worker: worker.to_owned(),
            token: row.try_get("claim_token")?,
        },
        attempts: row.try_get("attempts")?,
        url: row.try_get("url")?,
        secret: Secret::stored(row.try_get("secret")?),
        format: format_from_row(row)?,
        event: EventRecord {
            id: row.try_get("id")?,
            rollout_id: row.try_get("rollout_id")?,
            cluster: row.try_get("cluster")?,
            kind: row.try_get("kind")?,
            actor: row.try_get("actor")?,
            message: row.try_get("message")?,
            worker: row.try_get("worker")?,
            lease_token: row.try_get("lease_token")?,
            created_at: row.try_get("created_at")?,
        },
        context: EventContext {
            application: row.try_get("application")?,
            version: row.try_get("version")?,
        },
    })
}
