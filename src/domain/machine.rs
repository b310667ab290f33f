//! The rollout state machine. Given a rollout, one input and the time, it
//! changes the rollout and returns effects for the engine to carry out. It
//! never does IO and never reads the clock.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Cluster, EventKind, FailurePolicy, NewEvent, Plan, RolloutState, TargetState, gate::Verdict,
};

/// The actor name of decisions the machine takes on its own.
pub const ENGINE_ACTOR: &str = "engine";

/// Knobs of the machine, set by the engine's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How often a target that is rolling out (or being restored) is
    /// looked at; a watch usually says sooner when it finished.
    pub observe_interval: Duration,
    /// How often a target already rolled out (baking, or waiting for an
    /// approval, a window or a resume) is looked at, to see it stays so. A
    /// bake's end always looks first, so this only sets how soon a cluster
    /// that stops being ready restarts the bake; polling every second
    /// instead made a thousand baking rollouts a thousand ticks a second.
    pub settled_observe_interval: Duration,
    /// Consecutive transient errors (unreachable cluster, 5xx) before a
    /// target is declared failed.
    pub max_consecutive_errors: u32,
    /// Wait before retrying a call that failed transiently.
    pub retry_backoff: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            observe_interval: Duration::seconds(1),
            settled_observe_interval: Duration::seconds(5),
            max_consecutive_errors: 5,
            retry_backoff: Duration::seconds(2),
        }
    }
}

/// The stage facts the machine needs, copied from the pinned plan version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePolicy {
    pub name: String,
    pub max_parallel: u32,
    pub bake: Duration,
    pub approval: bool,
    #[serde(default)]
    pub gates: Vec<GatePolicy>,
}

/// The timing facts of one gate; what it checks is the engine's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatePolicy {
    pub name: String,
    pub interval: Duration,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
}

/// Consecutive readings of one gate on one cluster during the current bake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateTrack {
    pub gate: String,
    pub cluster: String,
    pub failures: u32,
    pub inconclusive: u32,
    pub passes: u32,
    pub last_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub cluster: String,
    pub region: String,
    pub stage: usize,
    pub state: TargetState,
    /// Order in which targets were first changed; rollback goes by it,
    /// highest first.
    pub apply_seq: Option<u32>,
    /// Consecutive transient errors.
    pub errors: u32,
    pub message: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub state: RolloutState,
    pub current_stage: usize,
    pub stages: Vec<StagePolicy>,
    pub on_failure: FailurePolicy,
    pub targets: Vec<Target>,
    /// When the current stage's last target rolled out.
    pub bake_started_at: Option<DateTime<Utc>>,
    /// The state to return to on resume.
    pub paused_from: Option<RolloutState>,
    /// No call to a cluster before this time (backoff after a transient error).
    pub retry_at: Option<DateTime<Utc>>,
    /// Why the rollout failed or was rolled back.
    pub reason: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Gate readings during the current stage's bake.
    #[serde(default)]
    pub gate_tracks: Vec<GateTrack>,
    /// The plan's gates must be evaluated against the fleet before the
    /// first stage starts.
    #[serde(default)]
    pub precheck_pending: bool,
}

/// What the clusters say about a target's workloads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Progress {
    Complete,
    Progressing(String),
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorAction {
    Pause,
    Resume,
    Approve,
    Rollback,
    Abort,
    /// Re-run the failed stage after a fix (plans with `on_failure: halt`,
    /// which leave a failed stage for a person to decide).
    Retry,
}

impl OperatorAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Approve => "approve",
            Self::Rollback => "rollback",
            Self::Abort => "abort",
            Self::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Pause,
            Self::Resume,
            Self::Approve,
            Self::Rollback,
            Self::Abort,
            Self::Retry,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Time passed; decide what is due.
    Tick,
    Operator {
        action: OperatorAction,
        actor: String,
        reason: Option<String>,
    },
    /// The apply reached the cluster (or the cluster already ran it).
    Applied {
        cluster: String,
    },
    ApplyFailed {
        cluster: String,
        error: String,
        transient: bool,
    },
    /// A status read of a target's workloads (new release, or restored one
    /// while verifying a rollback).
    Observed {
        cluster: String,
        progress: Progress,
    },
    /// A status read could not be made.
    Unreachable {
        cluster: String,
        error: String,
    },
    Restored {
        cluster: String,
    },
    RestoreFailed {
        cluster: String,
        error: String,
        transient: bool,
    },
    /// One evaluation of a gate on the current stage's clusters.
    GateReadings {
        gate: String,
        readings: Vec<(String, Verdict)>,
    },
    /// The pre-rollout check's findings (empty: the fleet is healthy).
    PreChecked {
        problems: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Change the cluster to this rollout's release.
    Apply {
        cluster: String,
    },
    /// Put the cluster back to what it ran before this rollout.
    Restore {
        cluster: String,
    },
    Event(NewEvent),
}

