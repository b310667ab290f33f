//! Plans: ordered stages, each selecting clusters. A `Plan` that exists has
//! been checked: every stage has a name, selects at least one cluster that no
//! earlier stage took, and has a positive `max_parallel`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    Cluster, ClusterName, HumanDuration,
    gate::{Gate, GateSpec},
};

/// Which clusters a stage takes. Exactly one of the three forms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterSelector {
    /// Every cluster no earlier stage took (the global wave).
    All,
    Names(Vec<ClusterName>),
    /// Clusters carrying all these labels.
    Labels(BTreeMap<String, String>),
}

impl ClusterSelector {
    pub fn matches(&self, cluster: &Cluster) -> bool {
        match self {
            Self::All => true,
            Self::Names(names) => names.contains(&cluster.name),
            Self::Labels(wanted) => wanted
                .iter()
                .all(|(k, v)| cluster.labels.get(k).is_some_and(|have| have == v)),
        }
    }
}

/// What happens when a target fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Put every changed cluster back, newest first (the default).
    #[default]
    Rollback,
    /// Stop in `failed` and leave clusters as they are for a person to decide.
    Halt,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stage {
    pub name: String,
    pub clusters: ClusterSelector,
    pub max_parallel: u32,
    pub bake: HumanDuration,
    pub approval: bool,
    /// Names of the plan's gates evaluated during this stage's bake.
    #[serde(default)]
    pub gates: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub name: String,
    pub stages: Vec<Stage>,
    pub on_failure: FailurePolicy,
    #[serde(default)]
    pub gates: Vec<Gate>,
}

impl Plan {
    pub fn gate(&self, name: &str) -> Option<&Gate> {
        self.gates.iter().find(|g| g.name == name)
    }
}

/// A plan problem, with the path inside the plan where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    pub path: String,
    pub message: String,
}

impl PlanError {
    fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The plan as written in a config file or an API request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "worldwide",
    "on_failure": "rollback",
    "stages": [
        {"name": "canary", "clusters": {"names": ["use1-canary"]}, "bake": "30s"},
        {"name": "rest", "clusters": "all", "max_parallel": 3, "bake": "5m"}
    ]
}))]
pub struct PlanSpec {
    pub name: String,
    pub stages: Vec<StageSpec>,
    #[serde(default)]
    pub on_failure: FailurePolicy,
    /// Reusable gates; stages name the ones they use.
    #[serde(default)]
    pub gates: Vec<GateSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    pub name: String,
    /// `all`, or `{names: [...]}`, or `{labels: {k: v}}`.
    pub clusters: SelectorSpec,
    #[serde(default = "default_max_parallel")]
    pub max_parallel: u32,
    /// How long the stage's clusters must stay healthy before the next
    /// stage starts.
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+ ?(ms|s|m|h|d)( [0-9]+ ?(ms|s|m|h|d))*$")]
    pub bake: HumanDuration,
    /// Wait for an operator's approval before the stage starts.
    #[serde(default)]
    pub approval: bool,
    #[serde(default)]
    pub gates: Vec<String>,
}

