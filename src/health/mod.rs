//! Health gates' IO: the Prometheus HTTP API client, HTTP checks, and the
//! pure threshold and baseline arithmetic that turns readings into verdicts.
//!
//! The state machine in `domain` decides what a reading means for a rollout;
//! this module only produces readings, and keeps "the data is bad" apart from
//! "we could not look" ([`PromError::Unreachable`], [`HttpOutcome::Unreachable`])
//! so a Prometheus outage pauses a rollout instead of rolling it back.

mod client;
pub mod comparison;
mod error;
pub mod http_check;
mod json_path;
mod prom_response;
pub mod prometheus;
mod status_class;

#[cfg(test)]
mod tests;

pub use client::build_client;
pub use comparison::{BaselineVerdict, Comparator, baseline_verdict};
pub use error::{HealthError, PromError};
pub use http_check::{HttpCheck, HttpOutcome};
pub use prometheus::PrometheusClient;
pub use status_class::StatusClass;
