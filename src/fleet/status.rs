//! "Is it rolled out?", decided exactly the way `kubectl rollout status` does
//! (kubectl `pkg/polymorphichelpers/rollout_status.go`), as pure functions of
//! the live object.
//!
//! The first gate everywhere is `status.observedGeneration` having caught up
//! with `metadata.generation`: right after an apply the status still describes
//! the previous spec, and reading it as "complete" would declare a rollout
//! done before the controller has even seen it.
//!
//! Where kubectl's Go code reads a zero value from an absent field, these
//! functions read an absent field as zero too, so both agree on partially
//! filled statuses.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use serde::{Deserialize, Serialize};

/// Where a workload's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RolloutProgress {
    Complete,
    Progressing { message: String },
    Failed { reason: String },
}

impl RolloutProgress {
    /// Folds several objects' progress into one: any failure fails the whole,
    /// otherwise anything still progressing keeps the whole progressing.
    /// Messages of the same severity are joined so none is hidden.
    pub fn combine(parts: impl IntoIterator<Item = RolloutProgress>) -> RolloutProgress {
        let mut failed = Vec::new();
        let mut progressing = Vec::new();
        for part in parts {
            match part {
                RolloutProgress::Complete => {}
                RolloutProgress::Progressing { message } => progressing.push(message),
                RolloutProgress::Failed { reason } => failed.push(reason),
            }
        }
        if !failed.is_empty() {
            RolloutProgress::Failed {
                reason: failed.join("; "),
            }
        } else if !progressing.is_empty() {
            RolloutProgress::Progressing {
                message: progressing.join("; "),
            }
        } else {
            RolloutProgress::Complete
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self, RolloutProgress::Complete)
    }

    fn progressing(message: String) -> RolloutProgress {
        RolloutProgress::Progressing { message }
    }
}

/// The only update strategy kubectl can follow for StatefulSets and DaemonSets.
const ROLLING_UPDATE: &str = "RollingUpdate";
/// Reason the deployment controller sets on the Progressing condition when
/// `progressDeadlineSeconds` passes without progress.
const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";

fn not_rolling_update() -> RolloutProgress {
    // kubectl answers this case with an error (and stops watching): the object
    // will never roll out by itself, so the change cannot be verified. Calling
    // that Complete would let a stage pass with pods still on the old revision.
    RolloutProgress::Failed {
        reason: format!("rollout status is only available for {ROLLING_UPDATE} strategy type"),
    }
}

pub fn deployment_progress(d: &Deployment) -> RolloutProgress {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return RolloutProgress::progressing(
            "Waiting for deployment spec update to be observed...".to_owned(),
        );
    }
    let timed_out = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some(PROGRESS_DEADLINE_EXCEEDED)
    });
    if timed_out {
        return RolloutProgress::Failed {
            reason: format!("deployment {name:?} exceeded its progress deadline"),
        };
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if let Some(desired) = d.spec.as_ref().and_then(|s| s.replicas)
        && updated < desired
    {
        return RolloutProgress::progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {desired} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return RolloutProgress::progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutProgress::progressing(format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    RolloutProgress::Complete
}

pub fn statefulset_progress(s: &StatefulSet) -> RolloutProgress {
    let spec = s.spec.clone().unwrap_or_default();
    let strategy = spec.update_strategy.unwrap_or_default();
    // An absent type is what the API server defaults to RollingUpdate; only
    // objects that never went through a server lack it.
    if strategy.type_.as_deref().unwrap_or(ROLLING_UPDATE) != ROLLING_UPDATE {
        return not_rolling_update();
    }
    let status = s.status.clone().unwrap_or_default();
    let observed = status.observed_generation.unwrap_or(0);
    if observed == 0 || s.metadata.generation.unwrap_or(0) > observed {
        return RolloutProgress::progressing(
            "Waiting for statefulset spec update to be observed...".to_owned(),
        );
    }
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    if let Some(desired) = spec.replicas
        && ready < desired
    {
        return RolloutProgress::progressing(format!(
            "Waiting for {} pods to be ready...",
            desired - ready
        ));
    }
    if let Some(rolling) = strategy.rolling_update {
        if let (Some(desired), Some(partition)) = (spec.replicas, rolling.partition)
            && updated < desired - partition
        {
            return RolloutProgress::progressing(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                desired - partition
            ));
        }
        return RolloutProgress::Complete;
    }
    if status.update_revision != status.current_revision {
        return RolloutProgress::progressing(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {}...",
            status.update_revision.unwrap_or_default()
        ));
    }
    RolloutProgress::Complete
}

