//! The fleet control server: JSON over HTTP so another process (a test that
//! killed Meridian, a demo script) can inspect and steer a running fleet.
//!
//! - `GET /clusters` → `[{name, region, base_url, apply_calls}]`
//! - `GET /clusters/{name}/state` → `{apply_calls, apply_log, objects}`
//! - `PUT /clusters/{name}/faults` with a [`Faults`] body
//! - `PUT /clusters/{name}/error-rate` with `{"version_contains": "...", "rate": 0.03}`

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::cluster::SimClusterHandle;
use super::options::Faults;

type Clusters = Arc<BTreeMap<String, SimClusterHandle>>;

/// Body of `PUT /clusters/{name}/error-rate`.
#[derive(Debug, Deserialize)]
pub struct ErrorRateBody {
    pub version_contains: String,
    pub rate: f64,
}

fn problem(code: StatusCode, message: String) -> Response {
    (code, Json(json!({"error": message}))).into_response()
}

fn find(clusters: &Clusters, name: &str) -> Option<SimClusterHandle> {
    clusters.get(name).cloned()
}

fn unknown(name: &str) -> Response {
    problem(
        StatusCode::NOT_FOUND,
        format!("no simulated cluster named {name:?}"),
    )
}

pub fn router(clusters: Clusters) -> Router {
    Router::new()
        .route("/clusters", get(list))
        .route("/clusters/{name}/state", get(state))
        .route("/clusters/{name}/faults", put(set_faults).get(get_faults))
        .route("/clusters/{name}/error-rate", put(set_error_rate))
        .route(
            "/clusters/{name}/apps/{namespace}/{app}/health",
            get(app_health),
        )
        .with_state(clusters)
}

/// A cluster's app health endpoint, reachable by cluster name (the demo's
/// HTTP gate templates its URL with `{{ cluster }}`).
async fn app_health(
    State(clusters): State<Clusters>,
    Path((name, namespace, app)): Path<(String, String, String)>,
) -> Response {
    match find(&clusters, &name) {
        Some(cluster) => {
            super::api_server::app_health_response(cluster.app_error_rate(&namespace, &app))
        }
        None => unknown(&name),
    }
}

async fn list(State(clusters): State<Clusters>) -> Response {
    Json(
        clusters
            .values()
            .map(SimClusterHandle::info)
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn state(State(clusters): State<Clusters>, Path(name): Path<String>) -> Response {
    match find(&clusters, &name) {
        Some(cluster) => Json(cluster.report()).into_response(),
        None => unknown(&name),
    }
}

async fn get_faults(State(clusters): State<Clusters>, Path(name): Path<String>) -> Response {
    match find(&clusters, &name) {
        Some(cluster) => Json(cluster.faults()).into_response(),
        None => unknown(&name),
    }
}

async fn set_faults(
    State(clusters): State<Clusters>,
    Path(name): Path<String>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    let Some(cluster) = find(&clusters, &name) else {
        return unknown(&name);
    };
    match body {
        Ok(Json(faults)) if (0.0..=1.0).contains(&faults.error_rate) => {
            cluster.set_faults(faults);
            Json(cluster.faults()).into_response()
        }
        Ok(_) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "error_rate must be within 0.0..=1.0".into(),
        ),
        Err(rejection) => problem(rejection.status(), rejection.body_text()),
    }
}

async fn set_error_rate(
    State(clusters): State<Clusters>,
    Path(name): Path<String>,
    body: Result<Json<ErrorRateBody>, JsonRejection>,
) -> Response {
    let Some(cluster) = find(&clusters, &name) else {
        return unknown(&name);
    };
    match body {
        Ok(Json(body)) if (0.0..=1.0).contains(&body.rate) && !body.version_contains.is_empty() => {
            cluster.set_error_rate(&body.version_contains, body.rate);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "version_contains must be non-empty and rate within 0.0..=1.0".into(),
        ),
        Err(rejection) => problem(rejection.status(), rejection.body_text()),
    }
}
