//! The object store of one simulated cluster: get, list, server-side apply,
//! delete and change feeds, with Kubernetes bookkeeping (uid,
//! resourceVersion, generation), plus the apply log and app metrics that
//! tests inspect. Synchronous and time-explicit; the HTTP layer supplies `now`.
//!
//! Statuses are computed lazily, so they are refreshed on every read; a
//! status that changed since it was last seen gets a new resourceVersion,
//! just as a controller's status write would.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::admission::{self, metadata_mut};
use super::api_error::{self, ApiError};
use super::app_metrics::{AppMetrics, ErrorRates};
use super::images;
use super::kinds::{self, Kind};
use super::records::{ApplyRecord, ClusterReport};
use super::selector::Selector;
use super::ssa::{self, Owners};
use super::stored::Stored;
use super::timefmt::k8s_time;
use super::workload::{ControllerEnv, MetricsSink, WorkloadSim};

/// Namespaces every cluster starts with, as after `kubeadm init`.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Deleted objects remembered for watches that resume from an older
/// resourceVersion.
const TOMBSTONES_KEPT: usize = 1000;

/// (kind, namespace, name); namespace is empty for cluster-scoped kinds.
type ObjectKey = (&'static str, String, String);

/// A server-side apply request, after HTTP parsing.
pub struct ApplyRequest<'a> {
    pub kind: &'static Kind,
    pub namespace: &'a str,
    pub name: &'a str,
    pub body: Value,
    pub manager: &'a str,
    pub force: bool,
    pub dry_run: bool,
}

/// A successful apply: the object as returned, and whether it was created.
pub struct ApplyResponse {
    pub object: Value,
    pub created: bool,
}

/// Which objects a LIST or WATCH covers.
pub struct Scope<'a> {
    pub kind: &'static Kind,
    /// `None` for all namespaces.
    pub namespace: Option<&'a str>,
    pub labels: &'a Selector,
    pub fields: &'a Selector,
}

/// One watch event: `ADDED`, `MODIFIED` or `DELETED` with the object.
pub type Change = (&'static str, Value);

struct Tombstone {
    rv: u64,
    key: ObjectKey,
    object: Value,
}

pub struct ClusterStore {
    cluster: String,
    region: String,
    env: ControllerEnv,
    /// Shared by the fleet so apply records order across clusters.
    seq: Arc<AtomicU64>,
    objects: BTreeMap<ObjectKey, Stored>,
    tombstones: VecDeque<Tombstone>,
    resource_version: u64,
    apply_log: Vec<ApplyRecord>,
    apply_calls: u64,
    metrics: AppMetrics,
    rates: ErrorRates,
    /// The resourceVersion after each write, for watches to wait on
    /// instead of polling.
    writes: tokio::sync::watch::Sender<u64>,
}

/// How far ahead a status is compared to call it settled.
const SETTLED_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);

fn key(kind: &'static Kind, namespace: &str, name: &str) -> ObjectKey {
    let namespace = if kind.namespaced { namespace } else { "" };
    (kind.kind, namespace.to_owned(), name.to_owned())
}

impl Scope<'_> {
    fn covers(&self, key: &ObjectKey, object: &Value) -> Result<bool, ApiError> {
        let (kind, namespace, _) = key;
        if *kind != self.kind.kind
            || self
                .namespace
                .is_some_and(|want| self.kind.namespaced && want != namespace)
        {
            return Ok(false);
        }
        Ok(self.labels.matches_labels(object) && self.fields.matches_fields(object)?)
    }
}