pub fn daemonset_progress(d: &DaemonSet) -> RolloutProgress {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let strategy = d
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.clone())
        .unwrap_or_default();
    // Absent type: see statefulset_progress.
    if strategy.type_.as_deref().unwrap_or(ROLLING_UPDATE) != ROLLING_UPDATE {
        return not_rolling_update();
    }
    let status = d.status.clone().unwrap_or_default();
    if d.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return RolloutProgress::progressing(
            "Waiting for daemon set spec update to be observed...".to_owned(),
        );
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return RolloutProgress::progressing(format!(
            "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    if available < desired {
        return RolloutProgress::progressing(format!(
            "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    RolloutProgress::Complete
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy, DeploymentCondition,
        DeploymentSpec, DeploymentStatus, RollingUpdateStatefulSetStrategy, StatefulSetSpec,
        StatefulSetStatus, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn meta(generation: i64) -> ObjectMeta {
        ObjectMeta {
            name: Some("web".to_owned()),
            generation: Some(generation),
            ..ObjectMeta::default()
        }
    }

    fn progressing(p: RolloutProgress) -> String {
        match p {
            RolloutProgress::Progressing { message } => message,
            other => panic!("expected Progressing, got {other:?}"),
        }
    }

    fn failed(p: RolloutProgress) -> String {
        match p {
            RolloutProgress::Failed { reason } => reason,
            other => panic!("expected Failed, got {other:?}"),
        }
    }

    fn deployment(
        generation: i64,
        spec_replicas: Option<i32>,
        status: DeploymentStatus,
    ) -> Deployment {
        Deployment {
            metadata: meta(generation),
            spec: Some(DeploymentSpec {
                replicas: spec_replicas,
                ..DeploymentSpec::default()
            }),
            status: Some(status),
        }
    }

    fn dstatus(observed: i64, replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn deployment_complete() {
        assert_eq!(
            deployment_progress(&deployment(2, Some(3), dstatus(2, 3, 3, 3))),
            RolloutProgress::Complete
        );
    }

    #[test]
    fn deployment_stale_status_right_after_a_patch_is_not_complete() {
        // The status still shows the old spec fully rolled out, generation moved on.
        let msg = progressing(deployment_progress(&deployment(
            3,
            Some(3),
            dstatus(2, 3, 3, 3),
        )));
        assert_eq!(msg, "Waiting for deployment spec update to be observed...");
        // No status at all yet (just created).
        let fresh = Deployment {
            metadata: meta(1),
            spec: None,
            status: None,
        };
        assert!(!deployment_progress(&fresh).is_complete());
    }

    #[test]
    fn deployment_deadline_exceeded_fails() {
        let mut status = dstatus(2, 3, 1, 1);
        status.conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".to_owned(),
            status: "False".to_owned(),
            reason: Some("ProgressDeadlineExceeded".to_owned()),
            ..DeploymentCondition::default()
        }]);
        assert_eq!(
            failed(deployment_progress(&deployment(2, Some(3), status))),
            "deployment \"web\" exceeded its progress deadline"
        );
    }

    #[test]
    fn deployment_other_progressing_reason_does_not_fail() {
        let mut status = dstatus(2, 3, 3, 3);
        status.conditions = Some(vec![DeploymentCondition {
            type_: "Progressing".to_owned(),
            status: "True".to_owned(),
            reason: Some("NewReplicaSetAvailable".to_owned()),
            ..DeploymentCondition::default()
        }]);
        assert_eq!(
            deployment_progress(&deployment(2, Some(3), status)),
            RolloutProgress::Complete
        );
    }

    #[test]
    fn deployment_waiting_for_updated_replicas() {
        assert_eq!(
            progressing(deployment_progress(&deployment(
                2,
                Some(3),
                dstatus(2, 4, 1, 3)
            ))),
            "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
    }

    #[test]
    fn deployment_waiting_for_old_replicas_to_terminate() {
        assert_eq!(
            progressing(deployment_progress(&deployment(
                2,
                Some(3),
                dstatus(2, 5, 3, 3)
            ))),
            "Waiting for deployment \"web\" rollout to finish: 2 old replicas are pending termination..."
        );
    }

    #[test]
    fn deployment_waiting_for_availability() {
        assert_eq!(
            progressing(deployment_progress(&deployment(
                2,
                Some(3),
                dstatus(2, 3, 3, 1)
            ))),
            "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available..."
        );
    }

    #[test]
    fn deployment_without_spec_replicas_skips_that_check_like_kubectl() {
        assert_eq!(
            deployment_progress(&deployment(2, None, dstatus(2, 0, 0, 0))),
            RolloutProgress::Complete
        );
    }

    fn statefulset(
        generation: i64,
        replicas: Option<i32>,
        strategy: Option<StatefulSetUpdateStrategy>,
        status: StatefulSetStatus,
    ) -> StatefulSet {
        StatefulSet {
            metadata: meta(generation),
            spec: Some(StatefulSetSpec {
                replicas,
                update_strategy: strategy,
                ..StatefulSetSpec::default()
            }),
            status: Some(status),
        }
    }

    fn rolling(partition: Option<i32>) -> Option<StatefulSetUpdateStrategy> {
        Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition,
                ..Default::default()
            }),
        })
    }

    fn sstatus(
        observed: i64,
        ready: i32,
        updated: i32,
        current: &str,
        update: &str,
    ) -> StatefulSetStatus {
        StatefulSetStatus {
            observed_generation: Some(observed),
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            current_replicas: Some(ready),
            current_revision: Some(current.to_owned()),
            update_revision: Some(update.to_owned()),
            ..StatefulSetStatus::default()
        }
    }

    #[test]
    fn statefulset_on_delete_is_not_followed() {
        let on_delete = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".to_owned()),
            rolling_update: None,
        });
        let s = statefulset(1, Some(3), on_delete, sstatus(1, 3, 3, "a", "a"));
        assert_eq!(
            failed(statefulset_progress(&s)),
            "rollout status is only available for RollingUpdate strategy type"
        );
    }

    #[test]
    fn statefulset_waits_for_observed_generation() {
        let s = statefulset(4, Some(3), rolling(Some(0)), sstatus(3, 3, 3, "a", "a"));
        assert_eq!(
            progressing(statefulset_progress(&s)),
            "Waiting for statefulset spec update to be observed..."
        );
        // observedGeneration 0 never counts, even with generation 0.
        let s = statefulset(0, Some(3), rolling(Some(0)), sstatus(0, 3, 3, "a", "a"));
        assert!(!statefulset_progress(&s).is_complete());
    }

    #[test]
    fn statefulset_waits_for_ready_pods() {
        let s = statefulset(2, Some(3), rolling(Some(0)), sstatus(2, 1, 3, "a", "b"));
        assert_eq!(
            progressing(statefulset_progress(&s)),
            "Waiting for 2 pods to be ready..."
        );
    }

    #[test]
    fn statefulset_partitioned_rollout() {
        let s = statefulset(2, Some(5), rolling(Some(2)), sstatus(2, 5, 1, "a", "b"));
        assert_eq!(
            progressing(statefulset_progress(&s)),
            "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."
        );
        // Pods below the partition stay on the old revision: done once the rest are updated.
        let s = statefulset(2, Some(5), rolling(Some(2)), sstatus(2, 5, 3, "a", "b"));
        assert_eq!(statefulset_progress(&s), RolloutProgress::Complete);
    }

    #[test]
    fn statefulset_rolling_update_without_partition_details_uses_revisions() {
        let strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: None,
        });
        let s = statefulset(2, Some(3), strategy.clone(), sstatus(2, 3, 1, "a", "b"));
        assert_eq!(
            progressing(statefulset_progress(&s)),
            "waiting for statefulset rolling update to complete 1 pods at revision b..."
        );
        let s = statefulset(2, Some(3), strategy, sstatus(2, 3, 3, "b", "b"));
        assert_eq!(statefulset_progress(&s), RolloutProgress::Complete);
        // No strategy at all reads as the API default, RollingUpdate.
        let s = statefulset(2, Some(3), None, sstatus(2, 3, 3, "b", "b"));
        assert_eq!(statefulset_progress(&s), RolloutProgress::Complete);
    }

    fn daemonset(generation: i64, strategy: Option<&str>, status: DaemonSetStatus) -> DaemonSet {
        DaemonSet {
            metadata: meta(generation),
            spec: Some(DaemonSetSpec {
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: strategy.map(str::to_owned),
                    rolling_update: None,
                }),
                ..DaemonSetSpec::default()
            }),
            status: Some(status),
        }
    }

    fn dsstatus(observed: i64, desired: i32, updated: i32, available: i32) -> DaemonSetStatus {
        DaemonSetStatus {
            observed_generation: Some(observed),
            desired_number_scheduled: desired,
            updated_number_scheduled: Some(updated),
            number_available: Some(available),
            ..DaemonSetStatus::default()
        }
    }

    #[test]
    fn daemonset_branches() {
        assert_eq!(
            daemonset_progress(&daemonset(2, Some("RollingUpdate"), dsstatus(2, 4, 4, 4))),
            RolloutProgress::Complete
        );
        assert_eq!(
            daemonset_progress(&daemonset(2, None, dsstatus(2, 4, 4, 4))),
            RolloutProgress::Complete
        );
        assert_eq!(
            failed(daemonset_progress(&daemonset(
                2,
                Some("OnDelete"),
                dsstatus(2, 4, 4, 4)
            ))),
            "rollout status is only available for RollingUpdate strategy type"
        );
        assert_eq!(
            progressing(daemonset_progress(&daemonset(
                3,
                Some("RollingUpdate"),
                dsstatus(2, 4, 4, 4)
            ))),
            "Waiting for daemon set spec update to be observed..."
        );
        assert_eq!(
            progressing(daemonset_progress(&daemonset(
                2,
                Some("RollingUpdate"),
                dsstatus(2, 4, 2, 4)
            ))),
            "Waiting for daemon set \"web\" rollout to finish: 2 out of 4 new pods have been updated..."
        );
        assert_eq!(
            progressing(daemonset_progress(&daemonset(
                2,
                Some("RollingUpdate"),
                dsstatus(2, 4, 4, 3)
            ))),
            "Waiting for daemon set \"web\" rollout to finish: 3 of 4 updated pods are available..."
        );
    }

    #[test]
    fn combine_orders_failed_over_progressing_over_complete() {
        use RolloutProgress::*;
        assert_eq!(RolloutProgress::combine([]), Complete);
        assert_eq!(RolloutProgress::combine([Complete, Complete]), Complete);
        assert_eq!(
            RolloutProgress::combine([
                Complete,
                Progressing {
                    message: "a".into()
                },
                Progressing {
                    message: "b".into()
                }
            ]),
            Progressing {
                message: "a; b".into()
            }
        );
        assert_eq!(
            RolloutProgress::combine([
                Progressing {
                    message: "a".into()
                },
                Failed { reason: "x".into() }
            ]),
            Failed { reason: "x".into() }
        );
    }
}
