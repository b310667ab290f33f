//! `GET /api/v1/events/stream`: the event log, live, as server-sent events.
//! Every replica's clients see every event once and in order: events are
//! read from the database by id up to the settled horizon (ids may commit
//! out of order; see [`crate::store::event_horizon`]), and `NOTIFY` only
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
use crate::store::{EVENTS_CHANNEL, Store, event_horizon::EventHorizon, events::EventRecord};

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

/// How soon to look again while a gap in the event ids waits for the
/// transactions that may fill it: a rolled-back writer announces nothing.
const GAP_RECHECK: Duration = Duration::from_millis(20);
/// The least time between two looks: under load every commit announces
/// events, and one look covers all that arrived meanwhile.
const MIN_LOOK_INTERVAL: Duration = Duration::from_millis(10);

/// Follows the event log's settled horizon (see
/// [`crate::store::event_horizon`]): looks again on every new-event
/// notification, and publishes the highest id readers may go to.
pub fn spawn_event_horizon(
    store: Store,
    shutdown: CancellationToken,
) -> watch::Receiver<Option<i64>> {
    let (sender, receiver) = watch::channel(None);
    tokio::spawn(async move {
        let mut horizon = EventHorizon::default();
        loop {
            let follow = async {
                let mut listener = PgListener::connect_with(store.pool()).await?;
                listener.listen(EVENTS_CHANNEL).await?;
                let mut conn = store.pool().acquire().await?.detach();
                loop {
                    // Listening first, so a commit after this look wakes
                    // the next one.
                    horizon.advance(&mut conn).await?;
                    let settled = horizon.settled();
                    sender.send_if_modified(|published| {
                        let moved = *published != settled;
                        *published = settled;
                        moved
                    });
                    let wait = if horizon.waiting() || settled.is_none() {
                        GAP_RECHECK
                    } else {
                        FALLBACK_POLL
                    };
                    tokio::time::sleep(MIN_LOOK_INTERVAL).await;
                    tokio::select! {
                        notification = listener.recv() => { notification?; }
                        () = tokio::time::sleep(wait) => {}
                    }
                    // One look covers every notification queued meanwhile.
                    while listener.next_buffered().is_some() {}
                }
                #[allow(unreachable_code)]
                Ok::<(), crate::store::StoreError>(())
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                result = follow => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "cannot follow the event log; reconnecting");
                    }
                    // Anything missed meanwhile is read on the next look.
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
    /// `None`: a stream that starts now, at the horizon once it is known.
    last_id: Option<i64>,
    horizon: watch::Receiver<Option<i64>>,
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
        (Some(id), _) => Some(id),
        (None, Some(_)) => Some(0),
        (None, None) => None,
    };
    let cursor = Cursor {
        store: state.store.clone(),
        rollout: query.rollout,
        last_id,
        horizon: state.event_horizon.clone(),
        buffer: VecDeque::new(),
        public_url: state.public_url.clone(),
    };
    let events = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(record) = c.buffer.pop_front() {
                c.last_id = Some(record.id);
                return Some((Ok(to_sse(&record, &c.public_url)), c));
            }
            let horizon = *c.horizon.borrow_and_update();
            let readable = match (c.last_id, horizon) {
                (Some(last), Some(upto)) if upto > last => Some((last, upto)),
                (None, Some(upto)) => {
                    c.last_id = Some(upto);
                    None
                }
                _ => None,
            };
            let Some((last, upto)) = readable else {
                if let Ok(Err(_)) = tokio::time::timeout(FALLBACK_POLL, c.horizon.changed()).await {
                    // The follower is gone (shutting down): poll.
                    tokio::time::sleep(FALLBACK_POLL).await;
                }
                continue;
            };
            match c.store.events_after(last, upto, c.rollout, BATCH).await {
                // Up to the horizon, but none of this rollout's.
                Ok(batch) if batch.is_empty() => c.last_id = Some(upto),
                Ok(batch) => c.buffer.extend(batch),
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
