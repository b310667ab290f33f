//! `/healthz` (the process answers), `/readyz` (database reachable and the
//! engine loop going round), `/metrics` (Prometheus text format).

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};

use super::AppState;

/// The engine loop beats at least every fallback interval (2 s by default);
/// three missed beats and more mean it is stuck.
const ENGINE_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(10);

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "database unreachable\n".to_owned(),
        );
    }
    if !state
        .engine
        .is_ticking(crate::clock::now(), ENGINE_STALE_AFTER)
    {
        let last = state
            .engine
            .last_beat()
            .map_or("never".to_owned(), |t| t.to_rfc3339());
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("engine loop is not ticking (last beat: {last})\n"),
        );
    }
    (StatusCode::OK, "ready\n".to_owned())
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    match state.metrics.encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