impl Rollout {
    /// A new rollout of `plan` over `waves` (clusters per stage, as
    /// `Plan::assign` returns them).
    pub fn new(plan: &Plan, waves: &[Vec<&Cluster>]) -> Rollout {
        let stages = plan
            .stages
            .iter()
            .map(|s| StagePolicy {
                name: s.name.clone(),
                max_parallel: s.max_parallel,
                bake: s.bake.as_chrono(),
                approval: s.approval,
                gates: s
                    .gates
                    .iter()
                    .filter_map(|name| plan.gate(name))
                    .map(|g| GatePolicy {
                        name: g.name.clone(),
                        interval: g.interval.as_chrono(),
                        failure_limit: g.failure_limit,
                        inconclusive_limit: g.inconclusive_limit,
                    })
                    .collect(),
            })
            .collect();
        let targets = waves
            .iter()
            .enumerate()
            .flat_map(|(stage, clusters)| {
                clusters.iter().map(move |c| Target {
                    cluster: c.name.to_string(),
                    region: c.region.clone(),
                    stage,
                    state: TargetState::Pending,
                    apply_seq: None,
                    errors: 0,
                    message: None,
                    updated_at: None,
                })
            })
            .collect();
        Rollout {
            state: RolloutState::Pending,
            current_stage: 0,
            stages,
            on_failure: plan.on_failure,
            targets,
            bake_started_at: None,
            paused_from: None,
            retry_at: None,
            reason: None,
            finished_at: None,
            gate_tracks: Vec::new(),
            precheck_pending: !plan.gates.is_empty(),
        }
    }

    /// Skips the pre-rollout check (the request said `force`).
    pub fn skip_precheck(&mut self) {
        self.precheck_pending = false;
    }

    /// Whether the engine must run the pre-rollout check before the next
    /// `Tick` can start the first stage.
    pub fn needs_precheck(&self) -> bool {
        self.state == RolloutState::Pending && self.precheck_pending
    }

    /// Gates of the current stage due for an evaluation now: only during a
    /// running stage's bake, each at its own interval.
    pub fn gates_due(&self, now: DateTime<Utc>) -> Vec<String> {
        if self.state != RolloutState::Running || self.bake_started_at.is_none() {
            return Vec::new();
        }
        self.stages[self.current_stage]
            .gates
            .iter()
            .filter(|g| self.gate_due_at(g).is_none_or(|at| at <= now))
            .map(|g| g.name.clone())
            .collect()
    }

    /// When a gate is next due; `None` when it was never evaluated in this bake.
    fn gate_due_at(&self, gate: &GatePolicy) -> Option<DateTime<Utc>> {
        self.gate_tracks
            .iter()
            .filter(|t| t.gate == gate.name)
            .map(|t| t.last_at)
            .min()
            .flatten()
            .map(|last| last + gate.interval)
    }

    /// Every gate of the current stage has a good reading on every target
    /// of the stage in this bake, and none is failing.
    fn gates_satisfied(&self) -> bool {
        let k = self.current_stage;
        self.stages[k].gates.iter().all(|g| {
            self.targets.iter().filter(|t| t.stage == k).all(|t| {
                self.gate_tracks.iter().any(|track| {
                    track.gate == g.name
                        && track.cluster == t.cluster
                        && track.passes > 0
                        && track.failures == 0
                })
            })
        })
    }

    /// Whether an operator action makes sense in the current state.
    pub fn accepts(&self, action: OperatorAction) -> bool {
        use RolloutState as S;
        match action {
            OperatorAction::Pause => matches!(
                self.state,
                S::Pending | S::Running | S::AwaitingApproval | S::WaitingForWindow
            ),
            OperatorAction::Resume => self.state == S::Paused,
            OperatorAction::Approve => self.state == S::AwaitingApproval,
            OperatorAction::Rollback => matches!(
                self.state,
                S::Pending
                    | S::Running
                    | S::Paused
                    | S::AwaitingApproval
                    | S::WaitingForWindow
                    | S::Succeeded
                    | S::Failed
            ),
            OperatorAction::Abort => !self.state.is_terminal(),
            OperatorAction::Retry => {
                self.state == S::Failed
                    && self.on_failure == FailurePolicy::Halt
                    && self
                        .targets
                        .iter()
                        .any(|t| t.stage == self.current_stage && t.state == TargetState::Failed)
            }
        }
    }