fn default_max_parallel() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SelectorSpec {
    Keyword(String),
    Fields(SelectorFields),
}

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorFields {
    #[serde(default)]
    pub names: Option<Vec<String>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

impl SelectorSpec {
    fn parse(&self, path: &str) -> Result<ClusterSelector, PlanError> {
        match self {
            Self::Keyword(word) if word == "all" => Ok(ClusterSelector::All),
            Self::Keyword(word) => Err(PlanError::at(
                path,
                format!(
                    "`{word}` is not a selector: write `all`, `{{names: [...]}}` or `{{labels: {{key: value}}}}`"
                ),
            )),
            Self::Fields(SelectorFields {
                names: Some(names),
                labels: None,
            }) => {
                if names.is_empty() {
                    return Err(PlanError::at(format!("{path}.names"), "names is empty"));
                }
                let parsed = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        ClusterName::parse(n)
                            .map_err(|e| PlanError::at(format!("{path}.names[{i}]"), e))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(ClusterSelector::Names(parsed))
            }
            Self::Fields(SelectorFields {
                names: None,
                labels: Some(labels),
            }) => {
                if labels.is_empty() {
                    return Err(PlanError::at(format!("{path}.labels"), "labels is empty"));
                }
                Ok(ClusterSelector::Labels(labels.clone()))
            }
            Self::Fields(_) => Err(PlanError::at(
                path,
                "give exactly one of `names` or `labels` (or the word `all`)",
            )),
        }
    }
}

impl Plan {
    /// Checks a written plan against the clusters that exist.
    pub fn from_spec(spec: &PlanSpec, clusters: &[Cluster]) -> Result<Plan, PlanError> {
        if spec.name.trim().is_empty() {
            return Err(PlanError::at("name", "a plan needs a name"));
        }
        if spec.stages.is_empty() {
            return Err(PlanError::at("stages", "a plan needs at least one stage"));
        }
        let mut gates: Vec<Gate> = Vec::with_capacity(spec.gates.len());
        for (i, gate) in spec.gates.iter().enumerate() {
            let parsed = gate.parse().map_err(|(field, message)| {
                let path = if field.is_empty() {
                    format!("gates[{i}]")
                } else {
                    format!("gates[{i}].{field}")
                };
                PlanError::at(path, message)
            })?;
            if gates.iter().any(|g| g.name == parsed.name) {
                return Err(PlanError::at(
                    format!("gates[{i}].name"),
                    format!("gate name `{}` is used twice", parsed.name),
                ));
            }
            gates.push(parsed);
        }
        let mut seen_names = BTreeSet::new();
        let mut stages = Vec::with_capacity(spec.stages.len());
        for (i, stage) in spec.stages.iter().enumerate() {
            let path = format!("stages[{i}]");
            if stage.name.trim().is_empty() {
                return Err(PlanError::at(
                    format!("{path}.name"),
                    "a stage needs a name",
                ));
            }
            if !seen_names.insert(stage.name.clone()) {
                return Err(PlanError::at(
                    format!("{path}.name"),
                    format!("stage name `{}` is used twice", stage.name),
                ));
            }
            if stage.max_parallel == 0 {
                return Err(PlanError::at(
                    format!("{path}.max_parallel"),
                    "max_parallel must be at least 1",
                ));
            }
            let selector = stage.clusters.parse(&format!("{path}.clusters"))?;
            if let ClusterSelector::Names(names) = &selector {
                for (j, name) in names.iter().enumerate() {
                    if !clusters.iter().any(|c| &c.name == name) {
                        return Err(PlanError::at(
                            format!("{path}.clusters.names[{j}]"),
                            format!("unknown cluster `{name}`"),
                        ));
                    }
                }
            }
            for (j, name) in stage.gates.iter().enumerate() {
                if !gates.iter().any(|g| &g.name == name) {
                    return Err(PlanError::at(
                        format!("{path}.gates[{j}]"),
                        format!("unknown gate `{name}`; declare it under the plan's `gates`"),
                    ));
                }
            }
            stages.push(Stage {
                name: stage.name.clone(),
                clusters: selector,
                max_parallel: stage.max_parallel,
                bake: stage.bake,
                approval: stage.approval,
                gates: stage.gates.clone(),
            });
        }
        let plan = Plan {
            name: spec.name.clone(),
            stages,
            on_failure: spec.on_failure,
            gates,
        };
        // An empty stage is almost always a typo in a selector: refuse it now
        // rather than let a rollout silently skip a wave.
        let waves = plan.assign(clusters);
        for (i, wave) in waves.iter().enumerate() {
            if wave.is_empty() {
                return Err(PlanError::at(
                    format!("stages[{i}].clusters"),
                    format!(
                        "stage `{}` selects no cluster (none matches, or earlier stages took them all)",
                        plan.stages[i].name
                    ),
                ));
            }
        }
        Ok(plan)
    }

    /// Puts each cluster in the first stage that selects it; within a stage,
    /// clusters are ordered by name so every replica decides the same order.
    pub fn assign<'c>(&self, clusters: &'c [Cluster]) -> Vec<Vec<&'c Cluster>> {
        let mut sorted: Vec<&Cluster> = clusters.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut taken = BTreeSet::new();
        self.stages
            .iter()
            .map(|stage| {
                let wave: Vec<&Cluster> = sorted
                    .iter()
                    .filter(|c| !taken.contains(&c.name) && stage.clusters.matches(c))
                    .copied()
                    .collect();
                taken.extend(wave.iter().map(|c| c.name.clone()));
                wave
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, tier: &str) -> Cluster {
        Cluster {
            name: ClusterName::parse(name).unwrap(),
            region: "eu".into(),
            timezone: chrono_tz::UTC,
            labels: BTreeMap::from([("tier".to_string(), tier.to_string())]),
            context: name.into(),
        }
    }

    fn spec(yaml: &str) -> PlanSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn clusters_go_to_the_first_stage_that_selects_them() {
        let clusters = vec![
            cluster("b", "canary"),
            cluster("a", "prod"),
            cluster("c", "prod"),
        ];
        let plan = Plan::from_spec(
            &spec("name: p\nstages:\n- {name: canary, clusters: {labels: {tier: canary}}}\n- {name: rest, clusters: all, max_parallel: 2, bake: 10s}\n"),
            &clusters,
        )
        .unwrap();
        let waves = plan.assign(&clusters);
        let names: Vec<Vec<&str>> = waves
            .iter()
            .map(|w| w.iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["b"], vec!["a", "c"]]);
        assert_eq!(plan.stages[1].bake, HumanDuration::from_secs(10));
    }

    #[test]
    fn an_unknown_cluster_is_refused_with_its_path() {
        let err = Plan::from_spec(
            &spec("name: p\nstages:\n- {name: one, clusters: {names: [nope]}}\n"),
            &[cluster("a", "prod")],
        )
        .unwrap_err();
        assert_eq!(err.path, "stages[0].clusters.names[0]");
        assert!(err.message.contains("unknown cluster `nope`"));
    }

    #[test]
    fn a_stage_that_selects_nothing_is_refused() {
        let err = Plan::from_spec(
            &spec("name: p\nstages:\n- {name: one, clusters: all}\n- {name: two, clusters: all}\n"),
            &[cluster("a", "prod")],
        )
        .unwrap_err();
        assert_eq!(err.path, "stages[1].clusters");
    }

    #[test]
    fn a_selector_with_both_forms_is_refused() {
        let err = Plan::from_spec(
            &spec(
                "name: p\nstages:\n- {name: one, clusters: {names: [a], labels: {tier: prod}}}\n",
            ),
            &[cluster("a", "prod")],
        )
        .unwrap_err();
        assert!(err.message.contains("exactly one"), "{err}");
    }
}
