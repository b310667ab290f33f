//! Errors in the exact `Status` shape a Kubernetes API server returns, so the
//! real `kube` client parses them into `kube::Error::Api` as it would in
//! production.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::kinds::Kind;

/// A failed API call: HTTP code, Kubernetes `reason`, message and details.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: StatusCode,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// `deployments.apps "web" not found`, as the API server words it.
    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified_plural()),
        )
        .with_details(kind.details(name))
    }

    /// A namespaced object asked for in a namespace that does not exist.
    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(json!({"name": namespace, "kind": "namespaces"}))
    }

    /// A path this server does not serve at all.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 403, e.g. for deleting a system namespace.
    pub fn forbidden(kind: &Kind, name: &str, why: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{} \"{name}\" is forbidden: {why}", kind.qualified_plural()),
        )
        .with_details(kind.details(name))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 422: the object itself is unacceptable (missing or mismatched name).
    pub fn invalid(kind: &Kind, name: &str, field: &str, detail: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {detail}",
                kind.qualified_kind()
            ),
        )
        .with_details(json!({
            "name": name,
            "group": kind.group,
            "kind": kind.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        }))
    }

    /// 409 for server-side apply conflicts; `causes` lists each contested field.
    pub fn apply_conflict(kind: &Kind, name: &str, message: String, causes: Vec<Value>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message).with_details(json!({
            "name": name,
            "group": kind.group,
            "kind": kind.plural,
            "causes": causes,
        }))
    }

    /// 409 when the body names a resourceVersion that is no longer current.
    pub fn stale_resource_version(kind: &Kind, name: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                kind.qualified_plural()
            ),
        )
        .with_details(kind.details(name))
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media \
                 types include: application/apply-patch+yaml"
            ),
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// What injected faults answer: the same shape a crashing apiserver gives.
    pub fn injected_fault() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "Internal error occurred: injected fault (meridian sim)",
        )
        .with_details(json!({"causes": [{"message": "injected fault (meridian sim)"}]}))
    }

    /// The JSON `Status` document.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code, axum::Json(self.to_status())).into_response()
    }
}

/// The `Status` a successful DELETE returns for objects removed at once.
pub fn delete_success(kind: &Kind, name: &str, uid: &str) -> Value {
    let mut details = kind.details(name);
    if let Some(map) = details.as_object_mut() {
        map.insert("uid".into(), Value::String(uid.to_owned()));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
