use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Cluster, FieldError};

/// Something deployable: a namespace, manifest templates and parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Application {
    pub name: String,
    pub namespace: String,
    /// The plan its releases travel through (latest version at rollout start).
    pub plan: String,
    pub templates: Vec<String>,
    #[serde(default)]
    pub parameters: Parameters,
}

/// An application as written: a config file entry or an API request body.
/// [`ApplicationSpec::check`] is the one place its rules live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Lower-case letters, digits and `-`.
    pub name: String,
    /// The Kubernetes namespace its objects go to.
    pub namespace: String,
    /// A registered plan's name.
    pub plan: String,
    /// minijinja templates of Kubernetes manifests (at least one).
    pub templates: Vec<String>,
    #[serde(default)]
    pub parameters: Parameters,
}

impl ApplicationSpec {
    /// Checks the application against the catalog it will live in: `plan`
    /// must name a known plan and per-cluster parameters known clusters.
    /// The error's path is relative to the spec.
    pub fn check(
        self,
        plan_exists: impl Fn(&str) -> bool,
        cluster_exists: impl Fn(&str) -> bool,
    ) -> Result<Application, FieldError> {
        if !is_dns_label(&self.name) {
            return Err(FieldError::at(
                "name",
                format!(
                    "`{}` is not a valid application name (lower-case letters, digits and `-`)",
                    self.name
                ),
            ));
        }
        if !is_dns_label(&self.namespace) {
            return Err(FieldError::at(
                "namespace",
                format!("`{}` is not a valid Kubernetes namespace", self.namespace),
            ));
        }
        if !plan_exists(&self.plan) {
            return Err(FieldError::at(
                "plan",
                format!("unknown plan `{}`", self.plan),
            ));
        }
        if self.templates.is_empty() {
            return Err(FieldError::at(
                "templates",
                "an application needs at least one template",
            ));
        }
        if let Some(name) = self
            .parameters
            .clusters
            .keys()
            .find(|name| !cluster_exists(name))
        {
            return Err(FieldError::at(
                format!("parameters.clusters.{name}"),
                format!("unknown cluster `{name}`"),
            ));
        }
        // Rendering with the defaults every cluster gets catches syntax
        // errors and unknown variables now rather than mid-rollout.
        crate::fleet::render::check_templates_with_params(
            &self.templates,
            &self.parameters.defaults,
        )
        .map_err(|e| FieldError::at(format!("templates[{}]", e.template), e.to_string()))?;
        Ok(Application {
            name: self.name,
            namespace: self.namespace,
            plan: self.plan,
            templates: self.templates,
            parameters: self.parameters,
        })
    }
}

/// A DNS label as Kubernetes names namespaces: what application names and
/// namespaces must be.
fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Template parameters: defaults, overridden by label matches (in order),
/// overridden by a cluster's own values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default)]
    pub defaults: Map<String, Value>,
    #[serde(default)]
    pub labels: Vec<LabelParameters>,
    #[serde(default)]
    pub clusters: BTreeMap<String, Map<String, Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelParameters {
    pub selector: BTreeMap<String, String>,
    pub values: Map<String, Value>,
}

impl Parameters {
    /// The values a template sees on `cluster`.
    pub fn for_cluster(&self, cluster: &Cluster) -> Map<String, Value> {
        let mut merged = self.defaults.clone();
        for rule in &self.labels {
            let matches = rule
                .selector
                .iter()
                .all(|(k, v)| cluster.labels.get(k).is_some_and(|have| have == v));
            if matches {
                merged.extend(rule.values.clone());
            }
        }
        if let Some(own) = self.clusters.get(cluster.name.as_str()) {
            merged.extend(own.clone());
        }
        merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClusterName;

    fn spec(templates: &[&str]) -> ApplicationSpec {
        ApplicationSpec {
            name: "shop".into(),
            namespace: "shop".into(),
            plan: "worldwide".into(),
            templates: templates.iter().map(|t| (*t).to_owned()).collect(),
            parameters: Parameters::default(),
        }
    }

    #[test]
    fn an_unknown_plan_bad_namespace_or_template_is_refused_with_its_field() {
        let known = |name: &str| name == "worldwide";
        let template =
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: \"{{ version }}\"}\n";
        spec(&[template])
            .check(known, |_| true)
            .expect("a valid application");
        let err = spec(&[template])
            .check(|_| false, |_| true)
            .expect_err("unknown plan");
        assert_eq!(err.path, "plan");
        let mut bad = spec(&[template]);
        bad.namespace = "Shop".into();
        assert_eq!(
            bad.check(known, |_| true).expect_err("bad ns").path,
            "namespace"
        );
        let err = spec(&[template, "{{ nope }}"])
            .check(known, |_| true)
            .expect_err("unknown variable");
        assert_eq!(err.path, "templates[1]");
        let mut bad = spec(&[template]);
        bad.parameters.clusters.insert("gone-1".into(), Map::new());
        assert_eq!(
            bad.check(known, |_| false)
                .expect_err("unknown cluster")
                .path,
            "parameters.clusters.gone-1"
        );
    }

    #[test]
    fn cluster_values_win_over_labels_which_win_over_defaults() {
        let params: Parameters = serde_yaml_ng::from_str(
            "defaults: {replicas: 2, tier: x}\nlabels:\n- {selector: {size: large}, values: {replicas: 6}}\nclusters:\n  big-1: {tier: special}\n",
        )
        .unwrap();
        let cluster = Cluster {
            name: ClusterName::parse("big-1").unwrap(),
            region: "eu".into(),
            timezone: chrono_tz::UTC,
            labels: BTreeMap::from([("size".into(), "large".into())]),
            context: "big-1".into(),
        };
        let values = params.for_cluster(&cluster);
        assert_eq!(values["replicas"], 6);
        assert_eq!(values["tier"], "special");
    }
}
