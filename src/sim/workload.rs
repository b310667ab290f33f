//! The controller side of one workload object: starts a new pod epoch on each
//! spec change, renders its status at any instant, and feeds its traffic into
//! the app metrics.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::app_metrics::{AppMetrics, ErrorRates};
use super::images;
use super::kinds::Workload;
use super::pods::{Epoch, Strategy, Timing, template_hash};
use super::status::{self, DEFAULT_PROGRESS_DEADLINE_SECONDS, StatusInput};

/// Cluster-wide settings the controllers run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerEnv {
    pub timing: Timing,
    pub daemonset_nodes: u32,
}

/// Simulated controller state of one Deployment, StatefulSet or DaemonSet.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSim {
    pub kind: Workload,
    pub epoch: Epoch,
    /// App metrics have been integrated up to this instant.
    metrics_until: DateTime<Utc>,
}

/// Where the traffic of a workload is accounted.
pub struct MetricsSink<'a> {
    pub metrics: &'a mut AppMetrics,
    pub rates: &'a ErrorRates,
    pub namespace: &'a str,
    pub app: &'a str,
}

fn desired(kind: Workload, object: &Value, env: ControllerEnv) -> u32 {
    match kind {
        Workload::DaemonSet => env.daemonset_nodes,
        Workload::Deployment | Workload::StatefulSet => object
            .pointer("/spec/replicas")
            .and_then(Value::as_u64)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

fn progress_deadline_seconds(object: &Value) -> i64 {
    object
        .pointer("/spec/progressDeadlineSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS)
}

fn strategy(kind: Workload) -> Strategy {
    match kind {
        Workload::Deployment => Strategy::Surge,
        Workload::StatefulSet | Workload::DaemonSet => Strategy::Replace,
    }
}

fn generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

fn new_epoch(kind: Workload, object: &Value, now: DateTime<Utc>, env: ControllerEnv) -> Epoch {
    Epoch {
        start: now,
        generation: generation(object),
        desired: desired(kind, object, env),
        template: template_hash(object.pointer("/spec/template").unwrap_or(&Value::Null)),
        images: images::of_object(object),
        strategy: strategy(kind),
        initial: Vec::new(),
        frozen_status: json!({}),
    }
}

impl WorkloadSim {
    /// A workload just created: no pods, empty status until observed.
    pub fn create(kind: Workload, object: &Value, now: DateTime<Utc>, env: ControllerEnv) -> Self {
        Self {
            kind,
            epoch: new_epoch(kind, object, now, env),
            metrics_until: now,
        }
    }

    /// The spec changed at `now`: the pods of the old epoch at this instant
    /// and its last written status become the start of the new one.
    pub fn respec(
        &mut self,
        name: &str,
        object: &Value,
        now: DateTime<Utc>,
        env: ControllerEnv,
        sink: MetricsSink<'_>,
    ) {
        let next = Epoch {
            initial: self.epoch.at(now, env.timing).groups,
            ..new_epoch(self.kind, object, now, env)
        };
        self.start_epoch(name, object, now, env, sink, next);
    }

    /// Every pod is lost at `now` (a node failure, an eviction): the same
    /// spec starts over with no pods, so the workload is not rolled out
    /// until replacements are ready.
    pub fn lose_pods(
        &mut self,
        name: &str,
        object: &Value,
        now: DateTime<Utc>,
        env: ControllerEnv,
        sink: MetricsSink<'_>,
    ) {
        let next = Epoch {
            initial: Vec::new(),
            ..self.epoch.clone()
        };
        self.start_epoch(name, object, now, env, sink, next);
    }

    /// Accounts the traffic up to `now`, then starts `next` (with the pods
    /// it begins with) at `now`; the last written status holds until the
    /// controller observes the change.
    fn start_epoch(
        &mut self,
        name: &str,
        object: &Value,
        now: DateTime<Utc>,
        env: ControllerEnv,
        sink: MetricsSink<'_>,
        next: Epoch,
    ) {
        self.advance_metrics(now, env, sink);
        let frozen = self.status(name, object, now, env);
        self.epoch = Epoch {
            start: now,
            frozen_status: frozen,
            ..next
        };
    }

    /// The status a controller would have written by `now`.
    pub fn status(
        &self,
        name: &str,
        object: &Value,
        now: DateTime<Utc>,
        env: ControllerEnv,
    ) -> Value {
        let deadline_seconds = progress_deadline_seconds(object);
        let view = self.epoch.at(now, env.timing);
        status::render(&StatusInput {
            workload: self.kind,
            name,
            epoch: &self.epoch,
            view: &view,
            now,
            observed_at: self
                .epoch
                .start
                .checked_add_signed(env.timing.observe_delay)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            progress_deadline: TimeDelta::try_seconds(deadline_seconds).unwrap_or(TimeDelta::MAX),
        })
    }

    /// The first instant after `now` at which the status can change without
    /// a write: a pod becoming ready, the controller observing the spec, or
    /// the progress deadline passing. `None` when nothing is left to happen.
    pub fn next_change_after(
        &self,
        object: &Value,
        now: DateTime<Utc>,
        env: ControllerEnv,
    ) -> Option<DateTime<Utc>> {
        let deadline =
            TimeDelta::try_seconds(progress_deadline_seconds(object)).unwrap_or(TimeDelta::MAX);
        let points = self.epoch.change_points(env.timing);
        // The deadline counts from the last progress, which is one of the
        // change points; waking at a point where nothing moves is harmless.
        let deadlines = points.iter().filter_map(|p| p.checked_add_signed(deadline));
        points
            .iter()
            .copied()
            .chain(deadlines)
            .filter(|p| *p > now)
            .min()
    }

    /// Accounts this workload's traffic up to `now`.
    pub fn advance_metrics(
        &mut self,
        now: DateTime<Utc>,
        env: ControllerEnv,
        sink: MetricsSink<'_>,
    ) {
        if now <= self.metrics_until {
            return;
        }
        sink.metrics.integrate(
            sink.namespace,
            sink.app,
            &self.epoch,
            (self.metrics_until, now),
            env.timing,
            sink.rates,
        );
        self.metrics_until = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::app_metrics::SeriesKey;

    fn env() -> ControllerEnv {
        ControllerEnv {
            timing: Timing {
                ready_after: TimeDelta::seconds(1),
                observe_delay: TimeDelta::zero(),
            },
            daemonset_nodes: 3,
        }
    }

    fn deployment(image: &str, generation: i64) -> Value {
        json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": image}]}}}
        })
    }

    #[test]
    fn respec_carries_pods_and_keeps_counting_old_traffic() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let v1 = deployment("app:v1", 1);
        let mut sim = WorkloadSim::create(Workload::Deployment, &v1, t0, env());
        let mut metrics = AppMetrics::default();
        let rates = ErrorRates::default();
        let t1 = t0 + TimeDelta::seconds(10);
        let v2 = deployment("app:v2", 2);
        let sink = MetricsSink {
            metrics: &mut metrics,
            rates: &rates,
            namespace: "ns",
            app: "web",
        };
        sim.respec("web", &v2, t1, env(), sink);
        assert_eq!(sim.epoch.initial.len(), 1);
        assert_eq!(sim.epoch.initial[0].ready, 2);
        assert_eq!(sim.epoch.frozen_status["observedGeneration"], 1);
        let status = sim.status("web", &v2, t1 + TimeDelta::seconds(5), env());
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["updatedReplicas"], 2);
        assert_eq!(status["replicas"], 2);

        let sink = MetricsSink {
            metrics: &mut metrics,
            rates: &rates,
            namespace: "ns",
            app: "web",
        };
        sim.advance_metrics(t1 + TimeDelta::seconds(5), env(), sink);
        let old = SeriesKey {
            namespace: "ns".into(),
            app: "web".into(),
            version: "v1".into(),
        };
        let new = SeriesKey {
            namespace: "ns".into(),
            app: "web".into(),
            version: "v2".into(),
        };
        // v1: 0, 1, then 2 ready pods up to t1 (170); then 2 and 1 pods for
        // one second each while v2 rolls in (30).
        assert!((metrics.get(&old).map_or(0.0, |c| c.requests) - 200.0).abs() < 1e-9);
        // v2: 1 pod for 1s, then 2 pods for 3s.
        assert!((metrics.get(&new).map_or(0.0, |c| c.requests) - 70.0).abs() < 1e-9);
    }

    #[test]
    fn every_status_change_is_foreseen_by_the_schedule() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut object = deployment("app:v1", 1);
        object["spec"]["progressDeadlineSeconds"] = json!(5);
        let sim = WorkloadSim::create(Workload::Deployment, &object, t0, env());
        let status_at =
            |ms: i64| sim.status("web", &object, t0 + TimeDelta::milliseconds(ms), env());
        let mut now = t0;
        let mut wakes = Vec::new();
        while let Some(next) = sim.next_change_after(&object, now, env()) {
            wakes.push((next - t0).num_milliseconds());
            now = next;
        }
        // Two pods ready at 1 s and 2 s; the deadline points are harmless.
        assert_eq!(wakes, vec![1000, 2000, 5000, 6000, 7000]);
        // Between two foreseen instants the status never moves.
        let mut previous = status_at(0);
        for ms in (0..8000).step_by(50) {
            let status = status_at(ms);
            if status != previous {
                assert!(
                    wakes.iter().any(|w| (*w - 50..=*w).contains(&ms)),
                    "status changed at {ms} ms, unforeseen"
                );
            }
            previous = status;
        }
    }

    #[test]
    fn daemonset_desires_one_pod_per_node() {
        let ds = json!({"metadata": {"generation": 1}, "spec": {"template": {}}});
        let sim = WorkloadSim::create(Workload::DaemonSet, &ds, DateTime::<Utc>::UNIX_EPOCH, env());
        assert_eq!(sim.epoch.desired, 3);
    }
}
