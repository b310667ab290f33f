//! Evaluating gates: renders each gate's query or URL for a cluster, asks
//! Prometheus or the HTTP endpoint, and turns the answer into a verdict the
//! machine understands and a reading the store keeps.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;

use crate::{
    domain::{
        Application, Cluster, Input, Plan, Rollout, TargetState,
        gate::{
            Gate, GateCheck, GateVars, NoDataPolicy, Reading, UnreachablePolicy, Verdict,
            render_gate_template,
        },
    },
    health::{
        PromError, StatusClass,
        comparison::{BaselineVerdict, baseline_verdict},
        http_check::{HttpCheck, HttpOutcome},
        prometheus::PrometheusClient,
    },
    store::{ReleaseRecord, Store},
};

/// The clients gates use, built once at start.
#[derive(Clone, Default)]
pub struct HealthClients {
    pub prometheus: Option<PrometheusClient>,
    pub http: reqwest::Client,
}

/// Everything needed to judge one rollout's gates in one tick.
pub(super) struct GateContext<'a> {
    pub clients: &'a HealthClients,
    pub plan: Arc<Plan>,
    pub application: &'a Application,
    pub release: &'a ReleaseRecord,
    pub clusters: &'a HashMap<String, Cluster>,
    /// The version each cluster ran when Meridian last finished a rollout
    /// of this application there.
    pub running_versions: HashMap<String, String>,
}

/// What a reading of one gate on one cluster found.
struct Judged {
    verdict: Verdict,
    value: Option<f64>,
    baseline: Option<f64>,
    threshold: Option<f64>,
    asked: String,
}

