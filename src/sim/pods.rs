//! The simulated workload controller: which pods of which template exist and
//! are ready at any instant, as a pure function of time.
//!
//! Every spec change starts an [`Epoch`] holding the pods that existed at that
//! moment. Within an epoch, nothing moves until the controller observes the
//! change (`observe_delay`); then one new pod at a time becomes ready every
//! `replica_ready_after`, and old pods go away as new ones take over. State is
//! never ticked in the background: any reader evaluates the epoch at `now`.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::images;

/// Pods of one pod template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodGroup {
    /// Hash of the pod template; equal templates are the same revision.
    pub template: String,
    pub images: Vec<String>,
    pub ready: u32,
    pub total: u32,
}

/// How old pods make room for new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Deployment (maxSurge 1, maxUnavailable 0): a new pod starts first, an
    /// old one goes away once it is ready.
    Surge,
    /// StatefulSet and DaemonSet: an old pod is deleted, then replaced.
    Replace,
}

/// Controller timing, as chrono durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub ready_after: TimeDelta,
    pub observe_delay: TimeDelta,
}

impl Timing {
    pub fn from_std(ready_after: std::time::Duration, observe_delay: std::time::Duration) -> Self {
        Self {
            ready_after: TimeDelta::from_std(ready_after).unwrap_or(TimeDelta::MAX),
            observe_delay: TimeDelta::from_std(observe_delay).unwrap_or(TimeDelta::MAX),
        }
    }
}

/// One spec generation of a workload, from the moment it was applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    pub start: DateTime<Utc>,
    pub generation: i64,
    pub desired: u32,
    pub template: String,
    pub images: Vec<String>,
    pub strategy: Strategy,
    /// Pods that existed when the spec changed, oldest template first.
    pub initial: Vec<PodGroup>,
    /// The status the controller had written before it observed this spec;
    /// readers see it until `observe_delay` has passed.
    pub frozen_status: Value,
}

/// The pods of an epoch at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodsView {
    /// Whether the controller has seen this epoch's spec yet.
    pub observed: bool,
    /// Pods by template, oldest first; includes the new template's group.
    pub groups: Vec<PodGroup>,
    pub new_ready: u32,
    pub new_total: u32,
    /// Every desired pod runs the new template and is ready; nothing else runs.
    pub complete: bool,
    /// When the new template last gained a ready pod (or was first observed).
    pub last_progress: DateTime<Utc>,
}

impl PodsView {
    pub fn ready(&self) -> u32 {
        self.groups.iter().map(|g| g.ready).sum()
    }

    pub fn total(&self) -> u32 {
        self.groups.iter().map(|g| g.total).sum()
    }
}

/// `d * n`, saturating: huge timings from options must not panic.
fn times(d: TimeDelta, n: u32) -> TimeDelta {
    i32::try_from(n)
        .ok()
        .and_then(|n| d.checked_mul(n))
        .unwrap_or(TimeDelta::MAX)
}

