//! The `serve --config FILE` YAML file: clusters, applications and plans.
//! Parsed and checked completely before anything is written, so a bad file
//! changes nothing.

use std::{
    collections::BTreeSet,
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::domain::{
    Application, ApplicationSpec, Cluster, ClusterSpec, Plan,
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
    #[serde(default)]
    polling: PollingSettings,
}

/// How often the engine reads a target's status on its own. The fleet's
/// watches say sooner when a workload finished or stopped being ready;
/// polling is what remains when a watch is down.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingSettings {
    /// A target rolling out, or being restored.
    #[serde(default = "default_rolling_out_poll")]
    pub rolling_out: crate::domain::HumanDuration,
    /// A target already rolled out: baking, or waiting for an approval, a
    /// window or a resume.
    #[serde(default = "default_rolled_out_poll")]
    pub rolled_out: crate::domain::HumanDuration,
}

impl Default for PollingSettings {
    fn default() -> Self {
        PollingSettings {
            rolling_out: default_rolling_out_poll(),
            rolled_out: default_rolled_out_poll(),
        }
    }
}

fn default_rolling_out_poll() -> crate::domain::HumanDuration {
    crate::domain::HumanDuration::from_secs(1)
}

fn default_rolled_out_poll() -> crate::domain::HumanDuration {
    crate::domain::HumanDuration::from_secs(5)
}

/// Below this a poll interval would keep the engine busy for nothing.
const MIN_POLL: std::time::Duration = std::time::Duration::from_millis(100);

impl PollingSettings {
    /// The engine's tuning with these intervals.
    pub fn apply_to(self, tuning: &mut crate::domain::Tuning) {
        tuning.observe_interval = self.rolling_out.as_chrono();
        tuning.settled_observe_interval = self.rolled_out.as_chrono();
    }

    fn check(self) -> Result<Self, (String, String)> {
        for (field, value) in [
            ("rolling_out", self.rolling_out),
            ("rolled_out", self.rolled_out),
        ] {
            if value.0 < MIN_POLL {
                return Err((
                    format!("polling.{field}"),
                    format!("`{value}` is too short: 100ms or more"),
                ));
            }
        }
        Ok(self)
    }
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

/// A checked config file.
#[derive(Clone, Debug)]
pub struct Config {
    pub kubeconfig: Option<PathBuf>,
    pub clusters: Vec<Cluster>,
    pub applications: Vec<Application>,
    /// Each plan as written and as checked.
    pub plans: Vec<(PlanSpec, Plan)>,
    pub prometheus: Option<PrometheusSettings>,
    pub polling: PollingSettings,
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
            let cluster = spec
                .check()
                .map_err(|e| (format!("clusters[{i}].{}", e.path), e.message))?;
            clusters.push(cluster);
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
            let application = spec
                .check(
                    |plan| plan_names.contains(plan),
                    |cluster| names.iter().any(|n| n.as_str() == cluster),
                )
                .map_err(|e| (at(&e.path), e.message))?;
            applications.push(application);
        }

        Ok(Config {
            kubeconfig: raw
                .kubeconfig
                .map(|p| if p.is_absolute() { p } else { base.join(p) }),
            clusters,
            applications,
            plans,
            prometheus: raw.prometheus,
            polling: raw.polling.check()?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, (String, String)> {
        Config::parse(text, Path::new("."))
    }

    #[test]
    fn polling_defaults_to_every_second_and_every_five_seconds() {
        let config = parse("clusters: []\n").expect("valid");
        let mut tuning = crate::domain::Tuning {
            observe_interval: chrono::Duration::zero(),
            settled_observe_interval: chrono::Duration::zero(),
            ..crate::domain::Tuning::default()
        };
        config.polling.apply_to(&mut tuning);
        assert_eq!(tuning.observe_interval, chrono::Duration::seconds(1));
        assert_eq!(
            tuning.settled_observe_interval,
            chrono::Duration::seconds(5)
        );
    }

    #[test]
    fn polling_intervals_are_set_by_the_file() {
        let config = parse("polling: {rolling_out: 2s, rolled_out: 1m}\n").expect("valid");
        let mut tuning = crate::domain::Tuning::default();
        config.polling.apply_to(&mut tuning);
        assert_eq!(tuning.observe_interval, chrono::Duration::seconds(2));
        assert_eq!(
            tuning.settled_observe_interval,
            chrono::Duration::minutes(1)
        );
    }

    #[test]
    fn a_poll_interval_too_short_to_be_meant_is_refused_with_its_path() {
        let (path, message) = parse("polling: {rolled_out: 10ms}\n").expect_err("too short");
        assert_eq!(path, "polling.rolled_out");
        assert!(message.contains("10ms"), "{message}");
        let (path, _) = parse("polling: {rolling_out: 1x}\n").expect_err("not a duration");
        assert_eq!(path, "polling.rolling_out");
    }
}
