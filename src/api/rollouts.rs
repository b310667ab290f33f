//! Rollouts: list, get, events, operator actions.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{
    ApiError, AppState, Caller,
    error::{Problem, check_no_nul},
    views::{Linked, Page, RolloutView},
};
use crate::{
    domain::{OperatorAction, RolloutState},
    store::{
        RolloutFilter,
        events::{EventRecord, GateReadingRecord},
    },
};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this application's rollouts.
    pub application: Option<String>,
    /// Only rollouts in this state.
    #[param(value_type = Option<RolloutState>)]
    pub state: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Page size.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Rollouts, newest first.
#[utoipa::path(
    get,
    path = "/rollouts",
    operation_id = "list_rollouts",
    tag = "rollouts",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of rollouts", body = Page<RolloutView>),
        (status = 400, description = "A bad query parameter (state, time, limit, cursor)", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<RolloutView>>, ApiError> {
    let Query(query) = query?;
    if let Some(application) = &query.application {
        check_no_nul("`application`", application)?;
    }
    let wanted_state = match query.state.as_deref() {
        None => None,
        Some(text) => Some(RolloutState::parse(text).ok_or_else(|| {
            let known: Vec<&str> = RolloutState::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!(
                "unknown state `{text}`; one of {}",
                known.join(", ")
            ))
        })?),
    };
    let page = super::cursor::PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = RolloutFilter {
        application: query.application.as_deref(),
        state: wanted_state,
        since: query.since,
        until: query.until,
        after: page.after,
        limit: page.limit,
    };
    let records = state.store.rollouts(&filter).await?;
    let next_cursor = page.next_cursor(&records, |r| (r.created_at, r.id));
    let items = records
        .iter()
        .map(|r| RolloutView::of(r, &state.public_url))
        .collect();
    Ok(Json(Page { items, next_cursor }))
}

/// One rollout: state, current stage, per stage its targets.
#[utoipa::path(
    get,
    path = "/rollouts/{id}",
    operation_id = "get_rollout",
    tag = "rollouts",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout", body = RolloutView),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rollout", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let Path(id) = id?;
    let record = state.store.rollout(id).await?;
    Ok(Json(RolloutView::of(&record, &state.public_url)))
}

/// A list about one rollout, with the rollout's links.
#[derive(Serialize, ToSchema)]
pub struct RolloutItems<T> {
    pub items: Vec<T>,
    pub links: super::views::Links,
}

/// A rollout's audit trail: who did what, when and why, oldest first.
#[utoipa::path(
    get,
    path = "/rollouts/{id}/events",
    operation_id = "list_rollout_events",
    tag = "rollouts",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout's events", body = RolloutItems<Linked<EventRecord>>),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rollout", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn events(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutItems<Linked<EventRecord>>>, ApiError> {
    let Path(id) = id?;
    // A 404 for an unknown rollout, not an empty list.
    state.store.rollout(id).await?;
    Ok(Json(RolloutItems {
        items: Linked::all(state.store.events(id).await?, &state.public_url, id),
        links: super::views::links(&state.public_url, id),
    }))
}

/// Every gate reading of a rollout, oldest first.
#[utoipa::path(
    get,
    path = "/rollouts/{id}/gates",
    operation_id = "list_gate_readings",
    tag = "rollouts",
    params(("id" = Uuid, Path, description = "The rollout's id")),
    responses(
        (status = 200, description = "The rollout's gate readings", body = RolloutItems<Linked<GateReadingRecord>>),
        (status = 400, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rollout", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn gates(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutItems<Linked<GateReadingRecord>>>, ApiError> {
    let Path(id) = id?;
    state.store.rollout(id).await?;
    Ok(Json(RolloutItems {
        items: Linked::all(state.store.gate_readings(id).await?, &state.public_url, id),
        links: super::views::links(&state.public_url, id),
    }))
}

/// Why the action is taken; recorded in the event log.
#[derive(Deserialize, Default, ToSchema)]
#[schema(example = json!({"reason": "error rate up in the canary"}))]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub reason: Option<String>,
}

/// An operator action, queued.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// The rollout's id.
    pub id: Uuid,
    #[schema(value_type = OperatorAction)]
    pub action: &'static str,
    /// The state when the action was queued; the engine applies it next.
    #[schema(value_type = RolloutState)]
    pub state: &'static str,
}

/// Queue an operator action on a rollout.
///
/// `retry` re-runs a failed stage after a fix, for plans with
/// `on_failure: halt`. The body is optional.
#[utoipa::path(
    post,
    path = "/rollouts/{id}/{action}",
    operation_id = "act_on_rollout",
    tag = "rollouts",
    params(
        ("id" = Uuid, Path, description = "The rollout's id"),
        ("action" = OperatorAction, Path, description = "What to do"),
    ),
    request_body(content = Option<ActionBody>, description = "Optional: why", content_type = "application/json"),
    responses(
        (status = 202, description = "Queued; the engine applies it next", body = Accepted),
        (status = 400, description = "The id is not a UUID, or the body is not `{\"reason\": \"...\"}`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rollout, or no such action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The action makes no sense in the rollout's state", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
    ),
)]

pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(Uuid, String)>, axum::extract::rejection::PathRejection>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Path((id, action_name)) = path?;
    let body = body?;
    let action = OperatorAction::parse(&action_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown action `{action_name}`; one of pause, resume, approve, rollback, abort, retry"
        ))
    })?;
    // The body is optional: no body (or `null`) means no reason.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<ActionBody>>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!("the body must be {{\"reason\": \"...\"}}: {e}"))
            })?
            .and_then(|body| body.reason)
    };
    if let Some(reason) = &reason {
        check_no_nul("`reason`", reason)?;
    }
    let current = state
        .store
        .enqueue_action(id, action, caller.actor(), reason.as_deref())
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            id,
            action: action.as_str(),
            state: current.as_str(),
        }),
    ))
}
