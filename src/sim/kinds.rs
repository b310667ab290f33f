//! The fixed set of resource types the sim serves, and how each is named on
//! the wire (group, version, plural, kind). Everything that routes, words an
//! error or writes discovery documents reads this one table.

use serde_json::{Value, json};

/// Workload kinds get a simulated controller and app metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub workload: Option<Workload>,
}

pub static DEPLOYMENT: Kind = Kind {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    workload: Some(Workload::Deployment),
};

pub static STATEFULSET: Kind = Kind {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    workload: Some(Workload::StatefulSet),
};

pub static DAEMONSET: Kind = Kind {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    workload: Some(Workload::DaemonSet),
};

pub static CONFIGMAP: Kind = Kind {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    workload: None,
};

pub static SERVICE: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    workload: None,
};

pub static SECRET: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    workload: None,
};

pub static NAMESPACE: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    workload: None,
};

/// Every served type, in discovery order.
pub static KINDS: [&Kind; 7] = [
    &DEPLOYMENT,
    &STATEFULSET,
    &DAEMONSET,
    &CONFIGMAP,
    &SERVICE,
    &SECRET,
    &NAMESPACE,
];

impl Kind {
    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps` or `configmaps`, as used in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps` or `ConfigMap`, as used in validation messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The `details` block of a `Status` about one object of this kind.
    pub fn details(&self, name: &str) -> Value {
        let mut details = json!({"name": name, "kind": self.plural});
        if !self.group.is_empty()
            && let Some(map) = details.as_object_mut()
        {
            map.insert("group".into(), Value::String(self.group.to_owned()));
        }
        details
    }

    /// The verbs a discovery document advertises; honest about what we serve.
    pub fn verbs(&self) -> &'static [&'static str] {
        &["delete", "get", "list", "patch"]
    }
}

/// The type served at `/{api|apis/group}/{version}/.../{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Looks a type up the way people name it: `Deployment`, `deployments`,
/// `deployment` or a short name, in any case.
pub fn by_name(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| {
        k.kind.eq_ignore_ascii_case(name)
            || k.plural.eq_ignore_ascii_case(name)
            || k.singular.eq_ignore_ascii_case(name)
            || k.short_names.iter().any(|s| s.eq_ignore_ascii_case(name))
    })
}

/// The kinds of one group/version, in table order.
pub fn in_group_version(group: &str, version: &str) -> impl Iterator<Item = &'static Kind> {
    KINDS
        .iter()
        .copied()
        .filter(move |k| k.group == group && k.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_kubectl() {
        assert_eq!(by_name("deploy").map(|k| k.kind), Some("Deployment"));
        assert_eq!(by_name("StatefulSets").map(|k| k.kind), Some("StatefulSet"));
        assert_eq!(
            by_path("", "v1", "configmaps").map(|k| k.kind),
            Some("ConfigMap")
        );
        assert!(by_path("apps", "v1", "configmaps").is_none());
        let deploy = by_name("Deployment").expect("deployment kind");
        assert_eq!(deploy.qualified_plural(), "deployments.apps");
        assert_eq!(deploy.api_version(), "apps/v1");
    }
}
