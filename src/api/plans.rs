//! Plans: list, versions, get, create a new version, validate without saving.

use axum::{
    Json,
    body::Bytes,
    extract::{
        Path, State,
        rejection::{BytesRejection, PathRejection},
    },
    http::StatusCode,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    ApiError, AppState,
    error::{Problem, check_no_nul, find_nul},
    views::Items,
};
use crate::{
    domain::{Plan, plan::PlanSpec},
    store::catalog::PlanVersion,
};

/// A plan saved.
#[derive(Serialize, ToSchema)]
#[schema(as = PlanSaved)]
pub struct Saved {
    pub name: String,
    pub version: i32,
    /// False when the plan was identical to its latest version.
    pub created: bool,
}

/// A plan that passed every check, as Meridian reads it.
#[derive(Serialize, ToSchema)]
#[schema(as = PlanValid)]
pub struct Valid {
    pub valid: bool,
    pub plan: Plan,
}

/// Every plan, at its latest version.
#[utoipa::path(
    get,
    path = "/plans",
    operation_id = "list_plans",
    tag = "plans",
    responses((status = 200, description = "The latest version of every plan", body = Items<PlanVersion>)),
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Items<PlanVersion>>, ApiError> {
    Ok(Json(Items {
        items: state.store.latest_plans().await?,
    }))
}

/// A plan's versions, newest first.
#[utoipa::path(
    get,
    path = "/plans/{name}/versions",
    operation_id = "list_plan_versions",
    tag = "plans",
    params(("name" = String, Path, description = "The plan's name")),
    responses(
        (status = 200, description = "The plan's versions", body = Items<PlanVersion>),
        (status = 400, description = "The name is not valid UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn versions(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Items<PlanVersion>>, ApiError> {
    let Path(name) = name?;
    check_no_nul("the name", &name)?;
    Ok(Json(Items {
        items: state.store.plan_versions(&name).await?,
    }))
}

/// A plan's latest version.
#[utoipa::path(
    get,
    path = "/plans/{name}",
    operation_id = "get_plan",
    tag = "plans",
    params(("name" = String, Path, description = "The plan's name")),
    responses(
        (status = 200, description = "The latest version", body = PlanVersion),
        (status = 400, description = "The name is not valid UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PlanVersion>, ApiError> {
    let Path(name) = name?;
    check_no_nul("the name", &name)?;
    let versions = state.store.plan_versions(&name).await?;
    versions
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("plan `{name}` not found")))
}

/// One version of a plan.
#[utoipa::path(
    get,
    path = "/plans/{name}/versions/{version}",
    operation_id = "get_plan_version",
    tag = "plans",
    params(
        ("name" = String, Path, description = "The plan's name"),
        ("version" = i32, Path, description = "The version (from 1)"),
    ),
    responses(
        (status = 200, description = "That version", body = PlanVersion),
        (status = 400, description = "The version is not a number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such plan or version", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get_version(
    State(state): State<AppState>,
    path: Result<Path<(String, i32)>, PathRejection>,
) -> Result<Json<PlanVersion>, ApiError> {
    let Path((name, version)) = path?;
    check_no_nul("the name", &name)?;
    let versions = state.store.plan_versions(&name).await?;
    versions
        .into_iter()
        .find(|v| v.version == version)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("plan `{name}` has no version {version}")))
}

/// Save a plan: a new version when it changed.
///
/// The body is a plan as written in the config file, as JSON.
#[utoipa::path(
    post,
    path = "/plans",
    operation_id = "save_plan",
    tag = "plans",
    request_body = PlanSpec,
    responses(
        (status = 201, description = "Saved as a new version", body = Saved),
        (status = 200, description = "Identical to the latest version; nothing saved", body = Saved),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The plan is invalid; `field` says where", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Saved>), ApiError> {
    let (spec, plan) = parse_plan(&state, &body?).await?;
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

/// Check a plan without saving it.
#[utoipa::path(
    post,
    path = "/plans/validate",
    operation_id = "validate_plan",
    tag = "plans",
    request_body = PlanSpec,
    responses(
        (status = 200, description = "The plan is valid", body = Valid),
        (status = 400, description = "The body is not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The plan is invalid; `field` says where", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn validate(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Valid>, ApiError> {
    let (_, plan) = parse_plan(&state, &body?).await?;
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
    // Refused here rather than by PostgreSQL when saving, so that
    // validating says what saving would.
    if let Some(path) = serde_json::to_value(&spec).ok().as_ref().and_then(find_nul) {
        return Err(ApiError::invalid(
            &path,
            "contains a NUL character (U+0000), which cannot be stored",
        ));
    }
    let clusters = state.store.clusters().await?;
    let plan =
        Plan::from_spec(&spec, &clusters).map_err(|e| ApiError::invalid(&e.path, e.message))?;
    Ok((spec, plan))
}
