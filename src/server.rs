//! Wires the service together once at start: database, catalog, fleet,
//! engine, HTTP. `main` only parses arguments and calls [`serve`].

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState},
    config::Config,
    engine::{Engine, EngineConfig, HealthClients},
    fleet::{Fleet, FleetOptions},
    health::prometheus::PrometheusClient,
    store::{Store, embedded::EmbeddedPostgres},
    telemetry::Metrics,
};

/// Connections the service keeps to PostgreSQL.
const DB_POOL_SIZE: u32 = 16;
/// Timeout of one HTTP gate check.
const HTTP_GATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub worker_id: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

/// Runs the service until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    serve_until(options, shutdown, |_| {}).await
}

/// Runs the service until `shutdown` is cancelled; `on_ready` is told the
/// address it listens on once it accepts requests.
pub async fn serve_until(
    options: ServeOptions,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Parse the config before touching anything, so a bad file changes nothing.
    let config = match &options.config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };

    let (database_url, embedded) = match &options.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let dir = options
                .data_dir
                .clone()
                .unwrap_or_else(crate::store::embedded::default_data_dir);
            tracing::info!(data_dir = %dir.display(), "no DATABASE_URL; starting the embedded PostgreSQL");
            let pg = EmbeddedPostgres::start(&dir)
                .await
                .context("cannot start the embedded PostgreSQL")?;
            (pg.url(), Some(pg))
        }
    };
    let result = run(options, config, &database_url, shutdown, on_ready).await;
    if let Some(pg) = embedded
        && let Err(e) = pg.stop().await
    {
        tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly");
    }
    result
}

async fn run(
    options: ServeOptions,
    config: Option<Config>,
    database_url: &str,
    shutdown: CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Prometheus judges gate queries before anything is stored.
    if let (Some(config), Some(path)) = (&config, &options.config)
        && let Some(settings) = &config.prometheus
    {
        let client = PrometheusClient::new(&settings.url, settings.timeout.0)
            .with_context(|| format!("bad Prometheus URL `{}`", settings.url))?;
        config.check_queries(path, &client).await?;
    }
    let store = Store::connect(database_url, DB_POOL_SIZE).await?;
    let mut kubeconfig = options.kubeconfig.clone();
    if let Some(config) = &config {
        let report = store
            .reconcile(config)
            .await
            .context("cannot store the config file's catalog")?;
        if report.is_empty() {
            tracing::info!("config file matches the database; nothing changed");
        } else {
            tracing::info!(?report, "config file reconciled into the database");
        }
        if config.kubeconfig.is_some() {
            kubeconfig.clone_from(&config.kubeconfig);
        }
    }

    let clusters = store.clusters().await?;
    let fleet = if clusters.is_empty() {
        Fleet::empty()
    } else {
        let path = kubeconfig
            .or_else(default_kubeconfig)
            .context("clusters are registered but no kubeconfig is known: set `kubeconfig` in the config file, --kubeconfig or KUBECONFIG")?;
        let contexts: Vec<(String, String)> = clusters
            .iter()
            .map(|c| (c.name.to_string(), c.context.clone()))
            .collect();
        Fleet::connect(&path, &contexts, FleetOptions::default())
            .await
            .with_context(|| format!("cannot build cluster clients from {}", path.display()))?
    };

    let prometheus = match config.as_ref().and_then(|c| c.prometheus.as_ref()) {
        Some(settings) => Some(
            PrometheusClient::new(&settings.url, settings.timeout.0)
                .with_context(|| format!("bad Prometheus URL `{}`", settings.url))?,
        ),
        None => None,
    };
    let health = HealthClients {
        prometheus,
        http: reqwest::Client::builder()
            .timeout(HTTP_GATE_TIMEOUT)
            .build()
            .context("cannot build the HTTP client for gates")?,
    };
    let worker_id = options.worker_id.clone().unwrap_or_else(default_worker_id);
    let engine = Engine::new(store.clone(), fleet, health, EngineConfig::new(worker_id));
    let metrics = Metrics::default();

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let event_changes = api::spawn_notifier(store.clone(), shutdown.clone());
    let state = AppState {
        event_changes,
        store,
        engine: engine.health(),
        metrics,
        public_url: format!("http://{address}"),
    };
    let engine_task = tokio::spawn(engine.run(shutdown.clone()));
    let api_task = tokio::spawn(api::serve(listener, state, shutdown.clone()));
    tracing::info!(%address, "meridian is serving");
    on_ready(address);

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let engine_result = engine_task.await.context("engine task panicked")?;
    api_task.await.context("API task panicked")??;
    engine_result
}

fn default_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config"))
}

fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "meridian".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        shutdown.cancel();
    });
}
