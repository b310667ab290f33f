//! Property and example tests of the rollout machine (invariants 1-4, and
//! the machine's half of 7), driven through a small simulated world.
//!
//! The driver below behaves like the engine: each round it feeds the due
//! operator actions, then one observation per `targets_to_observe()`, then a
//! `Tick`; then it carries out every `Apply`/`Restore` against the simulated
//! clusters and feeds the results back; then it jumps the fake clock to
//! `next_wake` (or to the next scheduled operator action). Every `handle`
//! call is recorded as a `Step`, and the properties are checked on that trace.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use super::machine::{Effect, Input, OperatorAction, Progress, Rollout, Tuning};
use super::{
    Cluster, ClusterName, ClusterSelector, EventKind, FailurePolicy, HumanDuration, Plan,
    RolloutState, Stage, TargetState,
};

// ---------------------------------------------------------------------------
// The simulated world
// ---------------------------------------------------------------------------

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 9, 0, 0)
        .single()
        .expect("a valid date")
}

/// How one simulated cluster behaves once the rollout touches it. Times are
/// seconds, after the apply unless said otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// Rolls out `rollout` seconds after the apply and stays rolled out.
    Healthy { rollout: i64 },
    /// Never rolls out: progressing until `deadline`, then the Deployment's
    /// `ProgressDeadlineExceeded`.
    NeverRollsOut { deadline: i64 },
    /// The API server refuses the apply for good (an admission webhook).
    Rejected,
    /// Every call fails from `from` to `from + len` seconds after the start
    /// of the test (not of the apply); healthy otherwise.
    Unreachable { from: i64, len: i64, rollout: i64 },
    /// Rolls out, then crash-loops `after` seconds later.
    Degrades { rollout: i64, after: i64 },
    /// Rolls out, stops being ready `after` seconds later for `len` seconds,
    /// then is ready again.
    Flaps { rollout: i64, after: i64, len: i64 },
}

impl Behaviour {
    /// Whether a rollout that reaches this cluster must fail on it.
    fn certainly_fails(self) -> bool {
        matches!(self, Self::NeverRollsOut { .. } | Self::Rejected)
    }

    fn is_healthy(self) -> bool {
        matches!(self, Self::Healthy { .. } | Self::Flaps { .. })
    }
}

#[derive(Clone, Copy, Debug)]
struct ClusterCase {
    behaviour: Behaviour,
    /// How long the previous revision takes to roll out again once restored.
    restore_time: i64,
}

#[derive(Debug)]
struct SimCluster {
    case: ClusterCase,
    applied_at: Option<DateTime<Utc>>,
    restored_at: Option<DateTime<Utc>>,
}

struct World {
    clusters: BTreeMap<String, SimCluster>,
}

impl World {
    fn new(clusters: impl IntoIterator<Item = (String, ClusterCase)>) -> World {
        World {
            clusters: clusters
                .into_iter()
                .map(|(name, case)| {
                    let sim = SimCluster {
                        case,
                        applied_at: None,
                        restored_at: None,
                    };
                    (name, sim)
                })
                .collect(),
        }
    }

    fn cluster(&mut self, name: &str) -> &mut SimCluster {
        self.clusters
            .get_mut(name)
            .unwrap_or_else(|| panic!("the machine named an unknown cluster `{name}`"))
    }

    fn reachable(c: &SimCluster, now: DateTime<Utc>) -> bool {
        match c.case.behaviour {
            Behaviour::Unreachable { from, len, .. } => {
                let down = start() + secs(from);
                now < down || now >= down + secs(len)
            }
            _ => true,
        }
    }

    fn apply(&mut self, name: &str, now: DateTime<Utc>) -> Input {
        let c = self.cluster(name);
        let cluster = name.to_owned();
        if !Self::reachable(c, now) {
            return Input::ApplyFailed {
                cluster,
                error: "connection refused".into(),
                transient: true,
            };
        }
        if c.case.behaviour == Behaviour::Rejected {
            return Input::ApplyFailed {
                cluster,
                error: "admission webhook denied the request".into(),
                transient: false,
            };
        }
        // Applies are idempotent: a second one changes nothing.
        c.applied_at.get_or_insert(now);
        Input::Applied { cluster }
    }

