//! Releases, rollouts and their targets; leases and fenced writes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use super::{EVENTS_CHANNEL, Result, Store, StoreError, WAKE_CHANNEL, catalog, catalog::to_json};
use crate::domain::{
    EventKind, FailurePolicy, NewEvent, OperatorAction, Rollout, RolloutState, Target,
    machine::{GateTrack, StagePolicy},
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    pub id: Uuid,
    pub application: String,
    pub version: String,
    pub image: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RolloutRecord {
    pub id: Uuid,
    pub release: ReleaseRecord,
    pub plan_name: String,
    pub plan_version: i32,
    pub machine: Rollout,
    pub version: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The right to drive one rollout for a while. Every write made under it is
/// checked against it (fencing): once another engine claimed the rollout,
/// writes under the old lease change nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub rollout_id: Uuid,
    pub worker: String,
    pub token: i64,
    /// The rollout's wake-up count when claimed (see `wake_seq` in the
    /// migrations): a wake-up during the tick makes it due again at once.
    pub wake_seq: i64,
}

/// Which rollouts to list.
#[derive(Clone, Debug, Default)]
pub struct RolloutFilter<'a> {
    pub application: Option<&'a str>,
    pub state: Option<RolloutState>,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
    /// Created before.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this (created_at, id): the cursor of the last page.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// What to do when the application already has an active rollout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnActive {
    /// Refuse with 409 naming the active rollout.
    #[default]
    Reject,
    /// Start once the active one (and any queued before) ended.
    Queue,
}

#[derive(Clone, Copy, Debug)]
pub struct IdempotencyKey<'a> {
    pub key: &'a str,
    /// SHA-256 of the request as parsed.
    pub request_hash: &'a str,
}

#[derive(Clone, Copy, Debug)]
pub struct NewRelease<'a> {
    pub application: &'a str,
    pub version: &'a str,
    pub image: &'a str,
    pub actor: &'a str,
    pub force: bool,
    pub on_active: OnActive,
    pub idempotency: Option<IdempotencyKey<'a>>,
}

/// The outcome of creating a release: the answer to give, first time or
/// replayed.
#[derive(Clone, Debug)]
pub struct Created {
    pub release: ReleaseRecord,
    pub rollout_id: Uuid,
    pub queued: bool,
    pub body: serde_json::Value,
    /// The same key and body came before; nothing new was created.
    pub replayed: bool,
}

/// A rollout this engine now holds the lease of, as it was when claimed.
#[derive(Clone, Debug)]
pub struct ClaimedRollout {
    pub lease: Lease,
    pub record: RolloutRecord,
    pub actions: Vec<PendingAction>,
    /// Pending while an older rollout of the same application is still
    /// active: it must wait its turn.
    pub queued_behind_another: bool,
}

