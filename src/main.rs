//! `meridian`: parse the command line, hand over to the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Multi-cluster staged rollout orchestrator",
    after_help = meridian::cli::EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: TopCommand,
}

/// The service's commands, then the API client's (`meridian::cli`).
#[derive(Subcommand)]
enum TopCommand {
    #[command(flatten)]
    Service(Command),
    #[command(flatten)]
    Client(meridian::cli::ClientCommand),
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
    /// Manage API tokens directly in the database (for the first admin token).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret once, on stdout.
    Create {
        /// viewer, deployer, operator or admin.
        #[arg(long)]
        role: meridian::store::tokens::Role,
        /// Recorded as the actor of what the token does (default: role and time).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. `30d` or `12h` (default: never expires).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        database: DatabaseArgs,
        /// With `--server` (or `MERIDIAN_URL`), the token is created through
        /// the API by an admin token instead of in the database.
        #[command(flatten)]
        connection: meridian::cli::Connection,
    },
}

/// The database, chosen exactly as `serve` chooses it.
#[derive(clap::Args)]
struct DatabaseArgs {
    /// PostgreSQL URL; without it Meridian runs its own PostgreSQL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Data folder of the embedded PostgreSQL (when no DATABASE_URL).
    #[arg(long, env = "MERIDIAN_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "MERIDIAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    database: DatabaseArgs,
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
            database_url: self.database.database_url,
            data_dir: self.database.data_dir,
            worker_id: self.worker_id,
            kubeconfig: self.kubeconfig,
            config,
            bootstrap_token: None,
        }
    }
}

/// glibc's allocator was a quarter of `serve`'s CPU under load (many
/// small JSON and HTTP buffers freed on other threads); mimalloc is built
/// for that pattern.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = match Cli::parse().command {
        // Client commands have their own exit codes and print no service logs.
        TopCommand::Client(command) => return meridian::cli::run(command, Cli::command),
        // With a server named, `token create` is a client of the API.
        TopCommand::Service(Command::Token {
            command:
                TokenCommand::Create {
                    role,
                    name,
                    expires_in,
                    connection,
                    ..
                },
        }) if connection.names_a_server() => {
            let request = meridian::cli::CreateToken {
                role: role.as_str().to_owned(),
                name,
                expires_in,
            };
            return meridian::cli::run_token_create(connection, request);
        }
        TopCommand::Service(command) => command,
    };
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
        match command {
            Command::Serve { config, server } => {
                meridian::server::serve(server.into_options(config)).await
            }
            Command::Demo { server } => meridian::demo::run_demo(server.into_options(None)).await,
            Command::Sim { out } => meridian::demo::run_sim(&out).await,
            Command::Token {
                command:
                    TokenCommand::Create {
                        role,
                        name,
                        expires_in,
                        database,
                        connection: _,
                    },
            } => {
                create_token(meridian::server::TokenOptions {
                    database_url: database.database_url,
                    data_dir: database.data_dir,
                    role,
                    name,
                    expires_in,
                })
                .await
            }
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

/// The secret alone goes to stdout, so `TOKEN=$(meridian token create …)`
/// captures it; what it is goes to stderr.
async fn create_token(options: meridian::server::TokenOptions) -> anyhow::Result<()> {
    let (token, secret) = meridian::server::create_token(options).await?;
    let expires = token
        .expires_at
        .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339());
    eprintln!(
        "created token `{}` (role {}, id {}, expires {expires}); its secret is shown only now:",
        token.name, token.role, token.id
    );
    println!("{}", secret.expose());
    Ok(())
}
