//! `meridian release create`: what CI runs to ship a version.

use std::{sync::Arc, time::Duration};

use clap::Subcommand;
use serde_json::json;

use super::{
    client::Client,
    exit::{CliError, EXIT_CODES_HELP, Exit},
    output::{Format, print_json},
    wait,
};

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Create a release and start its rollout.
    #[command(after_help = EXIT_CODES_HELP)]
    Create {
        /// The application, as named in the server's config.
        #[arg(long, short = 'a')]
        application: String,
        /// The release's version string, e.g. 1.4.2.
        #[arg(long)]
        version: String,
        /// The image reference the templates get as `image`.
        #[arg(long)]
        image: String,
        /// Start even if the pre-rollout check finds the fleet unhealthy.
        #[arg(long)]
        force: bool,
        /// If the application has an active rollout, start after it ends
        /// instead of being refused.
        #[arg(long)]
        queue: bool,
        /// Makes a retried command safe: the same key and body create
        /// nothing new (e.g. the CI job id).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
        /// Then wait for the rollout to end, as `rollout wait` does.
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (exit code 13).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "wait")]
        timeout: Option<Duration>,
    },
}

pub async fn run(
    command: ReleaseCommand,
    client: Arc<Client>,
    format: Format,
) -> Result<Exit, CliError> {
    match command {
        ReleaseCommand::Create {
            application,
            version,
            image,
            force,
            queue,
            idempotency_key,
            wait,
            timeout,
        } => {
            let body = json!({
                "application": application,
                "version": version,
                "image": image,
                "force": force,
                "on_active": if queue { "queue" } else { "reject" },
            });
            let headers: Vec<(&str, String)> = idempotency_key
                .into_iter()
                .map(|key| ("Idempotency-Key", key))
                .collect();
            let answer = client.post("/releases", &body, &headers).await?;
            let id = answer.body["id"]
                .as_str()
                .and_then(|s| s.parse::<uuid::Uuid>().ok())
                .ok_or_else(|| {
                    CliError::failure("the server created the release but named no rollout id")
                })?;
            match format {
                // With --wait the final rollout is the one JSON document.
                Format::Json if !wait => print_json(&answer.body),
                Format::Json => {}
                Format::Table => {
                    let queued = if answer.body["queued"].as_bool() == Some(true) {
                        " (queued behind the application's active rollout)"
                    } else {
                        ""
                    };
                    println!("created release {application} {version}: rollout {id}{queued}");
                    if let Some(link) = answer.body["links"]["dashboard"].as_str() {
                        println!("{link}");
                    }
                }
            }
            if wait {
                wait::wait(client, id, timeout, format).await
            } else {
                Ok(Exit::Success)
            }
        }
    }
}
