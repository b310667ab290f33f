//! Errors as `application/problem+json` (RFC 9457). Internal errors are
//! logged with their context and answered with a generic message.

use axum::{
    Json,
    extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Where in the request body the problem is, for validation errors.
    pub field: Option<String>,
}

/// An error, as RFC 9457 problem details.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// Always `about:blank`: the status and title say what went wrong.
    r#type: &'static str,
    title: &'a str,
    /// The HTTP status, repeated.
    status: u16,
    /// What went wrong, for a person.
    detail: &'a str,
    /// Where in the request body the problem is, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

/// The media type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl ApiError {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }

    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid field", detail)
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            r#type: "about:blank",
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            field: self.field.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        (self.status, [(header::CONTENT_TYPE, PROBLEM_JSON)], json).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Conflict(detail) => Self::conflict(detail),
            StoreError::Invalid(detail) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable request",
                detail,
            ),
            // PostgreSQL text cannot hold NUL (U+0000); a value with one
            // is the request's fault, whichever field the edge checks
            // missed, not a reason to retry.
            StoreError::Database(ref db) if is_unstorable_text(db) => {
                tracing::warn!(error = %e, "a request carried text PostgreSQL cannot store");
                Self::bad_request(
                    "the request contains a NUL character (U+0000), which cannot be stored",
                )
            }
            StoreError::LeaseLost(_) | StoreError::Database(_) | StoreError::Corrupt(_) => {
                tracing::error!(error = %e, "store error while serving a request");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                    "the database could not serve this request; try again",
                )
            }
        }
    }
}

/// Whether PostgreSQL refused a value because of NUL: `22021` for text
/// (`invalid byte sequence … 0x00`), `22P05` for `\u0000` in JSONB.
fn is_unstorable_text(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "22021" || code == "22P05")
}

/// Refuses a path or query value PostgreSQL could not compare (NUL), as
/// `400`: such a value names nothing that can exist.
pub fn check_no_nul(what: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "{what} contains a NUL character (U+0000)"
        )));
    }
    Ok(())
}

/// The path (`stages[0].name`) of the first string or key in `value` that
/// holds a NUL, which PostgreSQL cannot store.
pub fn find_nul(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item).map(|rest| format!("[{i}]{}", dotted(&rest)))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(key.replace('\0', "\\0"));
            }
            find_nul(item).map(|rest| format!("{key}{}", dotted(&rest)))
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// `rest` joined after a parent: `.x` for a key, `[0]` stays as it is.
fn dotted(rest: &str) -> String {
    if rest.is_empty() || rest.starts_with('[') {
        rest.to_owned()
    } else {
        format!(".{rest}")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "Payload too large", detail),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::new(
                status,
                "Unsupported media type",
                "send the body as JSON with `Content-Type: application/json`",
            ),
            _ => Self::new(status, "Malformed request body", detail),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let detail = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(status, "Payload too large", detail),
            _ => Self::new(status, "Malformed request body", detail),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// A known path with a method it does not serve (axum adds `Allow`).
pub async fn method_not_allowed(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        format!("{} does not serve {method}", uri.path()),
    )
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "the server hit a bug while serving this request",
    )
    .into_response()
}

/// `Json` that answers problem+json on rejection.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_nul_names_the_path_of_the_first_string_or_key_with_a_nul() {
        let value = serde_json::json!({
            "name": "ok",
            "stages": [{"name": "fine"}, {"name": "bad\u{0}", "labels": {}}],
        });
        assert_eq!(find_nul(&value).as_deref(), Some("stages[1].name"));
        assert_eq!(
            find_nul(&serde_json::json!({"labels": {"k\u{0}": "v"}})).as_deref(),
            Some("labels.k\\0")
        );
        assert_eq!(
            find_nul(&serde_json::json!([[1, "x\u{0}"]])).as_deref(),
            Some("[0][1]")
        );
        assert_eq!(find_nul(&serde_json::json!({"a": ["b", 1, null]})), None);
    }

    #[test]
    fn nul_in_a_path_or_query_value_is_a_bad_request() {
        assert!(check_no_nul("the name", "shop").is_ok());
        let err = check_no_nul("the name", "sh\u{0}op").expect_err("refused");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
