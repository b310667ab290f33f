//! `GET /api/v1/events/stream`: the event log, live, as server-sent events.
//! Every replica's clients see every event once and in order: events are
//! read from the database by id (ids commit in order), and `NOTIFY` only
//! says "look again".

use std::{collections::VecDeque, convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
};
use futures::Stream;
use serde::Deserialize;
use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{ApiError, AppState, error::Problem};
use crate::store::{EVENTS_CHANNEL, Store, events::EventRecord};

/// Events fetched per database read.
const BATCH: i64 = 200;
/// The longest a stream waits without looking at the database, in case a
/// notification was lost while the listener reconnected.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this rollout's events (from its first one, unless resuming).
    pub rollout: Option<Uuid>,
}

/// Listens for new-event notifications and bumps a counter streams watch.
pub fn spawn_notifier(store: Store, shutdown: CancellationToken) -> watch::Receiver<u64> {
    let (sender, receiver) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            let listener = async {
                let mut listener = PgListener::connect_with(store.pool()).await?;
                listener.listen(EVENTS_CHANNEL).await?;
                loop {
                    listener.recv().await?;
                    sender.send_modify(|n| *n = n.wrapping_add(1));
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = listener => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "event listener lost its connection; reconnecting");
                    }
                    // Anything missed meanwhile is read on the next look.
                    sender.send_modify(|n| *n = n.wrapping_add(1));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    });
    receiver
}

struct Cursor {
    store: Store,
    rollout: Option<Uuid>,
    last_id: i64,
    changes: watch::Receiver<u64>,
    buffer: VecDeque<EventRecord>,
    public_url: String,
}

/// The event log, live, as server-sent events.
///
/// Each event's `id` is the event's id, its `event` the event's kind and its
/// `data` the event as JSON (as in `/rollouts/{id}/events`, with the
/// rollout's `links`). Without `rollout` the stream starts now; with it, at
/// the rollout's first event. `Last-Event-ID` resumes after that event.
/// Browsers' `EventSource` cannot send headers, so the token may come as
/// `?access_token=` instead.
#[utoipa::path(
    get,
    path = "/events/stream",
    operation_id = "stream_events",
    tag = "rollouts",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, description = "A stream that does not end: `id`, `event` and `data` (the event as JSON) per event, and keep-alive comments", body = String, content_type = "text/event-stream"),
        (status = 400, description = "A bad `rollout` or `Last-Event-ID`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such rollout", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn stream(
    State(state): State<AppState>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    if let Some(id) = query.rollout {
        state.store.rollout(id).await?;
    }
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be an event id (a number)")
                })?,
        ),
    };
    // A rollout's stream starts at its first event; the global one at now.
    let last_id = match (resume, query.rollout) {
        (Some(id), _) => id,
        (None, Some(_)) => 0,
        (None, None) => state.store.latest_event_id().await?,
    };
    let cursor = Cursor {
        store: state.store.clone(),
        rollout: query.rollout,
        last_id,
        changes: state.event_changes.clone(),
        buffer: VecDeque::new(),
        public_url: state.public_url.clone(),
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(record) = c.buffer.pop_front() {
                c.last_id = record.id;
                return Some((Ok(to_sse(&record, &c.public_url)), c));
            }
            c.changes.borrow_and_update();
            match c.store.events_after(c.last_id, c.rollout, BATCH).await {
                Ok(batch) if !batch.is_empty() => c.buffer.extend(batch),
                Ok(_) => {
                    if let Ok(Err(_)) =
                        tokio::time::timeout(FALLBACK_POLL, c.changes.changed()).await
                    {
                        // The notifier is gone (shutting down): poll.
                        tokio::time::sleep(FALLBACK_POLL).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream cannot read events; retrying");
                    tokio::time::sleep(FALLBACK_POLL).await;
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn to_sse(record: &EventRecord, public_url: &str) -> Event {
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(id) = record.rollout_id {
        value["links"] =
            serde_json::to_value(super::views::links(public_url, id)).unwrap_or_default();
    }
    let data = value.to_string();
    Event::default()
        .id(record.id.to_string())
        .event(record.kind.clone())
        .data(data)
}
