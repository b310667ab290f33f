//! How far the event log can be read without ever skipping an event.
//!
//! Writers of events do not wait for each other, so ids become visible out
//! of order: a slow transaction that drew id 10 may commit after a fast one
//! that drew id 11. A reader that has passed 11 must never meet 10 later.
//! So readers stop at the *settled horizon*: the highest id at or below
//! which every id is either visible or will never be (rolled back).
//!
//! Ids up to the horizon that are visible are read in order. At the first
//! id missing from the visible ones, the horizon waits: whoever drew the
//! missing id drew it before the next visible id was drawn, and had its
//! transaction id before that (see `insert_events_cte`), so it is one of
//! the transactions of this database the snapshot saw running, or it has
//! ended. Once every one of those has ended, the missing id is final: it
//! will never appear, and the horizon moves past it. A transaction left
//! open in this database holds a gap up as long as it stays open (readers
//! wait, writers never do); other databases on the server do not. A follower per process keeps the horizon
//! ([`crate::api::spawn_event_horizon`]); this module is its arithmetic.

use std::collections::HashSet;

use sqlx::{PgConnection, Row as _};

use super::Result;

/// What one snapshot of the database shows of the event log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Look {
    /// The newest visible event id (0 when there is none).
    pub newest: i64,
    /// Visible ids after the horizon the look was asked from, ascending.
    pub ids: Vec<i64>,
    /// Transactions (with an id) running when the snapshot was taken.
    pub running: Vec<u64>,
}

/// A gap waiting to settle: every id below `below` is final once all of
/// `running` have ended.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Wait {
    below: i64,
    running: HashSet<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct EventHorizon {
    settled: Option<i64>,
    wait: Option<Wait>,
}

impl EventHorizon {
    /// Every event id at or below this is visible or never will be; `None`
    /// until the first look settled.
    pub fn settled(&self) -> Option<i64> {
        self.settled
    }

    /// True while a gap waits for transactions to end: nothing announces
    /// that (a rolled-back writer sends no notification), so look again soon.
    pub fn waiting(&self) -> bool {
        self.wait.is_some()
    }

    /// Folds one look into the horizon.
    pub fn observe(&mut self, look: &Look) {
        let running: HashSet<u64> = look.running.iter().copied().collect();
        let ended = |wait: &Wait| wait.running.is_disjoint(&running);
        if let Some(wait) = self.wait.take_if(|w| ended(w)) {
            self.settled = Some(self.settled.unwrap_or(0).max(wait.below - 1));
        }
        let Some(mut horizon) = self.settled else {
            if self.wait.is_some() {
                return;
            }
            // The first look: every id up to the newest was drawn by a
            // transaction running now or already ended.
            let wait = Wait {
                below: look.newest + 1,
                running: running.clone(),
            };
            if ended(&wait) {
                self.settled = Some(look.newest);
            } else {
                self.wait = Some(wait);
            }
            return;
        };
        for &id in &look.ids {
            if id <= horizon {
                continue;
            }
            if id == horizon + 1 {
                horizon = id;
                continue;
            }
            // A gap before `id`. A wait recorded earlier for it is older,
            // so it settles sooner; keep it.
            if self.wait.as_ref().is_none_or(|w| w.below <= horizon) {
                let wait = Wait {
                    below: id,
                    running: running.clone(),
                };
                if ended(&wait) {
                    // Nothing that could still write below `id` runs.
                    horizon = id;
                    continue;
                }
                self.wait = Some(wait);
            }
            break;
        }
        self.settled = Some(horizon);
        // The gap filled in while we waited.
        self.wait.take_if(|w| w.below <= horizon + 1);
    }
}

impl EventHorizon {
    /// Moves the horizon as far as the log allows now. `conn` is the
    /// follower's own: it looks often, and a pooled connection would cost
    /// a ping each time it goes back to the pool.
    pub async fn advance(&mut self, conn: &mut PgConnection) -> Result<()> {
        const BATCH: i64 = 10_000;
        loop {
            let before = self.settled();
            // The first look needs only the newest id.
            let limit = if before.is_some() { BATCH } else { 0 };
            let look = look_at_events(conn, before.unwrap_or(0), limit).await?;
            let full = i64::try_from(look.ids.len()).is_ok_and(|n| n >= BATCH);
            self.observe(&look);
            if !full || self.settled() == before {
                return Ok(());
            }
        }
    }
}

