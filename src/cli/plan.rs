//! `meridian plan validate|apply|list`: plans written as in the config
//! file (YAML or JSON), sent to the server as JSON.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use chrono::{DateTime, Utc};
use clap::Subcommand;
use reqwest::StatusCode;
use serde_json::Value;

use super::{
    client::{Client, problem_detail},
    exit::{CliError, Exit},
    output::{Format, Table, print_json, relative},
};

#[derive(Subcommand, Debug)]
pub enum PlanCommand {
    /// Check a plan file on the server without changing anything.
    Validate {
        /// The plan (YAML or JSON; `-` for stdin): one plan, a list of
        /// plans, or a config file's `plans:`.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
    /// Create or update plans; a changed plan becomes a new version.
    Apply {
        /// As for `validate`.
        #[arg(long, short = 'f', value_name = "FILE")]
        file: PathBuf,
    },
    /// List the plans the server knows, with their latest version.
    List,
}

pub async fn run(command: PlanCommand, client: &Client, format: Format) -> Result<Exit, CliError> {
    match command {
        PlanCommand::Validate { file } => validate(client, &file, format).await,
        PlanCommand::Apply { file } => apply(client, &file, format).await,
        PlanCommand::List => list(client, format).await,
    }
}

async fn validate(client: &Client, file: &Path, format: Format) -> Result<Exit, CliError> {
    let plans = read_plans(file)?;
    let mut results = Vec::new();
    let mut invalid = 0;
    for plan in &plans {
        let name = plan_name(plan);
        let answer = client.post_answer("/plans/validate", plan, &[]).await?;
        match answer.status {
            status if status.is_success() => {
                if format == Format::Table {
                    println!("{}: plan `{name}` is valid", file.display());
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                invalid += 1;
                if format == Format::Table {
                    println!(
                        "{}: plan `{name}`: {}",
                        file.display(),
                        problem_detail(answer.status, &answer.body)
                    );
                }
            }
            _ => return Err(client.refused(&answer)),
        }
        results.push(answer.body);
    }
    if format == Format::Json {
        // One document per plan, in file order: the server's own answers.
        print_json(&single_or_list(results));
    }
    if invalid > 0 {
        return Err(CliError::failure(format!(
            "{invalid} of {} plan(s) in {} are invalid",
            plans.len(),
            file.display()
        )));
    }
    Ok(Exit::Success)
}

async fn apply(client: &Client, file: &Path, format: Format) -> Result<Exit, CliError> {
    let plans = read_plans(file)?;
    let mut results = Vec::new();
    for plan in &plans {
        let name = plan_name(plan);
        let answer = client.post("/plans", plan, &[]).await.map_err(|e| {
            CliError::new(e.exit, format!("{}: plan `{name}`: {e}", file.display()))
        })?;
        if format == Format::Table {
            let version = answer.body["version"].as_i64().unwrap_or_default();
            // `created: false` (or a 200) means the same plan was there.
            let created = answer.body["created"]
                .as_bool()
                .unwrap_or(answer.status == StatusCode::CREATED);
            let what = if created {
                "applied as version"
            } else {
                "unchanged at version"
            };
            println!("plan `{name}` {what} {version}");
        }
        results.push(answer.body);
    }
    if format == Format::Json {
        print_json(&single_or_list(results));
    }
    Ok(Exit::Success)
}

async fn list(client: &Client, format: Format) -> Result<Exit, CliError> {
    let raw = client.get("/plans", &[]).await?;
    if format == Format::Json {
        print_json(&raw);
        return Ok(Exit::Success);
    }
    let items = raw["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("no plans");
        return Ok(Exit::Success);
    }
    let now = Utc::now();
    let mut table = Table::new(&["NAME", "VERSION", "STAGES", "ON FAILURE", "UPDATED"]);
    for plan in &items {
        // Read field by field: the list's shape may grow, and a column
        // the server does not send shows as "-". The plan's own fields sit
        // under `spec`, next to the version's metadata.
        let field = |key: &str| {
            if plan[key].is_null() {
                &plan["spec"][key]
            } else {
                &plan[key]
            }
        };
        let stages = match field("stages") {
            Value::Array(stages) => stages
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect::<Vec<_>>()
                .join(" → "),
            Value::Number(n) => n.to_string(),
            _ => "-".to_owned(),
        };
        let updated = ["updated_at", "created_at"]
            .iter()
            .find_map(|key| plan[*key].as_str()?.parse::<DateTime<Utc>>().ok())
            .map_or_else(|| "-".to_owned(), |at| relative(at, now));
        table.row(vec![
            plan["name"].as_str().unwrap_or("-").into(),
            plan["version"]
                .as_i64()
                .map_or_else(|| "-".to_owned(), |v| v.to_string())
                .into(),
            stages.into(),
            field("on_failure").as_str().unwrap_or("-").into(),
            updated.into(),
        ]);
    }
    print!("{}", table.render());
    Ok(Exit::Success)
}

/// The plans in `file`: one plan mapping, a list of plans, or a config
/// file's `plans:` (so `-f meridian.yaml` works too).
fn read_plans(file: &Path) -> Result<Vec<Value>, CliError> {
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::failure(format!("cannot read stdin: {e}")))?;
        text
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::failure(format!("cannot read {}: {e}", file.display())))?
    };
    plans_of(&text).map_err(|why| CliError::failure(format!("{}: {why}", file.display())))
}

fn plans_of(text: &str) -> Result<Vec<Value>, String> {
    // YAML is a superset of JSON, so one parser reads both.
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let plans = match value {
        Value::Array(plans) => plans,
        Value::Object(ref map) if map.contains_key("plans") && !map.contains_key("stages") => {
            match &map["plans"] {
                Value::Array(plans) => plans.clone(),
                _ => return Err("`plans` must be a list".to_owned()),
            }
        }
        Value::Object(_) => vec![value],
        _ => return Err("expected a plan (a mapping with `name` and `stages`)".to_owned()),
    };
    if plans.is_empty() {
        return Err("no plan in the file".to_owned());
    }
    if let Some(bad) = plans.iter().position(|p| !p.is_object()) {
        return Err(format!("plan {} is not a mapping", bad + 1));
    }
    Ok(plans)
}

fn plan_name(plan: &Value) -> String {
    plan["name"].as_str().unwrap_or("(unnamed)").to_owned()
}

fn single_or_list(mut results: Vec<Value>) -> Value {
    if results.len() == 1 {
        results.remove(0)
    } else {
        Value::Array(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_file_may_hold_one_plan_a_list_or_a_config_files_plans() {
        let one = plans_of("name: waves\nstages: [{name: canary, clusters: all}]\n").expect("one");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0]["stages"][0]["clusters"], "all");
        let list = plans_of("- {name: a, stages: []}\n- {name: b, stages: []}\n").expect("list");
        assert_eq!(list.len(), 2);
        let config = plans_of("clusters: []\nplans:\n  - {name: a, stages: []}\n").expect("config");
        assert_eq!(config[0]["name"], "a");
        let json = plans_of(r#"{"name": "j", "stages": []}"#).expect("json");
        assert_eq!(json[0]["name"], "j");
    }

    #[test]
    fn a_file_without_a_plan_is_refused_with_why() {
        assert!(plans_of("plans: []\n").is_err());
        assert!(plans_of("42\n").is_err());
        assert!(plans_of("name: [unclosed\n").is_err());
    }
}
