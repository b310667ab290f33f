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
    /// The first `failures` applies fail with a transient error (a 503),
    /// then it is healthy.
    FlakyApply { failures: u32, rollout: i64 },
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
    applies: u32,
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
                        applies: 0,
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
        c.applies += 1;
        match c.case.behaviour {
            Behaviour::Rejected => {
                return Input::ApplyFailed {
                    cluster,
                    error: "admission webhook denied the request".into(),
                    transient: false,
                };
            }
            Behaviour::FlakyApply { failures, .. } if c.applies <= failures => {
                return Input::ApplyFailed {
                    cluster,
                    error: "503 Service Unavailable".into(),
                    transient: true,
                };
            }
            _ => {}
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
                Behaviour::Healthy { rollout }
                | Behaviour::Unreachable { rollout, .. }
                | Behaviour::FlakyApply { rollout, .. } => {
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
                gates: Vec::new(),
            });
        }
        let plan = Plan {
            name: "plan".into(),
            stages,
            on_failure: self.on_failure,
            gates: Vec::new(),
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
        Input::Tick
        | Input::Operator { .. }
        | Input::GateReadings { .. }
        | Input::PreChecked { .. } => None,
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
        Effect::Event(ev) => format!(
            "{}[{}]",
            ev.kind.as_str(),
            ev.cluster.as_deref().unwrap_or("")
        ),
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

fn calls<'r>(
    run: &'r Run,
    pick: impl Fn(&'r Effect) -> Option<&'r String>,
) -> Vec<(usize, &'r str)> {
    run.steps
        .iter()
        .enumerate()
        .flat_map(|(i, step)| {
            step.effects
                .iter()
                .filter_map(&pick)
                .map(move |c| (i, c.as_str()))
        })
        .collect()
}

/// Each changed cluster with the position of its first apply.
fn first_applies(run: &Run) -> BTreeMap<&str, usize> {
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
            return Err(format!(
                "step {i}: restored {cluster}, which was never applied"
            ));
        };
        if let Some(&previous) = order.last()
            && first[previous] <= seq
        {
            return Err(format!(
                "step {i}: restored {cluster} (apply #{seq}) after {previous} (apply #{})",
                first[previous]
            ));
        }
        order.push(cluster);
    }
    let rolling_back = run
        .steps
        .iter()
        .any(|s| s.has_event(EventKind::RollbackStarted));
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
            .rposition(|s| {
                s.after == RolloutState::RolledBack && s.before != RolloutState::RolledBack
            })
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

