//! Figures from what happened: the simulated clusters' apply logs (when each
//! cluster was changed, by the clusters' own clock) and the database's
//! rollouts, events and gate readings.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::layout::{Layout, app_index, rollout_time};
use meridian::sim::SimFleet;

/// Median, 99th percentile and maximum, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Spread {
    pub count: usize,
    pub median_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    pub fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = (q * values.len() as f64).ceil() as usize;
            values[rank.clamp(1, values.len()) - 1]
        };
        Spread {
            count: values.len(),
            median_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: values[values.len() - 1],
        }
    }
}

/// Deployment applies per `(cluster, application)`, oldest first, with the
/// images each left behind.
/// `(cluster, application)` → `(when, images after)` of each apply.
type ApplyLog = HashMap<(String, String), Vec<(DateTime<Utc>, Vec<String>)>>;

pub struct Applies(ApplyLog);

impl Applies {
    pub fn collect(sim: &SimFleet) -> Applies {
        let mut map = ApplyLog::new();
        for cluster in sim.clusters() {
            for record in cluster.report().apply_log {
                if record.kind == "Deployment" {
                    map.entry((cluster.name().to_owned(), record.name))
                        .or_default()
                        .push((record.at, record.images));
                }
            }
        }
        for applies in map.values_mut() {
            applies.sort_by_key(|(at, _)| *at);
        }
        Applies(map)
    }

