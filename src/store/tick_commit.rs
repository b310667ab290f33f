//! Writing one tick's outcome: the rollout row, changed targets (with what
//! a cluster ran before its first change), processed actions, gate
//! readings, events, and the wake-up of the rollout queued behind one that
//! ended. All of it is one SQL statement, so one round trip and atomic
//! without BEGIN and COMMIT; the fence (version and lease) decides whether
//! any of it is written.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::rollouts::{MachineDoc, bind_events, insert_events_cte};
use super::{EVENTS_CHANNEL, Lease, Result, Store, StoreError, WAKE_CHANNEL, catalog::to_json};
use crate::domain::{
    NewEvent, Rollout, Target,
    gate::{Reading, Verdict},
};

/// One tick's outcome, to be written atomically.
pub struct TickCommit<'a> {
    pub expected_version: i64,
    pub before: &'a [Target],
    pub after: &'a Rollout,
    pub events: &'a [NewEvent],
    pub processed_actions: &'a [i64],
    pub next_wake_at: Option<DateTime<Utc>>,
    pub release_lease: bool,
    /// Gate readings taken in this tick, with the stage they judged (None
    /// for the pre-rollout check).
    pub readings: &'a [(Option<usize>, Reading)],
    /// What each cluster about to be changed runs now, recorded (once)
    /// before the change so a rollback can put it back.
    pub previous: &'a [(String, serde_json::Value)],
}

impl Store {
    /// Writes a tick's outcome, guarded by the lease and the version read.
    /// Returns the new version; `LeaseLost` when the guard failed (nothing
    /// written).
    pub async fn commit_tick(&self, lease: &Lease, tick: TickCommit<'_>) -> Result<i64> {
        let after = tick.after;
        let written: Vec<&Target> = after
            .targets
            .iter()
            .enumerate()
            .filter(|(position, target)| {
                tick.before.get(*position) != Some(*target)
                    || tick.previous.iter().any(|(c, _)| *c == target.cluster)
            })
            .map(|(_, target)| target)
            .collect();
        let mut conn = self.pool.acquire().await?;
        // Most ticks only look and find nothing new: the row alone then.
        let row_only = written.is_empty()
            && tick.processed_actions.is_empty()
            && tick.events.is_empty()
            && tick.readings.is_empty()
            && !after.state.is_terminal();
        let version = if row_only {
            update_row(&mut conn, lease, &tick).await?
        } else {
            write_all(&mut conn, lease, &tick, &written).await?
        };
        version.ok_or(StoreError::LeaseLost(lease.rollout_id))
    }
}

/// The fenced row update both statements share: `$1`–`$11`. `$7`, the
/// finish time, is set exactly when the rollout ended (the machine's
/// `finish`), which is how the statements tell an ended rollout: it is not
/// woken again, and the one queued behind it is.
macro_rules! update_rollout {
    () => {
        "UPDATE rollouts
            SET state = $4, current_stage = $5, machine = $6, finished_at = $7,
                next_wake_at = CASE WHEN wake_seq <> $11 AND $7::timestamptz IS NULL
                                    THEN now() ELSE $8 END,
                version = version + 1, updated_at = now(),
                lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END,
                lease_expires_at = CASE WHEN $9 THEN NULL ELSE lease_expires_at END
          WHERE id = $1 AND version = $10 AND lease_owner = $2 AND lease_token = $3"
    };
}

/// Binds `$1`–`$11` of `update_rollout!` on any kind of query.
macro_rules! bind_row {
    ($query:expr, $lease:expr, $tick:expr) => {
        $query
            .bind($lease.rollout_id)
            .bind(&$lease.worker)
            .bind($lease.token)
            .bind($tick.after.state.as_str())
            .bind(i32::try_from($tick.after.current_stage).unwrap_or(i32::MAX))
            .bind(to_json(&MachineDoc::of($tick.after))?)
            .bind($tick.after.finished_at)
            .bind($tick.next_wake_at)
            .bind($tick.release_lease)
            .bind($tick.expected_version)
            .bind($lease.wake_seq)
    };
}