/// Invariant 4: a paused rollout changes no cluster, up to and including
/// the input that ends the pause; and only an operator ends it (resume, or
/// a rollback or abort, whose restores come with the tick after it).
fn check_pause(run: &Run) -> Check {
    for (i, step) in run.steps.iter().enumerate() {
        if step.before == RolloutState::Paused && step.after != RolloutState::Paused {
            let by_operator = [
                OperatorAction::Resume,
                OperatorAction::Rollback,
                OperatorAction::Abort,
            ]
            .into_iter()
            .any(|a| step.accepted_operator(a));
            if !by_operator {
                return Err(format!(
                    "step {i}: left the pause for {} without an operator",
                    step.after.as_str()
                ));
            }
        }
        let paused = step.before == RolloutState::Paused || step.after == RolloutState::Paused;
        let call = step
            .effects
            .iter()
            .find(|e| matches!(e, Effect::Apply { .. } | Effect::Restore { .. }));
        if let (true, Some(call)) = (paused, call) {
            return Err(format!("step {i}: {} while paused", summary(call)));
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
                        return Err(format!(
                            "step {i}: apply to {cluster} with no event before it"
                        ));
                    }
                }
                Effect::Restore { cluster } => {
                    if !announced.contains(&(EventKind::TargetRestoring, cluster.as_str())) {
                        return Err(format!(
                            "step {i}: restore of {cluster} with no event before it"
                        ));
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
        1 => (1u32..=6, 0i64..=60).prop_map(|(failures, rollout)| Behaviour::FlakyApply { failures, rollout }),
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
        .prop_map(
            |(clusters, max_parallel, bake, approval, approve_after)| StageCase {
                clusters,
                max_parallel,
                bake,
                approval,
                approve_after,
            },
        )
}

/// When an operator action comes, in seconds after the start or after
/// another action, so that some land at the moments that matter.
#[derive(Clone, Copy, Debug)]
enum When {
    Never,
    At(i64),
    /// Part way (0 to 1) into the first pause, else at this time.
    DuringPause(f64, i64),
    /// This long after the rollback, else at this time.
    AfterRollback(i64, i64),
}

fn operator_actions() -> BoxedStrategy<Vec<(i64, OperatorAction)>> {
    let pause = prop::option::weighted(0.5, (0i64..=900, 1i64..=600));
    let second_pause = prop::option::weighted(0.2, (0i64..=1500, 1i64..=300));
    let rollback = prop_oneof![
        6 => Just(When::Never),
        2 => (0i64..=1500).prop_map(When::At),
        1 => (0.0f64..1.0, 0i64..=1500).prop_map(|(part, at)| When::DuringPause(part, at)),
    ];
    let abort = prop_oneof![
        12 => Just(When::Never),
        1 => (0i64..=1500).prop_map(When::At),
        1 => (0i64..=30, 0i64..=1500).prop_map(|(after, at)| When::AfterRollback(after, at)),
    ];
    (pause, second_pause, rollback, abort)
        .prop_map(|(pause, second_pause, rollback, abort)| {
            let mut actions = Vec::new();
            for (at, resume_after) in [pause, second_pause].into_iter().flatten() {
                actions.push((at, OperatorAction::Pause));
                actions.push((at + resume_after, OperatorAction::Resume));
            }
            let when = |w: When, rollback_at: Option<i64>| match w {
                When::Never => None,
                When::At(at) => Some(at),
                When::DuringPause(part, at) => Some(pause.map_or(at, |(from, len)| {
                    // Truncation is fine: any second inside the pause will do.
                    from + (len as f64 * part) as i64
                })),
                When::AfterRollback(after, at) => Some(rollback_at.map_or(at, |r| r + after)),
            };
            let rollback_at = when(rollback, None);
            actions.extend(rollback_at.map(|at| (at, OperatorAction::Rollback)));
            actions.extend(when(abort, rollback_at).map(|at| (at, OperatorAction::Abort)));
            actions
        })
        .boxed()
}

fn tuning() -> impl Strategy<Value = Tuning> {
    (1i64..=15, 0i64..=30, 1u32..=5, 1i64..=20).prop_map(
        |(observe, settled_extra, errors, backoff)| Tuning {
            observe_interval: secs(observe),
            settled_observe_interval: secs(observe + settled_extra),
            max_consecutive_errors: errors,
            retry_backoff: secs(backoff),
        },
    )
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

/// Cases per property; `PROPTEST_CASES` overrides it. Failures are not
/// persisted to a file: each bug found gets an example test below instead.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(512);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

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

// ---------------------------------------------------------------------------
// Coverage of the generators
// ---------------------------------------------------------------------------

/// The situations a run went through, to check that the random cases reach
/// the paths the properties are about.
fn situations(run: &Run) -> BTreeSet<&'static str> {
    let mut seen = BTreeSet::new();
    let mut add = |cond: bool, name: &'static str| {
        if cond {
            seen.insert(name);
        }
    };
    add(
        run.rollout.state == RolloutState::Succeeded,
        "ended succeeded",
    );
    add(
        run.rollout.state == RolloutState::RolledBack,
        "ended rolled back",
    );
    add(run.rollout.state == RolloutState::Failed, "ended failed");
    add(run.rollout.state == RolloutState::Aborted, "ended aborted");
    for step in &run.steps {
        let event = |k| step.has_event(k);
        let op = |a| step.accepted_operator(a);
        use RolloutState as S;
        add(step.stage_after >= 2, "reached a third stage");
        add(op(OperatorAction::Approve), "approved a stage");
        add(
            matches!(
                &step.input,
                Input::Operator {
                    action: OperatorAction::Approve,
                    ..
                }
            ) && event(EventKind::ActionRejected),
            "approval rejected",
        );
        add(
            step.before == S::Paused && event(EventKind::TargetFailed),
            "failure while paused",
        );
        add(
            step.before == S::Paused && step.after == S::Paused && event(EventKind::TargetRetrying),
            "not ready any more while paused",
        );
        add(
            step.before == S::AwaitingApproval && event(EventKind::TargetRetrying),
            "not ready any more while awaiting approval",
        );
        add(
            step.before == S::AwaitingApproval && event(EventKind::TargetFailed),
            "failure while awaiting approval",
        );
        add(
            op(OperatorAction::Pause) && step.before == S::AwaitingApproval,
            "paused awaiting approval",
        );
        add(
            op(OperatorAction::Rollback) && step.before == S::Paused,
            "rolled back while paused",
        );
        add(
            op(OperatorAction::Rollback) && step.before == S::Succeeded,
            "rolled back after success",
        );
        add(
            op(OperatorAction::Rollback) && step.before == S::Failed,
            "rolled back after halting",
        );
        add(
            op(OperatorAction::Abort) && step.before == S::RollingBack,
            "aborted while rolling back",
        );
        add(
            matches!(
                step.input,
                Input::ApplyFailed {
                    transient: true,
                    ..
                }
            ),
            "transient apply error",
        );
        add(
            matches!(
                step.input,
                Input::ApplyFailed {
                    transient: false,
                    ..
                }
            ),
            "apply rejected",
        );
        add(
            matches!(
                step.input,
                Input::RestoreFailed {
                    transient: true,
                    ..
                }
            ),
            "transient restore error",
        );
        add(
            event(EventKind::TargetRestoreFailed),
            "restore failed for good",
        );
        add(
            event(EventKind::StageBaking) && step.before == S::Running,
            "baked a stage",
        );
    }
    seen
}

#[test]
fn the_random_cases_reach_every_situation_the_properties_are_about() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = case(any_behaviour(), operator_actions());
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..512 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        for s in situations(&drive(&case)) {
            *counts.entry(s).or_default() += 1;
        }
    }
    let wanted = [
        "ended succeeded",
        "ended rolled back",
        "ended failed",
        "ended aborted",
        "reached a third stage",
        "baked a stage",
        "approved a stage",
        "approval rejected",
        "failure while paused",
        "not ready any more while paused",
        "not ready any more while awaiting approval",
        "failure while awaiting approval",
        "paused awaiting approval",
        "rolled back while paused",
        "rolled back after success",
        "rolled back after halting",
        "aborted while rolling back",
        "transient apply error",
        "apply rejected",
        "transient restore error",
        "restore failed for good",
    ];
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|w| !counts.contains_key(w))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached {missing:?}; reached {counts:#?}"
    );
}

