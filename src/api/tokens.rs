//! `/api/v1/tokens`: create (the secret is shown once), list, revoke.

use axum::{
    Json,
    extract::{Path, State, rejection::PathRejection},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ApiError, AppState,
    auth::Caller,
    error::{ApiJson, Problem},
    views::Items,
};
use crate::store::tokens::{NewToken, Role, TokenRecord, check_name};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(revoke))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "ci", "role": "deployer"}))]
pub struct CreateToken {
    /// Recorded as the actor of what the token does.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    #[schema(value_type = Role)]
    pub role: String,
    /// When it stops working (RFC 3339, in the future); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new token, with its secret: the only time it is shown.
#[derive(Serialize, ToSchema)]
#[schema(as = TokenCreated)]
struct Created<'a> {
    #[serde(flatten)]
    token: TokenRecord,
    /// The secret: this answer is the only time it exists outside the caller.
    #[serde(rename = "token")]
    secret: &'a str,
}

/// Create an API token.
#[utoipa::path(
    post,
    path = "/tokens",
    operation_id = "create_token",
    tag = "tokens",
    request_body = CreateToken,
    responses(
        (status = 201, description = "Created; `token` is the secret, shown this once", body = Created,
            headers(("Cache-Control" = String, description = "`no-store`: the body holds a secret"))),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A live token has this name", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field is invalid", body = Problem, content_type = "application/problem+json"),
    ),
)]
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

/// Live tokens (never their secrets or hashes).
#[utoipa::path(
    get,
    path = "/tokens",
    operation_id = "list_tokens",
    tag = "tokens",
    responses((status = 200, description = "Every live token", body = Items<TokenRecord>)),
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<Items<TokenRecord>>, ApiError> {
    Ok(Json(Items {
        items: state.store.tokens().await?,
    }))
}

/// Revoke a token at once.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    operation_id = "revoke_token",
    tag = "tokens",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such live token", body = Problem, content_type = "application/problem+json"),
    ),
)]
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