/// `t + d`, saturating at the end of representable time.
fn later(t: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Epoch {
    fn crashes(&self) -> bool {
        images::crashloops(&self.images)
    }

    /// Ready pods of the new template carried over from before the change
    /// (a scale or a rollback to a template that is still running).
    fn carried_ready(&self) -> u32 {
        if self.crashes() {
            return 0;
        }
        self.initial
            .iter()
            .find(|g| g.template == self.template)
            .map_or(0, |g| g.ready)
            .min(self.desired)
    }

    /// Whole `replica_ready_after` steps completed by `t` since observation.
    fn steps(&self, t: DateTime<Utc>, timing: Timing) -> u64 {
        let observed_at = later(self.start, timing.observe_delay);
        if t < observed_at {
            return 0;
        }
        let since = t - observed_at;
        let step = timing.ready_after.num_microseconds().unwrap_or(i64::MAX);
        let since = since.num_microseconds().unwrap_or(i64::MAX);
        if step <= 0 {
            u64::MAX
        } else {
            u64::try_from(since / step).unwrap_or(0)
        }
    }

    /// The pods at instant `t` (`t` before `start` reads as `start`).
    pub fn at(&self, t: DateTime<Utc>, timing: Timing) -> PodsView {
        let observed_at = later(self.start, timing.observe_delay);
        if t < observed_at {
            let carried = self.initial.iter().find(|g| g.template == self.template);
            return PodsView {
                observed: false,
                groups: self.initial.clone(),
                new_ready: carried.map_or(0, |g| g.ready),
                new_total: carried.map_or(0, |g| g.total),
                complete: false,
                last_progress: observed_at,
            };
        }

        let desired = self.desired;
        let carried = self.carried_ready();
        let new_ready = if self.crashes() {
            0
        } else {
            u32::try_from((u64::from(carried)).saturating_add(self.steps(t, timing)))
                .unwrap_or(u32::MAX)
                .min(desired)
        };
        // One pod of the new template is always on its way until all are ready.
        let new_total = if new_ready < desired {
            new_ready + 1
        } else {
            desired
        };
        let mut old_budget = match self.strategy {
            Strategy::Surge => desired - new_ready,
            Strategy::Replace => desired - new_total,
        };

        // Old templates keep only ready pods (the controller scales down
        // unavailable ones first), newest template first.
        let mut kept: Vec<PodGroup> = Vec::new();
        for group in self
            .initial
            .iter()
            .rev()
            .filter(|g| g.template != self.template)
        {
            let keep = group.ready.min(old_budget);
            old_budget -= keep;
            if keep > 0 {
                kept.push(PodGroup {
                    ready: keep,
                    total: keep,
                    ..group.clone()
                });
            }
        }
        kept.reverse();
        let new_group = PodGroup {
            template: self.template.clone(),
            images: self.images.clone(),
            ready: new_ready,
            total: new_total,
        };
        let old_pods: u32 = kept.iter().map(|g| g.total).sum();
        if new_total > 0 {
            kept.push(new_group);
        }

        let progressed = new_ready.saturating_sub(carried);
        let last_progress = later(observed_at, times(timing.ready_after, progressed));
        PodsView {
            observed: true,
            complete: new_ready == desired && new_total == desired && old_pods == 0,
            groups: kept,
            new_ready,
            new_total,
            last_progress,
        }
    }

    /// Instants after `start` at which the pods change; between two of them
    /// the view is constant. Used to integrate request counters exactly.
    pub fn change_points(&self, timing: Timing) -> Vec<DateTime<Utc>> {
        let observed_at = later(self.start, timing.observe_delay);
        let mut points = vec![observed_at];
        if !self.crashes() {
            let remaining = self.desired.saturating_sub(self.carried_ready());
            for step in 1..=remaining {
                points.push(later(observed_at, times(timing.ready_after, step)));
            }
        }
        points
    }
}

/// A short stable hash of a pod template, canonical over key order, used for
/// ReplicaSet and ControllerRevision style names (`web-5f7d9c8b6d`).
pub fn template_hash(template: &Value) -> String {
    // FNV-1a: tiny, stable across runs and platforms.
    fn eat(hash: &mut u64, bytes: &[u8]) {
        for b in bytes {
            *hash ^= u64::from(*b);
            *hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn feed(value: &Value, hash: &mut u64) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                eat(hash, b"{");
                for key in keys {
                    eat(hash, key.as_bytes());
                    eat(hash, b":");
                    if let Some(child) = map.get(key) {
                        feed(child, hash);
                    }
                    eat(hash, b",");
                }
                eat(hash, b"}");
            }
            Value::Array(items) => {
                eat(hash, b"[");
                for item in items {
                    feed(item, hash);
                    eat(hash, b",");
                }
                eat(hash, b"]");
            }
            other => eat(hash, other.to_string().as_bytes()),
        }
    }
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    feed(template, &mut hash);
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn timing() -> Timing {
        Timing {
            ready_after: TimeDelta::milliseconds(100),
            observe_delay: TimeDelta::milliseconds(10),
        }
    }

    fn epoch(images: &[&str], desired: u32, strategy: Strategy, initial: Vec<PodGroup>) -> Epoch {
        let images: Vec<String> = images.iter().map(|s| (*s).to_owned()).collect();
        Epoch {
            start: DateTime::<Utc>::UNIX_EPOCH,
            generation: 1,
            desired,
            template: images.join(","),
            images,
            strategy,
            initial,
            frozen_status: json!({}),
        }
    }

    fn at_ms(e: &Epoch, ms: i64) -> PodsView {
        e.at(e.start + TimeDelta::milliseconds(ms), timing())
    }

    #[test]
    fn fresh_deployment_becomes_ready_one_pod_per_step() {
        let e = epoch(&["app:v1"], 3, Strategy::Surge, vec![]);
        assert!(!at_ms(&e, 5).observed);
        let v = at_ms(&e, 10);
        assert_eq!((v.new_ready, v.new_total, v.complete), (0, 1, false));
        let v = at_ms(&e, 215);
        assert_eq!((v.new_ready, v.new_total), (2, 3));
        let v = at_ms(&e, 310);
        assert!(v.complete);
        assert_eq!(v.last_progress, e.start + TimeDelta::milliseconds(310));
        assert_eq!(e.change_points(timing()).len(), 4);
    }

    #[test]
    fn surge_update_keeps_capacity_and_replace_update_does_not() {
        let old = PodGroup {
            template: "app:v1".into(),
            images: vec!["app:v1".into()],
            ready: 2,
            total: 2,
        };
        let surge = epoch(&["app:v2"], 2, Strategy::Surge, vec![old.clone()]);
        let v = at_ms(&surge, 50);
        assert_eq!((v.ready(), v.total()), (2, 3));
        let replace = epoch(&["app:v2"], 2, Strategy::Replace, vec![old]);
        let v = at_ms(&replace, 50);
        assert_eq!((v.ready(), v.total()), (1, 2));
        assert!(at_ms(&replace, 210).complete);
    }

    #[test]
    fn crashloop_never_progresses_and_rollback_is_immediate() {
        let good = PodGroup {
            template: "app:v1".into(),
            images: vec!["app:v1".into()],
            ready: 2,
            total: 2,
        };
        let crash = epoch(&["app:v2-crashloop"], 2, Strategy::Surge, vec![good]);
        let v = at_ms(&crash, 100_000);
        assert_eq!(
            (v.new_ready, v.new_total, v.ready(), v.complete),
            (0, 1, 2, false)
        );
        assert_eq!(v.last_progress, crash.start + TimeDelta::milliseconds(10));

        let back = epoch(&["app:v1"], 2, Strategy::Surge, v.groups);
        let v = at_ms(&back, 10);
        assert!(v.complete);
        assert_eq!(v.groups.len(), 1);
    }

    #[test]
    fn template_hash_ignores_key_order() {
        let a = json!({"spec": {"a": 1, "b": [1, 2]}});
        let b = json!({"spec": {"b": [1, 2], "a": 1}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&json!({"spec": {"a": 2}})));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