// ---------------------------------------------------------------------------
// Examples
// ---------------------------------------------------------------------------

/// A plan of `stages` (behaviours, max_parallel, bake seconds, approval) with
/// default tuning, restores that verify at once and an approver who acts at
/// once.
fn case_of(stages: Vec<(Vec<Behaviour>, u32, i64, bool)>, on_failure: FailurePolicy) -> Case {
    Case {
        stages: stages
            .into_iter()
            .map(|(behaviours, max_parallel, bake, approval)| StageCase {
                clusters: behaviours
                    .into_iter()
                    .map(|behaviour| ClusterCase {
                        behaviour,
                        restore_time: 0,
                    })
                    .collect(),
                max_parallel,
                bake,
                approval,
                approve_after: 0,
            })
            .collect(),
        on_failure,
        actions: Vec::new(),
        tuning: Tuning::default(),
    }
}

const HEALTHY: Behaviour = Behaviour::Healthy { rollout: 0 };

/// A rollout driven by hand, one input at a time, at seconds after `start()`.
struct Bench {
    rollout: Rollout,
    tuning: Tuning,
}

impl Bench {
    fn new(case: &Case) -> Bench {
        Bench {
            rollout: case.rollout(),
            tuning: case.tuning,
        }
    }

    fn at(&mut self, s: i64, input: Input) -> Vec<Effect> {
        self.rollout.handle(input, start() + secs(s), &self.tuning)
    }

    fn tick(&mut self, s: i64) -> Vec<Effect> {
        self.at(s, Input::Tick)
    }

    fn operator(&mut self, s: i64, action: OperatorAction) -> Vec<Effect> {
        let input = Input::Operator {
            action,
            actor: "alice".into(),
            reason: None,
        };
        self.at(s, input)
    }