/// What one claim found: the rollouts now held, and when the earliest of
/// the others is due (for the engine's sleep; `None` when none is).
#[derive(Clone, Debug)]
pub struct Claim {
    pub rollouts: Vec<ClaimedRollout>,
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingAction {
    pub id: i64,
    pub action: OperatorAction,
    pub actor: String,
    pub reason: Option<String>,
}

/// An unprocessed operator action as `claim_due` reads it.
#[derive(Deserialize)]
struct ActionRow {
    id: i64,
    action: String,
    actor: String,
    reason: Option<String>,
}

/// The rollout-level machine fields kept as one JSON document.
#[derive(Serialize, Deserialize)]
pub(super) struct MachineDoc {
    stages: Vec<StagePolicy>,
    on_failure: FailurePolicy,
    bake_started_at: Option<DateTime<Utc>>,
    paused_from: Option<RolloutState>,
    retry_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    #[serde(default)]
    gate_tracks: Vec<GateTrack>,
    #[serde(default)]
    precheck_pending: bool,
}

impl MachineDoc {
    pub(super) fn of(r: &Rollout) -> Self {
        Self {
            stages: r.stages.clone(),
            on_failure: r.on_failure,
            bake_started_at: r.bake_started_at,
            paused_from: r.paused_from,
            retry_at: r.retry_at,
            reason: r.reason.clone(),
            gate_tracks: r.gate_tracks.clone(),
            precheck_pending: r.precheck_pending,
        }
    }
}

/// The one way a rollout is read: its row, its release and its targets (as
/// a JSON array, so one round trip loads it), plus `$extra` columns.
macro_rules! select_rollouts {
    ($extra:literal) => {
        concat!(
            "SELECT r.id, r.plan_name, r.plan_version, r.state, r.current_stage, r.machine,
                    r.version, r.created_by, r.created_at, r.updated_at, r.finished_at,
                    rel.id AS release_id, rel.application, rel.version AS release_version, rel.image,
                    rel.created_by AS release_created_by, rel.created_at AS release_created_at,
                    (SELECT coalesce(json_agg(json_build_object(
                                'cluster', t.cluster, 'region', t.region, 'stage', t.stage,
                                'state', t.state, 'apply_seq', t.apply_seq, 'errors', t.errors,
                                'message', t.message, 'updated_at', t.updated_at)
                            ORDER BY t.position), '[]')
                       FROM targets t WHERE t.rollout_id = r.id) AS targets",
            $extra,
            " FROM rollouts r JOIN releases rel ON rel.id = r.release_id"
        )
    };
}

impl Store {
    /// Creates a release and its rollout on the application's current plan
    /// version, in one transaction, and wakes the engines.
    pub async fn create_release(
        &self,
        request: &NewRelease<'_>,
        render: impl FnOnce(&ReleaseRecord, Uuid, bool) -> serde_json::Value,
    ) -> Result<Created> {
        let NewRelease {
            application,
            version,
            image,
            actor,
            force,
            on_active,
            idempotency,
        } = *request;
        let mut tx = self.pool.begin().await?;
        if let Some(key) = idempotency {
            // The insert waits for a concurrent request with the same key
            // to commit, then conflicts: at most one of them creates. A key
            // past its lifetime is taken over as if it were new (the
            // periodic clean-up may not have removed it yet).
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (actor, key, request_hash) VALUES ($1, $2, $3)
                 ON CONFLICT (actor, key) DO UPDATE
                    SET request_hash = EXCLUDED.request_hash, response_status = NULL,
                        response_body = NULL, created_at = now()
                  WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)",
            )
            .bind(actor)
            .bind(key.key)
            .bind(key.request_hash)
            .bind(super::idempotency::KEY_LIFETIME.as_secs_f64())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !claimed {
                drop(tx);
                return self.replay(actor, key).await;
            }
        }
        let app: Option<(String,)> =
            sqlx::query_as("SELECT plan_name FROM applications WHERE name = $1 FOR UPDATE")
                .bind(application)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((plan_name,)) = app else {
            return Err(StoreError::NotFound(format!("application `{application}`")));
        };
        // A statement of its own after the application's lock: READ
        // COMMITTED gives it a fresh snapshot, so it sees the rollout a
        // rival request for the application committed while this one
        // waited for the lock. (Joined into the locking statement, it would
        // read the rival's tables as they were before the wait.)
        let (active_id, active_state, version_taken, plan_version, plan, clusters): (
            Option<Uuid>,
            Option<String>,
            bool,
            Option<i32>,
            Option<serde_json::Value>,
            serde_json::Value,
        ) = sqlx::query_as(concat!(
            "SELECT active.id, active.state,
                    EXISTS (SELECT 1 FROM releases WHERE application = $1 AND version = $2),
                    plan.version, plan.plan, ",
            catalog::clusters_as_json!(),
            " FROM (SELECT 1) AS one
               LEFT JOIN LATERAL (
                    SELECT id, state FROM rollouts WHERE application = $1
                       AND state NOT IN ('succeeded', 'rolled_back', 'failed', 'aborted')
                     LIMIT 1) AS active ON true
               LEFT JOIN LATERAL (
                    SELECT version, plan FROM plans WHERE name = $3
                     ORDER BY version DESC LIMIT 1) AS plan ON true"
        ))
        .bind(application)
        .bind(version)
        .bind(&plan_name)
        .fetch_one(&mut *tx)
        .await?;
        let queued = match (active_id, on_active) {
            (None, _) => false,
            (Some(_), OnActive::Queue) => true,
            (Some(id), OnActive::Reject) => {
                let state = active_state.unwrap_or_default();
                return Err(StoreError::Conflict(format!(
                    "application `{application}` already has an active rollout {id} ({state}); wait for it to finish, abort it, or send \"on_active\": \"queue\""
                )));
            }
        };
        if version_taken {
            return Err(StoreError::Conflict(format!(
                "release `{version}` of `{application}` already exists; releases are immutable, use a new version"
            )));
        }
        let (Some(plan_version), Some(plan)) = (plan_version, plan) else {
            return Err(StoreError::NotFound(format!("plan `{plan_name}`")));
        };
        let plan = catalog::plan_from_json(&plan_name, plan)?;
        let clusters = catalog::clusters_from_json(clusters)?;
        let waves = plan.assign(&clusters);
        let mut machine = Rollout::new(&plan, &waves);
        if force {
            machine.skip_precheck();
        }

