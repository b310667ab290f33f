//! The object store of one simulated cluster: get, list, server-side apply
//! and delete with Kubernetes bookkeeping (uid, resourceVersion, generation,
//! managedFields), plus the apply log and app metrics that tests inspect.
//! Synchronous and time-explicit; the HTTP layer supplies `now`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::api_error::{self, ApiError};
use super::app_metrics::{AppMetrics, ErrorRates};
use super::images;
use super::kinds::{self, Kind};
use super::records::{ApplyRecord, ClusterReport, ObjectSummary};
use super::selector::Selector;
use super::ssa::{self, Owners};
use super::timefmt::k8s_time;
use super::workload::{ControllerEnv, MetricsSink, WorkloadSim};

/// Namespaces every cluster starts with, as after `kubeadm init`.
const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// (kind, namespace, name); namespace is empty for cluster-scoped kinds.
type ObjectKey = (&'static str, String, String);

#[derive(Debug, Clone)]
struct Stored {
    kind: &'static Kind,
    /// The object without `status` and `managedFields`, which are rendered
    /// on read.
    object: Value,
    owners: Owners,
    manager_times: BTreeMap<String, DateTime<Utc>>,
    workload: Option<WorkloadSim>,
}

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

pub struct ClusterStore {
    cluster: String,
    region: String,
    env: ControllerEnv,
    /// Shared by the fleet so apply records order across clusters.
    seq: Arc<AtomicU64>,
    objects: BTreeMap<ObjectKey, Stored>,
    resource_version: u64,
    apply_log: Vec<ApplyRecord>,
    apply_calls: u64,
    metrics: AppMetrics,
    rates: ErrorRates,
}

fn key(kind: &'static Kind, namespace: &str, name: &str) -> ObjectKey {
    let namespace = if kind.namespaced { namespace } else { "" };
    (kind.kind, namespace.to_owned(), name.to_owned())
}

fn namespace_kind() -> &'static Kind {
    &kinds::NAMESPACE
}

impl ClusterStore {
    pub fn new(cluster: &str, region: &str, env: ControllerEnv, seq: Arc<AtomicU64>, now: DateTime<Utc>) -> Self {
        let mut store = Self {
            cluster: cluster.to_owned(),
            region: region.to_owned(),
            env,
            seq,
            objects: BTreeMap::new(),
            resource_version: 0,
            apply_log: Vec::new(),
            apply_calls: 0,
            metrics: AppMetrics::default(),
            rates: ErrorRates::default(),
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
            let stored = Stored {
                kind: namespace_kind(),
                object,
                owners: Owners::new(),
                manager_times: BTreeMap::new(),
                workload: None,
            };
            store.objects.insert(key(namespace_kind(), "", ns), stored);
        }
        store
    }

    fn render(&self, stored: &Stored, now: DateTime<Utc>) -> Value {
        let mut object = stored.object.clone();
        let mut entries: Vec<(&DateTime<Utc>, &String)> =
            stored.manager_times.iter().map(|(m, t)| (t, m)).collect();
        entries.sort();
        let managed: Vec<Value> = entries
            .into_iter()
            .filter(|(_, m)| ssa::managers(&stored.owners).contains(*m))
            .map(|(time, manager)| {
                json!({
                    "manager": manager,
                    "operation": "Apply",
                    "apiVersion": stored.kind.api_version(),
                    "time": k8s_time(*time),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": ssa::fields_v1(&stored.owners, manager),
                })
            })
            .collect();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
            && !managed.is_empty()
        {
            meta.insert("managedFields".into(), Value::Array(managed));
        }
        if let (Some(status), Some(map)) = (self.status_of(stored, now), object.as_object_mut()) {
            map.insert("status".into(), status);
        }
        object
    }

    fn status_of(&self, stored: &Stored, now: DateTime<Utc>) -> Option<Value> {
        let name = stored.object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        match (&stored.workload, stored.kind.kind) {
            (Some(w), _) => Some(w.status(name, &stored.object, now, self.env)),
            (None, "Service") => Some(json!({"loadBalancer": {}})),
            (None, "Namespace") => Some(json!({"phase": "Active"})),
            _ => None,
        }
    }

    pub fn get(&self, kind: &'static Kind, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<Value, ApiError> {
        self.objects
            .get(&key(kind, namespace, name))
            .map(|s| self.render(s, now))
            .ok_or_else(|| ApiError::not_found(kind, name))
    }

