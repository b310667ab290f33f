//! `POST /api/v1/releases`: CI creates a release and starts its rollout.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    ApiError, AppState, Caller,
    error::{ApiJson, Problem, check_no_nul},
    views::{Links, links},
};
use crate::store::{IdempotencyKey, NewRelease, OnActive, ReleaseRecord};

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"application": "shop", "version": "1.4.2", "image": "registry.example/shop:1.4.2"}))]
pub struct CreateRelease {
    /// A registered application's name.
    #[schema(min_length = 1, max_length = 256)]
    pub application: String,
    /// The version people call it by (no control characters).
    #[schema(min_length = 1, max_length = 256)]
    pub version: String,
    /// The image reference the templates get as `image`.
    #[schema(min_length = 1, max_length = 256, pattern = r"^\S+$")]
    pub image: String,
    /// Start even if the pre-rollout check finds the fleet unhealthy.
    #[serde(default)]
    pub force: bool,
    /// What to do when the application already has an active rollout.
    #[serde(default)]
    #[schema(value_type = super::openapi::OnActiveSchema)]
    pub on_active: OnActive,
}

/// A release created (or queued) and its rollout.
#[derive(Serialize, ToSchema)]
#[schema(as = ReleaseCreated)]
pub struct Created {
    /// The rollout's id.
    pub id: Uuid,
    #[schema(value_type = super::openapi::ReleaseSchema)]
    pub release: ReleaseRecord,
    /// Waiting for the application's active rollout to end.
    pub queued: bool,
    pub links: Links,
}

/// Longest Idempotency-Key accepted.
const MAX_KEY_LEN: usize = 255;

/// Longest version and image strings accepted.
const MAX_FIELD_LEN: usize = 256;

/// Create a release and start its rollout.
///
/// With an `Idempotency-Key`, the same key and body answer the first
/// result again (`Idempotent-Replayed: true`) without creating twice, for
/// 24 hours after the key's first use; then the key is forgotten.
#[utoipa::path(
    post,
    path = "/releases",
    operation_id = "create_release",
    tag = "releases",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 255 visible ASCII characters, scoped to the calling token, remembered for 24 hours"),
    ),
    request_body = CreateRelease,
    responses(
        (status = 201, description = "Created, or replayed for the same Idempotency-Key and body", body = Created,
            headers(("Idempotent-Replayed" = String, description = "`true` when this answers an earlier request with the same key"))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The application has an active rollout (`on_active: reject`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid, or the Idempotency-Key was used with another body", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateRelease>,
) -> Result<Response, ApiError> {
    check_text("application", &body.application)?;
    check_text("version", &body.version)?;
    check_text("image", &body.image)?;
    if body.image.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "image",
            "an image reference has no spaces",
        ));
    }
    let key = idempotency_key(&headers)?;
    let request_hash = {
        let canonical = serde_json::to_vec(&body).unwrap_or_default();
        hex::encode(Sha256::digest(&canonical))
    };
    let request = NewRelease {
        application: &body.application,
        version: &body.version,
        image: &body.image,
        actor: caller.actor(),
        force: body.force,
        on_active: body.on_active,
        idempotency: key.as_deref().map(|key| IdempotencyKey {
            key,
            request_hash: &request_hash,
        }),
    };
    let public_url = state.public_url.clone();
    let created = state
        .store
        .create_release(&request, |release, rollout_id, queued| {
            serde_json::to_value(Created {
                id: rollout_id,
                release: release.clone(),
                queued,
                links: links(&public_url, rollout_id),
            })
            .unwrap_or_default()
        })
        .await?;
    let mut response = (StatusCode::CREATED, Json(created.body)).into_response();
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    } else {
        state.metrics.releases_created.inc();
    }
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
        .trim();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    if value.len() > MAX_FIELD_LEN {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` is longer than {MAX_FIELD_LEN} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            format!("`{field}` contains control characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this application's releases.
    pub application: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Releases, newest first.
#[utoipa::path(
    get,
    path = "/releases",
    operation_id = "list_releases",
    tag = "releases",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of releases", body = super::views::Page<super::openapi::ReleaseSchema>),
        (status = 400, description = "A bad query parameter (limit, cursor)", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<super::views::Page<ReleaseRecord>>, ApiError> {
    let axum::extract::Query(query) = query?;
    if let Some(application) = &query.application {
        check_no_nul("`application`", application)?;
    }
    let page = super::cursor::PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let items = state
        .store
        .releases(query.application.as_deref(), page.after, page.limit)
        .await?;
    let next_cursor = page.next_cursor(&items, |r| (r.created_at, r.id));
    Ok(Json(super::views::Page { items, next_cursor }))
}

/// A release and its rollouts.
#[derive(Serialize, ToSchema)]
pub struct ReleaseView {
    #[serde(flatten)]
    #[schema(value_type = super::openapi::ReleaseSchema)]
    pub release: ReleaseRecord,
    /// The rollouts of this release, each with its links.
    pub rollouts: Vec<RolloutRef>,
}

#[derive(Serialize, ToSchema)]
pub struct RolloutRef {
    pub id: Uuid,
    pub links: Links,
}

/// One release, with links to its rollouts.
#[utoipa::path(
    get,
    path = "/releases/{id}",
    operation_id = "get_release",
    tag = "releases",
    params(("id" = Uuid, Path, description = "The release's id")),
    responses(
        (status = 200, description = "The release", body = ReleaseView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such release", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    id: Result<axum::extract::Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ReleaseView>, ApiError> {
    let axum::extract::Path(id) = id?;
    let (release, rollouts) = state.store.release(id).await?;
    Ok(Json(ReleaseView {
        release,
        rollouts: rollouts
            .into_iter()
            .map(|id| RolloutRef {
                id,
                links: links(&state.public_url, id),
            })
            .collect(),
    }))
}
