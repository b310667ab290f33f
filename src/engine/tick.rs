//! One tick of one leased rollout: apply queued operator actions, observe
//! the clusters that need it, decide, record the decision, act, record the
//! outcome. The decision is written before any cluster is changed, so a
//! crash between the two repeats the intent, never loses it.

use chrono::{DateTime, Utc};
use futures::future::join_all;

use super::{Inner, act, gates::GateContext};
use crate::{
    clock,
    domain::{Effect, Input, NewEvent, Rollout, Target, gate::Reading},
    store::{ClaimedRollout, Lease, Store, StoreError, TickCommit},
};

/// How many rounds of act-then-decide one tick may take. The machine only
/// decides applies and restores on `Tick`, so one round is the norm; the
/// bound guards against a future input that decides more.
const MAX_ACT_ROUNDS: usize = 4;

pub(super) async fn drive(inner: &Inner, claimed: ClaimedRollout) -> anyhow::Result<()> {
    let store = &inner.store;
    let tuning = &inner.config.tuning;
    let ClaimedRollout {
        lease,
        record,
        actions,
        queued_behind_another,
    } = claimed;
    let lease = &lease;
    let context = act::TickContext::load(inner, &record).await?;
    let mut machine: Rollout = record.machine.clone();
    let mut unwritten = Unwritten {
        version: record.version,
        before: machine.targets.clone(),
        events: Vec::new(),
        readings: Vec::new(),
        processed_actions: actions.iter().map(|a| a.id).collect(),
    };
    let mut pending: Vec<Effect> = Vec::new();

    let now = clock::now();
    for action in &actions {
        pending.extend(machine.handle(
            Input::Operator {
                action: action.action,
                actor: action.actor.clone(),
                reason: action.reason.clone(),
            },
            now,
            tuning,
        ));
    }

    let to_observe: Vec<_> = machine.targets_to_observe().into_iter().cloned().collect();
    let observations = join_all(to_observe.iter().map(|t| context.observe(t))).await;
    let now = clock::now();
    for input in observations {
        pending.extend(machine.handle(input, now, tuning));
    }

    // A queued rollout waits, whatever woke it, until the application's
    // older rollouts ended; the one ending wakes it.
    let waiting_in_queue =
        machine.state == crate::domain::RolloutState::Pending && queued_behind_another;
    if !waiting_in_queue && (machine.needs_precheck() || !machine.gates_due(now).is_empty()) {
        let plan = inner
            .catalog
            .plan(store, &record.plan_name, record.plan_version)
            .await?;
        let gates = GateContext::load(
            store,
            &inner.health,
            plan,
            &context.application,
            &record.release,
            &context.clusters,
            &machine,
        )
        .await?;
        if machine.needs_precheck() {
            let (problems, found) = gates.precheck(&machine).await;
            unwritten
                .readings
                .extend(found.into_iter().map(|r| (None, r)));
            pending.extend(machine.handle(Input::PreChecked { problems }, clock::now(), tuning));
        }
        for gate in machine.gates_due(clock::now()) {
            let stage = machine.current_stage;
            let (input, found) = gates.evaluate(&machine, &gate).await;
            unwritten
                .readings
                .extend(found.into_iter().map(|r| (Some(stage), r)));
            pending.extend(machine.handle(input, clock::now(), tuning));
        }
    }
    let now = clock::now();
    if !waiting_in_queue {
        pending.extend(machine.handle(Input::Tick, now, tuning));
    }

    for _round in 0..MAX_ACT_ROUNDS {
        let (calls, new_events): (Vec<Effect>, Vec<Effect>) = pending
            .drain(..)
            .partition(|e| !matches!(e, Effect::Event(_)));
        unwritten
            .events
            .extend(new_events.into_iter().filter_map(|e| match e {
                Effect::Event(event) => Some(event),
                Effect::Apply { .. } | Effect::Restore { .. } => None,
            }));
        if calls.is_empty() {
            break;
        }
        let prepared = join_all(calls.iter().map(|call| context.prepare(call))).await;
        let previous: Vec<(String, serde_json::Value)> = prepared
            .iter()
            .filter_map(act::Prepared::previous)
            .collect();
        // Write-ahead: the decision to change these clusters, and what they
        // run now, is durable before any of them is touched.
        let next_wake_at = machine.next_wake(clock::now(), tuning);
        unwritten
            .commit(store, lease, &machine, next_wake_at, false, &previous)
            .await?;

        let results = join_all(prepared.into_iter().map(|p| context.carry_out(p))).await;
        let now = clock::now();
        for input in results {
            pending.extend(machine.handle(input, now, tuning));
        }
    }

    let next_wake_at = if waiting_in_queue {
        None
    } else {
        machine.next_wake(clock::now(), tuning)
    };
    unwritten
        .commit(store, lease, &machine, next_wake_at, true, &[])
        .await?;
    Ok(())
}

/// What the tick decided since its last commit, and the version that
/// commit left.
struct Unwritten {
    version: i64,
    before: Vec<Target>,
    events: Vec<NewEvent>,
    readings: Vec<(Option<usize>, Reading)>,
    processed_actions: Vec<i64>,
}

impl Unwritten {
    async fn commit(
        &mut self,
        store: &Store,
        lease: &Lease,
        machine: &Rollout,
        next_wake_at: Option<DateTime<Utc>>,
        release_lease: bool,
        previous: &[(String, serde_json::Value)],
    ) -> Result<(), StoreError> {
        self.version = store
            .commit_tick(
                lease,
                TickCommit {
                    expected_version: self.version,
                    before: &self.before,
                    after: machine,
                    events: &self.events,
                    processed_actions: &self.processed_actions,
                    next_wake_at,
                    release_lease,
                    readings: &self.readings,
                    previous,
                },
            )
            .await?;
        self.before = machine.targets.clone();
        self.events.clear();
        self.readings.clear();
        self.processed_actions.clear();
        Ok(())
    }
}

/// A tick that failed before it could commit: give the lease back so the
/// rollout is retried soon, by this replica or another.
pub(super) async fn give_back(inner: &Inner, lease: &Lease, error: &anyhow::Error) {
    if let Some(StoreError::LeaseLost(_)) = error.downcast_ref::<StoreError>() {
        tracing::warn!(rollout = %lease.rollout_id, "lease lost; another engine owns the rollout now");
        return;
    }
    tracing::error!(rollout = %lease.rollout_id, error = format!("{error:#}"), "tick failed; will retry");
    let retry_at = clock::now() + inner.config.tuning.retry_backoff;
    if let Err(e) = inner.store.release_lease(lease, retry_at).await {
        tracing::error!(rollout = %lease.rollout_id, error = %e, "cannot give the lease back; it will expire");
    }
}
