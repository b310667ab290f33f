//! Writes the `status` a real workload controller would, from the simulated
//! pods: the fields `kubectl rollout status` (and Meridian) decide on.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::kinds::Workload;
use super::pods::{Epoch, PodsView};
use super::timefmt::k8s_time;

/// `spec.progressDeadlineSeconds` when the spec leaves it out.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i64 = 600;

/// What the status depends on besides the pods.
pub struct StatusInput<'a> {
    pub workload: Workload,
    pub name: &'a str,
    pub epoch: &'a Epoch,
    pub view: &'a PodsView,
    pub now: DateTime<Utc>,
    /// When the controller first observed this epoch.
    pub observed_at: DateTime<Utc>,
    pub progress_deadline: TimeDelta,
}

/// The status object, or the frozen previous one while the controller has
/// not yet observed the latest spec.
pub fn render(input: &StatusInput<'_>) -> Value {
    if !input.view.observed {
        return input.epoch.frozen_status.clone();
    }
    match input.workload {
        Workload::Deployment => deployment(input),
        Workload::StatefulSet => statefulset(input),
        Workload::DaemonSet => daemonset(input),
    }
}

/// Real status structs omit zero counts (`omitempty`); so do we, so that
/// clients are exercised on absent fields as they would be in production.
fn put_nonzero(map: &mut Map<String, Value>, key: &str, n: u32) {
    if n > 0 {
        map.insert(key.to_owned(), json!(n));
    }
}

/// Keeps a condition's `lastTransitionTime` when its status did not flip.
fn transition_time(frozen: &Value, kind: &str, status: &str, fallback: DateTime<Utc>) -> Value {
    frozen
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(k8s_time(fallback)))
}

fn deployment(input: &StatusInput<'_>) -> Value {
    let StatusInput {
        name,
        epoch,
        view,
        now,
        observed_at,
        progress_deadline,
        ..
    } = *input;
    let desired = epoch.desired;
    let available = view.ready();
    let rs = format!("{name}-{}", epoch.template);
    let deadline_at = view
        .last_progress
        .checked_add_signed(progress_deadline)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let exceeded = !view.complete && now > deadline_at;

    let (p_status, p_reason, p_message, p_updated) = if view.complete {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
            view.last_progress,
        )
    } else if exceeded {
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs}\" has timed out progressing."),
            deadline_at,
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
            view.last_progress,
        )
    };
    let progressing = json!({
        "type": "Progressing",
        "status": p_status,
        "reason": p_reason,
        "message": p_message,
        "lastUpdateTime": k8s_time(p_updated),
        "lastTransitionTime": transition_time(&epoch.frozen_status, "Progressing", p_status,
            if exceeded { deadline_at } else { observed_at }),
    });

    let is_available = available >= desired;
    let (a_status, a_reason, a_message) = if is_available {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let a_changed = if is_available {
        view.last_progress
    } else {
        observed_at
    };
    let available_condition = json!({
        "type": "Available",
        "status": a_status,
        "reason": a_reason,
        "message": a_message,
        "lastUpdateTime": k8s_time(a_changed),
        "lastTransitionTime": transition_time(&epoch.frozen_status, "Available", a_status, a_changed),
    });

    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(epoch.generation));
    put_nonzero(&mut status, "replicas", view.total());
    put_nonzero(&mut status, "updatedReplicas", view.new_total);
    put_nonzero(&mut status, "readyReplicas", available);
    put_nonzero(&mut status, "availableReplicas", available);
    put_nonzero(
        &mut status,
        "unavailableReplicas",
        desired.saturating_sub(available),
    );
    status.insert(
        "conditions".into(),
        json!([available_condition, progressing]),
    );
    Value::Object(status)
}

fn statefulset(input: &StatusInput<'_>) -> Value {
    let StatusInput {
        name, epoch, view, ..
    } = *input;
    let revision = |template: &str| format!("{name}-{template}");
    let update_revision = revision(&epoch.template);
    // The current revision moves only once every pod runs the update.
    let current_revision = if view.complete {
        update_revision.clone()
    } else {
        epoch
            .frozen_status
            .get("currentRevision")
            .and_then(Value::as_str)
            .map_or_else(|| update_revision.clone(), str::to_owned)
    };
    let current_replicas: u32 = view
        .groups
        .iter()
        .filter(|g| revision(&g.template) == current_revision)
        .map(|g| g.total)
        .sum();

    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(epoch.generation));
    status.insert("replicas".into(), json!(view.total()));
    put_nonzero(&mut status, "readyReplicas", view.ready());
    put_nonzero(&mut status, "currentReplicas", current_replicas);
    put_nonzero(&mut status, "updatedReplicas", view.new_total);
    put_nonzero(&mut status, "availableReplicas", view.ready());
    status.insert("currentRevision".into(), json!(current_revision));
    status.insert("updateRevision".into(), json!(update_revision));
    status.insert("collisionCount".into(), json!(0));
    Value::Object(status)
}

