//! `meridian`: parse the command line, hand over to the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Multi-cluster staged rollout orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control service: API, engine, dashboard.
    Serve {
        /// Clusters, applications and plans to reconcile into the database at start.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run the service with a simulated fleet, a sample application and plan.
    Demo {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Run only the simulated fleet, writing DIR/kubeconfig and DIR/meridian.yaml.
    Sim {
        /// Where to write the kubeconfig, the config file and sim.json.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PostgreSQL URL; without it Meridian runs its own PostgreSQL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Data folder of the embedded PostgreSQL (when no DATABASE_URL).
    #[arg(long, env = "MERIDIAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This replica's name in leases and events (default: host and pid).
    #[arg(long, env = "MERIDIAN_WORKER_ID")]
    worker_id: Option<String>,
    /// Kubeconfig to reach the clusters (the config file's own wins).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

impl ServerArgs {
    fn into_options(self, config: Option<PathBuf>) -> meridian::server::ServeOptions {
        meridian::server::ServeOptions {
            listen: self.listen,
            database_url: self.database_url,
            data_dir: self.data_dir,
            worker_id: self.worker_id,
            kubeconfig: self.kubeconfig,
            config,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    meridian::telemetry::init_logging();
    // reqwest and kube use rustls; pick its crypto provider once, here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { config, server } => {
                meridian::server::serve(server.into_options(config)).await
            }
            Command::Demo { server } => meridian::demo::run_demo(server.into_options(None)).await,
            Command::Sim { out } => meridian::demo::run_sim(&out).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
