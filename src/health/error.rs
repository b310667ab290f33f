//! Errors of the health drivers.
//!
//! [`PromError`] separates transient trouble (worth retrying, never a reason
//! to roll back) from a query that can never work (a plan mistake to report)
//! and from answers that are well-formed but unusable for a gate.

use thiserror::Error;

/// Setting up a health driver failed: a configuration mistake, reported when
/// the gate is built rather than at every evaluation.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HealthError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid expected status {0:?}: use 2xx, 3xx, 4xx, 5xx or an exact code such as 200")]
    BadStatusClass(String),
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// Why a Prometheus query produced no reading.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PromError {
    /// Connection refused, timeout, or a 5xx: transient, try again later.
    #[error("Prometheus unreachable: {0}")]
    Unreachable(String),
    /// Prometheus refused the query itself; `message` is its own error text.
    #[error("Prometheus refused the query {query:?}: {message}")]
    BadQuery { query: String, message: String },
    /// The query returned several series; gate queries must aggregate to one
    /// value (`sum(...)`, `max(...)`, …).
    #[error("the query returned {series} series, not one value; aggregate it (sum, max, avg …)")]
    NotScalar { series: usize },
    /// Anything else: a non-Prometheus server, a matrix result, broken JSON.
    #[error("unexpected answer from Prometheus: {0}")]
    Unexpected(String),
}

impl PromError {
    /// Whether trying again later may succeed without anyone changing the
    /// plan.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_))
    }
}

/// `error: cause: cause …`, because reqwest's own `Display` hides the one
/// part an operator needs (the refused connection, the DNS failure).
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // hyper and reqwest often repeat the inner message; say it once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
