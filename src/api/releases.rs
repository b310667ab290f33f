//! `POST /api/v1/releases`: CI creates a release and starts its rollout.

use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ApiError, AppState,
    error::ApiJson,
    views::{Links, links},
};
use crate::store::ReleaseRecord;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    pub application: String,
    pub version: String,
    pub image: String,
    /// Start even if the pre-rollout check finds the fleet unhealthy.
    #[serde(default)]
    pub force: bool,
}

#[derive(Serialize)]
pub struct Created {
    /// The rollout's id.
    pub id: Uuid,
    pub release: ReleaseRecord,
    pub links: Links,
}

/// Longest version and image strings accepted.
const MAX_FIELD_LEN: usize = 256;

pub async fn create(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateRelease>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    check_text("application", &body.application)?;
    check_text("version", &body.version)?;
    check_text("image", &body.image)?;
    if body.image.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "image",
            "an image reference has no spaces",
        ));
    }
    let (release, rollout_id) = state
        .store
        .create_release(
            &body.application,
            &body.version,
            &body.image,
            "api",
            body.force,
        )
        .await?;
    state.metrics.releases_created.inc();
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: rollout_id,
            release,
            links: links(&state.public_url, rollout_id),
        }),
    ))
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
