//! Gates: health checks evaluated during a stage's bake time. Kubernetes
//! readiness is always on and lives in the machine itself; these are the
//! declared ones.

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use crate::health::comparison::Comparator;

/// What a gate does with a query that returns nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// Neither good nor bad; too many in a row pause the rollout.
    #[default]
    Inconclusive,
    Pass,
    Fail,
}

/// What a gate does when its source (Prometheus, the HTTP endpoint) cannot
/// be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnreachablePolicy {
    /// Neither good nor bad; too many in a row pause the rollout.
    #[default]
    Inconclusive,
    /// An unreachable source counts as a bad reading.
    Fail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateCheck {
    /// A PromQL query, templated per target, compared with a threshold.
    Prometheus {
        query: String,
        comparator: Comparator,
        threshold: f64,
    },
    /// A GET of a templated URL.
    Http {
        url: String,
        #[serde(default = "default_status")]
        expect_status: String,
        #[serde(default)]
        json_field: Option<String>,
        #[serde(default)]
        json_value: Option<serde_json::Value>,
    },
    /// The same query on the stage's updated clusters and on clusters still
    /// on the previous release; fails when the updated side is worse (higher)
    /// by more than a margin.
    Baseline {
        query: String,
        #[serde(default)]
        max_increase: Option<f64>,
        #[serde(default)]
        max_increase_ratio: Option<f64>,
    },
}

fn default_status() -> String {
    "2xx".to_owned()
}

impl GateCheck {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Prometheus { .. } => "prometheus",
            Self::Http { .. } => "http",
            Self::Baseline { .. } => "baseline",
        }
    }

    /// The PromQL template, for gates that have one.
    pub fn query(&self) -> Option<&str> {
        match self {
            Self::Prometheus { query, .. } | Self::Baseline { query, .. } => Some(query),
            Self::Http { .. } => None,
        }
    }
}

/// A checked gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gate {
    pub name: String,
    pub check: GateCheck,
    /// How often it is evaluated during a bake.
    pub interval: HumanDuration,
    /// Consecutive bad readings on one cluster that fail it.
    pub failure_limit: u32,
    /// Consecutive inconclusive readings (no data, Prometheus unreachable)
    /// that pause the rollout rather than promote or roll back blindly.
    pub inconclusive_limit: u32,
    pub on_no_data: NoDataPolicy,
    #[serde(default)]
    pub on_unreachable: UnreachablePolicy,
}

/// A gate as written in a plan: exactly one of `prometheus`, `http`,
/// `baseline`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub name: String,
    #[serde(default)]
    pub prometheus: Option<PrometheusSpec>,
    #[serde(default)]
    pub http: Option<HttpSpec>,
    #[serde(default)]
    pub baseline: Option<BaselineSpec>,
    #[serde(default = "default_interval")]
    #[schema(pattern = r"^[0-9]+ ?(ms|s|m|h|d)( [0-9]+ ?(ms|s|m|h|d))*$")]
    pub interval: HumanDuration,
    #[serde(default = "one")]
    pub failure_limit: u32,
    #[serde(default = "three")]
    pub inconclusive_limit: u32,
    #[serde(default)]
    pub on_no_data: NoDataPolicy,
    #[serde(default)]
    pub on_unreachable: UnreachablePolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    pub query: String,
    pub comparator: Comparator,
    pub threshold: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: String,
    #[serde(default = "default_status")]
    pub expect_status: String,
    #[serde(default)]
    pub json_field: Option<String>,
    #[serde(default)]
    pub json_value: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    pub query: String,
    #[serde(default)]
    pub max_increase: Option<f64>,
    #[serde(default)]
    pub max_increase_ratio: Option<f64>,
}