    fn restore(&mut self, name: &str, now: DateTime<Utc>) -> Input {
        let c = self.cluster(name);
        let cluster = name.to_owned();
        if !Self::reachable(c, now) {
            return Input::RestoreFailed {
                cluster,
                error: "connection refused".into(),
                transient: true,
            };
        }
        c.restored_at.get_or_insert(now);
        Input::Restored { cluster }
    }

    fn observe(&mut self, name: &str, now: DateTime<Utc>) -> Input {
        let c = self.cluster(name);
        let cluster = name.to_owned();
        if !Self::reachable(c, now) {
            return Input::Unreachable {
                cluster,
                error: "i/o timeout".into(),
            };
        }
        let waiting = |what: &str| Progress::Progressing(format!("waiting for {what}"));
        let progress = if let Some(restored) = c.restored_at {
            if now >= restored + secs(c.case.restore_time) {
                Progress::Complete
            } else {
                waiting("the previous revision to roll out")
            }
        } else if let Some(applied) = c.applied_at {
            let age = now - applied;
            match c.case.behaviour {
                Behaviour::Healthy { rollout } | Behaviour::Unreachable { rollout, .. } => {
                    if age >= secs(rollout) {
                        Progress::Complete
                    } else {
                        waiting("updated replicas")
                    }
                }
                Behaviour::NeverRollsOut { deadline } => {
                    if age >= secs(deadline) {
                        Progress::Failed("ProgressDeadlineExceeded".into())
                    } else {
                        waiting("updated replicas")
                    }
                }
                Behaviour::Rejected => waiting("an apply that never landed"),
                Behaviour::Degrades { rollout, after } => {
                    if age >= secs(rollout + after) {
                        Progress::Failed("CrashLoopBackOff".into())
                    } else if age >= secs(rollout) {
                        Progress::Complete
                    } else {
                        waiting("updated replicas")
                    }
                }
                Behaviour::Flaps {
                    rollout,
                    after,
                    len,
                } => {
                    let flap = secs(rollout + after)..secs(rollout + after + len);
                    if flap.contains(&age) {
                        waiting("pods to become ready again")
                    } else if age >= secs(rollout) {
                        Progress::Complete
                    } else {
                        waiting("updated replicas")
                    }
                }
            }
        } else {
            waiting("an apply")
        };
        Input::Observed { cluster, progress }
    }
}

// ---------------------------------------------------------------------------
// Plans and cases
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct StageCase {
    clusters: Vec<ClusterCase>,
    max_parallel: u32,
    bake: i64,
    approval: bool,
    /// How long the approver takes once the rollout awaits this stage.
    approve_after: i64,
}

#[derive(Clone, Debug)]
struct Case {
    stages: Vec<StageCase>,
    on_failure: FailurePolicy,
    /// Operator actions, seconds after the start.
    actions: Vec<(i64, OperatorAction)>,
    tuning: Tuning,
}

fn cluster_name(stage: usize, i: usize) -> String {
    format!("s{stage}-c{i}")
}

impl Case {
    fn plan(&self) -> (Plan, Vec<Cluster>) {
        let mut clusters = Vec::new();
        let mut stages = Vec::new();
        for (s, stage) in self.stages.iter().enumerate() {
            let mut names = Vec::new();
            for i in 0..stage.clusters.len() {
                let name = ClusterName::parse(&cluster_name(s, i)).expect("a valid name");
                clusters.push(Cluster {
                    name: name.clone(),
                    region: format!("region-{}", i % 3),
                    timezone: chrono_tz::UTC,
                    labels: BTreeMap::new(),
                    context: name.to_string(),
                });
                names.push(name);
            }
            stages.push(Stage {
                name: format!("stage-{s}"),
                clusters: ClusterSelector::Names(names),
                max_parallel: stage.max_parallel,
                bake: HumanDuration::from_secs(stage.bake.unsigned_abs()),
                approval: stage.approval,
            });
        }
        let plan = Plan {
            name: "plan".into(),
            stages,
            on_failure: self.on_failure,
        };
        (plan, clusters)
    }

    fn rollout(&self) -> Rollout {
        let (plan, clusters) = self.plan();
        let waves = plan.assign(&clusters);
        Rollout::new(&plan, &waves)
    }

    fn world(&self) -> World {
        World::new(self.stages.iter().enumerate().flat_map(|(s, stage)| {
            stage
                .clusters
                .iter()
                .enumerate()
                .map(move |(i, c)| (cluster_name(s, i), *c))
        }))
    }

