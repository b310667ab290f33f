//! Bearer-token check, as an API server with token auth does: a client that
//! forgets its kubeconfig credentials gets a 401 here too, not only in
//! production.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The token every generated kubeconfig carries.
pub const SIM_TOKEN: &str = "meridian-sim-token";

pub async fn require_token(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {SIM_TOKEN}");
    let presented = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if presented == Some(expected.as_str()) {
        return next.run(request).await;
    }
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    });
    (StatusCode::UNAUTHORIZED, axum::Json(status)).into_response()
}
