//! Rollouts: list, get, events, operator actions.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    ApiError, AppState, Caller,
    views::{Page, RolloutView},
};
use crate::{
    domain::{OperatorAction, RolloutState},
    store::{
        RolloutFilter,
        events::{EventRecord, GateReadingRecord},
    },
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub application: Option<String>,
    pub state: Option<String>,
    /// Created at or after (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Created before (RFC 3339).
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page<RolloutView>>, ApiError> {
    let Query(query) = query?;
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

pub async fn get(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutView>, ApiError> {
    let Path(id) = id?;
    let record = state.store.rollout(id).await?;
    Ok(Json(RolloutView::of(&record, &state.public_url)))
}

/// A list about one rollout, with the rollout's links.
#[derive(Serialize)]
pub struct RolloutItems<T> {
    pub items: Vec<T>,
    pub links: super::views::Links,
}

pub async fn events(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutItems<EventRecord>>, ApiError> {
    let Path(id) = id?;
    // A 404 for an unknown rollout, not an empty list.
    state.store.rollout(id).await?;
    Ok(Json(RolloutItems {
        items: state.store.events(id).await?,
        links: super::views::links(&state.public_url, id),
    }))
}

pub async fn gates(
    State(state): State<AppState>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
) -> Result<Json<RolloutItems<GateReadingRecord>>, ApiError> {
    let Path(id) = id?;
    state.store.rollout(id).await?;
    Ok(Json(RolloutItems {
        items: state.store.gate_readings(id).await?,
        links: super::views::links(&state.public_url, id),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionBody {
    pub reason: Option<String>,
}

#[derive(Serialize)]
pub struct Accepted {
    pub id: Uuid,
    pub action: &'static str,
    /// The state when the action was queued; the engine applies it next.
    pub state: &'static str,
}

pub async fn act(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<(Uuid, String)>, axum::extract::rejection::PathRejection>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let Path((id, action_name)) = path?;
    let action = OperatorAction::parse(&action_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown action `{action_name}`; one of pause, resume, approve, rollback, abort, retry"
        ))
    })?;
    // The body is optional: no body means no reason.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<ActionBody>(&body)
            .map_err(|e| {
                ApiError::bad_request(format!("the body must be {{\"reason\": \"...\"}}: {e}"))
            })?
            .reason
    };
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
