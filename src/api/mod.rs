//! The HTTP surface: REST API under `/api/v1`, health endpoints, metrics.

mod assets;
mod error;
mod health;
mod releases;
mod rollouts;
mod stream;
mod views;

pub use stream::spawn_notifier;

use std::time::Duration;

use axum::{Router, routing::get, routing::post};
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use error::ApiError;

use crate::{engine::EngineHealth, store::Store, telemetry::Metrics};

/// Largest request body accepted; releases and actions are small.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// A request that takes longer than this is answered 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: EngineHealth,
    pub metrics: Metrics,
    /// Where people reach the service, for links in responses.
    pub public_url: String,
    /// Bumped whenever new events were committed (by any replica).
    pub event_changes: tokio::sync::watch::Receiver<u64>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/releases", post(releases::create))
        .route("/rollouts", get(rollouts::list))
        .route("/rollouts/{id}", get(rollouts::get))
        .route("/rollouts/{id}/events", get(rollouts::events))
        .route("/rollouts/{id}/gates", get(rollouts::gates))
        .route("/rollouts/{id}/{action}", post(rollouts::act))
        .route("/events/stream", get(stream::stream))
        .route("/applications", get(views::applications))
        .route("/clusters", get(views::clusters))
        .fallback(error::not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(assets::index))
        .route("/rollouts/{id}", get(assets::index))
        .route("/assets/app.js", get(assets::app_js))
        .route("/assets/style.css", get(assets::style_css))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(error::not_found)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