    /// `next_wake` as seconds after `start()`.
    fn wake(&self, s: i64) -> Option<i64> {
        self.rollout
            .next_wake(start() + secs(s), &self.tuning)
            .map(|w| (w - start()).num_seconds())
    }

    fn state(&self) -> RolloutState {
        self.rollout.state
    }

    fn target(&self, cluster: &str) -> TargetState {
        self.rollout
            .targets
            .iter()
            .find(|t| t.cluster == cluster)
            .map(|t| t.state)
            .expect("a target")
    }
}

fn applied(cluster: &str) -> Input {
    Input::Applied {
        cluster: cluster.into(),
    }
}

fn observed(cluster: &str, progress: Progress) -> Input {
    Input::Observed {
        cluster: cluster.into(),
        progress,
    }
}

fn not_ready() -> Progress {
    Progress::Progressing("1 of 3 updated replicas are available".into())
}

fn apply_failed_transiently(cluster: &str) -> Input {
    Input::ApplyFailed {
        cluster: cluster.into(),
        error: "503 Service Unavailable".into(),
        transient: true,
    }
}

fn applies_in(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Apply { cluster } => Some(cluster.as_str()),
            _ => None,
        })
        .collect()
}

fn restores_in(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Restore { cluster } => Some(cluster.as_str()),
            _ => None,
        })
        .collect()
}

