//! The HTTP client for Meridian's REST API: sends the token, turns every
//! failure into one line and a documented exit code.

use std::time::Duration;

use reqwest::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    config::{Settings, Source, TOKEN_ENV, URL_ENV},
    exit::{CliError, Exit},
};

/// A server that does not accept the connection in this time is treated as
/// unreachable rather than slow.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server answers ordinary requests within its own 30 s limit; a little
/// more here so its 408 reaches the user instead of our timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(35);

pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

/// A status and JSON body the server answered with, success or not.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Client, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("meridian-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::failure(format!("cannot set up HTTP: {e}")))?;
        Ok(Client { http, settings })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.settings.server)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.settings.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// GETs `path` and answers its JSON body; any non-2xx is an error.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        let request = self
            .request(reqwest::Method::GET, path)
            .query(query)
            .timeout(REQUEST_TIMEOUT);
        let answer = self.send(request).await?;
        self.success(answer)
    }

    /// POSTs `body` as JSON; any non-2xx is an error.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        let answer = self.post_answer(path, body, headers).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(self.refused(&answer))
        }
    }

    /// POSTs `body` and answers whatever came back, for callers that treat
    /// some refusals (a 422 from validation) as ordinary answers. Auth and
    /// connection failures are still errors.
    pub async fn post_answer(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, String)],
    ) -> Result<Answer, CliError> {
        let mut request = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let answer = self.send(request).await?;
        if matches!(
            answer.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return Err(self.refused(&answer));
        }
        Ok(answer)
    }

    /// Opens the rollout's server-sent event stream; no overall timeout,
    /// the stream is meant to stay open.
    pub async fn event_stream(
        &self,
        rollout: uuid::Uuid,
        last_event_id: Option<i64>,
    ) -> Result<reqwest::Response, CliError> {
        let mut request = self
            .request(reqwest::Method::GET, "/events/stream")
            .query(&[("rollout", rollout.to_string())])
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Err(self.refused(&Answer { status, body }))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, CliError> {
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.unreachable(&e))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                // A proxy's HTML error page, say: keep its start for the message.
                Value::String(String::from_utf8_lossy(&bytes).chars().take(200).collect())
            })
        };
        Ok(Answer { status, body })
    }

    fn success(&self, answer: Answer) -> Result<Value, CliError> {
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(self.refused(&answer))
        }
    }

    /// The one line for a non-2xx answer: the server's problem detail, plus
    /// what to do for auth failures.
    pub fn refused(&self, answer: &Answer) -> CliError {
        let detail = problem_detail(answer.status, &answer.body);
        match answer.status {
            StatusCode::UNAUTHORIZED => {
                let hint = match &self.settings.token_source {
                    None => format!(
                        "no token was sent; pass --token, set {TOKEN_ENV}, or put `token` in the config file"
                    ),
                    Some(source) => format!("the token from {} was refused", token_origin(source)),
                };
                CliError::new(Exit::Auth, format!("unauthorized: {detail} ({hint})"))
            }
            StatusCode::FORBIDDEN => CliError::new(
                Exit::Auth,
                format!("forbidden: {detail} (ask an admin for a token with that role)"),
            ),
            StatusCode::NOT_FOUND => CliError::new(Exit::NotFound, detail),
            _ => CliError::failure(detail),
        }
    }

    /// The one line for a request that got no answer.
    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        let server = &self.settings.server;
        let why = if error.is_timeout() {
            "it did not answer in time".to_owned()
        } else {
            root_cause(error)
        };
        let hint = match self.settings.server_source {
            Source::Default => format!("the default; set --server or {URL_ENV}"),
            ref source => format!("from {}", server_origin(source)),
        };
        CliError::new(
            Exit::Connection,
            format!("cannot reach Meridian at {server} ({hint}): {why}"),
        )
    }
}

fn token_origin(source: &Source) -> String {
    match source {
        Source::Flag => "--token".to_owned(),
        Source::Env => TOKEN_ENV.to_owned(),
        other => other.to_string(),
    }
}

fn server_origin(source: &Source) -> String {
    match source {
        Source::Flag => "--server".to_owned(),
        Source::Env => URL_ENV.to_owned(),
        other => other.to_string(),
    }
}

/// The server's problem `detail` (with the `field` it names), or the status
/// line when the body is not a problem document.
pub fn problem_detail(status: StatusCode, body: &Value) -> String {
    let detail = body["detail"].as_str().or_else(|| body.as_str());
    let text = match detail {
        Some(detail) if !detail.trim().is_empty() => detail.trim().to_owned(),
        _ => format!(
            "the server answered {} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
    };
    match body["field"].as_str() {
        Some(field) if !text.contains(field) => format!("at `{field}`: {text}"),
        _ => text,
    }
}

/// The innermost error's text: "Connection refused (os error 111)" says
/// more than reqwest's "error sending request for url (…)".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Reads `value` as `T`; a mismatch means the server and the CLI disagree
/// about a shape, which only a version skew explains.
pub fn decode<T: DeserializeOwned>(value: Value) -> Result<T, CliError> {
    serde_json::from_value(value).map_err(|e| {
        CliError::failure(format!(
            "the server's answer is not what this CLI expects ({e}); are the CLI and server the same version?"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_problem_document_gives_its_detail_and_field() {
        let body = json!({"type": "about:blank", "title": "Invalid field", "status": 422,
            "detail": "unknown cluster `x`", "field": "stages[0].clusters"});
        assert_eq!(
            problem_detail(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "at `stages[0].clusters`: unknown cluster `x`"
        );
    }

    #[test]
    fn a_body_that_is_not_a_problem_gives_the_status_line() {
        assert_eq!(
            problem_detail(StatusCode::BAD_GATEWAY, &Value::Null),
            "the server answered 502 Bad Gateway"
        );
    }
}