impl GateSpec {
    /// Checks the spec; errors are (field inside the gate, message).
    pub fn parse(&self) -> Result<Gate, (String, String)> {
        let err = |field: &str, message: String| Err((field.to_owned(), message));
        if self.name.trim().is_empty() {
            return err("name", "a gate needs a name".into());
        }
        let check = match (&self.prometheus, &self.http, &self.baseline) {
            (Some(p), None, None) => {
                if !p.threshold.is_finite() {
                    return err(
                        "prometheus.threshold",
                        "the threshold must be a number".into(),
                    );
                }
                GateCheck::Prometheus {
                    query: p.query.clone(),
                    comparator: p.comparator,
                    threshold: p.threshold,
                }
            }
            (None, Some(h), None) => {
                if let Err(e) = h.expect_status.parse::<crate::health::StatusClass>() {
                    return err("http.expect_status", e.to_string());
                }
                if h.json_value.is_some() && h.json_field.is_none() {
                    return err("http", "json_value needs json_field".into());
                }
                GateCheck::Http {
                    url: h.url.clone(),
                    expect_status: h.expect_status.clone(),
                    json_field: h.json_field.clone(),
                    json_value: h.json_value.clone(),
                }
            }
            (None, None, Some(b)) => {
                if b.max_increase.is_none() && b.max_increase_ratio.is_none() {
                    return err(
                        "baseline",
                        "give max_increase (absolute) or max_increase_ratio (relative), or both"
                            .into(),
                    );
                }
                GateCheck::Baseline {
                    query: b.query.clone(),
                    max_increase: b.max_increase,
                    max_increase_ratio: b.max_increase_ratio,
                }
            }
            _ => {
                return err(
                    "",
                    "a gate needs exactly one of `prometheus`, `http` or `baseline`".into(),
                );
            }
        };
        if self.interval.0.is_zero() {
            return err("interval", "the interval must be positive".into());
        }
        if self.failure_limit == 0 {
            return err("failure_limit", "failure_limit must be at least 1".into());
        }
        if self.inconclusive_limit == 0 {
            return err(
                "inconclusive_limit",
                "inconclusive_limit must be at least 1".into(),
            );
        }
        Ok(Gate {
            name: self.name.clone(),
            check,
            interval: self.interval,
            failure_limit: self.failure_limit,
            inconclusive_limit: self.inconclusive_limit,
            on_no_data: self.on_no_data,
            on_unreachable: self.on_unreachable,
        })
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}

/// One evaluation of one gate on one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "detail")]
pub enum Verdict {
    Pass,
    Fail(String),
    Inconclusive(String),
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail(_) => "fail",
            Self::Inconclusive(_) => "inconclusive",
        }
    }
}

/// What the engine stores and serves for each evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub gate: String,
    pub cluster: String,
    pub value: Option<f64>,
    /// The baseline side, for baseline gates.
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    pub verdict: Verdict,
    /// What was asked: the rendered query or URL.
    pub query: String,
    /// When the answer came in; a reading is stored with this time, not
    /// the later commit's, so reaction times are measured from it.
    pub taken_at: chrono::DateTime<chrono::Utc>,
}

/// What gate templates see.
#[derive(serde::Serialize)]
pub struct GateVars<'a> {
    pub cluster: &'a str,
    pub region: &'a str,
    pub application: &'a str,
    pub namespace: &'a str,
    pub version: &'a str,
}

/// Renders a gate query or URL; an unknown variable is an error.
pub fn render_gate_template(template: &str, vars: &GateVars<'_>) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.render_str(template, vars)
        .map_err(|e| match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        })
}

impl GateVars<'static> {
    /// Values for checking a template when a plan is loaded.
    pub fn sample() -> Self {
        GateVars {
            cluster: "sample-cluster",
            region: "sample-region",
            application: "sample-app",
            namespace: "sample-namespace",
            version: "0.0.0-sample",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_template_sees_the_cluster_and_version() {
        let out = render_gate_template(
            "rate(errors{cluster=\"{{ cluster }}\", version=\"{{ version }}\"}[1m])",
            &GateVars::sample(),
        )
        .unwrap();
        assert_eq!(
            out,
            "rate(errors{cluster=\"sample-cluster\", version=\"0.0.0-sample\"}[1m])"
        );
    }

    #[test]
    fn a_typo_in_a_gate_template_is_an_error() {
        let err = render_gate_template("{{ clustr }}", &GateVars::sample()).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn a_gate_needs_exactly_one_check() {
        let spec: GateSpec = serde_yaml_ng::from_str("name: g\ninterval: 5s\n").unwrap();
        let (field, message) = spec.parse().unwrap_err();
        assert_eq!(field, "");
        assert!(message.contains("exactly one"), "{message}");
    }
}
