//! `meridian rollout …`: list, get, watch, wait and the operator actions.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;
use uuid::Uuid;

use super::{
    client::{Client, decode},
    exit::{CliError, EXIT_CODES_HELP, Exit},
    model::{Items, Rollout},
    output::{Format, Style, Table, print_json, relative},
    view, wait, watch,
};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// List rollouts, newest first.
    List {
        /// Only this application's rollouts.
        #[arg(long)]
        application: Option<String>,
        /// Only rollouts in this state (e.g. running, paused, rolled_back).
        #[arg(long)]
        state: Option<String>,
        /// At most this many (the server allows 1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The next page: the cursor a previous list named.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one rollout: its state, stages and clusters.
    Get {
        /// The rollout's id.
        id: Uuid,
    },
    /// Follow a rollout live until it ends (exit codes as for `wait`).
    #[command(after_help = EXIT_CODES_HELP)]
    Watch { id: Uuid },
    /// Block until a rollout ends; the exit code says how it ended.
    #[command(after_help = EXIT_CODES_HELP)]
    Wait {
        id: Uuid,
        /// Give up after this long (e.g. `30m`, `2h`) with exit code 13.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        timeout: Option<Duration>,
    },
    /// Hold the rollout: no cluster is changed until `resume`.
    Pause(ActionArgs),
    /// Let a paused rollout go on.
    Resume(ActionArgs),
    /// Let a stage that needs approval start.
    Approve(ActionArgs),
    /// Re-run the failed stage after a fix (plans with `on_failure: halt`).
    Retry(ActionArgs),
    /// Put back every cluster the rollout changed, newest first.
    Rollback(DestructiveArgs),
    /// Stop where it is and leave the clusters as they are.
    Abort(DestructiveArgs),
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    /// The rollout's id.
    pub id: Uuid,
    /// Why, recorded in the rollout's event log.
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Args, Debug)]
pub struct DestructiveArgs {
    #[command(flatten)]
    pub action: ActionArgs,
    /// Do it without asking (required when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub async fn run(
    command: RolloutCommand,
    client: Arc<Client>,
    format: Format,
) -> Result<Exit, CliError> {
    match command {
        RolloutCommand::List {
            application,
            state,
            limit,
            cursor,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            let filters = [
                ("application", application),
                ("state", state),
                ("cursor", cursor),
            ];
            query.extend(filters.into_iter().filter_map(|(k, v)| Some((k, v?))));
            list(&client, &query, format).await
        }
        RolloutCommand::Get { id } => get(&client, id, format).await,
        RolloutCommand::Watch { id } => {
            // The live view needs a terminal to redraw; anything else (a
            // pipe, a CI log) gets lines it can keep.
            let live = std::io::stdout().is_terminal();
            watch::watch(client, id, format, live).await
        }
        RolloutCommand::Wait { id, timeout } => wait::wait(client, id, timeout, format).await,
        RolloutCommand::Pause(args) => act(&client, "pause", args, format).await,
        RolloutCommand::Resume(args) => act(&client, "resume", args, format).await,
        RolloutCommand::Approve(args) => act(&client, "approve", args, format).await,
        RolloutCommand::Retry(args) => act(&client, "retry", args, format).await,
        RolloutCommand::Rollback(args) => destructive(&client, "rollback", args, format).await,
        RolloutCommand::Abort(args) => destructive(&client, "abort", args, format).await,
    }
}

async fn list(client: &Client, query: &[(&str, String)], format: Format) -> Result<Exit, CliError> {
    let raw = client.get("/rollouts", query).await?;
    if format == Format::Json {
        print_json(&raw);
        return Ok(Exit::Success);
    }
    let raw_cursor = raw["next_cursor"].as_str().map(str::to_owned);
    let rollouts: Items<Rollout> = decode(raw)?;
    if rollouts.items.is_empty() {
        eprintln!("no rollouts");
        return Ok(Exit::Success);
    }
    let style = Style::for_stdout();
    let now = Utc::now();
    let mut table = Table::new(&[
        "ID",
        "APPLICATION",
        "VERSION",
        "STATE",
        "STAGE",
        "PLAN",
        "CREATED",
        "UPDATED",
    ]);
    for rollout in &rollouts.items {
        table.row(vec![
            rollout.id.to_string().into(),
            rollout.application.as_str().into(),
            rollout.release.version.as_str().into(),
            style.state(&rollout.state),
            stage_column(rollout).into(),
            format!("{} v{}", rollout.plan.name, rollout.plan.version).into(),
            relative(rollout.created_at, now).into(),
            relative(rollout.updated_at, now).into(),
        ]);
    }
    print!("{}", table.render());
    if let Some(cursor) = raw_cursor {
        // On stderr, so the table stays clean for `grep` and friends.
        eprintln!("more: meridian rollout list --cursor {cursor}");
    }
    Ok(Exit::Success)
}