    /// LIST in one namespace, or across all when `namespace` is `None`.
    pub fn list(
        &self,
        kind: &'static Kind,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        now: DateTime<Utc>,
    ) -> Result<Value, ApiError> {
        let mut items = Vec::new();
        for ((k, ns, _), stored) in &self.objects {
            if *k != kind.kind || namespace.is_some_and(|want| kind.namespaced && want != ns) {
                continue;
            }
            if labels.matches_labels(&stored.object) && fields.matches_fields(&stored.object)? {
                items.push(self.render(stored, now));
            }
        }
        Ok(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": {"resourceVersion": self.resource_version.to_string()},
            "items": items,
        }))
    }

    pub fn apply(&mut self, req: ApplyRequest<'_>, now: DateTime<Utc>) -> Result<ApplyResponse, ApiError> {
        self.apply_calls += 1;
        let ApplyRequest { kind, namespace, name, body, manager, force, dry_run } = req;
        validate(kind, namespace, name, &body)?;
        if kind.namespaced && !self.objects.contains_key(&key(namespace_kind(), "", namespace)) {
            return Err(ApiError::namespace_not_found(namespace));
        }
        let object_key = key(kind, namespace, name);
        let existing = self.objects.get(&object_key);
        if let Some(wanted) = body.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
            let current = existing.and_then(|s| s.object.pointer("/metadata/resourceVersion"));
            if current.and_then(Value::as_str) != Some(wanted) {
                return Err(ApiError::stale_resource_version(kind, name));
            }
        }

        let empty = Owners::new();
        let applied = ssa::apply(
            existing.map(|s| &s.object),
            existing.map_or(&empty, |s| &s.owners),
            &body,
            manager,
            force,
        )
        .map_err(|conflicts| {
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
            ApiError::apply_conflict(kind, name, ssa::conflict_message(&conflicts, &api_version), causes)
        })?;

        let mut object = applied.object;
        set_identity(kind, namespace, name, &mut object);
        apply_defaults(kind, &mut object, self.resource_version);
        let content_changed = existing.is_none_or(|s| s.object != object);
        let owners_changed = existing.is_none_or(|s| s.owners != applied.owners);
        if let Some(stored) = existing
            && !content_changed
            && !owners_changed
        {
            return Ok(ApplyResponse { object: self.render(stored, now), created: false });
        }

        let created = existing.is_none();
        let spec_changed = existing.is_some_and(|s| s.object.get("spec") != object.get("spec"));
        let mut stored = existing.cloned().unwrap_or_else(|| Stored {
            kind,
            object: Value::Null,
            owners: Owners::new(),
            manager_times: BTreeMap::new(),
            workload: None,
        });
        let resource_version = self.resource_version + 1;
        {
            let meta = metadata_mut(&mut object);
            meta.insert("resourceVersion".into(), json!(resource_version.to_string()));
            if created {
                meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
                meta.insert("creationTimestamp".into(), json!(k8s_time(now)));
            }
            if kind.workload.is_some() {
                let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                if created || spec_changed {
                    meta.insert("generation".into(), json!(generation + 1));
                }
            }
        }
        stored.object = object;
        stored.owners = applied.owners;
        stored.manager_times.insert(manager.to_owned(), now);
        stored.manager_times.retain(|m, _| ssa::managers(&stored.owners).contains(m));

        if dry_run {
            return Ok(ApplyResponse { object: self.render(&stored, now), created });
        }

        if let Some(workload) = kind.workload {
            match &mut stored.workload {
                None => stored.workload = Some(WorkloadSim::create(workload, &stored.object, now, self.env)),
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
        self.resource_version = resource_version;
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
        let object = self.render(&stored, now);
        self.objects.insert(object_key, stored);
        Ok(ApplyResponse { object, created })
    }

    /// Deletes at once (no finalizers); a namespace takes its objects along.
    pub fn delete(&mut self, kind: &'static Kind, namespace: &str, name: &str, now: DateTime<Utc>) -> Result<Value, ApiError> {
        if kind.kind == "Namespace" && SYSTEM_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(kind, name, "this namespace may not be deleted"));
        }
        let object_key = key(kind, namespace, name);
        if !self.objects.contains_key(&object_key) {
            return Err(ApiError::not_found(kind, name));
        }
        // Traffic served until now still counts.
        self.advance_metrics(now);
        let removed = self.objects.remove(&object_key);
        if kind.kind == "Namespace" {
            self.objects.retain(|(k, ns, _), _| ns != name || *k == "Namespace");
        }
        self.resource_version += 1;
        let uid = removed
            .as_ref()
            .and_then(|s| s.object.pointer("/metadata/uid"))
            .and_then(Value::as_str)
            .unwrap_or("");
        Ok(api_error::delete_success(kind, name, uid))
    }

    fn advance_metrics(&mut self, now: DateTime<Utc>) {
        for ((_, namespace, name), stored) in &mut self.objects {
            if let Some(sim) = &mut stored.workload {
                let sink = MetricsSink { metrics: &mut self.metrics, rates: &self.rates, namespace, app: name };
                sim.advance_metrics(now, self.env, sink);
            }
        }
    }

    /// Prometheus text of the app metrics, integrated up to `now`.
    pub fn metrics_text(&mut self, now: DateTime<Utc>) -> String {
        self.advance_metrics(now);
        self.metrics.render(&self.cluster, &self.region)
    }

    /// Overrides the app error rate of matching images from `now` on.
    pub fn set_error_rate(&mut self, image_substring: &str, rate: f64, now: DateTime<Utc>) {
        self.advance_metrics(now);
        self.rates.set(image_substring, rate);
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

    pub fn report(&self, now: DateTime<Utc>) -> ClusterReport {
        let objects = self
            .objects
            .iter()
            .map(|((kind, namespace, name), stored)| ObjectSummary {
                kind: (*kind).to_owned(),
                namespace: namespace.clone(),
                name: name.clone(),
                generation: stored.object.pointer("/metadata/generation").and_then(Value::as_i64),
                images: images::of_object(&stored.object),
                status: self.status_of(stored, now).unwrap_or(Value::Null),
            })
            .collect();
        ClusterReport { apply_calls: self.apply_calls, apply_log: self.apply_log.clone(), objects }
    }
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    let Some(map) = object.as_object_mut() else {
        unreachable!("the value was just made an object")
    };
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let Some(meta) = meta.as_object_mut() else {
        unreachable!("metadata was just made an object")
    };
    meta
}