    /// Targets whose cluster status the engine should read before the next
    /// `Tick`: the current stage's while it rolls out and bakes, and the one
    /// being verified during a rollback.
    pub fn targets_to_observe(&self) -> Vec<&Target> {
        use RolloutState as S;
        match self.state {
            S::Running | S::Paused | S::AwaitingApproval | S::WaitingForWindow => self
                .targets
                .iter()
                .filter(|t| {
                    t.stage == self.current_stage
                        && matches!(t.state, TargetState::Progressing | TargetState::RolledOut)
                })
                .collect(),
            S::RollingBack => self
                .targets
                .iter()
                .filter(|t| t.state == TargetState::Verifying)
                .collect(),
            S::Pending | S::Succeeded | S::RolledBack | S::Failed | S::Aborted => Vec::new(),
        }
    }

    /// When the engine should next look at this rollout on its own; `None`
    /// when only an operator action can move it.
    pub fn next_wake(&self, now: DateTime<Utc>, tuning: &Tuning) -> Option<DateTime<Utc>> {
        use RolloutState as S;
        if self.state.is_terminal() {
            return None;
        }
        let mut wake: Option<DateTime<Utc>> = None;
        let mut at = |t: DateTime<Utc>| wake = Some(wake.map_or(t, |w| w.min(t)));
        let observed = self.targets_to_observe();
        if !observed.is_empty() {
            let settled = observed.iter().all(|t| t.state == TargetState::RolledOut);
            at(now
                + if settled {
                    tuning.settled_observe_interval
                } else {
                    tuning.observe_interval
                });
        }
        match self.state {
            S::Pending => at(now),
            S::Running => {
                if let Some(started) = self.bake_started_at {
                    at(started + self.stages[self.current_stage].bake);
                    for gate in &self.stages[self.current_stage].gates {
                        at(self.gate_due_at(gate).unwrap_or(now).max(now));
                    }
                }
                if self.has_calls_due() {
                    at(self.retry_at.unwrap_or(now).max(now));
                }
            }
            S::RollingBack => {
                let busy = self
                    .targets
                    .iter()
                    .any(|t| t.state == TargetState::Verifying);
                if !busy {
                    at(self.retry_at.unwrap_or(now).max(now));
                }
            }
            S::Paused | S::AwaitingApproval | S::WaitingForWindow => {}
            S::Succeeded | S::RolledBack | S::Failed | S::Aborted => {}
        }
        wake
    }

    /// Whether the next `Tick` would call a cluster: an apply to retry, or a
    /// pending target with a free `max_parallel` slot. A pending target that
    /// waits for a slot is not due: it waits for an observation.
    fn has_calls_due(&self) -> bool {
        let k = self.current_stage;
        let in_stage = || self.targets.iter().filter(move |t| t.stage == k);
        let applying = in_stage().any(|t| t.state == TargetState::Applying);
        let in_flight = in_stage()
            .filter(|t| matches!(t.state, TargetState::Applying | TargetState::Progressing))
            .count();
        let pending = in_stage().any(|t| t.state == TargetState::Pending);
        applying || (pending && in_flight < self.stages[k].max_parallel as usize)
    }

