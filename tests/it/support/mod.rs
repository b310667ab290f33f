//! Test harness: a database per test, the simulated fleet and `meridian
//! serve` as real processes, and an HTTP client for the API.

#![allow(dead_code)]

pub mod api;
pub mod config;
pub mod db;
pub mod process;
pub mod prometheus;
pub mod sim;
pub mod world;

use std::time::Duration;

pub use api::Api;
pub use db::TestDb;
pub use process::{Server, ServerBuilder};
pub use sim::Sim;

/// The most any wait in a test may take before the test fails: generous,
/// because CI machines are shared and slow, and never a pass condition.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Polls `check` until it returns `Some`, failing the test after `PATIENCE`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
