//! HTTP checks: GET a URL, judge the status code and optionally one field
//! of a JSON body.

use std::time::Duration;

use serde_json::Value;

use super::StatusClass;
use super::error::chain;
use super::json_path::{lookup, same};
use super::prom_response::snippet;

/// Bounds one check when the plan does not say otherwise: long enough for
/// a slow health endpoint, short enough not to stall a bake interval.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A health endpoint answers in a few bytes; anything this large is not a
/// health answer and is not worth buffering.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpCheck {
    pub url: String,
    pub expect_status: StatusClass,
    /// Dot path into a JSON body (`status`, `checks.db`, `items.0.state`).
    /// Without `json_value` the field must be present and neither `null`
    /// nor `false`.
    pub json_field: Option<String>,
    /// The value `json_field` must equal (`1` and `1.0` are equal).
    pub json_value: Option<Value>,
    /// Bounds the whole call: connect, answer and body.
    pub timeout: Duration,
}

/// What one check saw. A status the check did not expect is a `Fail`, even
/// a 5xx: the endpoint answered, and its answer is the health signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutcome {
    Pass {
        status: u16,
    },
    Fail {
        status: u16,
        detail: String,
    },
    /// No answer (refused, timed out, cut off): says nothing about health.
    Unreachable(String),
}

impl HttpCheck {
    /// A check expecting `expect_status`, with no body check and
    /// [`DEFAULT_TIMEOUT`].
    pub fn new(url: impl Into<String>, expect_status: StatusClass) -> Self {
        Self {
            url: url.into(),
            expect_status,
            json_field: None,
            json_value: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Also requires the JSON body's `field` to equal `value` (or, with
    /// `None`, to be present and truthy).
    #[must_use]
    pub fn with_json(mut self, field: impl Into<String>, value: Option<Value>) -> Self {
        self.json_field = Some(field.into());
        self.json_value = value;
        self
    }

    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs the check once with `client` (see
    /// [`build_client`](super::build_client), which does not follow
    /// redirects, so `3xx` expectations can be checked).
    pub async fn run(&self, client: &reqwest::Client) -> HttpOutcome {
        let response = match client.get(&self.url).timeout(self.timeout).send().await {
            Ok(response) => response,
            Err(error) => return HttpOutcome::Unreachable(self.transport(&error)),
        };
        let status = response.status().as_u16();
        if !self.expect_status.matches(status) {
            // The body often says why (an error page, a failing dependency).
            let body = read_capped(response).await.unwrap_or_default();
            return HttpOutcome::Fail {
                status,
                detail: format!(
                    "expected {}, got {status}: {}",
                    self.expect_status,
                    snippet(&String::from_utf8_lossy(&body))
                ),
            };
        }
        let Some(field) = &self.json_field else {
            return HttpOutcome::Pass { status };
        };
        let body = match read_capped(response).await {
            Ok(body) => body,
            Err(BodyError::Transport(error)) => {
                return HttpOutcome::Unreachable(self.transport(&error));
            }
            Err(BodyError::TooLarge) => {
                return HttpOutcome::Fail {
                    status,
                    detail: format!("the body is larger than {MAX_BODY} bytes"),
                };
            }
        };
        match judge_json(&body, field, self.json_value.as_ref()) {
            Ok(()) => HttpOutcome::Pass { status },
            Err(detail) => HttpOutcome::Fail { status, detail },
        }
    }

    fn transport(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            format!("GET {}: no answer within {:?}", self.url, self.timeout)
        } else {
            format!("GET {}: {}", self.url, chain(error))
        }
    }
}

enum BodyError {
    Transport(reqwest::Error),
    TooLarge,
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Err` explains, in words for the event log, why the body does not pass.
fn judge_json(body: &[u8], field: &str, expected: Option<&Value>) -> Result<(), String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON ({e}): {}",
            snippet(&String::from_utf8_lossy(body))
        )
    })?;
    let actual = lookup(&json, field)?;
    match expected {
        Some(expected) if same(actual, expected) => Ok(()),
        Some(expected) => Err(format!("`{field}` is {actual}, expected {expected}")),
        None if matches!(actual, Value::Null | Value::Bool(false)) => {
            Err(format!("`{field}` is {actual}"))
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::judge_json;

    #[test]
    fn json_judgement_explains_itself() {
        let body = br#"{"status":"ok","checks":{"db":"down","cache":1},"ready":false}"#;
        assert_eq!(judge_json(body, "status", Some(&json!("ok"))), Ok(()));
        assert_eq!(judge_json(body, "checks.cache", Some(&json!(1.0))), Ok(()));
        assert_eq!(
            judge_json(body, "checks.db", Some(&json!("up"))),
            Err("`checks.db` is \"down\", expected \"up\"".to_owned())
        );
        assert_eq!(
            judge_json(body, "checks.queue", None),
            Err("no field `checks.queue` in the body".to_owned())
        );
        assert_eq!(
            judge_json(body, "ready", None),
            Err("`ready` is false".to_owned())
        );
        assert_eq!(judge_json(body, "checks", None), Ok(()));
        let not_json = judge_json(b"<html>oops</html>", "status", None).unwrap_err();
        assert!(not_json.starts_with("the body is not JSON"), "{not_json}");
        assert!(not_json.ends_with("<html>oops</html>"), "{not_json}");
    }
}