        let release = ReleaseRecord {
            id: Uuid::now_v7(),
            application: application.to_owned(),
            version: version.to_owned(),
            image: image.to_owned(),
            created_by: actor.to_owned(),
            created_at: Utc::now(),
        };
        let rollout_id = Uuid::now_v7();
        let body = render(&release, rollout_id, queued);
        let created = [NewEvent {
            kind: EventKind::RolloutCreated,
            cluster: None,
            actor: actor.to_owned(),
            message: format!(
                "release {version} ({image}) of {application} created; rollout on plan {plan_name} v{plan_version} over {} cluster(s)",
                machine.targets.len()
            ),
        }];
        let targets = &machine.targets;
        // The release, its rollout, its targets, its first event and the
        // stored answer for the idempotency key in one statement (foreign
        // keys are checked at its end).
        let query = sqlx::query(concat!(
            "WITH with_xid AS (SELECT pg_current_xact_id()),
             release AS (
                INSERT INTO releases (id, application, version, image, created_by, created_at)
                VALUES ($1, $2, $3, $4, $5, $6)),
             rollout AS (
                INSERT INTO rollouts (id, release_id, application, plan_name, plan_version, state,
                                      current_stage, machine, created_by, next_wake_at)
                VALUES ($7, $1, $2, $8, $9, $10, 0, $11, $5, CASE WHEN $12 THEN NULL ELSE now() END)),
             targets AS (
                INSERT INTO targets (rollout_id, cluster, region, stage, position, state)
                SELECT $7, cluster, region, stage, n - 1, state
                  FROM unnest($13::text[], $14::text[], $15::int4[], $16::text[])
                       WITH ORDINALITY AS t(cluster, region, stage, state, n)),
             answer AS (
                UPDATE idempotency_keys SET response_status = 201, response_body = $18
                 WHERE actor = $5 AND key = $17),
             ",
            insert_events_cte!("$7", "NULL::text", "NULL::bigint", "$21", "$22", "$23", "$24"),
            " SELECT pg_notify($19, $7::text), pg_notify($20, (SELECT max(id) FROM inserted)::text)"
        ))
        .bind(release.id)
        .bind(&release.application)
        .bind(&release.version)
        .bind(&release.image)
        .bind(&release.created_by)
        .bind(release.created_at)
        .bind(rollout_id)
        .bind(&plan_name)
        .bind(plan_version)
        .bind(machine.state.as_str())
        .bind(to_json(&MachineDoc::of(&machine))?)
        .bind(queued)
        .bind(targets.iter().map(|t| t.cluster.as_str()).collect::<Vec<_>>())
        .bind(targets.iter().map(|t| t.region.as_str()).collect::<Vec<_>>())
        .bind(
            targets
                .iter()
                .map(|t| i32::try_from(t.stage).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(targets.iter().map(|t| t.state.as_str()).collect::<Vec<_>>())
        .bind(idempotency.map(|key| key.key))
        .bind(&body)
        .bind(WAKE_CHANNEL)
        .bind(EVENTS_CHANNEL);
        bind_events!(query, created).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Created {
            release,
            rollout_id,
            queued,
            body,
            replayed: false,
        })
    }

