//! Plans: list, versions, get, create a new version, validate without saving.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use serde::Serialize;

use super::{ApiError, AppState, views::Items};
use crate::{
    domain::{Plan, plan::PlanSpec},
    store::catalog::PlanVersion,
};

#[derive(Serialize)]
pub struct Saved {
    pub name: String,
    pub version: i32,
    /// False when the plan was identical to its latest version.
    pub created: bool,
}

#[derive(Serialize)]
pub struct Valid {
    pub valid: bool,
    pub plan: Plan,
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<PlanVersion>>, ApiError> {
    Ok(Json(Items {
        items: state.store.latest_plans().await?,
    }))
}

pub async fn versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Items<PlanVersion>>, ApiError> {
    Ok(Json(Items {
        items: state.store.plan_versions(&name).await?,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PlanVersion>, ApiError> {
    let versions = state.store.plan_versions(&name).await?;
    versions
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("plan `{name}` not found")))
}

pub async fn get_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, i32)>,
) -> Result<Json<PlanVersion>, ApiError> {
    let versions = state.store.plan_versions(&name).await?;
    versions
        .into_iter()
        .find(|v| v.version == version)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("plan `{name}` has no version {version}")))
}

pub async fn create(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    let (spec, plan) = parse_plan(&state, &body).await?;
    let (version, created) = state.store.save_plan(&spec, &plan).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Saved {
            name: plan.name,
            version,
            created,
        }),
    ))
}

pub async fn validate(State(state): State<AppState>, body: Bytes) -> Result<Json<Valid>, ApiError> {
    let (_, plan) = parse_plan(&state, &body).await?;
    Ok(Json(Valid { valid: true, plan }))
}

/// Parses a plan body (the config file's plan shape, as JSON) and checks it
/// against the registered clusters; errors carry the field path.
async fn parse_plan(state: &AppState, body: &[u8]) -> Result<(PlanSpec, Plan), ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let spec: PlanSpec = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        if path == "." {
            ApiError::bad_request(format!("the body is not a plan: {message}"))
        } else {
            ApiError::invalid(&path, message)
        }
    })?;
    let clusters = state.store.clusters().await?;
    let plan =
        Plan::from_spec(&spec, &clusters).map_err(|e| ApiError::invalid(&e.path, e.message))?;
    Ok((spec, plan))
}
