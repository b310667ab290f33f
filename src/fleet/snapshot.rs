//! What a cluster ran before Meridian changed it, in a form that can be put
//! back: the live objects stripped of everything the server owns.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::manifest::{Kind, describe_object};
use super::render::RELEASE_ANNOTATION;

/// The state of one cluster's objects for a set of manifests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub objects: Vec<SnapshotObject>,
}

/// One object as it was: `live` is `None` when it did not exist.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotObject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub live: Option<Value>,
}

impl SnapshotObject {
    pub fn supported_kind(&self) -> Option<Kind> {
        Kind::from_type(&self.api_version, &self.kind)
    }

    pub fn describe(&self) -> String {
        describe_object(&self.kind, &self.namespace, &self.name)
    }
}

impl Snapshot {
    /// The release the cluster runs, when every workload in the snapshot
    /// exists and carries the same `meridian.dev/release` annotation.
    ///
    /// A missing workload means "not this release": after an apply that
    /// failed half-way the workloads already updated carry the new id, and
    /// reading that as "already runs R" would skip the rest for good.
    /// Non-workload objects do not count: they carry no rollout, and apply
    /// writes them before the workloads anyway.
    pub fn release_id(&self) -> Option<Uuid> {
        let mut found = None;
        for object in self
            .objects
            .iter()
            .filter(|o| o.supported_kind().is_some_and(Kind::is_workload))
        {
            let id = object
                .live
                .as_ref()?
                .pointer(&annotation_pointer(RELEASE_ANNOTATION))?
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())?;
            match found {
                None => found = Some(id),
                Some(previous) if previous != id => return None,
                Some(_) => {}
            }
        }
        found
    }
}

/// JSON pointer to one annotation (`/` in keys escaped per RFC 6901).
fn annotation_pointer(key: &str) -> String {
    format!(
        "/metadata/annotations/{}",
        key.replace('~', "~0").replace('/', "~1")
    )
}

/// Metadata fields the server assigns; sending them back would either be
/// rejected (resourceVersion of a changed object) or fight the server.
const SERVER_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Annotations controllers write about the object's history; restoring an old
/// value would make the deployment controller's revision bookkeeping lie.
const CONTROLLER_ANNOTATIONS: [&str; 1] = ["deployment.kubernetes.io/revision"];

/// Reduces a live object to what can be re-applied with server-side apply.
/// `apiVersion` and `kind` are set explicitly because apply needs them and a
/// GET through some proxies omits them.
pub(crate) fn strip(mut live: Value, kind: Kind) -> Value {
    if let Some(object) = live.as_object_mut() {
        object.remove("status");
        object.insert(
            "apiVersion".to_owned(),
            Value::String(kind.api_version().to_owned()),
        );
        object.insert("kind".to_owned(), Value::String(kind.name().to_owned()));
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                metadata.remove(field);
            }
            let mut annotations_empty = false;
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                for annotation in CONTROLLER_ANNOTATIONS {
                    annotations.remove(annotation);
                }
                annotations_empty = annotations.is_empty();
            }
            if annotations_empty {
                metadata.remove("annotations");
            }
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workload(name: &str, release: Option<&str>) -> SnapshotObject {
        let annotations = release
            .map(|r| json!({RELEASE_ANNOTATION: r}))
            .unwrap_or(json!({}));
        SnapshotObject {
            api_version: "apps/v1".to_owned(),
            kind: "Deployment".to_owned(),
            namespace: "ns".to_owned(),
            name: name.to_owned(),
            live: Some(json!({"metadata": {"name": name, "annotations": annotations}})),
        }
    }

    #[test]
    fn strip_removes_server_fields_and_keeps_the_spec() {
        let live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7", "generation": 3,
                "creationTimestamp": "2024-01-01T00:00:00Z", "managedFields": [{"manager": "x"}],
                "labels": {"a": "b"},
                "annotations": {"deployment.kubernetes.io/revision": "4", "meridian.dev/release": "r"}
            },
            "spec": {"replicas": 2},
            "status": {"replicas": 2}
        });
        assert_eq!(
            strip(live, Kind::Deployment),
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "ns", "labels": {"a": "b"},
                             "annotations": {"meridian.dev/release": "r"}},
                "spec": {"replicas": 2}
            })
        );
        let only_revision = json!({"metadata": {"name": "c", "annotations": {"deployment.kubernetes.io/revision": "1"}}});
        assert_eq!(
            strip(only_revision, Kind::ConfigMap),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
        );
    }

    #[test]
    fn release_id_needs_every_workload_on_the_same_release() {
        let a = Uuid::from_u128(1).to_string();
        let b = Uuid::from_u128(2).to_string();
        let config_map = SnapshotObject {
            api_version: "v1".to_owned(),
            kind: "ConfigMap".to_owned(),
            namespace: "ns".to_owned(),
            name: "c".to_owned(),
            live: None,
        };
        let snap = |objects: Vec<SnapshotObject>| Snapshot { objects };
        assert_eq!(
            snap(vec![
                config_map.clone(),
                workload("x", Some(&a)),
                workload("y", Some(&a))
            ])
            .release_id(),
            Some(Uuid::from_u128(1))
        );
        assert_eq!(
            snap(vec![workload("x", Some(&a)), workload("y", Some(&b))]).release_id(),
            None
        );
        assert_eq!(
            snap(vec![workload("x", Some(&a)), workload("y", None)]).release_id(),
            None
        );
        assert_eq!(
            snap(vec![workload("x", Some("not-a-uuid"))]).release_id(),
            None
        );
        let mut absent = workload("y", Some(&a));
        absent.live = None;
        assert_eq!(
            snap(vec![workload("x", Some(&a)), absent]).release_id(),
            None
        );
        assert_eq!(snap(vec![config_map]).release_id(), None);
        assert_eq!(snap(vec![]).release_id(), None);
    }
}
