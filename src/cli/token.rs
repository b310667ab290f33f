//! `meridian token create --role R --server URL`: an admin creates a token
//! through the API (the database-side variant, for the first admin token,
//! lives with `serve` in main.rs).

use serde_json::{Value, json};

use super::{
    client::Client,
    exit::{CliError, Exit},
    output::{Format, print_json},
};

pub struct CreateToken {
    pub role: String,
    pub name: Option<String>,
    pub expires_in: Option<std::time::Duration>,
}

pub async fn create(
    request: CreateToken,
    client: &Client,
    format: Format,
) -> Result<Exit, CliError> {
    let name = request.name.unwrap_or_else(|| {
        format!(
            "{}-{}",
            request.role,
            chrono::Utc::now().format("%Y%m%d%H%M%S")
        )
    });
    let mut body = json!({"name": name, "role": request.role});
    if let Some(lifetime) = request.expires_in {
        let lifetime = chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
        body["expires_at"] = Value::String((chrono::Utc::now() + lifetime).to_rfc3339());
    }
    let answer = client.post("/tokens", &body, &[]).await?;
    if format == Format::Json {
        print_json(&answer.body);
        return Ok(Exit::Success);
    }
    let secret = answer.body["token"].as_str().unwrap_or_default();
    eprintln!(
        "created token `{}` (role {}, id {}); its secret is shown only now:",
        answer.body["name"].as_str().unwrap_or_default(),
        answer.body["role"].as_str().unwrap_or_default(),
        answer.body["id"].as_str().unwrap_or_default(),
    );
    println!("{secret}");
    Ok(Exit::Success)
}
