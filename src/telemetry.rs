//! Logging and the service's own metrics.

use std::sync::Arc;

use prometheus_client::{encoding::text::encode, metrics::counter::Counter, registry::Registry};

/// Logs to stderr; `RUST_LOG` picks the level (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,kube=warn,tower_http=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Counters the service exposes at `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub releases_created: Counter,
    pub ticks: Counter,
    pub tick_failures: Counter,
    pub cluster_changes: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("meridian");
        let releases_created = Counter::default();
        let ticks = Counter::default();
        let tick_failures = Counter::default();
        let cluster_changes = Counter::default();
        registry.register(
            "releases_created",
            "Releases created through the API",
            releases_created.clone(),
        );
        registry.register(
            "engine_ticks",
            "Rollout ticks the engine completed",
            ticks.clone(),
        );
        registry.register(
            "engine_tick_failures",
            "Rollout ticks that failed and were retried",
            tick_failures.clone(),
        );
        registry.register(
            "cluster_changes",
            "Applies and restores sent to clusters",
            cluster_changes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            releases_created,
            ticks,
            tick_failures,
            cluster_changes,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