    /// The stored answer to the caller's earlier request with the same key.
    async fn replay(&self, actor: &str, key: IdempotencyKey<'_>) -> Result<Created> {
        let row: Option<(String, Option<serde_json::Value>)> = sqlx::query_as(
            "SELECT request_hash, response_body FROM idempotency_keys WHERE actor = $1 AND key = $2",
        )
        .bind(actor)
        .bind(key.key)
        .fetch_optional(&self.pool)
        .await?;
        let Some((hash, body)) = row else {
            return Err(StoreError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry".into(),
            ));
        };
        if hash != key.request_hash {
            return Err(StoreError::Invalid(
                "this Idempotency-Key was used with a different body; use a new key for a new request".into(),
            ));
        }
        let body = body.ok_or_else(|| {
            StoreError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry".into(),
            )
        })?;
        let rollout_id: Uuid = body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("stored idempotent response has no id".into()))?;
        let record = self.rollout(rollout_id).await?;
        Ok(Created {
            release: record.release,
            rollout_id,
            queued: body["queued"].as_bool().unwrap_or(false),
            body,
            replayed: true,
        })
    }

    pub async fn rollout(&self, id: Uuid) -> Result<RolloutRecord> {
        let mut conn = self.pool.acquire().await?;
        load_rollout(&mut conn, id).await
    }

    /// Rollouts, newest first, optionally only those of one application or
    /// one state.
    pub async fn rollouts(&self, filter: &RolloutFilter<'_>) -> Result<Vec<RolloutRecord>> {
        let (after_at, after_id) = filter.after.unzip();
        let ids: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM rollouts
              WHERE ($1::text IS NULL OR application = $1) AND ($2::text IS NULL OR state = $2)
                AND ($3::timestamptz IS NULL OR created_at >= $3)
                AND ($4::timestamptz IS NULL OR created_at < $4)
                AND ($5::timestamptz IS NULL OR (created_at, id) < ($5, $6))
              ORDER BY created_at DESC, id DESC LIMIT $7",
        )
        .bind(filter.application)
        .bind(filter.state.map(|s| s.as_str()))
        .bind(filter.since)
        .bind(filter.until)
        .bind(after_at)
        .bind(after_id)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<Uuid> = ids.into_iter().map(|(id,)| id).collect();
        let mut rows: HashMap<Uuid, RolloutRecord> =
            sqlx::query(concat!(select_rollouts!(""), " WHERE r.id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|row| rollout_from_row(row).map(|r| (r.id, r)))
                .collect::<Result<_>>()?;
        // The page's order is the first query's.
        Ok(ids.iter().filter_map(|id| rows.remove(id)).collect())
    }

    /// Releases, newest first, optionally of one application; `after` is
    /// the (created_at, id) of the last one of the previous page.
    pub async fn releases(
        &self,
        application: Option<&str>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<ReleaseRecord>> {
        let (after_at, after_id) = after.unzip();
        let rows: Vec<(Uuid, String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, application, version, image, created_by, created_at FROM releases
              WHERE ($1::text IS NULL OR application = $1)
                AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC LIMIT $4",
        )
        .bind(application)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, application, version, image, created_by, created_at)| ReleaseRecord {
                    id,
                    application,
                    version,
                    image,
                    created_by,
                    created_at,
                },
            )
            .collect())
    }

    /// One release and the rollouts it had.
    pub async fn release(&self, id: Uuid) -> Result<(ReleaseRecord, Vec<Uuid>)> {
        let row: Option<(Uuid, String, String, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, application, version, image, created_by, created_at FROM releases WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let (id, application, version, image, created_by, created_at) =
            row.ok_or_else(|| StoreError::NotFound(format!("release {id}")))?;
        let rollouts: Vec<(Uuid,)> =
            sqlx::query_as("SELECT id FROM rollouts WHERE release_id = $1 ORDER BY created_at")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        Ok((
            ReleaseRecord {
                id,
                application,
                version,
                image,
                created_by,
                created_at,
            },
            rollouts.into_iter().map(|(r,)| r).collect(),
        ))
    }

    /// The version each of `clusters` ran when a rollout of `application`
    /// last succeeded there: what "the previous release" is for gates.
    /// Asked on every gate tick, so it must not grow with the
    /// application's history: each cluster walks the application's
    /// rollouts newest first and stops at the first that rolled it out,
    /// normally the last one to succeed. (Only a cluster no rollout ever
    /// finished on walks them all.)
    pub async fn running_versions(
        &self,
        application: &str,
        clusters: &[&str],
    ) -> Result<std::collections::HashMap<String, String>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT c.cluster, latest.version
               FROM unnest($2::text[]) AS c(cluster)
               CROSS JOIN LATERAL (
                   SELECT rel.version
                     FROM rollouts r
                     JOIN targets t ON t.rollout_id = r.id AND t.cluster = c.cluster
                     JOIN releases rel ON rel.id = r.release_id
                    WHERE r.application = $1 AND r.state = 'succeeded'
                      AND t.state = 'rolled_out'
                    ORDER BY r.created_at DESC
                    LIMIT 1) AS latest",
        )
        .bind(application)
        .bind(clusters)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Claims up to `limit` due rollouts nobody holds, for `lease_secs`,
    /// and loads each with its targets and unprocessed operator actions:
    /// every tick starts from one of these, one round trip for them all,
    /// which also answers when the next of the others is due.
    pub async fn claim_due(&self, worker: &str, lease_secs: f64, limit: i64) -> Result<Claim> {
        // The rollout is read from the statement's snapshot, the lease from
        // the claim, which sees the row as it is now; the two versions say
        // whether the copy read is current. The statement always answers
        // one row, for `next_due`, with the rollout's columns NULL when
        // nothing was claimed.
        let rows = sqlx::query(concat!(
            "WITH due AS (
                SELECT id FROM rollouts
                 WHERE next_wake_at <= now()
                   AND (lease_expires_at IS NULL OR lease_expires_at < now())
                 ORDER BY next_wake_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED),
             claimed AS (
                UPDATE rollouts r
                   SET lease_owner = $1,
                       lease_expires_at = now() + make_interval(secs => $2),
                       lease_token = r.lease_token + 1
                  FROM due WHERE r.id = due.id
                RETURNING r.id AS claimed_id, r.lease_token AS claimed_token,
                          r.wake_seq AS claimed_wake_seq, r.version AS claimed_version),
             picked AS (",
            select_rollouts!(
                ", c.claimed_token, c.claimed_wake_seq, c.claimed_version,
                   (SELECT coalesce(json_agg(json_build_object(
                             'id', a.id, 'action', a.action, 'actor', a.actor, 'reason', a.reason)
                         ORDER BY a.id), '[]')
                      FROM rollout_actions a
                     WHERE a.rollout_id = r.id AND a.processed_at IS NULL) AS actions,
                   r.state = 'pending' AND EXISTS (
                       SELECT 1 FROM rollouts e
                        WHERE e.application = r.application AND e.id <> r.id
                          AND e.created_at < r.created_at
                          AND e.state NOT IN ('succeeded', 'rolled_back', 'failed', 'aborted'))
                     AS queued_behind"
            ),
            " JOIN claimed c ON c.claimed_id = r.id),
             -- A rollout leased by a tick in flight is not due before its
             -- lease ends, whatever its wake time says; counting it would
             -- spin the engine's loop for the whole tick. Those claimed here
             -- are left out (this snapshot does not see their new lease):
             -- the end of their ticks wakes the loop.
             -- Two short index reads, not a pass over every rollout with a
             -- wake time: the first of the unleased in wake order
             -- (rollouts_due), and the few leased ones (rollouts_leased).
             -- The second names no condition rollouts_due could serve, so
             -- the plan cannot depend on the planner's statistics of leases.
             later AS (
                SELECT least(
                    (SELECT next_wake_at FROM rollouts
                      WHERE next_wake_at IS NOT NULL
                        AND (lease_expires_at IS NULL OR lease_expires_at <= now())
                        AND id NOT IN (SELECT claimed_id FROM claimed)
                      ORDER BY next_wake_at
                      LIMIT 1),
                    (SELECT min(CASE WHEN next_wake_at IS NOT NULL
                                     THEN greatest(next_wake_at, lease_expires_at) END)
                       FROM rollouts
                      WHERE lease_expires_at > now()
                        AND id NOT IN (SELECT claimed_id FROM claimed))) AS next_due)
             SELECT later.next_due, picked.* FROM later LEFT JOIN picked ON true"
        ))
        .bind(worker)
        .bind(lease_secs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        // A give-back below makes the next due time now.
        let mut claim = Claim {
            rollouts: Vec::with_capacity(rows.len()),
            next_due: super::next_due_of(&rows)?,
        };
        for row in &rows {
            if row.try_get::<Option<Uuid>, _>("id")?.is_none() {
                continue;
            }
            let record = rollout_from_row(row)?;
            let lease = Lease {
                rollout_id: record.id,
                worker: worker.to_owned(),
                token: row.try_get("claimed_token")?,
                wake_seq: row.try_get("claimed_wake_seq")?,
            };
            let current: i64 = row.try_get("claimed_version")?;
            if current != record.version {
                // Another engine committed in that instant: its tick's
                // result is not what was read. Give the rollout back, due
                // now, rather than drive it from a stale copy.
                self.release_lease(&lease, Utc::now()).await?;
                claim.next_due = Some(Utc::now());
                continue;
            }
            let actions = pending_actions(record.id, row.try_get("actions")?)?;
            claim.rollouts.push(ClaimedRollout {
                lease,
                record,
                actions,
                queued_behind_another: row.try_get("queued_behind")?,
            });
        }
        Ok(claim)
    }

    /// Makes due now every running rollout that watches one of the
    /// `(cluster, namespace)` pairs (a target rolling out, baking or being
    /// restored there), and wakes the engines if any was. A rollout whose
    /// tick is in flight ends that tick due again. Answers how many.
    pub async fn wake_watching(&self, changed: &[(String, String)]) -> Result<u64> {
        if changed.is_empty() {
            return Ok(0);
        }
        let (clusters, namespaces): (Vec<&str>, Vec<&str>) = changed
            .iter()
            .map(|(c, n)| (c.as_str(), n.as_str()))
            .unzip();
        // The engines are told in the same statement (one round trip, one
        // commit): the notification goes out when it commits.
        let (woken, _notified): (i64, i64) = sqlx::query_as(
            "WITH woken AS (
             UPDATE rollouts r SET next_wake_at = now(), wake_seq = r.wake_seq + 1
               FROM applications a
              WHERE a.name = r.application
                -- Only the applications in the changed namespaces
                -- (applications_by_namespace), as an index condition on the
                -- active rollouts (rollouts_active): the cost follows the
                -- changes, not the number of rollouts running.
                AND r.application = ANY (ARRAY(
                        SELECT name FROM applications WHERE namespace = ANY ($2::text[])))
                AND r.state NOT IN ('succeeded', 'rolled_back', 'failed', 'aborted')
                -- Waiting for its time, or in a tick. Inside coalesce so
                -- that no condition names a wake time outright: that would
                -- let the planner read every rollout with one (rollouts_due)
                -- whenever its statistics, taken before they began, say
                -- those are few.
                AND coalesce(r.next_wake_at > now()
                             OR (r.next_wake_at IS NOT NULL AND r.lease_expires_at > now()),
                             false)
                AND EXISTS (SELECT 1 FROM targets t
                             WHERE t.rollout_id = r.id
                               AND t.state IN ('progressing', 'rolled_out', 'verifying')
                               AND (t.cluster, a.namespace) IN
                                   (SELECT * FROM unnest($1::text[], $2::text[])))
             RETURNING 1)
             SELECT (SELECT count(*) FROM woken),
                    (SELECT count(*) FROM (SELECT pg_notify($3, 'watch') FROM woken
                                            HAVING count(*) > 0) AS n)",
        )
        .bind(&clusters)
        .bind(&namespaces)
        .bind(WAKE_CHANNEL)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(woken).unwrap_or(0))
    }

    /// Gives a lease back without changing the rollout (a tick that failed
    /// before deciding anything), so another engine may retry at once.
    pub async fn release_lease(&self, lease: &Lease, retry_at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "UPDATE rollouts SET lease_owner = NULL, lease_expires_at = NULL,
                    next_wake_at = LEAST(COALESCE(next_wake_at, $4), $4)
              WHERE id = $1 AND lease_owner = $2 AND lease_token = $3",
        )
        .bind(lease.rollout_id)
        .bind(&lease.worker)
        .bind(lease.token)
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn previous(
        &self,
        rollout_id: Uuid,
        cluster: &str,
    ) -> Result<Option<serde_json::Value>> {
        let row: Option<(Option<serde_json::Value>,)> =
            sqlx::query_as("SELECT previous FROM targets WHERE rollout_id = $1 AND cluster = $2")
                .bind(rollout_id)
                .bind(cluster)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(p,)| p))
    }

    /// Queues an operator action for the engine and wakes it. Refuses (with
    /// the current state) an action the rollout cannot take now.
    pub async fn enqueue_action(
        &self,
        rollout_id: Uuid,
        action: OperatorAction,
        actor: &str,
        reason: Option<&str>,
    ) -> Result<RolloutState> {
        let mut tx = self.pool.begin().await?;
        let record = load_rollout(&mut tx, rollout_id).await?;
        if !record.machine.accepts(action) {
            return Err(StoreError::Conflict(format!(
                "cannot {} a rollout that is {}",
                action.as_str(),
                record.machine.state.as_str()
            )));
        }
        sqlx::query(
            "INSERT INTO rollout_actions (rollout_id, action, actor, reason) VALUES ($1, $2, $3, $4)",
        )
        .bind(rollout_id)
        .bind(action.as_str())
        .bind(actor)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE rollouts SET next_wake_at = now(), wake_seq = wake_seq + 1 WHERE id = $1",
        )
        .bind(rollout_id)
        .execute(&mut *tx)
        .await?;
        notify(&mut tx, WAKE_CHANNEL, &rollout_id.to_string()).await?;
        tx.commit().await?;
        Ok(record.machine.state)
    }
}