fn daemonset(input: &StatusInput<'_>) -> Value {
    let StatusInput { epoch, view, .. } = *input;
    let ready = view.ready();
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(epoch.generation));
    status.insert("desiredNumberScheduled".into(), json!(epoch.desired));
    status.insert("currentNumberScheduled".into(), json!(view.total()));
    status.insert("numberMisscheduled".into(), json!(0));
    status.insert("numberReady".into(), json!(ready));
    put_nonzero(&mut status, "updatedNumberScheduled", view.new_total);
    put_nonzero(&mut status, "numberAvailable", ready);
    put_nonzero(
        &mut status,
        "numberUnavailable",
        epoch.desired.saturating_sub(ready),
    );
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pods::{PodGroup, Strategy, Timing};

    fn timing() -> Timing {
        Timing {
            ready_after: TimeDelta::milliseconds(100),
            observe_delay: TimeDelta::milliseconds(10),
        }
    }

    fn render_at(workload: Workload, epoch: &Epoch, ms: i64, deadline_s: i64) -> Value {
        let now = epoch.start + TimeDelta::milliseconds(ms);
        let view = epoch.at(now, timing());
        render(&StatusInput {
            workload,
            name: "web",
            epoch,
            view: &view,
            now,
            observed_at: epoch.start + timing().observe_delay,
            progress_deadline: TimeDelta::seconds(deadline_s),
        })
    }

    fn epoch(
        images: &str,
        desired: u32,
        strategy: Strategy,
        initial: Vec<PodGroup>,
        frozen: Value,
    ) -> Epoch {
        Epoch {
            start: DateTime::<Utc>::UNIX_EPOCH,
            generation: 2,
            desired,
            template: images.replace(':', "-"),
            images: vec![images.to_owned()],
            strategy,
            initial,
            frozen_status: frozen,
        }
    }

    fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn deployment_reports_progress_then_completion() {
        let frozen = json!({"observedGeneration": 1});
        let e = epoch("app:v1", 2, Strategy::Surge, vec![], frozen.clone());
        assert_eq!(render_at(Workload::Deployment, &e, 5, 600), frozen);
        let mid = render_at(Workload::Deployment, &e, 150, 600);
        assert_eq!(mid["observedGeneration"], 2);
        assert_eq!(mid["updatedReplicas"], 2);
        assert_eq!(mid["readyReplicas"], 1);
        assert_eq!(
            condition(&mid, "Progressing")["reason"],
            "ReplicaSetUpdated"
        );
        assert_eq!(condition(&mid, "Available")["status"], "False");
        let done = render_at(Workload::Deployment, &e, 250, 600);
        assert_eq!(done["availableReplicas"], 2);
        assert!(done.get("unavailableReplicas").is_none());
        assert_eq!(
            condition(&done, "Progressing")["reason"],
            "NewReplicaSetAvailable"
        );
        assert_eq!(condition(&done, "Available")["status"], "True");
    }

    #[test]
    fn stuck_deployment_exceeds_its_deadline() {
        let e = epoch("app:v2-crashloop", 1, Strategy::Surge, vec![], json!({}));
        let before = render_at(Workload::Deployment, &e, 900, 1);
        assert_eq!(condition(&before, "Progressing")["status"], "True");
        let after = render_at(Workload::Deployment, &e, 1_100, 1);
        assert_eq!(
            condition(&after, "Progressing")["reason"],
            "ProgressDeadlineExceeded"
        );
        assert_eq!(condition(&after, "Progressing")["status"], "False");
    }

    #[test]
    fn statefulset_current_revision_moves_when_all_updated() {
        let old = PodGroup {
            template: "app-v1".into(),
            images: vec!["app:v1".into()],
            ready: 2,
            total: 2,
        };
        let frozen = json!({"currentRevision": "web-app-v1", "updateRevision": "web-app-v1"});
        let e = epoch("app:v2", 2, Strategy::Replace, vec![old], frozen);
        let mid = render_at(Workload::StatefulSet, &e, 50, 600);
        assert_eq!(mid["currentRevision"], "web-app-v1");
        assert_eq!(mid["updateRevision"], "web-app-v2");
        assert_eq!(mid["currentReplicas"], 1);
        assert_eq!(mid["updatedReplicas"], 1);
        let done = render_at(Workload::StatefulSet, &e, 250, 600);
        assert_eq!(done["currentRevision"], "web-app-v2");
        assert_eq!(done["currentReplicas"], 2);
        assert_eq!(done["readyReplicas"], 2);
    }

    #[test]
    fn daemonset_counts_nodes() {
        let e = epoch("agent:v1", 3, Strategy::Replace, vec![], json!({}));
        let done = render_at(Workload::DaemonSet, &e, 400, 600);
        assert_eq!(done["desiredNumberScheduled"], 3);
        assert_eq!(done["updatedNumberScheduled"], 3);
        assert_eq!(done["numberAvailable"], 3);
        assert!(done.get("numberUnavailable").is_none());
    }
}