impl GateContext<'_> {
    pub(super) async fn load<'a>(
        store: &Store,
        clients: &'a HealthClients,
        plan: Arc<Plan>,
        application: &'a Application,
        release: &'a ReleaseRecord,
        clusters: &'a HashMap<String, Cluster>,
        machine: &Rollout,
    ) -> anyhow::Result<GateContext<'a>> {
        // Only gates compare with what runs now; a plan without gates
        // (its pre-check is then empty) need not read it. Gates only ask
        // about the rollout's own clusters.
        let running_versions = if plan.gates.is_empty() {
            HashMap::new()
        } else {
            let targets: Vec<&str> = machine.targets.iter().map(|t| t.cluster.as_str()).collect();
            store.running_versions(&application.name, &targets).await?
        };
        Ok(GateContext {
            clients,
            plan,
            application,
            release,
            clusters,
            running_versions,
        })
    }

    /// Evaluates one gate on the current stage's clusters.
    pub(super) async fn evaluate(
        &self,
        machine: &Rollout,
        gate_name: &str,
    ) -> (Input, Vec<Reading>) {
        let k = machine.current_stage;
        let updated: Vec<&str> = machine
            .targets
            .iter()
            .filter(|t| t.stage == k)
            .map(|t| t.cluster.as_str())
            .collect();
        let Some(gate) = self.plan.gate(gate_name) else {
            let verdict = Verdict::Inconclusive(format!("gate `{gate_name}` is not in the plan"));
            let readings = updated
                .iter()
                .map(|c| ((*c).to_owned(), verdict.clone()))
                .collect();
            return (
                Input::GateReadings {
                    gate: gate_name.to_owned(),
                    readings,
                },
                Vec::new(),
            );
        };
        let judged: Vec<(String, Judged)> =
            match &gate.check {
                GateCheck::Baseline { .. } => {
                    // Clusters no stage has touched yet still run the previous release.
                    let baseline: Vec<&str> = machine
                        .targets
                        .iter()
                        .filter(|t| t.stage > k && t.state == TargetState::Pending)
                        .map(|t| t.cluster.as_str())
                        .collect();
                    self.judge_baseline(gate, &updated, &baseline).await
                }
                GateCheck::Prometheus { .. } | GateCheck::Http { .. } => {
                    let version = self.release.version.as_str();
                    join_all(updated.iter().map(|c| async move {
                        ((*c).to_owned(), self.judge(gate, c, version).await)
                    }))
                    .await
                }
            };
        let readings = judged
            .iter()
            .map(|(cluster, j)| self.reading(gate, cluster, j))
            .collect();
        let verdicts = judged.into_iter().map(|(c, j)| (c, j.verdict)).collect();
        (
            Input::GateReadings {
                gate: gate.name.clone(),
                readings: verdicts,
            },
            readings,
        )
    }

    /// The pre-rollout check: every gate with a fixed threshold, on every
    /// cluster of the rollout that runs a release Meridian knows. Only bad
    /// readings count against the fleet; a cluster with no data or no known
    /// release has nothing to judge.
    pub(super) async fn precheck(&self, machine: &Rollout) -> (Vec<String>, Vec<Reading>) {
        let mut problems = Vec::new();
        let mut readings = Vec::new();
        for gate in &self.plan.gates {
            if matches!(gate.check, GateCheck::Baseline { .. }) {
                continue;
            }
            let judged = join_all(machine.targets.iter().filter_map(|t| {
                let version = self.running_versions.get(&t.cluster)?;
                Some(async move {
                    (
                        t.cluster.clone(),
                        self.judge(gate, &t.cluster, version).await,
                    )
                })
            }))
            .await;
            for (cluster, j) in judged {
                if let Verdict::Fail(detail) = &j.verdict {
                    problems.push(format!("gate `{}` on {cluster}: {detail}", gate.name));
                }
                readings.push(self.reading(gate, &cluster, &j));
            }
        }
        (problems, readings)
    }

    fn reading(&self, gate: &Gate, cluster: &str, j: &Judged) -> Reading {
        Reading {
            gate: gate.name.clone(),
            cluster: cluster.to_owned(),
            value: j.value,
            baseline: j.baseline,
            threshold: j.threshold,
            verdict: j.verdict.clone(),
            query: j.asked.clone(),
            taken_at: crate::clock::now(),
        }
    }

    fn render(&self, template: &str, cluster: &str, version: &str) -> Result<String, String> {
        let region = self
            .clusters
            .get(cluster)
            .map(|c| c.region.clone())
            .unwrap_or_default();
        render_gate_template(
            template,
            &GateVars {
                cluster,
                region: &region,
                application: &self.application.name,
                namespace: &self.application.namespace,
                version,
            },
        )
    }

    /// One fixed-threshold or HTTP reading on one cluster.
    async fn judge(&self, gate: &Gate, cluster: &str, version: &str) -> Judged {
        match &gate.check {
            GateCheck::Prometheus {
                query,
                comparator,
                threshold,
            } => {
                let rendered = match self.render(query, cluster, version) {
                    Ok(q) => q,
                    Err(e) => return inconclusive(format!("cannot render the query: {e}"), query),
                };
                let (value, outcome) = self.query(&rendered).await;
                let verdict = match outcome {
                    Err(e) => source_failed(gate, e),
                    Ok(None) => no_data(gate, &rendered, cluster),
                    Ok(Some(v)) if comparator.holds(v, *threshold) => Verdict::Pass,
                    Ok(Some(v)) => Verdict::Fail(format!(
                        "query `{rendered}` on {cluster} = {v:.4}, expected {comparator} {threshold}"
                    )),
                };
                Judged {
                    verdict,
                    value,
                    baseline: None,
                    threshold: Some(*threshold),
                    asked: rendered,
                }
            }
            GateCheck::Http {
                url,
                expect_status,
                json_field,
                json_value,
            } => {
                let rendered = match self.render(url, cluster, version) {
                    Ok(u) => u,
                    Err(e) => return inconclusive(format!("cannot render the URL: {e}"), url),
                };
                let status = match expect_status.parse::<StatusClass>() {
                    Ok(s) => s,
                    Err(e) => return inconclusive(e.to_string(), &rendered),
                };
                let mut check = HttpCheck::new(rendered.clone(), status);
                if let Some(field) = json_field {
                    check = check.with_json(field.clone(), json_value.clone());
                }
                let verdict = match check.run(&self.clients.http).await {
                    HttpOutcome::Pass { .. } => Verdict::Pass,
                    HttpOutcome::Fail { status, detail } => Verdict::Fail(format!(
                        "GET {rendered} on {cluster}: HTTP {status}: {detail}"
                    )),
                    HttpOutcome::Unreachable(e) => source_failed(
                        gate,
                        SourceError {
                            unreachable: true,
                            message: format!("GET {rendered} failed: {e}"),
                        },
                    ),
                };
                Judged {
                    verdict,
                    value: None,
                    baseline: None,
                    threshold: None,
                    asked: rendered,
                }
            }
            GateCheck::Baseline { query, .. } => {
                inconclusive("a baseline gate needs both sides".into(), query)
            }
        }
    }

    async fn judge_baseline(
        &self,
        gate: &Gate,
        updated: &[&str],
        baseline: &[&str],
    ) -> Vec<(String, Judged)> {
        let GateCheck::Baseline {
            query,
            max_increase,
            max_increase_ratio,
        } = &gate.check
        else {
            return Vec::new();
        };
        if baseline.is_empty() {
            // The last stage: nothing left on the previous release to compare
            // with. Documented in the README; the fixed-threshold gates judge.
            return updated
                .iter()
                .map(|c| {
                    (
                        (*c).to_owned(),
                        Judged {
                            verdict: Verdict::Pass,
                            value: None,
                            baseline: None,
                            threshold: None,
                            asked: "no cluster left on the previous release; baseline skipped"
                                .into(),
                        },
                    )
                })
                .collect();
        }
        let mut baseline_values = Vec::new();
        let mut baseline_problem = None;
        for cluster in baseline {
            let version = self
                .running_versions
                .get(*cluster)
                .map(String::as_str)
                .unwrap_or("");
            let rendered = match self.render(query, cluster, version) {
                Ok(q) => q,
                Err(e) => {
                    baseline_problem = Some(SourceError {
                        unreachable: false,
                        message: format!("cannot render the query: {e}"),
                    });
                    continue;
                }
            };
            match self.query(&rendered).await {
                (Some(v), Ok(_)) => baseline_values.push(v),
                (_, Err(e)) => baseline_problem = Some(e),
                (None, Ok(_)) => {}
            }
        }
        let baseline_value = (!baseline_values.is_empty())
            .then(|| baseline_values.iter().sum::<f64>() / baseline_values.len() as f64);
        let version = self.release.version.as_str();
        let mut out = Vec::new();
        for cluster in updated {
            let rendered = match self.render(query, cluster, version) {
                Ok(q) => q,
                Err(e) => {
                    out.push((
                        (*cluster).to_owned(),
                        inconclusive(format!("cannot render the query: {e}"), query),
                    ));
                    continue;
                }
            };
            let (value, outcome) = self.query(&rendered).await;
            let verdict = match (outcome, baseline_value) {
                (Err(e), _) => source_failed(gate, e),
                (Ok(_), None) => match &baseline_problem {
                    Some(e) => source_failed(
                        gate,
                        SourceError {
                            unreachable: e.unreachable,
                            message: format!("baseline: {}", e.message),
                        },
                    ),
                    // Nothing runs on the baseline clusters yet (a first
                    // release): nothing to compare with.
                    None => Verdict::Pass,
                },
                (Ok(None), Some(_)) => no_data(gate, &rendered, cluster),
                (Ok(Some(v)), Some(b)) => {
                    match baseline_verdict(v, b, *max_increase, *max_increase_ratio) {
                        BaselineVerdict::Pass => Verdict::Pass,
                        BaselineVerdict::Fail { by } => Verdict::Fail(format!(
                            "query `{rendered}` on {cluster}: {by} (baseline: {} on {})",
                            fmt_value(b),
                            baseline.join(", ")
                        )),
                    }
                }
            };
            out.push((
                (*cluster).to_owned(),
                Judged {
                    verdict,
                    value,
                    baseline: baseline_value,
                    threshold: None,
                    asked: rendered,
                },
            ));
        }
        out
    }

    /// (the value, or why there is no verdict)
    async fn query(&self, promql: &str) -> (Option<f64>, Result<Option<f64>, SourceError>) {
        let Some(client) = &self.clients.prometheus else {
            return (
                None,
                Err(SourceError {
                    unreachable: false,
                    message: "no Prometheus is configured".to_owned(),
                }),
            );
        };
        match client.query_scalar(promql).await {
            Ok(value) => (value, Ok(value)),
            Err(PromError::Unreachable(e)) => (
                None,
                Err(SourceError {
                    unreachable: true,
                    message: format!("Prometheus unreachable: {e}"),
                }),
            ),
            Err(e) => (
                None,
                Err(SourceError {
                    unreachable: false,
                    message: e.to_string(),
                }),
            ),
        }
    }
}

