//! `rollout wait` (and `release create --wait`): block until the rollout
//! ends, one line per change, and exit with a code that says how it ended.
//! Changes are noticed through the event stream, not by polling.

use std::{sync::Arc, time::Duration};

use chrono::SecondsFormat;
use serde_json::Value;
use uuid::Uuid;

use super::{
    client::{Client, decode},
    exit::{CliError, Exit},
    follow,
    model::Rollout,
    output::{Format, print_json},
};

/// What a line is printed for: the state and the stage it is in.
fn milestone(rollout: &Rollout) -> (String, usize) {
    (rollout.state.clone(), rollout.current_stage)
}

/// "2025-06-01T10:00:01Z  running  stage 2/3 small  (reason)"
pub fn change_line(rollout: &Rollout) -> String {
    let mut line = format!(
        "{}  {}",
        rollout
            .updated_at
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        rollout.state
    );
    let stage = rollout.stage_label();
    if !stage.is_empty() && rollout.outcome().is_none() {
        line.push_str("  ");
        line.push_str(&stage);
    }
    if let Some(reason) = rollout.reason.as_deref().filter(|r| !r.is_empty()) {
        line.push_str(&format!("  ({reason})"));
    }
    line
}

/// "rollout ID rolled_back: why" — how `watch` signs off.
pub fn end_line(rollout: &Rollout) -> String {
    match rollout.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(reason) => format!("rollout {} {}: {reason}", rollout.id, rollout.state),
        None => format!("rollout {} {}", rollout.id, rollout.state),
    }
}

pub async fn get_rollout(client: &Client, id: Uuid) -> Result<(Rollout, Value), CliError> {
    let raw = client.get(&format!("/rollouts/{id}"), &[]).await?;
    Ok((decode(raw.clone())?, raw))
}

/// Waits for rollout `id` to end; `timeout` bounds the wait. In table
/// format the lines go to stdout; in JSON format they go to stderr and the
/// final rollout, as the API shows it, to stdout.
pub async fn wait(
    client: Arc<Client>,
    id: Uuid,
    timeout: Option<Duration>,
    format: Format,
) -> Result<Exit, CliError> {
    let say = |line: String| match format {
        Format::Table => println!("{line}"),
        Format::Json => eprintln!("{line}"),
    };
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let (mut rollout, mut raw) = get_rollout(&client, id).await?;
    say(format!(
        "waiting for rollout {id} ({} {}, plan {})",
        rollout.application, rollout.release.version, rollout.plan.name
    ));
    say(change_line(&rollout));
    let mut seen = milestone(&rollout);
    // The stream replays the rollout's events from its first, so an end that
    // lands between the fetch above and the subscription is still seen.
    let mut updates = follow::spawn(client.clone(), id);
    while rollout.outcome().is_none() {
        let batch = async {
            match deadline {
                Some(at) => tokio::time::timeout_at(at, follow::next_batch(&mut updates))
                    .await
                    .ok(),
                None => Some(follow::next_batch(&mut updates).await),
            }
        };
        match batch.await {
            None => {
                let after = timeout.map(humantime::format_duration);
                return Err(CliError::new(
                    Exit::TimedOut,
                    format!(
                        "timed out after {}: rollout {id} is still {} {}",
                        after.map(|d| d.to_string()).unwrap_or_default(),
                        rollout.state,
                        rollout.stage_label()
                    )
                    .trim_end()
                    .to_owned(),
                ));
            }
            Some(batch) => {
                batch?;
            }
        }
        (rollout, raw) = get_rollout(&client, id).await?;
        if milestone(&rollout) != seen {
            seen = milestone(&rollout);
            say(change_line(&rollout));
        }
    }
    if format == Format::Json {
        print_json(&raw);
    }
    Ok(rollout.outcome().unwrap_or(Exit::Failure))
}