    /// Feeds one input to the machine.
    pub fn handle(&mut self, input: Input, now: DateTime<Utc>, tuning: &Tuning) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Tick => self.tick(now, &mut out),
            Input::Operator {
                action,
                actor,
                reason,
            } => self.operator(action, &actor, reason, now, &mut out),
            Input::Applied { cluster } => self.applied(&cluster, now, &mut out),
            Input::ApplyFailed {
                cluster,
                error,
                transient,
            } => self.apply_failed(&cluster, error, transient, now, tuning, &mut out),
            Input::Observed { cluster, progress } => {
                self.observed(&cluster, progress, now, &mut out)
            }
            Input::Unreachable { cluster, error } => {
                self.unreachable(&cluster, error, now, tuning, &mut out)
            }
            Input::Restored { cluster } => self.restored(&cluster, now, &mut out),
            Input::RestoreFailed {
                cluster,
                error,
                transient,
            } => self.restore_failed(&cluster, error, transient, now, tuning, &mut out),
            Input::GateReadings { gate, readings } => {
                self.gate_readings(&gate, readings, now, &mut out)
            }
            Input::PreChecked { problems } => self.prechecked(problems, now, &mut out),
        }
        out
    }

    fn target_mut(&mut self, cluster: &str) -> Option<&mut Target> {
        self.targets.iter_mut().find(|t| t.cluster == cluster)
    }

    fn tick(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        use RolloutState as S;
        match self.state {
            S::Pending if self.precheck_pending => {}
            S::Pending => {
                self.state = S::Running;
                emit(
                    out,
                    EventKind::RolloutStarted,
                    None,
                    "rollout started".into(),
                );
                self.start_stage(out);
                self.run(now, out);
            }
            S::Running => self.run(now, out),
            S::RollingBack => {}
            // Nothing moves on its own in these states; operators move them.
            S::Paused | S::AwaitingApproval | S::WaitingForWindow => {}
            S::Succeeded | S::RolledBack | S::Failed | S::Aborted => {}
        }
        // Restores are decided here only, like applies: a rollback decided
        // by an operator or an observation earlier in the engine's round
        // gets its first restore from this tick, once.
        if self.state == S::RollingBack {
            self.roll_back_next(now, out);
        }
    }

    fn start_stage(&mut self, out: &mut Vec<Effect>) {
        let stage = &self.stages[self.current_stage];
        let count = self
            .targets
            .iter()
            .filter(|t| t.stage == self.current_stage)
            .count();
        let message = format!(
            "stage {} `{}` started: {} cluster(s), {} at a time, bake {}",
            self.current_stage + 1,
            stage.name,
            count,
            stage.max_parallel,
            humantime::format_duration(stage.bake.to_std().unwrap_or_default())
        );
        emit(out, EventKind::StageStarted, None, message);
    }

    /// Drives the current stage: start applies up to `max_parallel`, bake
    /// once every target rolled out, promote when the bake time is over.
    fn run(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        loop {
            let k = self.current_stage;
            if let Some(failed) = self
                .targets
                .iter()
                .find(|t| t.stage == k && t.state == TargetState::Failed)
            {
                let reason = format!(
                    "cluster {} failed: {}",
                    failed.cluster,
                    failed.message.as_deref().unwrap_or("unknown reason")
                );
                self.on_target_failure(reason, ENGINE_ACTOR, now, out);
                return;
            }
            let calls_allowed = self.retry_at.is_none_or(|t| t <= now);
            if calls_allowed {
                self.retry_at = None;
                self.start_applies(now, out);
                for t in self
                    .targets
                    .iter()
                    .filter(|t| t.stage == k && t.state == TargetState::Applying)
                {
                    out.push(Effect::Apply {
                        cluster: t.cluster.clone(),
                    });
                }
            }
            let stage_rolled_out = self
                .targets
                .iter()
                .filter(|t| t.stage == k)
                .all(|t| t.state == TargetState::RolledOut);
            if !stage_rolled_out {
                return;
            }
            let bake = self.stages[k].bake;
            if self.bake_started_at.is_none() {
                self.gate_tracks.clear();
            }
            let started = *self.bake_started_at.get_or_insert_with(|| {
                emit(
                    out,
                    EventKind::StageBaking,
                    None,
                    format!(
                        "stage `{}` rolled out everywhere; baking for {}",
                        self.stages[k].name,
                        humantime::format_duration(bake.to_std().unwrap_or_default())
                    ),
                );
                now
            });
            if now < started + bake || !self.gates_satisfied() {
                return;
            }
            self.gate_tracks.clear();
            emit(
                out,
                EventKind::StageHealthy,
                None,
                format!(
                    "stage `{}` stayed healthy for its bake time",
                    self.stages[k].name
                ),
            );
            self.bake_started_at = None;
            if k + 1 == self.stages.len() {
                self.finish(RolloutState::Succeeded, now);
                emit(out, EventKind::Succeeded, None, "rollout succeeded".into());
                return;
            }
            if self.stages[k + 1].approval {
                self.state = RolloutState::AwaitingApproval;
                emit(
                    out,
                    EventKind::AwaitingApproval,
                    None,
                    format!(
                        "stage `{}` needs approval to start",
                        self.stages[k + 1].name
                    ),
                );
                return;
            }
            self.current_stage += 1;
            self.start_stage(out);
        }
    }

    fn start_applies(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        let k = self.current_stage;
        let max = self.stages[k].max_parallel as usize;
        let mut in_flight = self
            .targets
            .iter()
            .filter(|t| {
                t.stage == k && matches!(t.state, TargetState::Applying | TargetState::Progressing)
            })
            .count();
        let mut next_seq = self
            .targets
            .iter()
            .filter_map(|t| t.apply_seq)
            .max()
            .map_or(0, |s| s + 1);
        for t in self.targets.iter_mut().filter(|t| t.stage == k) {
            if in_flight >= max {
                break;
            }
            if t.state != TargetState::Pending {
                continue;
            }
            t.state = TargetState::Applying;
            t.apply_seq = Some(next_seq);
            t.updated_at = Some(now);
            next_seq += 1;
            in_flight += 1;
            emit(
                out,
                EventKind::TargetApplying,
                Some(&t.cluster),
                format!("applying the release to {} ({})", t.cluster, t.region),
            );
        }
    }

    fn on_target_failure(
        &mut self,
        reason: String,
        actor: &str,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        match self.on_failure {
            FailurePolicy::Rollback => self.start_rollback(reason, actor, out),
            FailurePolicy::Halt => {
                self.finish(RolloutState::Failed, now);
                emit(
                    out,
                    EventKind::Failed,
                    None,
                    format!("{reason}; the plan says halt, clusters are left as they are"),
                );
                self.reason = Some(reason);
            }
        }
    }

    fn start_rollback(&mut self, reason: String, actor: &str, out: &mut Vec<Effect>) {
        self.state = RolloutState::RollingBack;
        self.bake_started_at = None;
        self.paused_from = None;
        self.retry_at = None;
        self.finished_at = None;
        let mut changed: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| t.apply_seq.is_some() && t.state != TargetState::Restored)
            .collect();
        changed.sort_by_key(|t| std::cmp::Reverse(t.apply_seq));
        let order: Vec<&str> = changed.iter().map(|t| t.cluster.as_str()).collect();
        let message = if order.is_empty() {
            format!("rolling back ({reason}); no cluster was changed")
        } else {
            format!("rolling back ({reason}); restoring {}", order.join(", "))
        };
        out.push(Effect::Event(NewEvent {
            kind: EventKind::RollbackStarted,
            cluster: None,
            actor: actor.to_owned(),
            message,
        }));
        self.reason = Some(reason);
        // The first restore goes out with the next tick.
    }

    /// Restores one changed cluster at a time, newest first, verifying each
    /// before the next.
    fn roll_back_next(&mut self, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        if self
            .targets
            .iter()
            .any(|t| t.state == TargetState::Verifying)
        {
            return;
        }
        if self.retry_at.is_some_and(|t| t > now) {
            return;
        }
        self.retry_at = None;
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| t.state == TargetState::Restoring)
        {
            out.push(Effect::Restore {
                cluster: t.cluster.clone(),
            });
            return;
        }
        let next = self
            .targets
            .iter_mut()
            .filter(|t| {
                t.apply_seq.is_some()
                    && !matches!(t.state, TargetState::Restored | TargetState::RestoreFailed)
            })
            .max_by_key(|t| t.apply_seq);
        if let Some(t) = next {
            t.state = TargetState::Restoring;
            t.errors = 0;
            t.updated_at = Some(now);
            let cluster = t.cluster.clone();
            emit(
                out,
                EventKind::TargetRestoring,
                Some(&cluster),
                format!("restoring {cluster} to the revision it ran before"),
            );
            out.push(Effect::Restore { cluster });
            return;
        }
        let failed: Vec<&str> = self
            .targets
            .iter()
            .filter(|t| t.state == TargetState::RestoreFailed)
            .map(|t| t.cluster.as_str())
            .collect();
        if failed.is_empty() {
            self.finish(RolloutState::RolledBack, now);
            emit(
                out,
                EventKind::RolledBack,
                None,
                "every changed cluster is back on its previous revision".into(),
            );
        } else {
            let message = format!(
                "rollback incomplete: could not restore {}",
                failed.join(", ")
            );
            self.finish(RolloutState::Failed, now);
            emit(out, EventKind::Failed, None, message);
        }
    }

    fn finish(&mut self, state: RolloutState, now: DateTime<Utc>) {
        self.state = state;
        self.finished_at = Some(now);
        self.retry_at = None;
        self.paused_from = None;
    }

    fn operator(
        &mut self,
        action: OperatorAction,
        actor: &str,
        reason: Option<String>,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let why = reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        if !self.accepts(action) {
            out.push(Effect::Event(NewEvent {
                kind: EventKind::ActionRejected,
                cluster: None,
                actor: actor.to_owned(),
                message: format!(
                    "{} ignored: the rollout is {}",
                    action.as_str(),
                    self.state.as_str()
                ),
            }));
            return;
        }
        let event = |kind, message: String| {
            Effect::Event(NewEvent {
                kind,
                cluster: None,
                actor: actor.to_owned(),
                message,
            })
        };
        match action {
            OperatorAction::Pause => {
                self.paused_from = Some(self.state);
                self.state = RolloutState::Paused;
                out.push(event(EventKind::Paused, format!("paused by {actor}{why}")));
            }
            OperatorAction::Resume => {
                self.state = self.paused_from.take().unwrap_or(RolloutState::Running);
                // Judge afresh: a source that was unreachable gets a new
                // chance, evaluated at once.
                for track in &mut self.gate_tracks {
                    track.inconclusive = 0;
                    track.last_at = None;
                }
                out.push(event(
                    EventKind::Resumed,
                    format!("resumed by {actor}{why}"),
                ));
            }
            OperatorAction::Approve => {
                self.state = RolloutState::Running;
                self.current_stage += 1;
                self.bake_started_at = None;
                out.push(event(
                    EventKind::Approved,
                    format!(
                        "stage `{}` approved by {actor}{why}",
                        self.stages[self.current_stage].name
                    ),
                ));
                self.start_stage(out);
            }
            OperatorAction::Rollback => {
                let reason = format!("rollback requested by {actor}{why}");
                self.start_rollback(reason, actor, out);
            }
            OperatorAction::Abort => {
                self.finish(RolloutState::Aborted, now);
                self.reason = Some(format!("aborted by {actor}{why}"));
                out.push(event(
                    EventKind::Aborted,
                    format!("aborted by {actor}{why}; clusters are left as they are"),
                ));
            }
            OperatorAction::Retry => {
                let k = self.current_stage;
                let mut again = Vec::new();
                for t in self
                    .targets
                    .iter_mut()
                    .filter(|t| t.stage == k && t.state == TargetState::Failed)
                {
                    t.state = TargetState::Pending;
                    t.errors = 0;
                    t.message = None;
                    t.updated_at = Some(now);
                    again.push(t.cluster.clone());
                }
                self.state = RolloutState::Running;
                self.finished_at = None;
                self.reason = None;
                self.bake_started_at = None;
                out.push(event(
                    EventKind::Retried,
                    format!(
                        "stage `{}` retried by {actor}{why}: {} again",
                        self.stages[k].name,
                        again.join(", ")
                    ),
                ));
            }
        }
    }

    fn applied(&mut self, cluster: &str, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        if t.state != TargetState::Applying {
            return;
        }
        t.state = TargetState::Progressing;
        t.errors = 0;
        t.message = None;
        t.updated_at = Some(now);
        emit(
            out,
            EventKind::TargetApplied,
            Some(cluster),
            format!("applied the release to {cluster}; waiting for it to roll out"),
        );
    }

    fn apply_failed(
        &mut self,
        cluster: &str,
        error: String,
        transient: bool,
        now: DateTime<Utc>,
        tuning: &Tuning,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        if t.state != TargetState::Applying {
            return;
        }
        t.errors += 1;
        t.updated_at = Some(now);
        if transient && t.errors < tuning.max_consecutive_errors {
            let message = format!(
                "apply to {cluster} failed ({error}); retry {} of {}",
                t.errors,
                tuning.max_consecutive_errors - 1
            );
            t.message = Some(error);
            self.retry_at = Some(now + tuning.retry_backoff);
            emit(out, EventKind::TargetRetrying, Some(cluster), message);
            return;
        }
        let message = if transient {
            format!("apply failed {} times in a row: {error}", t.errors)
        } else {
            format!("apply rejected: {error}")
        };
        self.fail_target(cluster, message, now, out);
    }

    fn observed(
        &mut self,
        cluster: &str,
        progress: Progress,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        t.errors = 0;
        match (t.state, progress) {
            (TargetState::Progressing, Progress::Complete) => {
                t.state = TargetState::RolledOut;
                t.message = None;
                t.updated_at = Some(now);
                emit(
                    out,
                    EventKind::TargetRolledOut,
                    Some(cluster),
                    format!("{cluster} rolled out"),
                );
            }
            (TargetState::Progressing, Progress::Progressing(message)) => {
                t.message = Some(message);
            }
            (TargetState::RolledOut, Progress::Progressing(message)) => {
                // Readiness is a gate that is always on: a stage whose
                // clusters stop being ready starts its bake again.
                t.state = TargetState::Progressing;
                t.message = Some(message.clone());
                t.updated_at = Some(now);
                self.bake_started_at = None;
                self.stage_undone();
                emit(
                    out,
                    EventKind::TargetRetrying,
                    Some(cluster),
                    format!(
                        "{cluster} is no longer rolled out ({message}); the bake starts again once it is"
                    ),
                );
            }
            (TargetState::Progressing | TargetState::RolledOut, Progress::Failed(reason)) => {
                self.fail_target(cluster, format!("did not roll out: {reason}"), now, out);
            }
            (TargetState::Verifying, Progress::Complete) => {
                t.state = TargetState::Restored;
                t.message = None;
                t.updated_at = Some(now);
                emit(
                    out,
                    EventKind::TargetRestored,
                    Some(cluster),
                    format!("{cluster} is back on its previous revision and rolled out"),
                );
            }
            (TargetState::Verifying, Progress::Progressing(message)) => {
                t.message = Some(message);
            }
            (TargetState::Verifying, Progress::Failed(reason)) => {
                self.give_up_restore(
                    cluster,
                    format!("restored revision did not roll out: {reason}"),
                    now,
                    out,
                );
            }
            (_, _) => {}
        }
    }

    fn unreachable(
        &mut self,
        cluster: &str,
        error: String,
        now: DateTime<Utc>,
        tuning: &Tuning,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        t.errors += 1;
        if t.errors < tuning.max_consecutive_errors {
            if t.errors == 1 {
                emit(
                    out,
                    EventKind::TargetRetrying,
                    Some(cluster),
                    format!("cannot read {cluster}'s status ({error}); retrying"),
                );
            }
            t.message = Some(error);
            return;
        }
        let message = format!("unreachable {} times in a row: {error}", t.errors);
        match t.state {
            TargetState::Verifying => self.give_up_restore(cluster, message, now, out),
            _ => self.fail_target(cluster, message, now, out),
        }
    }

    fn restored(&mut self, cluster: &str, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        if t.state != TargetState::Restoring {
            return;
        }
        t.state = TargetState::Verifying;
        t.errors = 0;
        t.updated_at = Some(now);
        emit(
            out,
            EventKind::TargetApplied,
            Some(cluster),
            format!("restored {cluster}'s previous revision; verifying it rolls out"),
        );
    }

    fn restore_failed(
        &mut self,
        cluster: &str,
        error: String,
        transient: bool,
        now: DateTime<Utc>,
        tuning: &Tuning,
        out: &mut Vec<Effect>,
    ) {
        let Some(t) = self.target_mut(cluster) else {
            return;
        };
        if t.state != TargetState::Restoring {
            return;
        }
        t.errors += 1;
        if transient && t.errors < tuning.max_consecutive_errors {
            t.message = Some(error.clone());
            self.retry_at = Some(now + tuning.retry_backoff);
            emit(
                out,
                EventKind::TargetRetrying,
                Some(cluster),
                format!("restore of {cluster} failed ({error}); retrying"),
            );
            return;
        }
        self.give_up_restore(cluster, format!("restore failed: {error}"), now, out);
    }

    fn give_up_restore(
        &mut self,
        cluster: &str,
        message: String,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(t) = self.target_mut(cluster) {
            t.state = TargetState::RestoreFailed;
            t.message = Some(message.clone());
            t.updated_at = Some(now);
        }
        emit(
            out,
            EventKind::TargetRestoreFailed,
            Some(cluster),
            format!("{cluster}: {message}"),
        );
        // The next restore goes out with the next tick (`next_wake` is now).
    }

    /// The current stage was done and is not any more (a target stopped
    /// being ready, or failed while paused): it must not be approved as it
    /// is. It goes back to running, which bakes it again (and asks for the
    /// approval again) or acts on the failure.
    fn gate_readings(
        &mut self,
        gate: &str,
        readings: Vec<(String, Verdict)>,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        // A reading that arrives after the stage moved on, paused or failed
        // judges nothing any more.
        if self.state != RolloutState::Running || self.bake_started_at.is_none() {
            return;
        }
        let Some(policy) = self.stages[self.current_stage]
            .gates
            .iter()
            .find(|g| g.name == gate)
            .cloned()
        else {
            return;
        };
        for (cluster, verdict) in readings {
            if self.state != RolloutState::Running {
                return;
            }
            let index = match self
                .gate_tracks
                .iter()
                .position(|t| t.gate == gate && t.cluster == cluster)
            {
                Some(i) => i,
                None => {
                    self.gate_tracks.push(GateTrack {
                        gate: gate.to_owned(),
                        cluster: cluster.clone(),
                        failures: 0,
                        inconclusive: 0,
                        passes: 0,
                        last_at: None,
                    });
                    self.gate_tracks.len() - 1
                }
            };
            let track = &mut self.gate_tracks[index];
            track.last_at = Some(now);
            match verdict {
                Verdict::Pass => {
                    track.failures = 0;
                    track.inconclusive = 0;
                    track.passes += 1;
                }
                Verdict::Fail(detail) => {
                    track.failures += 1;
                    track.inconclusive = 0;
                    let failures = track.failures;
                    emit(
                        out,
                        EventKind::GateBadReading,
                        Some(&cluster),
                        format!(
                            "gate `{gate}` bad reading {failures} of {} on {cluster}: {detail}",
                            policy.failure_limit
                        ),
                    );
                    if failures >= policy.failure_limit {
                        self.fail_target(
                            &cluster,
                            format!("gate `{gate}` failed: {detail}"),
                            now,
                            out,
                        );
                    }
                }
                Verdict::Inconclusive(detail) => {
                    track.inconclusive += 1;
                    let count = track.inconclusive;
                    if count >= policy.inconclusive_limit {
                        self.paused_from = Some(RolloutState::Running);
                        self.state = RolloutState::Paused;
                        emit(
                            out,
                            EventKind::GatePaused,
                            Some(&cluster),
                            format!(
                                "gate `{gate}` was inconclusive {count} times in a row on {cluster} ({detail}); paused rather than promote or roll back blindly: resume once the source is back"
                            ),
                        );
                    }
                }
            }
        }
    }

    fn prechecked(&mut self, problems: Vec<String>, now: DateTime<Utc>, out: &mut Vec<Effect>) {
        if !self.needs_precheck() {
            return;
        }
        self.precheck_pending = false;
        if problems.is_empty() {
            emit(
                out,
                EventKind::PreCheckPassed,
                None,
                "pre-rollout check: the plan's gates hold on the current fleet".into(),
            );
            return;
        }
        let reason = format!(
            "pre-rollout check failed, the fleet is already unhealthy: {}",
            problems.join("; ")
        );
        self.finish(RolloutState::Failed, now);
        emit(
            out,
            EventKind::PreCheckFailed,
            None,
            format!(
                "{reason}; no cluster was changed (create the release with force to start anyway)"
            ),
        );
        self.reason = Some(reason);
    }

    fn stage_undone(&mut self) {
        use RolloutState as S;
        match self.state {
            S::AwaitingApproval | S::WaitingForWindow => self.state = S::Running,
            S::Paused
                if matches!(
                    self.paused_from,
                    Some(S::AwaitingApproval | S::WaitingForWindow)
                ) =>
            {
                self.paused_from = Some(S::Running);
            }
            _ => {}
        }
    }

    fn fail_target(
        &mut self,
        cluster: &str,
        message: String,
        now: DateTime<Utc>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(t) = self.target_mut(cluster) {
            t.state = TargetState::Failed;
            t.message = Some(message.clone());
            t.updated_at = Some(now);
        }
        emit(
            out,
            EventKind::TargetFailed,
            Some(cluster),
            format!("{cluster}: {message}"),
        );
        match self.state {
            RolloutState::Running
            | RolloutState::AwaitingApproval
            | RolloutState::WaitingForWindow => {
                let reason = format!("cluster {cluster} failed: {message}");
                self.on_target_failure(reason, ENGINE_ACTOR, now, out);
            }
            // A paused rollout changes no cluster; the failure is acted on
            // when it resumes.
            RolloutState::Paused => self.stage_undone(),
            RolloutState::Pending
            | RolloutState::RollingBack
            | RolloutState::Succeeded
            | RolloutState::RolledBack
            | RolloutState::Failed
            | RolloutState::Aborted => {}
        }
    }
}