/// The identity fields come from the URL, whatever the body held.
fn set_identity(kind: &'static Kind, namespace: &str, name: &str, object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("apiVersion".into(), json!(kind.api_version()));
        map.insert("kind".into(), json!(kind.kind));
    }
    let meta = metadata_mut(object);
    meta.insert("name".into(), json!(name));
    if kind.namespaced {
        meta.insert("namespace".into(), json!(namespace));
    } else {
        meta.remove("namespace");
    }
}

/// Rejects bodies a real API server would refuse, with the same codes.
fn validate(kind: &'static Kind, namespace: &str, name: &str, body: &Value) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of an apply patch must be a JSON or YAML object"));
    }
    let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let body_kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    if api_version.is_empty() || body_kind.is_empty() {
        return Err(ApiError::bad_request("Object 'Kind' or 'apiVersion' is missing in the apply patch"));
    }
    if api_version != kind.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if body_kind != kind.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({body_kind}) does not match the expected kind ({})",
            kind.kind
        )));
    }
    let body_name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if body_name.is_empty() {
        return Err(ApiError::invalid(kind, name, "metadata.name", "Required value: name is required"));
    }
    if body_name != name {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.name",
            &format!("Invalid value: {body_name:?}: must match the name in the request URL ({name:?})"),
        ));
    }
    if kind.namespaced
        && let Some(body_ns) = body.pointer("/metadata/namespace").and_then(Value::as_str)
        && !body_ns.is_empty()
        && body_ns != namespace
    {
        return Err(ApiError::invalid(
            kind,
            name,
            "metadata.namespace",
            &format!("Invalid value: {body_ns:?}: must match the namespace in the request URL ({namespace:?})"),
        ));
    }
    Ok(())
}