    fn behaviour(&self, cluster: &str) -> Option<Behaviour> {
        self.stages.iter().enumerate().find_map(|(s, stage)| {
            (0..stage.clusters.len())
                .find(|&i| cluster_name(s, i) == cluster)
                .map(|i| stage.clusters[i].behaviour)
        })
    }

    fn all_clusters(&self) -> impl Iterator<Item = ClusterCase> + '_ {
        self.stages.iter().flat_map(|s| s.clusters.iter().copied())
    }
}

// ---------------------------------------------------------------------------
// The driver: the engine's loop over a fake clock
// ---------------------------------------------------------------------------

/// One `handle` call: what went in, the rollout state around it, and the
/// effects that came out.
#[derive(Clone, Debug)]
struct Step {
    at: DateTime<Utc>,
    input: Input,
    before: RolloutState,
    /// The state of the target the input names, before the input.
    target_before: Option<TargetState>,
    after: RolloutState,
    stage_after: usize,
    targets_after: Vec<TargetState>,
    effects: Vec<Effect>,
}

impl Step {
    fn accepted_operator(&self, wanted: OperatorAction) -> bool {
        matches!(&self.input, Input::Operator { action, .. } if *action == wanted)
            && !self.has_event(EventKind::ActionRejected)
    }

    fn has_event(&self, kind: EventKind) -> bool {
        self.effects
            .iter()
            .any(|e| matches!(e, Effect::Event(ev) if ev.kind == kind))
    }
}

struct Run {
    steps: Vec<Step>,
    rollout: Rollout,
    /// Set when the run did not end on its own: stuck, busy-looping, or too long.
    problem: Option<String>,
}

const MAX_ROUNDS: usize = 50_000;
/// Rounds in a row at the same instant before the driver calls it a busy loop.
const MAX_SAME_INSTANT_ROUNDS: usize = 3;
/// The clock step when nothing is scheduled (no wake, no operator action).
const IDLE_STEP: i64 = 60;
const MAX_IDLE_STEPS: usize = 30;

struct Driver {
    rollout: Rollout,
    world: World,
    tuning: Tuning,
    now: DateTime<Utc>,
    steps: Vec<Step>,
}

fn cluster_of(input: &Input) -> Option<&str> {
    match input {
        Input::Tick | Input::Operator { .. } => None,
        Input::Applied { cluster }
        | Input::ApplyFailed { cluster, .. }
        | Input::Observed { cluster, .. }
        | Input::Unreachable { cluster, .. }
        | Input::Restored { cluster }
        | Input::RestoreFailed { cluster, .. } => Some(cluster),
    }
}

impl Driver {
    fn feed(&mut self, input: Input, calls: &mut VecDeque<Effect>) {
        let before = self.rollout.state;
        let target_before = cluster_of(&input).and_then(|c| {
            self.rollout
                .targets
                .iter()
                .find(|t| t.cluster == c)
                .map(|t| t.state)
        });
        let effects = self.rollout.handle(input.clone(), self.now, &self.tuning);
        calls.extend(
            effects
                .iter()
                .filter(|e| matches!(e, Effect::Apply { .. } | Effect::Restore { .. }))
                .cloned(),
        );
        self.steps.push(Step {
            at: self.now,
            input,
            before,
            target_before,
            after: self.rollout.state,
            stage_after: self.rollout.current_stage,
            targets_after: self.rollout.targets.iter().map(|t| t.state).collect(),
            effects,
        });
    }

    /// One engine round at `self.now`.
    fn round(&mut self, due: Vec<(OperatorAction, &str)>) {
        let mut calls = VecDeque::new();
        for (action, actor) in due {
            let input = Input::Operator {
                action,
                actor: actor.to_owned(),
                reason: Some("test".into()),
            };
            self.feed(input, &mut calls);
        }
        let observe: Vec<String> = self
            .rollout
            .targets_to_observe()
            .iter()
            .map(|t| t.cluster.clone())
            .collect();
        for cluster in observe {
            let input = self.world.observe(&cluster, self.now);
            self.feed(input, &mut calls);
        }
        self.feed(Input::Tick, &mut calls);
        while let Some(call) = calls.pop_front() {
            let result = match &call {
                Effect::Apply { cluster } => self.world.apply(cluster, self.now),
                Effect::Restore { cluster } => self.world.restore(cluster, self.now),
                Effect::Event(_) => continue,
            };
            self.feed(result, &mut calls);
        }
    }
}