/// "2/3 small"
fn stage_column(rollout: &Rollout) -> String {
    match rollout.current() {
        Some(stage) => format!(
            "{}/{} {}",
            rollout.current_stage + 1,
            rollout.stages.len(),
            stage.name
        ),
        None => "-".to_owned(),
    }
}

async fn get(client: &Client, id: Uuid, format: Format) -> Result<Exit, CliError> {
    let (rollout, raw) = wait::get_rollout(client, id).await?;
    match format {
        Format::Json => print_json(&raw),
        Format::Table => print!(
            "{}",
            view::rollout_detail(&rollout, Utc::now(), Style::for_stdout())
        ),
    }
    Ok(Exit::Success)
}

async fn act(
    client: &Client,
    action: &str,
    args: ActionArgs,
    format: Format,
) -> Result<Exit, CliError> {
    let body = match &args.reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    };
    let answer = client
        .post(&format!("/rollouts/{}/{action}", args.id), &body, &[])
        .await?;
    match format {
        Format::Json => print_json(&answer.body),
        Format::Table => {
            let was = answer.body["state"].as_str().unwrap_or("unknown");
            println!(
                "{action} of rollout {} accepted (it was {was}); follow it with `meridian rollout watch {}`",
                args.id, args.id
            );
        }
    }
    Ok(Exit::Success)
}

/// Rollback and abort change many clusters or strand them: a person at a
/// terminal confirms, a script says `--yes`.
async fn destructive(
    client: &Client,
    action: &str,
    args: DestructiveArgs,
    format: Format,
) -> Result<Exit, CliError> {
    let id = args.action.id;
    let verb = if action == "rollback" {
        "roll back"
    } else {
        action
    };
    if !args.yes {
        let interactive = std::io::stdin().is_terminal();
        if !interactive {
            return Err(CliError::usage(format!(
                "refusing to {verb} rollout {id} without confirmation: stdin is not a terminal; pass --yes to confirm"
            )));
        }
        // Fetched first so the question names what is at stake, and an
        // unknown id fails before anyone is asked anything.
        let (rollout, _) = wait::get_rollout(client, id).await?;
        let question = question(action, &rollout);
        let confirmed = tokio::task::spawn_blocking(move || ask(&question))
            .await
            .map_err(|e| CliError::failure(format!("cannot read the answer: {e}")))??;
        if !confirmed {
            return Err(CliError::failure(format!(
                "not confirmed; rollout {id} was left as it is"
            )));
        }
    }
    act(client, action, args.action, format).await
}

fn question(action: &str, rollout: &Rollout) -> String {
    let changed = rollout
        .stages
        .iter()
        .flat_map(|s| &s.targets)
        .filter(|t| t.state != "pending")
        .count();
    let what = match action {
        "rollback" => format!(
            "Roll back rollout {} ({} {}, {})? The {changed} cluster(s) it changed go back to their previous release.",
            rollout.id, rollout.application, rollout.release.version, rollout.state
        ),
        _ => format!(
            "Abort rollout {} ({} {}, {})? It stops here and leaves its {changed} changed cluster(s) as they are.",
            rollout.id, rollout.application, rollout.release.version, rollout.state
        ),
    };
    format!("{what} [y/N] ")
}

/// Asks on stderr (stdout may be piped) and reads one line from stdin.
fn ask(question: &str) -> Result<bool, CliError> {
    use std::io::Write;
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| CliError::failure(format!("cannot read the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