/// The server-side defaults that matter to rollouts and to clients reading
/// objects back. Nobody owns a defaulted field, so applies never conflict on it.
fn apply_defaults(kind: &'static Kind, object: &mut Value, resource_version: u64) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let spec_default = |map: &mut Map<String, Value>, field: &str, value: Value| {
        if let Some(spec) = map.entry("spec").or_insert_with(|| json!({})).as_object_mut() {
            spec.entry(field).or_insert(value);
        }
    };
    match kind.kind {
        "Deployment" => {
            spec_default(map, "replicas", json!(1));
            spec_default(map, "progressDeadlineSeconds", json!(super::status::DEFAULT_PROGRESS_DEADLINE_SECONDS));
            spec_default(map, "revisionHistoryLimit", json!(10));
        }
        "StatefulSet" => spec_default(map, "replicas", json!(1)),
        "Service" => {
            spec_default(map, "type", json!("ClusterIP"));
            let external = map.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
            if !external {
                // A stable, plausible address from the service-CIDR.
                let ip = format!("10.96.{}.{}", (resource_version / 250) % 250, resource_version % 250 + 1);
                spec_default(map, "clusterIP", json!(ip.clone()));
                spec_default(map, "clusterIPs", json!([ip]));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pods::Timing;
    use axum::http::StatusCode;
    use chrono::TimeDelta;

    fn store() -> ClusterStore {
        let env = ControllerEnv {
            timing: Timing { ready_after: TimeDelta::milliseconds(100), observe_delay: TimeDelta::zero() },
            daemonset_nodes: 3,
        };
        ClusterStore::new("c1", "eu", env, Arc::new(AtomicU64::new(0)), DateTime::<Utc>::UNIX_EPOCH)
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

    fn apply(s: &mut ClusterStore, b: Value, manager: &str, ms: i64) -> Result<ApplyResponse, ApiError> {
        let req = ApplyRequest {
            kind: deploy(),
            namespace: "default",
            name: "web",
            body: b,
            manager,
            force: false,
            dry_run: false,
        };
        s.apply(req, DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms))
    }

    #[test]
    fn create_update_and_noop_bookkeeping() {
        let mut s = store();
        let created = apply(&mut s, body("app:v1"), "meridian", 0).expect("create");
        assert!(created.created);
        assert_eq!(created.object["metadata"]["generation"], 1);
        assert_eq!(created.object["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(created.object["metadata"]["managedFields"][0]["manager"], "meridian");
        let rv1 = created.object["metadata"]["resourceVersion"].clone();

        let same = apply(&mut s, body("app:v1"), "meridian", 10).expect("noop");
        assert_eq!(same.object["metadata"]["resourceVersion"], rv1);
        assert_eq!(s.apply_log().len(), 1);
        assert_eq!(s.apply_calls(), 2);

        let updated = apply(&mut s, body("app:v2"), "meridian", 20).expect("update");
        assert_eq!(updated.object["metadata"]["generation"], 2);
        assert_eq!(s.apply_log().len(), 2);
        assert_eq!(s.apply_log()[1].images, vec!["app:v2".to_owned()]);
        assert_eq!(s.images("deploy", "default", "web"), Some(vec!["app:v2".to_owned()]));
    }

    #[test]
    fn refuses_bad_bodies_like_the_api_server() {
        let mut s = store();
        let mut no_name = body("app:v1");
        no_name["metadata"].as_object_mut().map(|m| m.remove("name"));
        assert_eq!(apply(&mut s, no_name, "m", 0).err().map(|e| e.code), Some(StatusCode::UNPROCESSABLE_ENTITY));
        let mut other_ns = body("app:v1");
        other_ns["metadata"]["namespace"] = json!("elsewhere");
        assert_eq!(apply(&mut s, other_ns, "m", 0).err().map(|e| e.reason), Some("Invalid"));
        let req = ApplyRequest {
            kind: deploy(),
            namespace: "missing",
            name: "web",
            body: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
            manager: "m",
            force: false,
            dry_run: false,
        };
        let err = s.apply(req, DateTime::<Utc>::UNIX_EPOCH).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("namespaces \"missing\" not found"));
        assert_eq!(s.apply_calls(), 3);
        assert!(s.apply_log().is_empty());
    }

    #[test]
    fn deleting_a_namespace_takes_its_objects() {
        let mut s = store();
        let ns = namespace_kind();
        let req = ApplyRequest {
            kind: ns,
            namespace: "",
            name: "shop",
            body: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            manager: "m",
            force: false,
            dry_run: false,
        };
        s.apply(req, DateTime::<Utc>::UNIX_EPOCH).expect("namespace");
        let mut b = body("app:v1");
        b["metadata"]["namespace"] = json!("shop");
        let req = ApplyRequest { kind: deploy(), namespace: "shop", name: "web", body: b, manager: "m", force: false, dry_run: false };
        s.apply(req, DateTime::<Utc>::UNIX_EPOCH).expect("deployment");
        let now = DateTime::<Utc>::UNIX_EPOCH;
        s.delete(ns, "", "shop", now).expect("delete");
        assert!(s.get(deploy(), "shop", "web", now).is_err());
        assert!(s.delete(ns, "", "default", now).is_err());
    }
}
