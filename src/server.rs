//! Wires the service together once at start: database, catalog, fleet,
//! engine, HTTP. `main` only parses arguments and calls [`serve`].

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::{
    api::{self, AppState, BootstrapToken},
    config::Config,
    engine::{Engine, EngineConfig, HealthClients},
    fleet::{Fleet, FleetOptions, Watches},
    health::prometheus::PrometheusClient,
    store::{
        Store,
        embedded::EmbeddedPostgres,
        tokens::{NewToken, Role, TokenRecord, TokenSecret},
    },
    telemetry::Metrics,
    webhooks::{WebhookWorker, WorkerConfig},
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
    /// An admin token to accept, when not from `MERIDIAN_BOOTSTRAP_TOKEN`
    /// (the demo makes one up).
    pub bootstrap_token: Option<String>,
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
    let bootstrap_token = match &options.bootstrap_token {
        Some(value) => BootstrapToken::new(value)?,
        None => BootstrapToken::from_env()?,
    };
    if bootstrap_token.is_some() {
        tracing::warn!(
            "MERIDIAN_BOOTSTRAP_TOKEN is set and accepted as an admin token; unset it once real tokens exist"
        );
    }

    let database_url = options.database_url.clone();
    let data_dir = options.data_dir.clone();
    with_database(
        database_url.as_deref(),
        data_dir.as_deref(),
        |url| async move { run(options, config, bootstrap_token, &url, shutdown, on_ready).await },
    )
    .await
}

/// Runs `work` with a database URL: `database_url` when given, else that of
/// the embedded PostgreSQL in `data_dir` (or the default folder), started
/// for `work` and stopped after it, whatever it returned.
pub async fn with_database<T, F, Fut>(
    database_url: Option<&str>,
    data_dir: Option<&Path>,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let Some(url) = database_url else {
        let dir = data_dir.map_or_else(crate::store::embedded::default_data_dir, Path::to_owned);
        tracing::info!(data_dir = %dir.display(), "no DATABASE_URL; starting the embedded PostgreSQL");
        let pg = EmbeddedPostgres::start(&dir)
            .await
            .context("cannot start the embedded PostgreSQL")?;
        let result = work(pg.url()).await;
        if let Err(e) = pg.stop().await {
            tracing::warn!(error = %e, "embedded PostgreSQL did not stop cleanly");
        }
        return result;
    };
    work(url.to_owned()).await
}

/// What `meridian token create` asks for.
pub struct TokenOptions {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub role: Role,
    /// Default: the role and the time, e.g. `admin-20250101-120000`.
    pub name: Option<String>,
    pub expires_in: Option<std::time::Duration>,
}

/// `meridian token create`: writes a token straight into the database,
/// which is how the first admin token comes to exist. The secret is in the
/// returned value only.
pub async fn create_token(options: TokenOptions) -> anyhow::Result<(TokenRecord, TokenSecret)> {
    let now = crate::clock::now();
    let name = options
        .name
        .unwrap_or_else(|| format!("{}-{}", options.role, now.format("%Y%m%d-%H%M%S")));
    let name = crate::store::tokens::check_name(&name)
        .map_err(|e| anyhow::anyhow!("--name: {e}"))?
        .to_owned();
    let expires_at = match options.expires_in {
        None => None,
        Some(duration) => Some(
            chrono::Duration::from_std(duration)
                .ok()
                .and_then(|d| now.checked_add_signed(d))
                .context("--expires-in is too long")?,
        ),
    };
    with_database(
        options.database_url.as_deref(),
        options.data_dir.as_deref(),
        |url| async move {
            // One connection: this command makes one insert.
            let store = Store::connect(&url, 1).await?;
            let token = NewToken {
                name: &name,
                role: options.role,
                expires_at,
                created_by: "cli",
            };
            Ok(store.issue_token(&token).await?)
        },
    )
    .await
}

async fn run(
    options: ServeOptions,
    config: Option<Config>,
    bootstrap_token: Option<BootstrapToken>,
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
    let kubeconfig = kubeconfig.or_else(default_kubeconfig);
    let (changes, changed) = tokio::sync::mpsc::channel(crate::engine::wake::CHANNEL_CAPACITY);
    tokio::spawn(crate::engine::wake::run(
        store.clone(),
        changed,
        shutdown.clone(),
    ));
    // Clusters registered later through the API are reached through this
    // file, their clients (and watches) built when first needed.
    let fleet = Fleet::watching(
        kubeconfig.clone(),
        FleetOptions::default(),
        Watches {
            sink: changes,
            shutdown: shutdown.clone(),
        },
    );
    if !clusters.is_empty() {
        let path = kubeconfig
            .context("clusters are registered but no kubeconfig is known: set `kubeconfig` in the config file, --kubeconfig or KUBECONFIG")?;
        fleet.track(
            clusters
                .iter()
                .map(|c| (c.name.as_str(), c.context.as_str())),
        );
        for cluster in &clusters {
            // The config file's own clusters must be reachable through the
            // kubeconfig: a typo there stops the start. A cluster registered
            // through the API with a context the file lacks only fails its
            // own targets, so one bad registration cannot keep the service
            // down.
            let from_file = config
                .as_ref()
                .is_some_and(|c| c.clusters.iter().any(|f| f.name == cluster.name));
            match fleet.prepare(cluster.name.as_str()).await {
                Ok(()) => {}
                Err(e) if from_file => {
                    return Err(e).with_context(|| {
                        format!("cannot build cluster clients from {}", path.display())
                    });
                }
                Err(error) => {
                    tracing::warn!(cluster = %cluster.name, %error, "cannot build this cluster's client; its targets fail until its context is fixed");
                }
            }
        }
    }

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
    let mut engine_config = EngineConfig::new(worker_id.clone());
    if let Some(config) = &config {
        config.polling.apply_to(&mut engine_config.tuning);
    }
    let engine = Engine::new(store.clone(), fleet, health, engine_config);
    let metrics = Metrics::default();

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let event_horizon = api::spawn_event_horizon(store.clone(), shutdown.clone());
    api::spawn_key_expiry(store.clone(), shutdown.clone());
    let webhooks = WebhookWorker::new(
        store.clone(),
        WorkerConfig::new(worker_id, format!("http://{address}")),
    )
    .context("cannot build the webhook HTTP client")?;
    let webhook_task = tokio::spawn(webhooks.run(event_horizon.clone(), shutdown.clone()));
    let state = AppState {
        event_horizon,
        store,
        engine: engine.health(),
        metrics,
        public_url: format!("http://{address}"),
        bootstrap_token,
    };
    let engine_task = tokio::spawn(engine.run(shutdown.clone()));
    let api_task = tokio::spawn(api::serve(listener, state, shutdown.clone()));
    tracing::info!(%address, "meridian is serving");
    on_ready(address);

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    let engine_result = engine_task.await.context("engine task panicked")?;
    let webhook_result = webhook_task.await.context("webhook worker panicked")?;
    api_task.await.context("API task panicked")??;
    engine_result.and(webhook_result)
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
