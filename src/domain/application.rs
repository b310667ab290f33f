use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Cluster;

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

/// Template parameters: defaults, overridden by label matches (in order),
/// overridden by a cluster's own values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default)]
    pub defaults: Map<String, Value>,
    #[serde(default)]
    pub labels: Vec<LabelParameters>,
    #[serde(default)]
    pub clusters: BTreeMap<String, Map<String, Value>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