    fn of(&self, cluster: &str, app: &str) -> &[(DateTime<Utc>, Vec<String>)] {
        self.0
            .get(&(cluster.to_owned(), app.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// When `cluster` first got `image` for `app`.
    pub fn first_with(&self, cluster: &str, app: &str, image: &str) -> Option<DateTime<Utc>> {
        self.of(cluster, app)
            .iter()
            .find(|(_, images)| images.iter().any(|i| i == image))
            .map(|(at, _)| *at)
    }

    /// How many applies left `image` on `cluster` (1 when driven once).
    pub fn count_with(&self, cluster: &str, app: &str, image: &str) -> usize {
        self.of(cluster, app)
            .iter()
            .filter(|(_, images)| images.iter().any(|i| i == image))
            .count()
    }

    /// Applies after `after` that left something other than `image`.
    pub fn restores_after(
        &self,
        cluster: &str,
        app: &str,
        image: &str,
        after: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        self.of(cluster, app)
            .iter()
            .filter(|(at, images)| *at > after && !images.iter().any(|i| i == image))
            .map(|(at, _)| *at)
            .collect()
    }
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct RolloutRow {
    pub id: Uuid,
    pub application: String,
    pub image: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

pub async fn rollouts(db: &mut PgConnection, ids: &[Uuid]) -> anyhow::Result<Vec<RolloutRow>> {
    Ok(sqlx::query_as(
        "SELECT r.id, r.application, rel.image, r.state, r.created_at, r.finished_at
           FROM rollouts r JOIN releases rel ON rel.id = r.release_id
          WHERE r.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(db)
    .await?)
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Transitions {
    /// Stage ready (last target rolled out + bake) → next stage's first apply.
    pub overhead: Spread,
    /// Rollout created → first apply.
    pub start: Spread,
    /// The part of `overhead` before the write-ahead commit of the next
    /// stage's first apply (Meridian noticing and deciding); the rest is
    /// the call to the cluster.
    pub overhead_to_decision: Spread,
    /// The part of `start` before the write-ahead commit of the first apply.
    pub start_to_decision: Spread,
    /// Last stage ready → rollout recorded as succeeded.
    pub finish: Spread,
    /// Rollout duration / plan-given minimum.
    pub duration_ratio_median: f64,
    pub duration_ratio_max: f64,
    pub stage_transitions: usize,
    pub succeeded: usize,
    pub not_succeeded: usize,
    /// Simulator finished rolling a target out → Meridian recorded it
    /// rolled out (the bake starts then): the noticing part of `overhead`.
    pub noticed: Spread,
    /// Smallest time from a target's apply to Meridian reporting it rolled
    /// out, minus the simulated roll-out time: negative would mean the
    /// benchmark's model of the simulator is wrong.
    pub model_check_min_ms: f64,
}

pub async fn transitions(
    db: &mut PgConnection,
    layout: &Layout,
    applies: &Applies,
    rows: &[RolloutRow],
) -> anyhow::Result<Transitions> {
    let bake = chrono::TimeDelta::from_std(layout.bake)?;
    let ready_after = chrono::TimeDelta::from_std(rollout_time())?;
    let decided = decisions(db, rows).await?;
    let mut overhead = Vec::new();
    let mut start = Vec::new();
    let mut overhead_to_decision = Vec::new();
    let mut start_to_decision = Vec::new();
    let mut finish = Vec::new();
    let mut ratios = Vec::new();
    let mut result = Transitions::default();
    for row in rows {
        if row.state != "succeeded" {
            result.not_succeeded += 1;
            continue;
        }
        result.succeeded += 1;
        let plan = layout.plan_of(app_index(&row.application));
        let stages = layout.stages(plan);
        let mut stage_ready: Option<DateTime<Utc>> = None;
        for (i, clusters) in stages.iter().enumerate() {
            let times: Option<Vec<_>> = clusters
                .iter()
                .map(|c| applies.first_with(c, &row.application, &row.image))
                .collect();
            let Some(times) = times else {
                anyhow::bail!(
                    "rollout {} succeeded but a stage-{i} cluster never got {}",
                    row.id,
                    row.image
                );
            };
            let first = times.iter().min().copied().unwrap_or(row.created_at);
            let last = times.iter().max().copied().unwrap_or(row.created_at);
            let decided_at = clusters
                .iter()
                .filter_map(|c| decided.get(&(row.id, c.clone())))
                .min()
                .copied();
            match stage_ready {
                Some(ready) => {
                    overhead.push(ms(first - ready));
                    overhead_to_decision.extend(decided_at.map(|at| ms(at - ready)));
                    result.stage_transitions += 1;
                }
                None => {
                    start.push(ms(first - row.created_at));
                    start_to_decision.extend(decided_at.map(|at| ms(at - row.created_at)));
                }
            }
            stage_ready = Some(last + ready_after + bake);
        }
        if let (Some(ready), Some(finished)) = (stage_ready, row.finished_at) {
            finish.push(ms(finished - ready));
            let minimum = layout.minimum(plan).as_secs_f64();
            ratios.push(ms(finished - row.created_at) / 1000.0 / minimum);
        }
    }
    result.overhead = Spread::of(overhead);
    result.start = Spread::of(start);
    result.overhead_to_decision = Spread::of(overhead_to_decision);
    result.start_to_decision = Spread::of(start_to_decision);
    result.finish = Spread::of(finish);
    ratios.sort_by(f64::total_cmp);
    result.duration_ratio_median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
    result.duration_ratio_max = ratios.last().copied().unwrap_or(0.0);

    // The rolled-out events tell when Meridian noticed; never before the sim
    // could have finished.
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let noticed: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT rollout_id, cluster, created_at FROM events WHERE kind = 'target_rolled_out' AND rollout_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    let by_id: HashMap<Uuid, &RolloutRow> = rows.iter().map(|r| (r.id, r)).collect();
    let lags: Vec<f64> = noticed
        .iter()
        .filter_map(|(id, cluster, at)| {
            let row = by_id.get(id)?;
            let applied = applies.first_with(cluster, &row.application, &row.image)?;
            Some(ms(*at - applied - ready_after))
        })
        .collect();
    result.model_check_min_ms = lags.iter().copied().fold(f64::INFINITY, f64::min);
    result.noticed = Spread::of(lags);
    Ok(result)
}

/// When each target's first apply was decided: the commit time of its
/// first `target_applying` event, written before the cluster is called.
async fn decisions(
    db: &mut PgConnection,
    rows: &[RolloutRow],
) -> anyhow::Result<HashMap<(Uuid, String), DateTime<Utc>>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let found: Vec<(Uuid, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT rollout_id, cluster, min(created_at) FROM events
          WHERE kind = 'target_applying' AND rollout_id = ANY($1)
          GROUP BY rollout_id, cluster",
    )
    .bind(&ids)
    .fetch_all(db)
    .await?;
    Ok(found
        .into_iter()
        .map(|(id, cluster, at)| ((id, cluster), at))
        .collect())
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Reaction {
    /// First failing gate reading → first rollback apply.
    pub to_first_restore_apply: Spread,
    /// First failing gate reading → Meridian records every changed cluster restored.
    pub to_all_restored: Spread,
    pub rolled_back: usize,
    pub other: usize,
}

pub async fn reaction(
    db: &mut PgConnection,
    layout: &Layout,
    applies: &Applies,
    rows: &[RolloutRow],
) -> anyhow::Result<Reaction> {
    let mut first_apply = Vec::new();
    let mut all = Vec::new();
    let mut result = Reaction::default();
    for row in rows {
        if row.state != "rolled_back" {
            result.other += 1;
            continue;
        }
        result.rolled_back += 1;
        let failed: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(created_at) FROM gate_readings WHERE rollout_id = $1 AND verdict = 'fail'",
        )
        .bind(row.id)
        .fetch_one(&mut *db)
        .await?;
        let Some(failed) = failed else { continue };
        let plan = layout.plan_of(app_index(&row.application));
        let first_restore = layout
            .stages(plan)
            .iter()
            .flatten()
            .flat_map(|c| applies.restores_after(c, &row.application, &row.image, failed))
            .min();
        if let Some(at) = first_restore {
            first_apply.push(ms(at - failed));
        }
        if let Some(finished) = row.finished_at {
            all.push(ms(finished - failed));
        }
    }
    result.to_first_restore_apply = Spread::of(first_apply);
    result.to_all_restored = Spread::of(all);
    Ok(result)
}

/// Each changed cluster got the release exactly once, and every event of a
/// rollout's target was written under one lease holder at a time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrivenOnce {
    pub targets: usize,
    pub applied_more_than_once: usize,
    pub applying_events_more_than_once: i64,
    pub workers: Vec<(String, i64)>,
}

pub async fn driven_once(
    db: &mut PgConnection,
    layout: &Layout,
    applies: &Applies,
    rows: &[RolloutRow],
) -> anyhow::Result<DrivenOnce> {
    let mut result = DrivenOnce::default();
    for row in rows {
        let plan = layout.plan_of(app_index(&row.application));
        for cluster in layout.stages(plan).iter().flatten() {
            result.targets += 1;
            if applies.count_with(cluster, &row.application, &row.image) > 1 {
                result.applied_more_than_once += 1;
            }
        }
    }
    result.applying_events_more_than_once = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT rollout_id, cluster FROM events WHERE kind = 'target_applied'
          GROUP BY rollout_id, cluster HAVING count(*) > 1) twice",
    )
    .fetch_one(&mut *db)
    .await?;
    result.workers = sqlx::query_as(
        "SELECT coalesce(worker, '-'), count(*) FROM events WHERE worker IS NOT NULL GROUP BY worker ORDER BY worker",
    )
    .fetch_all(&mut *db)
    .await?;
    Ok(result)
}