impl ClusterStore {
    pub fn new(
        cluster: &str,
        region: &str,
        env: ControllerEnv,
        seq: Arc<AtomicU64>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut store = Self {
            cluster: cluster.to_owned(),
            region: region.to_owned(),
            env,
            seq,
            objects: BTreeMap::new(),
            tombstones: VecDeque::new(),
            resource_version: 0,
            apply_log: Vec::new(),
            apply_calls: 0,
            metrics: AppMetrics::default(),
            rates: ErrorRates::default(),
            writes: tokio::sync::watch::Sender::new(0),
        };
        for ns in SYSTEM_NAMESPACES {
            store.resource_version += 1;
            let object = json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "uid": uuid::Uuid::new_v4().to_string(),
                    "resourceVersion": store.resource_version.to_string(),
                    "creationTimestamp": k8s_time(now),
                    "labels": {"kubernetes.io/metadata.name": ns},
                },
            });
            let mut stored = Stored::new(&kinds::NAMESPACE, object, store.resource_version);
            stored.status = stored.status_at(now, env);
            store.objects.insert(key(&kinds::NAMESPACE, "", ns), stored);
        }
        store
    }

    /// Brings one object's status up to `now`.
    fn refresh(&mut self, object_key: &ObjectKey, now: DateTime<Utc>) {
        let Some(stored) = self.objects.get(object_key) else {
            return;
        };
        if stored.settled || stored.status_fresh_until.is_some_and(|until| now < until) {
            return;
        }
        let status = stored.status_at(now, self.env);
        // Controllers only move forward; a status an hour from now that is
        // the same as now's will not change until the object is written.
        let settled = status == stored.status_at(now + SETTLED_AFTER, self.env);
        let changed = status != stored.status;
        let rv = if changed {
            self.resource_version += 1;
            Some(self.resource_version)
        } else {
            None
        };
        let fresh_until = stored.next_status_change(now, self.env);
        if let Some(stored) = self.objects.get_mut(object_key) {
            stored.settled = settled;
            stored.status_fresh_until = fresh_until;
            if let Some(rv) = rv {
                stored.status = status;
                stored.set_resource_version(rv);
            }
        }
    }

    /// Brings every object's status up to `now` (of one kind, if given).
    fn refresh_all(&mut self, kind: Option<&'static Kind>, now: DateTime<Utc>) {
        let keys: Vec<ObjectKey> = self
            .objects
            .iter()
            .filter(|((k, _, _), stored)| {
                !stored.settled
                    && stored.status_fresh_until.is_none_or(|until| until <= now)
                    && kind.is_none_or(|kind| kind.kind == *k)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for object_key in &keys {
            self.refresh(object_key, now);
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.resource_version
    }

    /// Changes whenever an object is written or deleted.
    pub fn subscribe_writes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.writes.subscribe()
    }

    /// The first instant after `now` at which an object of `kind` changes
    /// its status by itself, so a watch can sleep until then.
    pub fn next_status_change(
        &self,
        kind: &'static Kind,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        self.objects
            .iter()
            .filter(|((k, _, _), _)| *k == kind.kind)
            .filter_map(|(_, stored)| stored.next_status_change(now, self.env))
            .min()
    }

    pub fn get(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let object_key = key(kind, namespace, name);
        self.refresh(&object_key, now);
        self.objects
            .get(&object_key)
            .map(Stored::render)
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// LIST, as the `XxxList` document.
    pub fn list(&mut self, scope: &Scope<'_>, now: DateTime<Utc>) -> Result<Value, ApiError> {
        self.refresh_all(Some(scope.kind), now);
        let mut items = Vec::new();
        for (object_key, stored) in &self.objects {
            if scope.covers(object_key, &stored.object)? {
                items.push(stored.render());
            }
        }
        Ok(json!({
            "kind": format!("{}List", scope.kind.kind),
            "apiVersion": scope.kind.api_version(),
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": items,
        }))
    }

    /// Everything in `scope` that changed after resourceVersion `since`, in
    /// resourceVersion order, for WATCH.
    pub fn changes_since(
        &mut self,
        scope: &Scope<'_>,
        since: u64,
        now: DateTime<Utc>,
    ) -> Result<Vec<Change>, ApiError> {
        self.refresh_all(Some(scope.kind), now);
        let mut changes: Vec<(u64, Change)> = Vec::new();
        for (object_key, stored) in &self.objects {
            let rv = stored.resource_version();
            if rv > since && scope.covers(object_key, &stored.object)? {
                let kind = if stored.created_rv > since {
                    "ADDED"
                } else {
                    "MODIFIED"
                };
                changes.push((rv, (kind, stored.render())));
            }
        }
        for tomb in &self.tombstones {
            if tomb.rv > since && scope.covers(&tomb.key, &tomb.object)? {
                changes.push((tomb.rv, ("DELETED", tomb.object.clone())));
            }
        }
        changes.sort_by_key(|(rv, _)| *rv);
        Ok(changes.into_iter().map(|(_, change)| change).collect())
    }

    pub fn apply(
        &mut self,
        req: ApplyRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<ApplyResponse, ApiError> {
        self.apply_calls += 1;
        let ApplyRequest {
            kind,
            namespace,
            name,
            body,
            manager,
            force,
            dry_run,
        } = req;
        admission::validate(kind, namespace, name, &body)?;
        if kind.namespaced
            && !self
                .objects
                .contains_key(&key(&kinds::NAMESPACE, "", namespace))
        {
            return Err(ApiError::namespace_not_found(namespace));
        }
        let object_key = key(kind, namespace, name);
        self.refresh(&object_key, now);
        let existing = self.objects.get(&object_key);
        if let Some(wanted) = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && existing
                .map(|s| s.resource_version().to_string())
                .as_deref()
                != Some(wanted)
        {
            return Err(ApiError::stale_resource_version(kind, name));
        }

        let empty = Owners::new();
        let applied = ssa::apply(
            existing.map(|s| &s.object),
            existing.map_or(&empty, |s| &s.owners),
            &body,
            manager,
            force,
        )
        .map_err(|conflicts| conflict_error(kind, name, &conflicts))?;

        let mut object = applied.object;
        admission::set_identity(kind, namespace, name, &mut object);
        admission::apply_defaults(kind, &mut object, self.resource_version);
        let content_changed = existing.is_none_or(|s| s.object != object);
        let owners_changed = existing.is_none_or(|s| s.owners != applied.owners);
        if let Some(stored) = existing
            && !content_changed
            && !owners_changed
        {
            return Ok(ApplyResponse {
                object: stored.render(),
                created: false,
            });
        }

        let created = existing.is_none();
        let spec_changed = existing.is_some_and(|s| s.object.get("spec") != object.get("spec"));
        let rv = self.resource_version + 1;
        let mut stored = existing
            .cloned()
            .unwrap_or_else(|| Stored::new(kind, Value::Null, rv));
        {
            let meta = metadata_mut(&mut object);
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
            if created {
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(k8s_time(now)));
            }
            if kind.workload.is_some() && (created || spec_changed) {
                let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), json!(generation + 1));
            }
        }
        stored.replace_object(object, rv);
        stored.owners = applied.owners;
        stored.manager_times.insert(manager.to_owned(), now);

        if !dry_run && let Some(workload) = kind.workload {
            match &mut stored.workload {
                None => {
                    stored.workload =
                        Some(WorkloadSim::create(workload, &stored.object, now, self.env))
                }
                Some(sim) if spec_changed => {
                    let sink = MetricsSink {
                        metrics: &mut self.metrics,
                        rates: &self.rates,
                        namespace,
                        app: name,
                    };
                    sim.respec(name, &stored.object, now, self.env, sink);
                }
                Some(_) => {}
            }
        }
        stored.status = stored.status_at(now, self.env);
        let object = stored.render();
        if dry_run {
            return Ok(ApplyResponse { object, created });
        }

        self.resource_version = rv;
        if content_changed {
            self.apply_log.push(ApplyRecord {
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
                at: now,
                kind: kind.kind.to_owned(),
                namespace: object_key.1.clone(),
                name: name.to_owned(),
                images: images::of_object(&stored.object),
                field_manager: manager.to_owned(),
            });
        }
        stored.status_may_change();
        self.objects.insert(object_key, stored);
        self.writes.send_replace(self.resource_version);
        Ok(ApplyResponse { object, created })
    }

    /// Deletes at once (no finalizers); a namespace takes its objects along.
    pub fn delete(
        &mut self,
        kind: &'static Kind,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        if kind.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(
                kind,
                name,
                "this namespace may not be deleted",
            ));
        }
        let object_key = key(kind, namespace, name);
        if !self.objects.contains_key(&object_key) {
            return Err(ApiError::not_found(kind, name));
        }
        // Traffic served until now still counts.
        self.advance_metrics(now);
        let mut doomed = vec![object_key.clone()];
        if kind.kind == "Namespace" {
            doomed.extend(self.objects.keys().filter(|(_, ns, _)| ns == name).cloned());
        }
        let mut uid = String::new();
        for doomed_key in doomed {
            self.refresh(&doomed_key, now);
            let Some(stored) = self.objects.remove(&doomed_key) else {
                continue;
            };
            self.resource_version += 1;
            if doomed_key == object_key {
                uid = stored
                    .object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
            }
            let mut last = stored.render();
            metadata_mut(&mut last).insert(
                "resourceVersion".into(),
                json!(self.resource_version.to_string()),
            );
            self.tombstones.push_back(Tombstone {
                rv: self.resource_version,
                key: doomed_key,
                object: last,
            });
            if self.tombstones.len() > TOMBSTONES_KEPT {
                self.tombstones.pop_front();
            }
        }
        self.writes.send_replace(self.resource_version);
        Ok(api_error::delete_success(kind, name, &uid))
    }

    fn advance_metrics(&mut self, now: DateTime<Utc>) {
        for ((_, namespace, name), stored) in &mut self.objects {
            if let Some(sim) = &mut stored.workload {
                let sink = MetricsSink {
                    metrics: &mut self.metrics,
                    rates: &self.rates,
                    namespace,
                    app: name,
                };
                sim.advance_metrics(now, self.env, sink);
            }
        }
    }

    /// Prometheus text of the app metrics, integrated up to `now`.
    pub fn metrics_text(&mut self, now: DateTime<Utc>) -> String {
        self.advance_metrics(now);
        self.metrics.render(&self.cluster, &self.region)
    }

    /// The error rate a Deployment's current images serve, with those
    /// images; `None` when there is no such Deployment.
    pub fn app_error_rate(&self, namespace: &str, name: &str) -> Option<(f64, Vec<String>)> {
        let images = self.images("Deployment", namespace, name)?;
        Some((self.rates.rate(&images), images))
    }

    /// Overrides the app error rate of matching images from `now` on.
    pub fn set_error_rate(&mut self, image_substring: &str, rate: f64, now: DateTime<Utc>) {
        self.advance_metrics(now);
        self.rates.set(image_substring, rate);
    }

    /// Takes every pod of a workload away at `now` (see
    /// [`WorkloadSim::lose_pods`]); false when there is no such workload.
    pub fn lose_pods(
        &mut self,
        kind: &str,
        namespace: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let Some(kind) = kinds::by_name(kind) else {
            return false;
        };
        let object_key = key(kind, namespace, name);
        self.refresh(&object_key, now);
        let Some(stored) = self.objects.get_mut(&object_key) else {
            return false;
        };
        let Some(workload) = &mut stored.workload else {
            return false;
        };
        let sink = MetricsSink {
            metrics: &mut self.metrics,
            rates: &self.rates,
            namespace,
            app: name,
        };
        workload.lose_pods(name, &stored.object, now, self.env, sink);
        stored.status_may_change();
        // Watches wait for the next foreseen change; this one was not.
        self.writes.send_replace(self.resource_version);
        true
    }

    pub fn apply_log(&self) -> Vec<ApplyRecord> {
        self.apply_log.clone()
    }

    pub fn apply_calls(&self) -> u64 {
        self.apply_calls
    }

    /// Current container images; `kind` as people write it (`Deployment`,
    /// `deploy`, `deployments`).
    pub fn images(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<String>> {
        let kind = kinds::by_name(kind)?;
        self.objects
            .get(&key(kind, namespace, name))
            .map(|s| images::of_object(&s.object))
    }

    pub fn report(&mut self, now: DateTime<Utc>) -> ClusterReport {
        self.refresh_all(None, now);
        let objects = self
            .objects
            .iter()
            .map(|((_, namespace, _), stored)| stored.summary(namespace))
            .collect();
        ClusterReport {
            apply_calls: self.apply_calls,
            apply_log: self.apply_log.clone(),
            objects,
        }
    }
}

