//! Bearer-token check. A wrong token gets a 401 as on any API server, so a
//! client that mixes up credentials fails here too, not only in production.
//! No token at all is let through, like the API server's old insecure HTTP
//! port: client-go (`kubectl`) never sends credentials over plain HTTP.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The token every generated kubeconfig carries.
pub const SIM_TOKEN: &str = "meridian-sim-token";

pub async fn require_token(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {SIM_TOKEN}");
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if presented.is_none_or(|p| p == expected) {
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
