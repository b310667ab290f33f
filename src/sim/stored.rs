//! One stored object: its applied content, field ownership, simulated
//! controller, last written status, and how it renders on the wire.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::admission::metadata_mut;
use super::images;
use super::kinds::Kind;
use super::records::ObjectSummary;
use super::ssa::{self, Owners};
use super::timefmt::k8s_time;
use super::workload::{ControllerEnv, WorkloadSim};

#[derive(Debug, Clone)]
pub struct Stored {
    pub kind: &'static Kind,
    /// The object without `status` and `managedFields`, which are kept
    /// apart and added on render.
    pub object: Value,
    pub owners: Owners,
    /// When each manager last applied; the `time` of its managedFields entry.
    pub manager_times: BTreeMap<String, DateTime<Utc>>,
    pub workload: Option<WorkloadSim>,
    /// The status as last observed; changes of it bump the resourceVersion.
    pub status: Option<Value>,
    /// The resourceVersion the object was created at (watch ADDED vs MODIFIED).
    pub created_rv: u64,
    /// The status will not change again until the object does, so looking
    /// at it (every time a watch looks) can be skipped.
    pub settled: bool,
    /// The status shown is right until this instant (the next foreseen
    /// change), so refreshing it before then can be skipped.
    pub status_fresh_until: Option<DateTime<Utc>>,
    /// `metadata.resourceVersion` as a number: watches compare it for every
    /// object each time they look, too often to parse it out of the JSON.
    rv: u64,
}

impl Stored {
    pub fn new(kind: &'static Kind, object: Value, created_rv: u64) -> Self {
        Self {
            kind,
            object,
            owners: Owners::new(),
            manager_times: BTreeMap::new(),
            workload: None,
            status: None,
            created_rv,
            settled: false,
            status_fresh_until: None,
            rv: created_rv,
        }
    }

    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn set_resource_version(&mut self, rv: u64) {
        self.rv = rv;
        metadata_mut(&mut self.object).insert("resourceVersion".into(), json!(rv.to_string()));
    }

    /// Replaces the object, whose metadata already carries resourceVersion `rv`.
    pub fn replace_object(&mut self, object: Value, rv: u64) {
        self.object = object;
        self.rv = rv;
    }

    /// The status the kind's controller would show at `now`.
    pub fn status_at(&self, now: DateTime<Utc>, env: ControllerEnv) -> Option<Value> {
        match (&self.workload, self.kind.kind) {
            (Some(w), _) => Some(w.status(self.name(), &self.object, now, env)),
            (None, "Service") => Some(json!({"loadBalancer": {}})),
            (None, "Namespace") => Some(json!({"phase": "Active"})),
            _ => None,
        }
    }

    /// The object was written, or its pods changed by hand: what the
    /// status will be must be worked out again.
    pub fn status_may_change(&mut self) {
        self.settled = false;
        self.status_fresh_until = None;
    }

    /// When the status may next change by itself (see
    /// [`WorkloadSim::next_change_after`]); `None` for settled objects.
    pub fn next_status_change(
        &self,
        now: DateTime<Utc>,
        env: ControllerEnv,
    ) -> Option<DateTime<Utc>> {
        if self.settled {
            return None;
        }
        self.workload
            .as_ref()
            .and_then(|w| w.next_change_after(&self.object, now, env))
    }

    /// The object as the API returns it, with managedFields and status.
    pub fn render(&self) -> Value {
        let mut object = self.object.clone();
        let managers = ssa::managers(&self.owners);
        let mut entries: Vec<(&DateTime<Utc>, &String)> = self
            .manager_times
            .iter()
            .filter(|(m, _)| managers.contains(*m))
            .map(|(m, t)| (t, m))
            .collect();
        entries.sort();
        let managed: Vec<Value> = entries
            .into_iter()
            .map(|(time, manager)| {
                json!({
                    "manager": manager,
                    "operation": "Apply",
                    "apiVersion": self.kind.api_version(),
                    "time": k8s_time(*time),
                    "fieldsType": "FieldsV1",
                    "fieldsV1": ssa::fields_v1(&self.owners, manager),
                })
            })
            .collect();
        if !managed.is_empty() {
            metadata_mut(&mut object).insert("managedFields".into(), Value::Array(managed));
        }
        if let (Some(status), Some(map)) = (&self.status, object.as_object_mut()) {
            map.insert("status".into(), status.clone());
        }
        object
    }

    pub fn summary(&self, namespace: &str) -> ObjectSummary {
        ObjectSummary {
            kind: self.kind.kind.to_owned(),
            namespace: namespace.to_owned(),
            name: self.name().to_owned(),
            generation: self
                .object
                .pointer("/metadata/generation")
                .and_then(Value::as_i64),
            images: images::of_object(&self.object),
            status: self.status.clone().unwrap_or(Value::Null),
        }
    }
}