/// The 409 for SSA conflicts, with one cause per contested field.
fn conflict_error(kind: &'static Kind, name: &str, conflicts: &[ssa::Conflict]) -> ApiError {
    let api_version = kind.api_version();
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {:?} using {api_version}", c.manager),
                "field": ssa::display_path(&c.path),
            })
        })
        .collect();
    ApiError::apply_conflict(
        kind,
        name,
        ssa::conflict_message(conflicts, &api_version),
        causes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pods::Timing;
    use axum::http::StatusCode;
    use chrono::TimeDelta;

    fn store() -> ClusterStore {
        let env = ControllerEnv {
            timing: Timing {
                ready_after: TimeDelta::milliseconds(100),
                observe_delay: TimeDelta::zero(),
            },
            daemonset_nodes: 3,
        };
        ClusterStore::new(
            "c1",
            "eu",
            env,
            Arc::new(AtomicU64::new(0)),
            DateTime::<Utc>::UNIX_EPOCH,
        )
    }

    fn deploy() -> &'static Kind {
        kinds::by_name("Deployment").expect("kind")
    }

    fn body(image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}
        })
    }

    fn apply(
        s: &mut ClusterStore,
        b: Value,
        manager: &str,
        ms: i64,
    ) -> Result<ApplyResponse, ApiError> {
        let req = ApplyRequest {
            kind: deploy(),
            namespace: "default",
            name: "web",
            body: b,
            manager,
            force: false,
            dry_run: false,
        };
        s.apply(
            req,
            DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms),
        )
    }

    #[test]
    fn create_update_and_noop_bookkeeping() {
        let mut s = store();
        let created = apply(&mut s, body("app:v1"), "meridian", 0).expect("create");
        assert!(created.created);
        assert_eq!(created.object["metadata"]["generation"], 1);
        assert_eq!(created.object["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            created.object["metadata"]["managedFields"][0]["manager"],
            "meridian"
        );
        let rv1 = created.object["metadata"]["resourceVersion"].clone();

        let same = apply(&mut s, body("app:v1"), "meridian", 10).expect("noop");
        assert_eq!(same.object["metadata"]["resourceVersion"], rv1);
        assert_eq!(s.apply_log().len(), 1);
        assert_eq!(s.apply_calls(), 2);

        let updated = apply(&mut s, body("app:v2"), "meridian", 20).expect("update");
        assert_eq!(updated.object["metadata"]["generation"], 2);
        assert_eq!(s.apply_log().len(), 2);
        assert_eq!(s.apply_log()[1].images, vec!["app:v2".to_owned()]);
        assert_eq!(
            s.images("deploy", "default", "web"),
            Some(vec!["app:v2".to_owned()])
        );
    }

    #[test]
    fn refuses_bad_bodies_like_the_api_server() {
        let mut s = store();
        let mut no_name = body("app:v1");
        no_name["metadata"]
            .as_object_mut()
            .map(|m| m.remove("name"));
        assert_eq!(
            apply(&mut s, no_name, "m", 0).err().map(|e| e.code),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let mut other_ns = body("app:v1");
        other_ns["metadata"]["namespace"] = json!("elsewhere");
        assert_eq!(
            apply(&mut s, other_ns, "m", 0).err().map(|e| e.reason),
            Some("Invalid")
        );
        let req = ApplyRequest {
            kind: deploy(),
            namespace: "missing",
            name: "web",
            body: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            manager: "m",
            force: false,
            dry_run: false,
        };
        let err = s
            .apply(req, DateTime::<Utc>::UNIX_EPOCH)
            .err()
            .map(|e| e.message);
        assert_eq!(err.as_deref(), Some("namespaces \"missing\" not found"));
        assert_eq!(s.apply_calls(), 3);
        assert!(s.apply_log().is_empty());
    }

    #[test]
    fn deleting_a_namespace_takes_its_objects() {
        let mut s = store();
        let ns = &kinds::NAMESPACE;
        let req = ApplyRequest {
            kind: ns,
            namespace: "",
            name: "shop",
            body: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            manager: "m",
            force: false,
            dry_run: false,
        };
        s.apply(req, DateTime::<Utc>::UNIX_EPOCH)
            .expect("namespace");
        let mut b = body("app:v1");
        b["metadata"]["namespace"] = json!("shop");
        let req = ApplyRequest {
            kind: deploy(),
            namespace: "shop",
            name: "web",
            body: b,
            manager: "m",
            force: false,
            dry_run: false,
        };
        s.apply(req, DateTime::<Utc>::UNIX_EPOCH)
            .expect("deployment");
        let now = DateTime::<Utc>::UNIX_EPOCH;
        s.delete(ns, "", "shop", now).expect("delete");
        assert!(s.get(deploy(), "shop", "web", now).is_err());
        assert!(s.delete(ns, "", "default", now).is_err());
    }
}