fn drive(case: &Case) -> Run {
    let mut driver = Driver {
        rollout: case.rollout(),
        world: case.world(),
        tuning: case.tuning,
        now: start(),
        steps: Vec::new(),
    };
    let mut actions: Vec<(DateTime<Utc>, OperatorAction)> = case
        .actions
        .iter()
        .map(|&(at, action)| (start() + secs(at), action))
        .collect();
    actions.sort_by_key(|&(at, _)| at);
    let mut actions = VecDeque::from(actions);
    let mut approve_at: Option<DateTime<Utc>> = None;
    let mut same_instant = 0;
    let mut idle = 0;
    let problem = 'run: {
        for _ in 0..MAX_ROUNDS {
            let now = driver.now;
            let mut due = Vec::new();
            while actions.front().is_some_and(|&(at, _)| at <= now) {
                if let Some((_, action)) = actions.pop_front() {
                    due.push((action, "alice"));
                }
            }
            if approve_at.is_some_and(|at| at <= now) {
                approve_at = None;
                due.push((OperatorAction::Approve, "approver"));
            }
            driver.round(due);

            let rollout = &driver.rollout;
            if rollout.state == RolloutState::AwaitingApproval && approve_at.is_none() {
                let stage = &case.stages[rollout.current_stage + 1];
                approve_at = Some(now + secs(stage.approve_after));
            }
            if rollout.state.is_terminal() && actions.is_empty() {
                break 'run None;
            }
            let wake = rollout.next_wake(now, &case.tuning);
            let next = [wake, actions.front().map(|&(at, _)| at), approve_at]
                .into_iter()
                .flatten()
                .min();
            let next = match next {
                Some(next) => {
                    idle = 0;
                    next
                }
                None => {
                    idle += 1;
                    if idle > MAX_IDLE_STEPS {
                        break 'run Some(format!(
                            "stuck in {} with nothing to wake it",
                            rollout.state.as_str()
                        ));
                    }
                    now + secs(IDLE_STEP)
                }
            };
            if next <= now {
                same_instant += 1;
                if same_instant > MAX_SAME_INSTANT_ROUNDS {
                    break 'run Some(format!(
                        "busy loop: in {} at +{}s next_wake is {:?}",
                        rollout.state.as_str(),
                        (now - start()).num_seconds(),
                        wake.map(|w| (w - start()).num_seconds())
                    ));
                }
            } else {
                same_instant = 0;
            }
            driver.now = next.max(now);
        }
        Some(format!("not finished after {MAX_ROUNDS} rounds"))
    };
    Run {
        steps: driver.steps,
        rollout: driver.rollout,
        problem,
    }
}

// ---------------------------------------------------------------------------
// Reading a trace
// ---------------------------------------------------------------------------

fn summary(effect: &Effect) -> String {
    match effect {
        Effect::Apply { cluster } => format!("APPLY {cluster}"),
        Effect::Restore { cluster } => format!("RESTORE {cluster}"),
        Effect::Event(ev) => format!("{}[{}]", ev.kind.as_str(), ev.cluster.as_deref().unwrap_or("")),
    }
}

/// The trace, one line per step that did something, for failure messages.
fn describe(run: &Run) -> String {
    let mut out = String::new();
    for step in &run.steps {
        let quiet = step.effects.is_empty()
            && matches!(
                step.input,
                Input::Tick
                    | Input::Observed {
                        progress: Progress::Progressing(_) | Progress::Complete,
                        ..
                    }
            );
        if quiet {
            continue;
        }
        let input = match &step.input {
            Input::Tick => "tick".to_owned(),
            Input::Operator { action, actor, .. } => format!("{actor}: {}", action.as_str()),
            Input::Observed { cluster, progress } => format!("observed {cluster} {progress:?}"),
            other => format!("{other:?}"),
        };
        let effects: Vec<String> = step.effects.iter().map(summary).collect();
        out.push_str(&format!(
            "+{}s {} -> {} | {input} => {}\n",
            (step.at - start()).num_seconds(),
            step.before.as_str(),
            step.after.as_str(),
            effects.join(", ")
        ));
    }
    out.push_str(&format!(
        "final: {} {:?}\n",
        run.rollout.state.as_str(),
        run.rollout
            .targets
            .iter()
            .map(|t| format!("{}={}", t.cluster, t.state.as_str()))
            .collect::<Vec<_>>()
    ));
    if let Some(problem) = &run.problem {
        out.push_str(&format!("problem: {problem}\n"));
    }
    out
}