fn fmt_value(v: f64) -> String {
    format!("{v:.4}")
}

fn inconclusive(reason: String, asked: &str) -> Judged {
    Judged {
        verdict: Verdict::Inconclusive(reason),
        value: None,
        baseline: None,
        threshold: None,
        asked: asked.to_owned(),
    }
}

/// Why a source gave no reading.
#[derive(Clone, Debug)]
struct SourceError {
    /// The source could not be reached (as opposed to refusing the query).
    unreachable: bool,
    message: String,
}

/// A reading that could not be taken: inconclusive, unless the gate says an
/// unreachable source is a bad reading.
fn source_failed(gate: &Gate, e: SourceError) -> Verdict {
    match (e.unreachable, gate.on_unreachable) {
        (true, UnreachablePolicy::Fail) => Verdict::Fail(e.message),
        (true, UnreachablePolicy::Inconclusive) | (false, _) => Verdict::Inconclusive(e.message),
    }
}

fn no_data(gate: &Gate, asked: &str, cluster: &str) -> Verdict {
    let what = format!("query `{asked}` on {cluster} returned no data");
    match gate.on_no_data {
        NoDataPolicy::Inconclusive => Verdict::Inconclusive(what),
        NoDataPolicy::Pass => Verdict::Pass,
        NoDataPolicy::Fail => Verdict::Fail(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gate::GateSpec;

    fn gate(extra: &str) -> Gate {
        let spec: GateSpec = serde_yaml_ng::from_str(&format!(
            "name: g\nprometheus: {{query: up, comparator: '<', threshold: 1}}\n{extra}"
        ))
        .unwrap();
        spec.parse().unwrap()
    }

    fn unreachable() -> SourceError {
        SourceError {
            unreachable: true,
            message: "Prometheus unreachable: connection refused".into(),
        }
    }

    #[test]
    fn an_unreachable_source_is_inconclusive_unless_the_gate_says_fail() {
        assert!(matches!(
            source_failed(&gate(""), unreachable()),
            Verdict::Inconclusive(_)
        ));
        assert!(matches!(
            source_failed(&gate("on_unreachable: fail\n"), unreachable()),
            Verdict::Fail(m) if m.contains("connection refused")
        ));
    }

    #[test]
    fn a_refused_query_stays_inconclusive_even_when_unreachable_means_fail() {
        let refused = SourceError {
            unreachable: false,
            message: "bad query".into(),
        };
        assert!(matches!(
            source_failed(&gate("on_unreachable: fail\n"), refused),
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn no_data_follows_the_gate_policy() {
        assert!(matches!(
            no_data(&gate(""), "up", "c"),
            Verdict::Inconclusive(_)
        ));
        assert_eq!(
            no_data(&gate("on_no_data: pass\n"), "up", "c"),
            Verdict::Pass
        );
        assert!(matches!(
            no_data(&gate("on_no_data: fail\n"), "up", "c"),
            Verdict::Fail(_)
        ));
    }
}
