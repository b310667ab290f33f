//! The HTTP surface: REST API under `/api/v1`, health endpoints, metrics.

mod assets;
mod auth;
mod cursor;
mod error;
mod health;
mod plans;
mod releases;
mod rollouts;
mod stream;
mod tokens;
mod views;
mod webhooks;

pub use auth::{BootstrapToken, Caller};
pub use stream::spawn_notifier;

use std::time::Duration;

use axum::{Router, middleware, routing::get, routing::post};
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
    /// `MERIDIAN_BOOTSTRAP_TOKEN`, accepted as an admin token when set.
    pub bootstrap_token: Option<BootstrapToken>,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/releases", post(releases::create).get(releases::list))
        .route("/releases/{id}", get(releases::get))
        .route("/rollouts", get(rollouts::list))
        .route("/rollouts/{id}", get(rollouts::get))
        .route("/rollouts/{id}/events", get(rollouts::events))
        .route("/rollouts/{id}/gates", get(rollouts::gates))
        .route("/rollouts/{id}/{action}", post(rollouts::act))
        .route("/events/stream", get(stream::stream))
        .route("/whoami", get(auth::whoami))
        .route("/applications", get(views::applications))
        .route("/clusters", get(views::clusters))
        .route("/clusters/{name}", get(views::cluster))
        .route("/applications/{name}", get(views::application))
        .route("/plans", get(plans::list).post(plans::create))
        .route("/plans/validate", post(plans::validate))
        .route("/plans/{name}", get(plans::get))
        .route("/plans/{name}/versions", get(plans::versions))
        .route("/plans/{name}/versions/{version}", get(plans::get_version))
        .merge(webhooks::routes())
        .merge(tokens::routes())
        // Keep last before the fallback: it covers only the routes added
        // above, and not the fallback, so unknown paths stay 404, not 401.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .fallback(error::not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(assets::index))
        .route("/rollouts/{id}", get(assets::index))
        .route("/fleet", get(assets::index))
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
        .layer(TraceLayer::new_for_http().make_span_with(auth::request_span))
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