/// `(step index, cluster)` of every `Apply`, in order.
fn applies(run: &Run) -> Vec<(usize, &str)> {
    calls(run, |e| match e {
        Effect::Apply { cluster } => Some(cluster),
        _ => None,
    })
}

/// `(step index, cluster)` of every `Restore`, in order.
fn restores(run: &Run) -> Vec<(usize, &str)> {
    calls(run, |e| match e {
        Effect::Restore { cluster } => Some(cluster),
        _ => None,
    })
}

fn calls<'r>(run: &'r Run, pick: impl Fn(&'r Effect) -> Option<&'r String>) -> Vec<(usize, &'r str)> {
    run.steps
        .iter()
        .enumerate()
        .flat_map(|(i, step)| step.effects.iter().filter_map(|e| pick(e)).map(move |c| (i, c.as_str())))
        .collect()
}

/// Each changed cluster with the position of its first apply.
fn first_applies<'r>(run: &'r Run) -> BTreeMap<&'r str, usize> {
    let mut first = BTreeMap::new();
    for (n, (_, cluster)) in applies(run).into_iter().enumerate() {
        first.entry(cluster).or_insert(n);
    }
    first
}

fn stage_of(run: &Run, cluster: &str) -> usize {
    run.rollout
        .targets
        .iter()
        .find(|t| t.cluster == cluster)
        .map(|t| t.stage)
        .unwrap_or_else(|| panic!("no target for `{cluster}`"))
}

type Check = Result<(), String>;

