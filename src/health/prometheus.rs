//! A client of the Prometheus HTTP API for gates: one instant query, one
//! number.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use super::error::chain;
use super::prom_response::{interpret, scalar_of};
use super::{HealthError, PromError, build_client};

/// Syntax checks evaluate the query at the Unix epoch: Prometheus 2.42 has
/// no parse-only endpoint (`/api/v1/parse_query` came later), and at that
/// instant no stored block overlaps, so evaluation touches no data and
/// costs nothing, while parse errors are reported exactly as for a real
/// evaluation.
const SYNTAX_CHECK_TIME: &str = "0";

/// Queries one Prometheus server. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base: Url,
    query_url: Url,
    timeout: Duration,
}

impl PrometheusClient {
    /// `base_url` is where Prometheus serves its UI, including any route
    /// prefix (`http://prom:9090`, `https://obs.example/prometheus`);
    /// `timeout` bounds every query end to end, connection included.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, HealthError> {
        let bad = |reason: &str| HealthError::BadUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("Prometheus is reached over http or https"));
        }
        // Without a trailing slash, joining would replace the last path
        // segment, dropping a route prefix such as `/prometheus`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let query_url = base
            .join("api/v1/query")
            .map_err(|e| bad(&format!("building the query URL: {e}")))?;
        Ok(Self {
            http: build_client(timeout)?,
            base,
            query_url,
            timeout,
        })
    }

    /// The base URL queries go to, normalised with a trailing slash.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// Evaluates `promql` now and returns its single value; `None` when
    /// there is no data: an empty result, or NaN/±Inf, which is what
    /// dividing by zero gives (an error ratio while the workload serves no
    /// traffic) and says nothing about health. A result with several series
    /// is [`PromError::NotScalar`]: a gate compares one number.
    pub async fn query_scalar(&self, promql: &str) -> Result<Option<f64>, PromError> {
        let data = self.instant_query(promql, None).await?;
        scalar_of(&data).map_err(|e| self.located(e))
    }

    /// Asks Prometheus whether `promql` parses, so a plan with a broken
    /// query is refused when it is submitted instead of failing a bake.
    /// A parse error is [`PromError::BadQuery`] with Prometheus' own text
    /// (`1:18: parse error: unclosed left parenthesis`).
    pub async fn check_syntax(&self, promql: &str) -> Result<(), PromError> {
        self.instant_query(promql, Some(SYNTAX_CHECK_TIME))
            .await
            .map(drop)
    }

    /// `GET /api/v1/query`; the `data` of a success answer.
    async fn instant_query(&self, promql: &str, time: Option<&str>) -> Result<Value, PromError> {
        // Also tell Prometheus when we stop waiting, so it stops evaluating.
        let timeout = format!("{:.3}", self.timeout.as_secs_f64());
        let mut params = vec![("query", promql), ("timeout", timeout.as_str())];
        if let Some(time) = time {
            params.push(("time", time));
        }
        let response = self
            .http
            .get(self.query_url.clone())
            .query(&params)
            .send()
            .await
            .map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| self.transport(&e))?;
        interpret(status, &body, promql).map_err(|e| self.located(e))
    }

    /// Every failure to get an answer is transient from a gate's point of
    /// view: Prometheus restarting, a network blip, an overloaded server.
    fn transport(&self, error: &reqwest::Error) -> PromError {
        if error.is_timeout() {
            PromError::Unreachable(format!(
                "{}: no answer within {:?}",
                self.base, self.timeout
            ))
        } else {
            PromError::Unreachable(format!("{}: {}", self.base, chain(error)))
        }
    }

    /// Names the server in messages that would otherwise not say which
    /// Prometheus was asked (a service may know several).
    fn located(&self, error: PromError) -> PromError {
        match error {
            PromError::Unreachable(m) => PromError::Unreachable(format!("{}: {m}", self.base)),
            PromError::Unexpected(m) => PromError::Unexpected(format!("{}: {m}", self.base)),
            other => other,
        }
    }
}