fn kinds(effects: &[Effect]) -> Vec<EventKind> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(ev) => Some(ev.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn a_stage_promotes_exactly_when_its_bake_time_ends() {
    let mut case = case_of(
        vec![(vec![HEALTHY], 1, 60, false), (vec![HEALTHY], 1, 0, false)],
        FailurePolicy::Rollback,
    );
    // Observations rarer than the bake, so the wake is the bake's end.
    case.tuning.observe_interval = secs(600);
    case.tuning.settled_observe_interval = secs(600);
    let mut bench = Bench::new(&case);
    assert_eq!(applies_in(&bench.tick(0)), ["s0-c0"]);
    bench.at(0, applied("s0-c0"));
    bench.at(5, observed("s0-c0", Progress::Complete));
    let baking = bench.tick(5);
    assert_eq!(kinds(&baking), [EventKind::StageBaking]);
    assert_eq!(bench.wake(5), Some(65), "wakes when the bake ends");

    assert!(applies_in(&bench.tick(64)).is_empty(), "one second early");
    let promoted = bench.tick(65);
    assert_eq!(applies_in(&promoted), ["s1-c0"]);
    assert_eq!(
        kinds(&promoted),
        [
            EventKind::StageHealthy,
            EventKind::StageStarted,
            EventKind::TargetApplying
        ]
    );
}

#[test]
fn the_next_stage_starts_at_the_first_wake_after_the_bake_in_a_driven_run() {
    let case = case_of(
        vec![
            (vec![Behaviour::Healthy { rollout: 7 }], 1, 60, false),
            (vec![HEALTHY], 1, 0, false),
        ],
        FailurePolicy::Rollback,
    );
    let run = drive(&case);
    let times: Vec<(i64, &str)> = applies(&run)
        .into_iter()
        .map(|(i, c)| ((run.steps[i].at - start()).num_seconds(), c))
        .collect();
    assert_eq!(times, [(0, "s0-c0"), (67, "s1-c0")], "{}", describe(&run));
    assert_eq!(run.rollout.state, RolloutState::Succeeded);
}

#[test]
fn an_approval_while_running_is_rejected_and_changes_nothing() {
    let case = case_of(
        vec![(vec![HEALTHY], 1, 0, false), (vec![HEALTHY], 1, 0, true)],
        FailurePolicy::Rollback,
    );
    let mut bench = Bench::new(&case);
    bench.tick(0);
    bench.at(0, applied("s0-c0"));
    assert!(!bench.rollout.accepts(OperatorAction::Approve));
    let before = bench.rollout.clone();

    let effects = bench.operator(1, OperatorAction::Approve);

    assert_eq!(bench.rollout, before);
    let [Effect::Event(event)] = effects.as_slice() else {
        panic!("expected one event, got {effects:?}");
    };
    assert_eq!(event.kind, EventKind::ActionRejected);
    assert_eq!(event.actor, "alice");
    assert!(event.message.contains("running"), "{}", event.message);
}

#[test]
fn transient_apply_errors_retry_after_the_backoff_and_fail_the_target_after_max_consecutive_errors()
{
    let mut case = case_of(vec![(vec![HEALTHY], 1, 0, false)], FailurePolicy::Rollback);
    case.tuning.max_consecutive_errors = 3;
    case.tuning.retry_backoff = secs(5);
    let mut bench = Bench::new(&case);

    assert_eq!(applies_in(&bench.tick(0)), ["s0-c0"]);
    assert_eq!(
        kinds(&bench.at(0, apply_failed_transiently("s0-c0"))),
        [EventKind::TargetRetrying]
    );
    assert_eq!(bench.wake(0), Some(5), "waits for the backoff");
    assert!(
        applies_in(&bench.tick(4)).is_empty(),
        "no call before the backoff"
    );
    assert_eq!(applies_in(&bench.tick(5)), ["s0-c0"]);
    assert_eq!(
        kinds(&bench.at(5, apply_failed_transiently("s0-c0"))),
        [EventKind::TargetRetrying]
    );
    assert_eq!(applies_in(&bench.tick(10)), ["s0-c0"]);

    let third = bench.at(10, apply_failed_transiently("s0-c0"));
    assert_eq!(
        kinds(&third),
        [EventKind::TargetFailed, EventKind::RollbackStarted]
    );
    assert_eq!(bench.target("s0-c0"), TargetState::Failed);
    assert_eq!(bench.state(), RolloutState::RollingBack);
    // The apply may have partly landed: the cluster is restored.
    assert_eq!(bench.wake(10), Some(10));
    assert_eq!(restores_in(&bench.tick(10)), ["s0-c0"]);
}

#[test]
fn a_successful_apply_clears_the_count_of_transient_errors() {
    let mut case = case_of(vec![(vec![HEALTHY], 1, 0, false)], FailurePolicy::Rollback);
    case.tuning.max_consecutive_errors = 2;
    let mut bench = Bench::new(&case);
    bench.tick(0);
    bench.at(0, apply_failed_transiently("s0-c0"));
    bench.tick(2);
    bench.at(2, applied("s0-c0"));
    assert_eq!(bench.target("s0-c0"), TargetState::Progressing);
    assert_eq!(bench.rollout.targets[0].errors, 0);
}

#[test]
fn a_failure_while_paused_is_acted_on_only_after_resume() {
    let case = case_of(
        vec![(vec![HEALTHY, HEALTHY], 2, 0, false)],
        FailurePolicy::Rollback,
    );
    let mut bench = Bench::new(&case);
    assert_eq!(applies_in(&bench.tick(0)), ["s0-c0", "s0-c1"]);
    bench.at(0, applied("s0-c0"));
    bench.at(0, applied("s0-c1"));
    assert_eq!(
        kinds(&bench.operator(1, OperatorAction::Pause)),
        [EventKind::Paused]
    );

    let failure = bench.at(
        2,
        observed("s0-c0", Progress::Failed("ProgressDeadlineExceeded".into())),
    );
    assert_eq!(kinds(&failure), [EventKind::TargetFailed]);
    assert_eq!(bench.state(), RolloutState::Paused);
    assert!(bench.tick(2).is_empty());
    assert!(bench.tick(300).is_empty());

    assert_eq!(
        kinds(&bench.operator(301, OperatorAction::Resume)),
        [EventKind::Resumed]
    );
    let resumed = bench.tick(301);
    assert_eq!(bench.state(), RolloutState::RollingBack);
    assert_eq!(
        kinds(&resumed),
        [EventKind::RollbackStarted, EventKind::TargetRestoring]
    );
    assert_eq!(restores_in(&resumed), ["s0-c1"], "newest first");
}

#[test]
fn a_failure_while_paused_awaiting_approval_is_acted_on_after_resume_not_approved_past() {
    let case = case_of(
        vec![(vec![HEALTHY], 1, 0, false), (vec![HEALTHY], 1, 0, true)],
        FailurePolicy::Rollback,
    );
    let mut bench = Bench::new(&case);
    bench.tick(0);
    bench.at(0, applied("s0-c0"));
    bench.at(1, observed("s0-c0", Progress::Complete));
    bench.tick(1);
    assert_eq!(bench.state(), RolloutState::AwaitingApproval);
    bench.operator(2, OperatorAction::Pause);
    bench.at(
        3,
        observed("s0-c0", Progress::Failed("CrashLoopBackOff".into())),
    );
    assert!(bench.tick(3).is_empty());

    bench.operator(4, OperatorAction::Resume);
    assert!(
        !bench.rollout.accepts(OperatorAction::Approve),
        "a failed stage cannot be approved"
    );
    let resumed = bench.tick(4);
    assert_eq!(bench.state(), RolloutState::RollingBack);
    assert_eq!(restores_in(&resumed), ["s0-c0"]);
}

#[test]
fn a_stage_that_stops_being_ready_while_awaiting_approval_bakes_again_before_asking_again() {
    let case = case_of(
        vec![(vec![HEALTHY], 1, 30, false), (vec![HEALTHY], 1, 0, true)],
        FailurePolicy::Rollback,
    );
    let mut bench = Bench::new(&case);
    bench.tick(0);
    bench.at(0, applied("s0-c0"));
    bench.at(1, observed("s0-c0", Progress::Complete));
    bench.tick(1);
    bench.tick(31);
    assert_eq!(bench.state(), RolloutState::AwaitingApproval);

    bench.at(40, observed("s0-c0", not_ready()));
    assert_eq!(bench.state(), RolloutState::Running);
    assert!(!bench.rollout.accepts(OperatorAction::Approve));
    bench.tick(40);
    bench.at(50, observed("s0-c0", Progress::Complete));
    assert_eq!(kinds(&bench.tick(50)), [EventKind::StageBaking]);
    bench.tick(79);
    assert_eq!(bench.state(), RolloutState::Running, "still baking");
    assert_eq!(
        kinds(&bench.tick(80)),
        [EventKind::StageHealthy, EventKind::AwaitingApproval]
    );

    bench.operator(81, OperatorAction::Approve);
    assert_eq!(applies_in(&bench.tick(81)), ["s1-c0"]);
}

#[test]
fn a_stage_waiting_for_a_free_slot_sleeps_until_the_next_observation() {
    let case = case_of(
        vec![(vec![HEALTHY, HEALTHY, HEALTHY], 1, 0, false)],
        FailurePolicy::Rollback,
    );
    let mut bench = Bench::new(&case);
    assert_eq!(applies_in(&bench.tick(0)), ["s0-c0"]);
    bench.at(0, applied("s0-c0"));
    assert_eq!(
        bench.wake(0),
        Some(1),
        "not now: nothing to do until s0-c0 is looked at"
    );
}

#[test]
fn a_rollback_decided_while_observing_restores_each_changed_cluster_once_newest_first() {
    let case = case_of(
        vec![(
            vec![
                HEALTHY,
                Behaviour::Healthy { rollout: 20 },
                Behaviour::NeverRollsOut { deadline: 10 },
            ],
            3,
            0,
            false,
        )],
        FailurePolicy::Rollback,
    );
    let run = drive(&case);
    let restored: Vec<&str> = restores(&run).into_iter().map(|(_, c)| c).collect();
    assert_eq!(restored, ["s0-c2", "s0-c1", "s0-c0"], "{}", describe(&run));
    assert_eq!(run.rollout.state, RolloutState::RolledBack);
    assert!(
        run.rollout
            .targets
            .iter()
            .all(|t| t.state == TargetState::Restored)
    );
}

#[test]
fn an_operator_rollback_of_a_succeeded_rollout_restores_every_cluster_once() {
    let mut case = case_of(
        vec![
            (vec![HEALTHY, HEALTHY], 1, 0, false),
            (vec![HEALTHY], 1, 0, false),
        ],
        FailurePolicy::Rollback,
    );
    case.actions = vec![(600, OperatorAction::Rollback)];
    let run = drive(&case);
    verdict_or_panic(&run);
    let restored: Vec<&str> = restores(&run).into_iter().map(|(_, c)| c).collect();
    assert_eq!(restored, ["s1-c0", "s0-c1", "s0-c0"]);
    assert_eq!(run.rollout.state, RolloutState::RolledBack);
}

#[test]
fn on_failure_halt_ends_failed_and_leaves_every_cluster_as_it_is() {
    let case = case_of(
        vec![
            (vec![HEALTHY, HEALTHY], 2, 0, false),
            (vec![Behaviour::Rejected, HEALTHY], 1, 0, false),
        ],
        FailurePolicy::Halt,
    );
    let run = drive(&case);
    verdict_or_panic(&run);
    assert_eq!(run.rollout.state, RolloutState::Failed);
    assert!(restores(&run).is_empty(), "{}", describe(&run));
    assert!(
        run.rollout
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("s1-c0"))
    );
    let failed = run
        .steps
        .iter()
        .flat_map(|s| &s.effects)
        .find_map(|e| match e {
            Effect::Event(ev) if ev.kind == EventKind::Failed => Some(ev.message.clone()),
            _ => None,
        });
    assert!(failed.is_some_and(|m| m.contains("halt")));
    let untouched: Vec<&str> = applies(&run).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        untouched,
        ["s0-c0", "s0-c1", "s1-c0"],
        "s1-c1 is never touched"
    );
}