/// Looks at the event log from one snapshot: the newest id, up to `limit`
/// ids after `after`, and the transactions running in this database.
async fn look_at_events(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Look> {
    // One statement, so the ids and the running transactions come from the
    // same snapshot. Transaction ids are the whole server's: a long
    // transaction of another database (another application sharing the
    // server) cannot write our events, and must not hold up our readers,
    // so only this database's are kept. Activity is read after the
    // snapshot, so a writer running at the snapshot is either still listed
    // or has ended.
    let row = sqlx::query(
        "SELECT coalesce((SELECT max(id) FROM events), 0) AS newest,
                ARRAY(SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT $2) AS ids,
                ARRAY(SELECT x::text FROM pg_snapshot_xip(pg_current_snapshot()) AS x)
                    AS running,
                ARRAY(SELECT backend_xid::text FROM pg_stat_activity
                       WHERE datname = current_database() AND backend_xid IS NOT NULL)
                    AS here",
    )
    .bind(after)
    .bind(limit)
    .fetch_one(&mut *conn)
    .await?;
    let running: Vec<u64> = parse_ids(row.try_get("running")?)?;
    // `backend_xid` is the 32-bit form of the snapshot's 64-bit ids.
    let here: HashSet<u64> = parse_ids(row.try_get("here")?)?.into_iter().collect();
    Ok(Look {
        newest: row.try_get("newest")?,
        ids: row.try_get("ids")?,
        running: running
            .into_iter()
            .filter(|x| here.contains(&(x & u64::from(u32::MAX))))
            .collect(),
    })
}

fn parse_ids(texts: Vec<String>) -> Result<Vec<u64>> {
    texts
        .iter()
        .map(|x| {
            x.parse().map_err(|_| {
                super::StoreError::Corrupt(format!("transaction id `{x}` is not a number"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(newest: i64, ids: &[i64], running: &[u64]) -> Look {
        Look {
            newest,
            ids: ids.to_vec(),
            running: running.to_vec(),
        }
    }

    fn settled_at(newest: i64) -> EventHorizon {
        let mut h = EventHorizon::default();
        h.observe(&look(newest, &[], &[]));
        assert_eq!(h.settled(), Some(newest));
        h
    }

    #[test]
    fn the_first_look_settles_at_the_newest_id_once_the_writers_then_running_ended() {
        let mut h = EventHorizon::default();
        h.observe(&look(7, &[], &[40, 41]));
        assert_eq!(h.settled(), None);
        assert!(h.waiting());
        // 41 still runs; 42 started later and does not matter.
        h.observe(&look(9, &[], &[41, 42]));
        assert_eq!(h.settled(), None);
        h.observe(&look(9, &[], &[42]));
        assert_eq!(h.settled(), Some(7));
    }

    #[test]
    fn contiguous_ids_move_the_horizon_at_once() {
        let mut h = settled_at(3);
        h.observe(&look(6, &[4, 5, 6], &[50]));
        assert_eq!(h.settled(), Some(6));
        assert!(!h.waiting());
    }

    #[test]
    fn a_missing_id_holds_the_horizon_until_the_slow_writer_commits() {
        let mut h = settled_at(3);
        // 4 was drawn by a transaction still running; 5 committed.
        h.observe(&look(5, &[5], &[60, 61]));
        assert_eq!(h.settled(), Some(3));
        assert!(h.waiting());
        // The slow writer committed: 4 is visible, and so is all up to 5.
        h.observe(&look(5, &[4, 5], &[61]));
        assert_eq!(h.settled(), Some(5));
        assert!(!h.waiting());
    }

    #[test]
    fn a_rolled_back_id_is_passed_once_the_transactions_running_at_the_gap_ended() {
        let mut h = settled_at(3);
        h.observe(&look(6, &[5, 6], &[60]));
        assert_eq!(h.settled(), Some(3));
        // A newer writer runs, but the ones seen at the gap ended.
        h.observe(&look(6, &[5, 6], &[70]));
        assert_eq!(h.settled(), Some(6));
    }

    #[test]
    fn a_gap_seen_while_nothing_runs_is_final_at_once() {
        let mut h = settled_at(3);
        h.observe(&look(8, &[5, 6, 8], &[]));
        assert_eq!(h.settled(), Some(8));
        assert!(!h.waiting());
    }

    #[test]
    fn a_later_gap_waits_on_its_own_snapshot() {
        let mut h = settled_at(3);
        h.observe(&look(5, &[5], &[60]));
        // 60 ended, so 4 is final; 7 is missing and 80 runs now.
        h.observe(&look(8, &[5, 6, 8], &[80]));
        assert_eq!(h.settled(), Some(6));
        assert!(h.waiting());
        h.observe(&look(8, &[8], &[81]));
        assert_eq!(h.settled(), Some(8));
    }
}
