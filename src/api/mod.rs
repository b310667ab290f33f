//! The HTTP surface: REST API under `/api/v1`, health endpoints, metrics.

mod assets;
mod auth;
mod catalog;
mod cursor;
mod error;
mod health;
mod idempotency;
mod openapi;
mod plans;
mod releases;
mod rollouts;
mod stream;
mod tokens;
mod views;
mod webhooks;

pub use auth::{BootstrapToken, Caller};
pub use idempotency::spawn_key_expiry;
pub use stream::spawn_event_horizon;

use std::time::Duration;

use axum::{Router, middleware, routing::get};
use tower_http::{
    catch_panic::CatchPanicLayer, limit::RequestBodyLimitLayer, timeout::TimeoutLayer,
    trace::TraceLayer,
};

pub use error::ApiError;
pub use openapi::document as openapi_document;

use utoipa_axum::{router::OpenApiRouter, routes};

use self::auth::API_PREFIX;
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
    /// The event log's settled horizon: readers go up to it, never past.
    pub event_horizon: tokio::sync::watch::Receiver<Option<i64>>,
    /// `MERIDIAN_BOOTSTRAP_TOKEN`, accepted as an admin token when set.
    pub bootstrap_token: Option<BootstrapToken>,
}

/// Every route under `/api/v1`. `routes!` registers a handler together
/// with its `#[utoipa::path]` documentation (path, method, parameters,
/// bodies, answers), so add API routes only this way: a plain `.route`
/// would serve an undocumented route (a test in this file looks for one).
pub fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(releases::create, releases::list))
        .routes(routes!(releases::get))
        .routes(routes!(rollouts::list))
        .routes(routes!(rollouts::get))
        .routes(routes!(rollouts::events))
        .routes(routes!(rollouts::gates))
        .routes(routes!(rollouts::act))
        .routes(routes!(stream::stream))
        .routes(routes!(auth::whoami))
        .routes(routes!(views::applications, catalog::register_application))
        .routes(routes!(views::clusters, catalog::register_cluster))
        .routes(routes!(views::cluster, catalog::update_cluster))
        .routes(routes!(views::application, catalog::update_application))
        .routes(routes!(plans::list, plans::create))
        .routes(routes!(plans::validate))
        .routes(routes!(plans::get))
        .routes(routes!(plans::versions))
        .routes(routes!(plans::get_version))
        .merge(webhooks::routes())
        .merge(tokens::routes())
        .routes(routes!(openapi::serve))
}

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes()
        // Keep last before the fallback: it covers only the routes added
        // above, and not the fallback, so unknown paths stay 404, not 401.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .fallback(error::not_found)
        .split_for_parts();
    let api = api.method_not_allowed_fallback(error::method_not_allowed);
    Router::new()
        .nest(API_PREFIX, api)
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

#[cfg(test)]
mod tests {
    /// The routes outside `/api/v1` (dashboard, health, metrics): the only
    /// ones that may be added with a plain `.route`, which documents nothing.
    const UNDOCUMENTED: &[&str] = &[
        "/",
        "/rollouts/{id}",
        "/fleet",
        "/assets/app.js",
        "/assets/style.css",
        "/healthz",
        "/readyz",
        "/metrics",
    ];

    /// `OpenApiRouter::routes(routes!(…))` documents a route as it serves
    /// it; a plain `.route`, `.nest` or axum `Router` would serve an API
    /// route the OpenAPI document does not list.
    #[test]
    fn api_routes_are_only_added_together_with_their_documentation() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        for entry in std::fs::read_dir(&dir).expect("src/api") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix(".route(\"") {
                    let route = rest.split('"').next().unwrap_or("");
                    assert!(
                        name == "mod.rs" && UNDOCUMENTED.contains(&route),
                        "{name}: `{line}` serves a route without documentation; use .routes(routes!(handler))"
                    );
                }
                for plain in [
                    ".route_service(",
                    ".nest_service(",
                    "routing::post",
                    "routing::put",
                ] {
                    assert!(!line.contains(plain), "{name}: `{line}`");
                }
                // Only the API itself is nested, at its prefix.
                if line.starts_with(".nest(") {
                    assert!(line.starts_with(".nest(API_PREFIX"), "{name}: `{line}`");
                }
            }
        }
    }
}
