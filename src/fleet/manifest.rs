//! The rendered-object type and the fixed set of kinds Meridian may touch.
//!
//! The kinds are a closed list on purpose: every one of them has a static
//! `ApiResource`, so talking to a cluster never needs a discovery round-trip,
//! and nothing a template author writes can make Meridian create arbitrary
//! resources (RBAC objects, CRDs, ...) in a production cluster.

use kube::core::ApiResource;
use serde::{Deserialize, Serialize};

/// One rendered Kubernetes object, as JSON, ready for server-side apply.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest(pub serde_json::Value);

impl Manifest {
    /// `apiVersion`, or `""` when the object has none (render never produces that).
    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"]).unwrap_or_default()
    }

    /// `kind`, or `""` when the object has none (render never produces that).
    pub fn kind(&self) -> &str {
        self.str_at(&["kind"]).unwrap_or_default()
    }

    /// `metadata.name`, or `""` when the object has none (render never produces that).
    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"]).unwrap_or_default()
    }

    /// `metadata.namespace`; render always sets it.
    pub fn namespace(&self) -> Option<&str> {
        self.str_at(&["metadata", "namespace"])
    }

    /// The supported kind this object is, if it is one.
    pub fn supported_kind(&self) -> Option<Kind> {
        Kind::from_type(self.api_version(), self.kind())
    }

    /// `Kind namespace/name`, the way error messages and logs name an object.
    pub fn describe(&self) -> String {
        describe_object(
            self.kind(),
            self.namespace().unwrap_or_default(),
            self.name(),
        )
    }

    fn str_at(&self, path: &[&str]) -> Option<&str> {
        path.iter()
            .try_fold(&self.0, |value, key| value.get(key))
            .and_then(serde_json::Value::as_str)
    }
}

/// `Kind namespace/name`, shared so every message names objects the same way.
pub fn describe_object(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind} {namespace}/{name}")
}

/// The kinds Meridian renders, applies and observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ConfigMap,
    Service,
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::ConfigMap,
        Kind::Service,
        Kind::Secret,
    ];

    /// Looks a kind up by its exact `apiVersion` and `kind`: `extensions/v1beta1`
    /// Deployments and similar relics are rejected rather than guessed at.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.name() == kind)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::ConfigMap => "ConfigMap",
            Kind::Service => "Service",
            Kind::Secret => "Secret",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => "apps/v1",
            Kind::ConfigMap | Kind::Service | Kind::Secret => "v1",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Kind::Deployment => "deployments",
            Kind::StatefulSet => "statefulsets",
            Kind::DaemonSet => "daemonsets",
            Kind::ConfigMap => "configmaps",
            Kind::Service => "services",
            Kind::Secret => "secrets",
        }
    }

    /// Workloads are the kinds with a rollout to wait for.
    pub fn is_workload(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet)
    }

    /// Apply order: configuration first, then Services, then workloads, so the
    /// pods of a new revision never start before the ConfigMaps and Secrets they
    /// mount exist (the same reason Helm sorts by kind). Deletion runs the
    /// other way round.
    pub fn apply_rank(self) -> u8 {
        match self {
            Kind::ConfigMap | Kind::Secret => 0,
            Kind::Service => 1,
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet => 2,
        }
    }

    /// The static resource description used instead of API discovery.
    pub fn api_resource(self) -> ApiResource {
        let (group, version) = match self.api_version().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", self.api_version()),
        };
        ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            api_version: self.api_version().to_owned(),
            kind: self.name().to_owned(),
            plural: self.plural().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_read_the_object() {
        let m = Manifest(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}
        }));
        assert_eq!(m.api_version(), "apps/v1");
        assert_eq!(m.kind(), "Deployment");
        assert_eq!(m.name(), "web");
        assert_eq!(m.namespace(), Some("shop"));
        assert_eq!(m.supported_kind(), Some(Kind::Deployment));
        assert_eq!(m.describe(), "Deployment shop/web");
    }

    #[test]
    fn accessors_tolerate_missing_fields() {
        let m = Manifest(json!({"kind": 3}));
        assert_eq!(m.kind(), "");
        assert_eq!(m.name(), "");
        assert_eq!(m.namespace(), None);
        assert_eq!(m.supported_kind(), None);
    }

    #[test]
    fn api_resources_match_the_kubernetes_paths() {
        let d = Kind::Deployment.api_resource();
        assert_eq!(
            (d.group.as_str(), d.version.as_str(), d.plural.as_str()),
            ("apps", "v1", "deployments")
        );
        let c = Kind::ConfigMap.api_resource();
        assert_eq!(
            (c.group.as_str(), c.version.as_str(), c.api_version.as_str()),
            ("", "v1", "v1")
        );
        assert_eq!(Kind::from_type("extensions/v1beta1", "Deployment"), None);
        assert_eq!(Kind::from_type("v1", "Secret"), Some(Kind::Secret));
    }
}