async fn update_row(
    conn: &mut PgConnection,
    lease: &Lease,
    tick: &TickCommit<'_>,
) -> Result<Option<i64>> {
    let version: Option<i64> = bind_row!(
        sqlx::query_scalar(concat!(update_rollout!(), " RETURNING version")),
        lease,
        tick
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(version)
}

async fn write_all(
    conn: &mut PgConnection,
    lease: &Lease,
    tick: &TickCommit<'_>,
    targets: &[&Target],
) -> Result<Option<i64>> {
    // Every part after the row update is conditional on it (`EXISTS (SELECT
    // 1 FROM upd)`): a refused fence writes nothing. Events come last, after
    // the transaction has its id (see `insert_events_cte`).
    let sql = concat!(
        "WITH upd AS (",
        update_rollout!(),
        " RETURNING version, application),
        targets_written AS (
            UPDATE targets t
               SET state = u.state, apply_seq = u.apply_seq, errors = u.errors,
                   message = u.message, updated_at = u.updated_at,
                   previous = coalesce(t.previous, u.previous)
              FROM unnest($12::text[], $13::text[], $14::int4[], $15::int4[], $16::text[],
                          $17::timestamptz[], $18::jsonb[])
                   AS u(cluster, state, apply_seq, errors, message, updated_at, previous)
             WHERE t.rollout_id = $1 AND t.cluster = u.cluster AND EXISTS (SELECT 1 FROM upd)),
        actions_done AS (
            UPDATE rollout_actions SET processed_at = now()
             WHERE id = ANY($19) AND EXISTS (SELECT 1 FROM upd)),
        readings_written AS (
            INSERT INTO gate_readings (rollout_id, stage, gate, cluster, value, baseline,
                                       threshold, verdict, detail, query, created_at)
            SELECT $1, stage, gate, cluster, value, baseline, threshold, verdict, detail, query, taken_at
              FROM unnest($20::int4[], $21::text[], $22::text[], $23::float8[], $24::float8[],
                          $25::float8[], $26::text[], $27::text[], $28::text[], $29::timestamptz[])
                   WITH ORDINALITY AS r(stage, gate, cluster, value, baseline, threshold,
                                        verdict, detail, query, taken_at, n)
             WHERE EXISTS (SELECT 1 FROM upd)
             ORDER BY n),
        next_queued AS (
            UPDATE rollouts q SET next_wake_at = now()
              FROM upd
             WHERE $7::timestamptz IS NOT NULL
               AND q.id = (SELECT p.id FROM rollouts p
                            WHERE p.application = upd.application AND p.id <> $1
                              AND p.state = 'pending' AND p.next_wake_at IS NULL
                            ORDER BY p.created_at LIMIT 1)
            RETURNING q.id),
        with_xid AS (
            SELECT pg_current_xact_id() FROM upd WHERE cardinality($30::text[]) > 0), ",
        insert_events_cte!("$1", "$2", "$3", "$30", "$31", "$32", "$33"),
        "
        SELECT (SELECT version FROM upd),
               (SELECT count(*) FROM (SELECT pg_notify($34, max(id)::text) FROM inserted
                                       HAVING count(*) > 0) AS n),
               (SELECT count(pg_notify($35, id::text)) FROM next_queued)"
    );

    let previous_of = |cluster: &str| {
        tick.previous
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, v)| v.clone())
    };
    let readings = tick.readings;
    let reading_column = |f: fn(&Reading) -> Option<f64>| -> Vec<Option<f64>> {
        readings.iter().map(|(_, r)| f(r)).collect()
    };
    let query = bind_row!(sqlx::query_as(sql), lease, tick)
        // Targets.
        .bind(
            targets
                .iter()
                .map(|t| t.cluster.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(targets.iter().map(|t| t.state.as_str()).collect::<Vec<_>>())
        .bind(
            targets
                .iter()
                .map(|t| t.apply_seq.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
                .collect::<Vec<_>>(),
        )
        .bind(
            targets
                .iter()
                .map(|t| i32::try_from(t.errors).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            targets
                .iter()
                .map(|t| t.message.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(targets.iter().map(|t| t.updated_at).collect::<Vec<_>>())
        .bind(
            targets
                .iter()
                .map(|t| previous_of(&t.cluster))
                .collect::<Vec<_>>(),
        )
        // Actions.
        .bind(tick.processed_actions)
        // Readings.
        .bind(
            readings
                .iter()
                .map(|(stage, _)| stage.map(|s| i32::try_from(s).unwrap_or(i32::MAX)))
                .collect::<Vec<_>>(),
        )
        .bind(
            readings
                .iter()
                .map(|(_, r)| r.gate.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            readings
                .iter()
                .map(|(_, r)| r.cluster.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(reading_column(|r| r.value))
        .bind(reading_column(|r| r.baseline))
        .bind(reading_column(|r| r.threshold))
        .bind(
            readings
                .iter()
                .map(|(_, r)| r.verdict.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            readings
                .iter()
                .map(|(_, r)| match &r.verdict {
                    Verdict::Pass => None,
                    Verdict::Fail(d) | Verdict::Inconclusive(d) => Some(d.as_str()),
                })
                .collect::<Vec<_>>(),
        )
        .bind(
            readings
                .iter()
                .map(|(_, r)| r.query.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(readings.iter().map(|(_, r)| r.taken_at).collect::<Vec<_>>());
    let (version, _, _): (Option<i64>, i64, i64) = bind_events!(query, tick.events)
        .bind(EVENTS_CHANNEL)
        .bind(WAKE_CHANNEL)
        .fetch_one(&mut *conn)
        .await?;
    Ok(version)
}
