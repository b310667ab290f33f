//! The client side of the `meridian` binary: commands for operators and CI
//! that speak the REST API, with documented exit codes (see [`exit`]).
//! One module per command group; shared pieces are the HTTP client, the
//! settings resolution, output formatting and the event-stream follower.

mod client;
mod cluster;
mod config;
mod exit;
mod follow;
mod model;
mod output;
mod plan;
mod release;
mod rollout;
mod sse;
mod token;
mod view;
mod wait;
mod watch;

use std::{process::ExitCode, sync::Arc};

use clap::{Args, Subcommand};

pub use exit::{EXIT_CODES_HELP, Exit};
pub use token::CreateToken;

/// Client commands, flattened into the binary's top-level commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Create releases (CI): `release create --wait` ships and waits.
    #[command(after_help = EXIT_CODES_HELP)]
    Release {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: release::ReleaseCommand,
    },
    /// Follow and steer rollouts: list, get, watch, wait, pause, resume,
    /// approve, retry, rollback, abort.
    #[command(after_help = EXIT_CODES_HELP)]
    Rollout {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: rollout::RolloutCommand,
    },
    /// Validate, apply and list plans.
    #[command(after_help = EXIT_CODES_HELP)]
    Plan {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: plan::PlanCommand,
    },
    /// List clusters.
    #[command(after_help = EXIT_CODES_HELP)]
    Cluster {
        #[command(flatten)]
        connection: Connection,
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Print a shell completion script, e.g. `meridian completions bash >
    /// /etc/bash_completion.d/meridian`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where the server is, who we are, how to print. `global` so they may
/// follow the subcommand: `meridian rollout list -o json`.
#[derive(Args, Debug)]
pub struct Connection {
    /// Meridian's base URL [env: MERIDIAN_URL; else `server` in
    /// ~/.config/meridian/config.toml; else http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// API token [env: MERIDIAN_TOKEN; else `token` in the config file].
    /// Prefer the environment or the file: flags show up in `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    token: Option<String>,
    /// `table` for people, `json` for scripts (the API's own shapes).
    #[arg(
        long,
        short = 'o',
        global = true,
        value_enum,
        default_value_t = output::Format::Table
    )]
    output: output::Format,
}

impl Connection {
    /// Whether a server was named (flag or `MERIDIAN_URL`): `token create`
    /// then goes through the API instead of the database.
    pub fn names_a_server(&self) -> bool {
        self.server.is_some() || std::env::var(config::URL_ENV).is_ok_and(|v| !v.trim().is_empty())
    }
}

/// `meridian token create --role R --server URL`: through the API (admin).
pub fn run_token_create(connection: Connection, request: CreateToken) -> ExitCode {
    run_client(async {
        let output = connection.output;
        let client = client_for(connection)?;
        token::create(request, &client, output).await
    })
}

/// Runs a client command and answers the process's exit code. `root`
/// builds the whole command line, for completions.
pub fn run(command: ClientCommand, root: fn() -> clap::Command) -> ExitCode {
    if let ClientCommand::Completions { shell } = command {
        let mut root = root();
        let name = root.get_name().to_owned();
        clap_complete::generate(shell, &mut root, name, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    run_client(dispatch(command))
}

/// Runs one client command to completion and turns its outcome into the
/// process's exit code, printing an error as one line.
fn run_client(command: impl Future<Output = Result<Exit, exit::CliError>>) -> ExitCode {
    // reqwest uses rustls; the provider is chosen once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One thread is plenty for one user's requests and the event stream.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(command) {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error}");
            error.exit.into()
        }
    }
}

/// A client for the server and token the flags, environment and config
/// file name.
fn client_for(connection: Connection) -> Result<client::Client, exit::CliError> {
    let settings = config::load(config::Layer {
        server: connection.server,
        token: connection.token,
    })?;
    client::Client::new(settings)
}

async fn dispatch(command: ClientCommand) -> Result<Exit, exit::CliError> {
    let connect = |connection: Connection| -> Result<_, exit::CliError> {
        let output = connection.output;
        Ok((Arc::new(client_for(connection)?), output))
    };
    match command {
        ClientCommand::Release {
            connection,
            command,
        } => {
            let (client, format) = connect(connection)?;
            release::run(command, client, format).await
        }
        ClientCommand::Rollout {
            connection,
            command,
        } => {
            let (client, format) = connect(connection)?;
            rollout::run(command, client, format).await
        }
        ClientCommand::Plan {
            connection,
            command,
        } => {
            let (client, format) = connect(connection)?;
            plan::run(command, &client, format).await
        }
        ClientCommand::Cluster {
            connection,
            command,
        } => {
            let (client, format) = connect(connection)?;
            cluster::run(command, &client, format).await
        }
        // Handled before the runtime starts: it needs no server.
        ClientCommand::Completions { .. } => Ok(Exit::Success),
    }
}