#[test]
fn a_cluster_unreachable_for_fewer_reads_than_the_limit_only_delays_the_rollout() {
    let case = case_of(
        vec![(
            vec![Behaviour::Unreachable {
                from: 2,
                len: 3,
                rollout: 10,
            }],
            1,
            0,
            false,
        )],
        FailurePolicy::Rollback,
    );
    let run = drive(&case);
    verdict_or_panic(&run);
    assert_eq!(
        run.rollout.state,
        RolloutState::Succeeded,
        "{}",
        describe(&run)
    );
    let unreachable = run
        .steps
        .iter()
        .filter(|s| matches!(s.input, Input::Unreachable { .. }))
        .count();
    assert_eq!(unreachable, 3);
}

#[test]
fn a_cluster_unreachable_for_too_long_fails_and_is_restored_once_it_answers() {
    let mut case = case_of(
        vec![(
            vec![Behaviour::Unreachable {
                from: 2,
                len: 30,
                rollout: 10,
            }],
            1,
            0,
            false,
        )],
        FailurePolicy::Rollback,
    );
    case.tuning.retry_backoff = secs(30);
    let run = drive(&case);
    verdict_or_panic(&run);
    assert_eq!(
        run.rollout.state,
        RolloutState::RolledBack,
        "{}",
        describe(&run)
    );
    let restore_errors = run
        .steps
        .iter()
        .filter(|s| {
            matches!(
                s.input,
                Input::RestoreFailed {
                    transient: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(restore_errors, 1, "{}", describe(&run));
}

fn verdict_or_panic(run: &Run) {
    if let Err(e) = check_invariants(run) {
        panic!("{e}\n{}", describe(run));
    }
}

#[test]
fn a_cluster_rolling_out_is_looked_at_often_and_a_rolled_out_one_only_to_see_it_stays_so() {
    let mut case = case_of(
        vec![(vec![HEALTHY, HEALTHY], 2, 600, false)],
        FailurePolicy::Rollback,
    );
    case.tuning.observe_interval = secs(1);
    case.tuning.settled_observe_interval = secs(30);
    let mut bench = Bench::new(&case);
    assert_eq!(applies_in(&bench.tick(0)), ["s0-c0", "s0-c1"]);
    bench.at(0, applied("s0-c0"));
    bench.at(0, applied("s0-c1"));
    assert_eq!(bench.wake(0), Some(1), "both roll out");
    bench.at(3, observed("s0-c0", Progress::Complete));
    assert_eq!(bench.wake(3), Some(4), "one still rolls out");
    bench.at(4, observed("s0-c1", Progress::Complete));
    assert_eq!(kinds(&bench.tick(4)), [EventKind::StageBaking]);
    assert_eq!(
        bench.wake(4),
        Some(34),
        "baking: looked at to see it stays so"
    );
    // A cluster that stops being ready is looked at often again.
    bench.at(34, observed("s0-c1", not_ready()));
    assert_eq!(bench.target("s0-c1"), TargetState::Progressing);
    assert_eq!(bench.wake(34), Some(35));
}