fn emit(out: &mut Vec<Effect>, kind: EventKind, cluster: Option<&str>, message: String) {
    out.push(Effect::Event(NewEvent {
        kind,
        cluster: cluster.map(str::to_owned),
        actor: ENGINE_ACTOR.to_owned(),
        message,
    }));
}

#[cfg(test)]
mod retry_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{ClusterName, plan::PlanSpec};

    fn rollout(policy: &str) -> Rollout {
        let clusters = vec![Cluster {
            name: ClusterName::parse("c1").unwrap(),
            region: "eu".into(),
            timezone: chrono_tz::UTC,
            labels: BTreeMap::new(),
            context: "c1".into(),
        }];
        let spec: PlanSpec = serde_yaml_ng::from_str(&format!(
            "name: p\non_failure: {policy}\nstages:\n- {{name: only, clusters: all}}\n"
        ))
        .unwrap();
        let plan = Plan::from_spec(&spec, &clusters).unwrap();
        Rollout::new(&plan, &plan.assign(&clusters))
    }

    fn fail_the_stage(r: &mut Rollout, now: DateTime<Utc>) {
        let tuning = Tuning::default();
        r.handle(Input::Tick, now, &tuning);
        r.handle(
            Input::Applied {
                cluster: "c1".into(),
            },
            now,
            &tuning,
        );
        r.handle(
            Input::Observed {
                cluster: "c1".into(),
                progress: Progress::Failed("ProgressDeadlineExceeded".into()),
            },
            now,
            &tuning,
        );
    }

    #[test]
    fn a_halted_stage_can_be_retried_and_applies_again() {
        let now = Utc::now();
        let mut r = rollout("halt");
        fail_the_stage(&mut r, now);
        assert_eq!(r.state, RolloutState::Failed);
        assert!(r.accepts(OperatorAction::Retry));
        let tuning = Tuning::default();
        let events = r.handle(
            Input::Operator {
                action: OperatorAction::Retry,
                actor: "ops".into(),
                reason: Some("fixed the config".into()),
            },
            now,
            &tuning,
        );
        assert_eq!(r.state, RolloutState::Running);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Effect::Event(ev) if ev.kind == EventKind::Retried))
        );
        let effects = r.handle(Input::Tick, now, &tuning);
        assert!(effects.contains(&Effect::Apply {
            cluster: "c1".into()
        }));
    }

    #[test]
    fn a_rolled_back_rollout_cannot_be_retried() {
        let now = Utc::now();
        let mut r = rollout("rollback");
        fail_the_stage(&mut r, now);
        assert_eq!(r.state, RolloutState::RollingBack);
        assert!(!r.accepts(OperatorAction::Retry));
    }
}
