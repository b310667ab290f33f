//! The `serve --config FILE` YAML file: clusters, applications and plans.
//! Parsed and checked completely before anything is written, so a bad file
//! changes nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::domain::{
    Application, Cluster, ClusterName, Parameters, Plan,
    gate::{GateVars, render_gate_template},
    plan::PlanSpec,
};

/// A problem in a config file: which file, where inside it, and what.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}: at `{}`: {}",
                self.file.display(),
                self.path,
                self.message
            )
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    /// Relative paths are relative to the config file.
    #[serde(default)]
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    clusters: Vec<ClusterSpec>,
    #[serde(default)]
    applications: Vec<ApplicationSpec>,
    #[serde(default)]
    plans: Vec<PlanSpec>,
    /// Where gates' PromQL queries go.
    #[serde(default)]
    prometheus: Option<PrometheusSettings>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSettings {
    pub url: String,
    /// Timeout of one query.
    #[serde(default = "default_query_timeout")]
    pub timeout: crate::domain::HumanDuration,
}

fn default_query_timeout() -> crate::domain::HumanDuration {
    crate::domain::HumanDuration::from_secs(5)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterSpec {
    name: ClusterName,
    region: String,
    #[serde(default = "utc")]
    timezone: chrono_tz::Tz,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Defaults to the cluster's name.
    #[serde(default)]
    context: Option<String>,
}

fn utc() -> chrono_tz::Tz {
    chrono_tz::UTC
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationSpec {
    name: String,
    namespace: String,
    plan: String,
    templates: Vec<String>,
    #[serde(default)]
    parameters: Parameters,
}

/// A checked config file.
#[derive(Clone, Debug)]
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub clusters: Vec<Cluster>,
    pub applications: Vec<Application>,
    /// Each plan as written and as checked.
    pub plans: Vec<(PlanSpec, Plan)>,
    pub prometheus: Option<PrometheusSettings>,
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let fail = |path: &str, message: String| ConfigError {
            file: file.to_owned(),
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| fail("", format!("cannot read the file: {e}")))?;
        let base = file.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|(path, message)| fail(&path, message))
    }

    /// Parses config text; relative paths resolve against `base`. Errors
    /// are (path inside the document, message).
    pub fn parse(text: &str, base: &Path) -> Result<Config, (String, String)> {
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let raw: ConfigFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            // serde_yaml_ng already says where (path, line and column).
            let message = e.into_inner().to_string();
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_owned)
                .unwrap_or(message);
            (path, message)
        })?;

        let mut names = BTreeSet::new();
        let mut clusters = Vec::new();
        for (i, spec) in raw.clusters.into_iter().enumerate() {
            if !names.insert(spec.name.clone()) {
                return Err((
                    format!("clusters[{i}].name"),
                    format!("cluster `{}` is declared twice", spec.name),
                ));
            }
            if spec.region.trim().is_empty() {
                return Err((format!("clusters[{i}].region"), "region is empty".into()));
            }
            clusters.push(Cluster {
                context: spec.context.unwrap_or_else(|| spec.name.to_string()),
                name: spec.name,
                region: spec.region,
                timezone: spec.timezone,
                labels: spec.labels,
            });
        }

        let mut plans = Vec::new();
        let mut plan_names = BTreeSet::new();
        for (i, spec) in raw.plans.into_iter().enumerate() {
            if !plan_names.insert(spec.name.clone()) {
                return Err((
                    format!("plans[{i}].name"),
                    format!("plan `{}` is declared twice", spec.name),
                ));
            }
            let plan = Plan::from_spec(&spec, &clusters)
                .map_err(|e| (format!("plans[{i}].{}", e.path), e.message))?;
            for (j, gate) in plan.gates.iter().enumerate() {
                let Some(query) = gate.check.query() else {
                    continue;
                };
                let at = format!("plans[{i}].gates[{j}].{}.query", gate.check.kind());
                if raw.prometheus.is_none() {
                    return Err((
                        at,
                        "this gate queries Prometheus, but the file has no `prometheus: {url: ...}`".into(),
                    ));
                }
                render_gate_template(query, &GateVars::sample()).map_err(|e| (at, e))?;
            }
            plans.push((spec, plan));
        }

        let mut applications = Vec::new();
        let mut app_names = BTreeSet::new();
        for (i, spec) in raw.applications.into_iter().enumerate() {
            let at = |field: &str| format!("applications[{i}].{field}");
            if !app_names.insert(spec.name.clone()) {
                return Err((
                    at("name"),
                    format!("application `{}` is declared twice", spec.name),
                ));
            }
            if !is_dns_label(&spec.name) {
                return Err((
                    at("name"),
                    format!(
                        "`{}` is not a valid application name (lower-case letters, digits and `-`)",
                        spec.name
                    ),
                ));
            }
            if !is_dns_label(&spec.namespace) {
                return Err((
                    at("namespace"),
                    format!("`{}` is not a valid Kubernetes namespace", spec.namespace),
                ));
            }
            if !plan_names.contains(&spec.plan) {
                return Err((at("plan"), format!("unknown plan `{}`", spec.plan)));
            }
            if spec.templates.is_empty() {
                return Err((
                    at("templates"),
                    "an application needs at least one template".into(),
                ));
            }
            for name in spec.parameters.clusters.keys() {
                if !names.iter().any(|n| n.as_str() == name) {
                    return Err((
                        format!("applications[{i}].parameters.clusters.{name}"),
                        format!("unknown cluster `{name}`"),
                    ));
                }
            }
            crate::fleet::render::check_templates_with_params(
                &spec.templates,
                &spec.parameters.defaults,
            )
            .map_err(|e| (at(&format!("templates[{}]", e.template)), e.to_string()))?;
            applications.push(Application {
                name: spec.name,
                namespace: spec.namespace,
                plan: spec.plan,
                templates: spec.templates,
                parameters: spec.parameters,
            });
        }

        Ok(Config {
            kubeconfig: raw
                .kubeconfig
                .map(|p| if p.is_absolute() { p } else { base.join(p) }),
            clusters,
            applications,
            plans,
            prometheus: raw.prometheus,
        })
    }

    /// Asks Prometheus whether every gate query parses. A query Prometheus
    /// refuses is an error naming the query and Prometheus's message; an
    /// unreachable Prometheus only gets a warning (it may come up later).
    pub async fn check_queries(
        &self,
        file: &Path,
        prometheus: &crate::health::prometheus::PrometheusClient,
    ) -> Result<(), ConfigError> {
        use crate::health::PromError;
        for (i, (_, plan)) in self.plans.iter().enumerate() {
            for (j, gate) in plan.gates.iter().enumerate() {
                let Some(query) = gate.check.query() else {
                    continue;
                };
                let path = format!("plans[{i}].gates[{j}].{}.query", gate.check.kind());
                let rendered =
                    render_gate_template(query, &GateVars::sample()).map_err(|message| {
                        ConfigError {
                            file: file.to_owned(),
                            path: path.clone(),
                            message,
                        }
                    })?;
                match prometheus.check_syntax(&rendered).await {
                    Ok(()) => {}
                    Err(PromError::BadQuery { message, .. }) => {
                        return Err(ConfigError {
                            file: file.to_owned(),
                            path,
                            message: format!("Prometheus refused the query `{query}`: {message}"),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(gate = %gate.name, error = %e, "cannot check a gate query with Prometheus now");
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}
