//! WATCH on collections: a stream of `{"type": ..., "object": ...}` lines.
//! Statuses are computed lazily, so besides waking on every write a watch
//! sleeps until the next instant a status changes by itself (a pod becoming
//! ready); to a client it is the same as an API server pushing events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::stream;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::api_error::ApiError;
use super::cluster::ClusterInner;
use super::kinds::Kind;
use super::selector::Selector;
use super::store::{Change, Scope};

/// The longest an open watch goes without looking, in case a status
/// changes at an instant the schedule does not foresee.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// What one watch request asked for.
pub struct WatchRequest {
    pub kind: &'static Kind,
    pub namespace: Option<String>,
    pub labels: Selector,
    pub fields: Selector,
    /// Events after this resourceVersion; `None` (or 0) starts with the
    /// current state as ADDED events, like the API server.
    pub since: Option<u64>,
    pub timeout: Duration,
}

struct Cursor {
    cluster: Arc<ClusterInner>,
    request: WatchRequest,
    last: u64,
    deadline: Instant,
    writes: watch::Receiver<u64>,
    /// When a status in scope next changes by itself.
    next_change: Option<DateTime<Utc>>,
}

impl Cursor {
    /// Changes after `self.last`, advancing it.
    fn poll(&mut self) -> Result<Vec<Change>, ApiError> {
        let scope = Scope {
            kind: self.request.kind,
            namespace: self.request.namespace.as_deref(),
            labels: &self.request.labels,
            fields: &self.request.fields,
        };
        // Marked seen before reading, so a write racing this poll wakes the
        // next wait instead of being lost.
        self.writes.borrow_and_update();
        let now = crate::clock::now();
        let mut store = self.cluster.store();
        let changes = store.changes_since(&scope, self.last, now)?;
        self.last = store.resource_version();
        self.next_change = store.next_status_change(self.request.kind, now);
        Ok(changes)
    }

    /// Sleeps until a write, the next scheduled status change, the fallback
    /// poll or the end of the watch, whichever comes first.
    async fn wait(&mut self) {
        let mut wake = (Instant::now() + FALLBACK_POLL).min(self.deadline);
        if let Some(at) = self.next_change {
            let after = (at - crate::clock::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            // A millisecond late, so the status has surely moved on.
            wake = wake.min(Instant::now() + after + Duration::from_millis(1));
        }
        tokio::select! {
            changed = self.writes.changed() => {
                // The cluster is gone; the deadline ends the watch.
                if changed.is_err() {
                    tokio::time::sleep_until(wake).await;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn encode(changes: Vec<Change>) -> Bytes {
    let mut out = Vec::new();
    for (kind, object) in changes {
        out.extend_from_slice(
            json!({"type": kind, "object": object})
                .to_string()
                .as_bytes(),
        );
        out.push(b'\n');
    }
    Bytes::from(out)
}

/// Starts the stream; selector errors are reported before it starts.
pub fn respond(cluster: Arc<ClusterInner>, request: WatchRequest) -> Result<Response, ApiError> {
    // Subscribed before the first read: a write in between costs one
    // extra look, never a missed event.
    let writes = cluster.store().subscribe_writes();
    let initial = {
        let scope = Scope {
            kind: request.kind,
            namespace: request.namespace.as_deref(),
            labels: &request.labels,
            fields: &request.fields,
        };
        let mut store = cluster.store();
        let now = crate::clock::now();
        match request.since.filter(|rv| *rv > 0) {
            // Resuming: replay what happened since, then follow.
            Some(since) => (
                store.changes_since(&scope, since, now)?,
                store.resource_version(),
            ),
            None => {
                let list = store.list(&scope, now)?;
                let items = list
                    .get("items")
                    .and_then(|i| i.as_array())
                    .cloned()
                    .unwrap_or_default();
                (
                    items.into_iter().map(|o| ("ADDED", o)).collect(),
                    store.resource_version(),
                )
            }
        }
    };
    let (first, last) = initial;
    let deadline = Instant::now() + request.timeout;
    let next_change = cluster
        .store()
        .next_status_change(request.kind, crate::clock::now());
    let cursor = Cursor {
        cluster,
        request,
        last,
        deadline,
        writes,
        next_change,
    };
    let head = stream::iter([Ok::<Bytes, Infallible>(encode(first))]);
    let tail = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if Instant::now() >= cursor.deadline {
                return None;
            }
            cursor.wait().await;
            match cursor.poll() {
                Ok(changes) if changes.is_empty() => continue,
                Ok(changes) => return Some((Ok(encode(changes)), cursor)),
                // Selectors were validated up front; nothing else fails.
                Err(_) => return None,
            }
        }
    });
    let body = Body::from_stream(futures::StreamExt::chain(head, tail));
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