/// Invariant 1: a stage's applies wait for the previous stage to be rolled
/// out everywhere, for its bake time since the last one rolled out, and for
/// the approval; at most `max_parallel` targets of a stage are in flight when
/// the machine starts one more.
fn check_stage_order(run: &Run) -> Check {
    let stages = &run.rollout.stages;
    let members: Vec<Vec<&str>> = (0..stages.len())
        .map(|s| {
            run.rollout
                .targets
                .iter()
                .filter(|t| t.stage == s)
                .map(|t| t.cluster.as_str())
                .collect()
        })
        .collect();
    // When each cluster's current run of `Complete` observations began.
    let mut ready_since: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    let mut approvals: Vec<(usize, DateTime<Utc>)> = Vec::new();
    let mut applied: BTreeSet<&str> = BTreeSet::new();
    for (i, step) in run.steps.iter().enumerate() {
        match &step.input {
            Input::Observed {
                cluster,
                progress: Progress::Complete,
            } => {
                ready_since.entry(cluster).or_insert(step.at);
            }
            Input::Observed { cluster, .. } => {
                ready_since.remove(cluster.as_str());
            }
            _ => {}
        }
        if step.accepted_operator(OperatorAction::Approve) {
            approvals.push((step.stage_after, step.at));
        }
        for effect in &step.effects {
            let Effect::Apply { cluster } = effect else {
                continue;
            };
            let s = stage_of(run, cluster);
            if s > 0 {
                let previous = &members[s - 1];
                let mut last_ready = None;
                for p in previous {
                    let Some(&since) = ready_since.get(p) else {
                        return Err(format!(
                            "step {i}: applied {cluster} (stage {s}) while {p} (stage {}) was not rolled out",
                            s - 1
                        ));
                    };
                    last_ready = last_ready.max(Some(since));
                }
                let baked = last_ready.expect("a stage has clusters") + stages[s - 1].bake;
                if step.at < baked {
                    return Err(format!(
                        "step {i}: applied {cluster} (stage {s}) {}s before stage {} finished baking",
                        (baked - step.at).num_seconds(),
                        s - 1
                    ));
                }
                if stages[s].approval
                    && !approvals
                        .iter()
                        .any(|&(stage, at)| stage == s && at >= baked && at <= step.at)
                {
                    return Err(format!(
                        "step {i}: applied {cluster} (stage {s}) with no approval after stage {} baked",
                        s - 1
                    ));
                }
            }
            if applied.insert(cluster) {
                let in_flight = run
                    .rollout
                    .targets
                    .iter()
                    .zip(&step.targets_after)
                    .filter(|(t, state)| {
                        t.stage == s
                            && matches!(state, TargetState::Applying | TargetState::Progressing)
                    })
                    .count();
                if in_flight > stages[s].max_parallel as usize {
                    return Err(format!(
                        "step {i}: started {cluster} with {in_flight} targets of stage {s} in flight (max_parallel {})",
                        stages[s].max_parallel
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Invariant 2: from the first failure decision on, no untouched cluster is
/// applied.
fn check_no_new_cluster_after_failure(run: &Run) -> Check {
    let decided = |s: &Step| {
        s.accepted_operator(OperatorAction::Rollback)
            || matches!(s.after, RolloutState::RollingBack | RolloutState::Failed)
    };
    let Some(decision) = run.steps.iter().position(decided) else {
        return Ok(());
    };
    let touched: BTreeSet<&str> = applies(run)
        .into_iter()
        .filter(|&(i, _)| i < decision)
        .map(|(_, c)| c)
        .collect();
    match applies(run)
        .into_iter()
        .find(|&(i, c)| i >= decision && !touched.contains(c))
    {
        Some((i, c)) => Err(format!(
            "step {i}: applied untouched cluster {c} after the failure decision at step {decision}"
        )),
        None => Ok(()),
    }
}

/// Invariant 3: restores go to exactly the changed clusters, each once
/// (repeats only after a transient restore error), newest first, and a
/// rollout is `RolledBack` only once each was verified.
fn check_rollback(run: &Run) -> Check {
    let first = first_applies(run);
    let restores = restores(run);
    let mut order: Vec<&str> = Vec::new();
    for (n, &(i, cluster)) in restores.iter().enumerate() {
        if n > 0 && restores[n - 1].1 == cluster {
            let since = restores[n - 1].0;
            let retried = run.steps[since..i].iter().any(|s| {
                matches!(&s.input, Input::RestoreFailed { cluster: c, transient: true, .. } if c == cluster)
            });
            if !retried {
                return Err(format!(
                    "step {i}: restored {cluster} again with no transient error since step {since}"
                ));
            }
            continue;
        }
        if order.contains(&cluster) {
            return Err(format!("step {i}: restored {cluster} a second time"));
        }
        let Some(&seq) = first.get(cluster) else {
            return Err(format!("step {i}: restored {cluster}, which was never applied"));
        };
        if let Some(&previous) = order.last() {
            if first[previous] <= seq {
                return Err(format!(
                    "step {i}: restored {cluster} (apply #{seq}) after {previous} (apply #{})",
                    first[previous]
                ));
            }
        }
        order.push(cluster);
    }
    let rolling_back = run.steps.iter().any(|s| s.has_event(EventKind::RollbackStarted));
    if !rolling_back && !order.is_empty() {
        return Err("restores without a rollback".into());
    }
    if rolling_back && run.rollout.state != RolloutState::Aborted {
        let restored: BTreeSet<&str> = order.iter().copied().collect();
        let changed: BTreeSet<&str> = first.keys().copied().collect();
        if restored != changed {
            return Err(format!(
                "rollback restored {restored:?} but the rollout changed {changed:?}"
            ));
        }
    }
    if run.rollout.state == RolloutState::RolledBack {
        let end = run
            .steps
            .iter()
            .rposition(|s| s.after == RolloutState::RolledBack && s.before != RolloutState::RolledBack)
            .expect("a step ended the rollout");
        for &cluster in &order {
            let last_restore = restores
                .iter()
                .rev()
                .find(|&&(_, c)| c == cluster)
                .map(|&(i, _)| i)
                .expect("restored");
            let verified = run.steps[last_restore..end].iter().any(|s| {
                s.target_before == Some(TargetState::Verifying)
                    && matches!(&s.input, Input::Observed { cluster: c, progress: Progress::Complete } if c == cluster)
            });
            if !verified {
                return Err(format!("rolled back without verifying {cluster}"));
            }
        }
    }
    Ok(())
}

/// Invariant 4: a paused rollout changes no cluster. An operator's rollback
/// of a paused rollout is an explicit end of the pause, so it may.
fn check_pause(run: &Run) -> Check {
    for (i, step) in run.steps.iter().enumerate() {
        let paused = step.before == RolloutState::Paused || step.after == RolloutState::Paused;
        let rollback = step.accepted_operator(OperatorAction::Rollback);
        if paused && !rollback {
            if let Some(call) = step
                .effects
                .iter()
                .find(|e| matches!(e, Effect::Apply { .. } | Effect::Restore { .. }))
            {
                return Err(format!("step {i}: {} while paused", summary(call)));
            }
        }
    }
    Ok(())
}

/// Invariant 7, machine side: every apply and restore follows an event that
/// names the cluster, and every operator action gets an event with its actor.
fn check_events(run: &Run) -> Check {
    let mut announced: HashSet<(EventKind, &str)> = HashSet::new();
    for (i, step) in run.steps.iter().enumerate() {
        for effect in &step.effects {
            match effect {
                Effect::Event(ev) => {
                    if let Some(c) = &ev.cluster {
                        announced.insert((ev.kind, c));
                    }
                }
                Effect::Apply { cluster } => {
                    if !announced.contains(&(EventKind::TargetApplying, cluster.as_str())) {
                        return Err(format!("step {i}: apply to {cluster} with no event before it"));
                    }
                }
                Effect::Restore { cluster } => {
                    if !announced.contains(&(EventKind::TargetRestoring, cluster.as_str())) {
                        return Err(format!("step {i}: restore of {cluster} with no event before it"));
                    }
                }
            }
        }
        if let Input::Operator { actor, .. } = &step.input {
            let recorded = step
                .effects
                .iter()
                .any(|e| matches!(e, Effect::Event(ev) if &ev.actor == actor));
            if !recorded {
                return Err(format!("step {i}: an action by {actor} left no event"));
            }
        }
    }
    Ok(())
}

fn check_terminates(run: &Run) -> Check {
    if let Some(problem) = &run.problem {
        return Err(problem.clone());
    }
    if !run.rollout.state.is_terminal() {
        return Err(format!("ended in {}", run.rollout.state.as_str()));
    }
    Ok(())
}

fn check_invariants(run: &Run) -> Check {
    check_terminates(run)?;
    check_stage_order(run)?;
    check_no_new_cluster_after_failure(run)?;
    check_rollback(run)?;
    check_pause(run)?;
    check_events(run)?;
    Ok(())
}

fn verdict(run: &Run, check: Check) -> Result<(), TestCaseError> {
    check.map_err(|e| TestCaseError::fail(format!("{e}\n--- trace ---\n{}", describe(run))))
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn healthy_behaviour() -> BoxedStrategy<Behaviour> {
    prop_oneof![
        4 => (0i64..=90).prop_map(|rollout| Behaviour::Healthy { rollout }),
        1 => (0i64..=60, 0i64..=120, 1i64..=60)
            .prop_map(|(rollout, after, len)| Behaviour::Flaps { rollout, after, len }),
    ]
    .boxed()
}

fn any_behaviour() -> BoxedStrategy<Behaviour> {
    prop_oneof![
        12 => healthy_behaviour(),
        1 => (30i64..=600).prop_map(|deadline| Behaviour::NeverRollsOut { deadline }),
        1 => Just(Behaviour::Rejected),
        1 => (0i64..=900, 1i64..=120, 0i64..=90)
            .prop_map(|(from, len, rollout)| Behaviour::Unreachable { from, len, rollout }),
        1 => (0i64..=60, 0i64..=300).prop_map(|(rollout, after)| Behaviour::Degrades { rollout, after }),
    ]
    .boxed()
}

fn stage(behaviour: BoxedStrategy<Behaviour>) -> impl Strategy<Value = StageCase> {
    let cluster = (behaviour, 0i64..=60).prop_map(|(behaviour, restore_time)| ClusterCase {
        behaviour,
        restore_time,
    });
    (
        prop::collection::vec(cluster, 1..=6),
        1u32..=3,
        0i64..=120,
        prop::bool::weighted(0.3),
        0i64..=300,
    )
        .prop_map(|(clusters, max_parallel, bake, approval, approve_after)| StageCase {
            clusters,
            max_parallel,
            bake,
            approval,
            approve_after,
        })
}

fn operator_actions() -> BoxedStrategy<Vec<(i64, OperatorAction)>> {
    let pause = prop::option::weighted(0.5, (0i64..=900, 1i64..=600));
    let second_pause = prop::option::weighted(0.2, (0i64..=1500, 1i64..=300));
    let rollback = prop::option::weighted(0.25, 0i64..=1500);
    let abort = prop::option::weighted(0.1, 0i64..=1500);
    (pause, second_pause, rollback, abort)
        .prop_map(|(pause, second_pause, rollback, abort)| {
            let mut actions = Vec::new();
            for (at, resume_after) in [pause, second_pause].into_iter().flatten() {
                actions.push((at, OperatorAction::Pause));
                actions.push((at + resume_after, OperatorAction::Resume));
            }
            actions.extend(rollback.map(|at| (at, OperatorAction::Rollback)));
            actions.extend(abort.map(|at| (at, OperatorAction::Abort)));
            actions
        })
        .boxed()
}

fn tuning() -> impl Strategy<Value = Tuning> {
    (1i64..=15, 1u32..=5, 1i64..=20).prop_map(|(observe, errors, backoff)| Tuning {
        observe_interval: secs(observe),
        max_consecutive_errors: errors,
        retry_backoff: secs(backoff),
    })
}

fn case(
    behaviour: BoxedStrategy<Behaviour>,
    actions: BoxedStrategy<Vec<(i64, OperatorAction)>>,
) -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(stage(behaviour), 1..=5),
        prop_oneof![Just(FailurePolicy::Rollback), Just(FailurePolicy::Halt)],
        actions,
        tuning(),
    )
        .prop_map(|(mut stages, on_failure, actions, tuning)| {
            // The first stage starts with the rollout; approval gates later ones.
            stages[0].approval = false;
            Case {
                stages,
                on_failure,
                actions,
                tuning,
            }
        })
}

fn no_actions() -> BoxedStrategy<Vec<(i64, OperatorAction)>> {
    Just(Vec::new()).boxed()
}

/// A case with at least one cluster that fails for sure once applied.
fn failing_case() -> impl Strategy<Value = Case> {
    (
        case(any_behaviour(), no_actions()),
        prop_oneof![
            (30i64..=600).prop_map(|deadline| Behaviour::NeverRollsOut { deadline }),
            Just(Behaviour::Rejected),
        ],
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut case, behaviour, stage, cluster)| {
            let stage = stage.index(case.stages.len());
            let stage = &mut case.stages[stage];
            let i = cluster.index(stage.clusters.len());
            stage.clusters[i].behaviour = behaviour;
            case
        })
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_trace_keeps_the_invariants_whatever_clusters_and_operators_do(
        case in case(any_behaviour(), operator_actions())
    ) {
        let run = drive(&case);
        verdict(&run, check_invariants(&run))?;
        let rolled_back_by_operator = run
            .steps
            .iter()
            .any(|s| s.accepted_operator(OperatorAction::Rollback));
        if case.on_failure == FailurePolicy::Halt && !rolled_back_by_operator {
            verdict(&run, match restores(&run).first() {
                Some((i, c)) => Err(format!("step {i}: restored {c} though the plan says halt")),
                None => Ok(()),
            })?;
        }
    }

    #[test]
    fn a_healthy_fleet_with_no_operator_ends_succeeded_with_each_target_applied_once(
        case in case(healthy_behaviour(), no_actions())
    ) {
        let run = drive(&case);
        verdict(&run, check_invariants(&run))?;
        prop_assert_eq!(run.rollout.state, RolloutState::Succeeded, "{}", describe(&run));
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, c) in applies(&run) {
            *counts.entry(c).or_default() += 1;
        }
        let expected: BTreeMap<&str, usize> =
            run.rollout.targets.iter().map(|t| (t.cluster.as_str(), 1)).collect();
        prop_assert_eq!(counts, expected, "{}", describe(&run));
        prop_assert!(restores(&run).is_empty());
    }

    #[test]
    fn a_fleet_with_a_failing_cluster_ends_rolled_back_or_failed_as_the_plan_says(
        case in failing_case()
    ) {
        let run = drive(&case);
        verdict(&run, check_invariants(&run))?;
        let state = run.rollout.state;
        match case.on_failure {
            FailurePolicy::Rollback => {
                // Only an unreachable cluster can make a restore fail for good.
                let restore_failed_for_good = run.rollout.targets.iter().any(|t| {
                    t.state == TargetState::RestoreFailed
                        && matches!(case.behaviour(&t.cluster), Some(Behaviour::Unreachable { .. }))
                });
                let expected = state == RolloutState::RolledBack
                    || (state == RolloutState::Failed && restore_failed_for_good);
                prop_assert!(expected, "ended {}\n{}", state.as_str(), describe(&run));
            }
            FailurePolicy::Halt => {
                prop_assert_eq!(state, RolloutState::Failed, "{}", describe(&run));
                prop_assert!(restores(&run).is_empty(), "{}", describe(&run));
            }
        }
    }
}
