//! `/api/v1/tokens`: create (the secret is shown once), list, revoke.

use axum::{
    Json, Router,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{delete, get},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, AppState, auth::Caller, error::ApiJson, views::Items};
use crate::store::tokens::{NewToken, Role, TokenRecord, check_name};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list).post(create))
        .route("/tokens/{id}", delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    token: TokenRecord,
    /// The secret: this answer is the only time it exists outside the caller.
    #[serde(rename = "token")]
    secret: &'a str,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let name = check_name(&body.name).map_err(|detail| ApiError::invalid("name", detail))?;
    let role: Role = body
        .role
        .parse()
        .map_err(|detail: String| ApiError::invalid("role", detail))?;
    if let Some(at) = body.expires_at
        && at <= crate::clock::now()
    {
        return Err(ApiError::invalid(
            "expires_at",
            "`expires_at` must be in the future",
        ));
    }
    let (token, secret) = state
        .store
        .issue_token(&NewToken {
            name,
            role,
            expires_at: body.expires_at,
            created_by: caller.actor(),
        })
        .await?;
    tracing::info!(token = %token.name, role = %token.role, by = caller.actor(), "API token created");
    let mut response = (
        StatusCode::CREATED,
        Json(Created {
            token,
            secret: secret.expose(),
        }),
    )
        .into_response();
    // The body holds a secret: no cache anywhere may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub async fn list(State(state): State<AppState>) -> Result<Json<Items<TokenRecord>>, ApiError> {
    Ok(Json(Items {
        items: state.store.tokens().await?,
    }))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    state.store.revoke_token(id).await?;
    tracing::info!(token_id = %id, by = caller.actor(), "API token revoked");
    Ok(StatusCode::NO_CONTENT)
}