/// The unprocessed operator actions of a rollout, as `claim_due` reads
/// them (a JSON array).
fn pending_actions(rollout_id: Uuid, json: serde_json::Value) -> Result<Vec<PendingAction>> {
    let actions: Vec<ActionRow> = serde_json::from_value(json)
        .map_err(|e| StoreError::Corrupt(format!("rollout {rollout_id} actions: {e}")))?;
    actions
        .into_iter()
        .map(|a| {
            Ok(PendingAction {
                id: a.id,
                action: OperatorAction::parse(&a.action)
                    .ok_or_else(|| StoreError::Corrupt(format!("unknown action `{}`", a.action)))?,
                actor: a.actor,
                reason: a.reason,
            })
        })
        .collect()
}

async fn load_rollout(conn: &mut PgConnection, id: Uuid) -> Result<RolloutRecord> {
    let row = sqlx::query(concat!(select_rollouts!(""), " WHERE r.id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))?;
    rollout_from_row(&row)
}

fn rollout_from_row(row: &PgRow) -> Result<RolloutRecord> {
    let id: Uuid = row.try_get("id")?;
    let targets: Vec<Target> = serde_json::from_value(row.try_get("targets")?)
        .map_err(|e| StoreError::Corrupt(format!("rollout {id} targets: {e}")))?;
    let state: String = row.try_get("state")?;
    let doc: serde_json::Value = row.try_get("machine")?;
    let doc: MachineDoc = serde_json::from_value(doc)
        .map_err(|e| StoreError::Corrupt(format!("rollout {id} machine: {e}")))?;
    let current_stage: i32 = row.try_get("current_stage")?;
    let machine = Rollout {
        state: RolloutState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("rollout {id} state `{state}`")))?,
        current_stage: usize::try_from(current_stage).unwrap_or(0),
        stages: doc.stages,
        on_failure: doc.on_failure,
        targets,
        bake_started_at: doc.bake_started_at,
        paused_from: doc.paused_from,
        retry_at: doc.retry_at,
        reason: doc.reason,
        finished_at: row.try_get("finished_at")?,
        gate_tracks: doc.gate_tracks,
        precheck_pending: doc.precheck_pending,
    };
    Ok(RolloutRecord {
        id,
        release: ReleaseRecord {
            id: row.try_get("release_id")?,
            application: row.try_get("application")?,
            version: row.try_get("release_version")?,
            image: row.try_get("image")?,
            created_by: row.try_get("release_created_by")?,
            created_at: row.try_get("release_created_at")?,
        },
        plan_name: row.try_get("plan_name")?,
        plan_version: row.try_get("plan_version")?,
        machine,
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The CTE `inserted` that appends events in the order given, with their
/// ids (`RETURNING id`); it needs a CTE `with_xid` that selects
/// `pg_current_xact_id()` (and has no row when nothing is to be written).
/// Arguments: the placeholders of rollout id, worker, lease token, then the
/// arrays of kinds, clusters, actors and messages.
///
/// Writers of events commit in any order, so ids can become visible out of
/// order; readers only go as far as the settled horizon
/// ([`super::event_horizon`]). That horizon relies on one thing done here:
/// the transaction has its transaction id before it draws an event id (the
/// sort reads `with_xid` before any row, so before any id is drawn).
macro_rules! insert_events_cte {
    ($rollout:literal, $worker:literal, $token:literal,
     $kinds:literal, $clusters:literal, $actors:literal, $messages:literal) => {
        concat!(
            "inserted AS (
                INSERT INTO events (rollout_id, kind, cluster, actor, message, worker, lease_token)
                SELECT ", $rollout, ", kind, cluster, actor, message, ", $worker, ", ", $token, "
                  FROM unnest(", $kinds, "::text[], ", $clusters, "::text[], ",
                                 $actors, "::text[], ", $messages, "::text[])
                       WITH ORDINALITY AS e(kind, cluster, actor, message, n)
                       CROSS JOIN with_xid
                 ORDER BY n
                RETURNING id)"
        )
    };
}
pub(super) use insert_events_cte;

/// Binds, in this order, the four arrays `insert_events_cte!` reads from
/// `events`: kinds, clusters, actors, messages.
macro_rules! bind_events {
    ($query:expr, $events:expr) => {
        $query
            .bind($events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
            .bind(
                $events
                    .iter()
                    .map(|e| e.cluster.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind($events.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>())
            .bind(
                $events
                    .iter()
                    .map(|e| e.message.as_str())
                    .collect::<Vec<_>>(),
            )
    };
}
pub(super) use bind_events;

/// Appends events (of one rollout, or of none for catalog changes) in
/// the order given.
pub(super) async fn insert_events(
    conn: &mut PgConnection,
    rollout_id: Option<Uuid>,
    events: &[NewEvent],
    lease: Option<&Lease>,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(concat!(
        "WITH with_xid AS (SELECT pg_current_xact_id()), ",
        insert_events_cte!("$1", "$6", "$7", "$2", "$3", "$4", "$5"),
        " SELECT pg_notify($8, max(id)::text) FROM inserted"
    ))
    .bind(rollout_id);
    bind_events!(query, events)
        .bind(lease.map(|l| l.worker.as_str()))
        .bind(lease.map(|l| l.token))
        .bind(EVENTS_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(super) async fn notify(conn: &mut PgConnection, channel: &str, payload: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
