//! WATCH on collections: a stream of `{"type": ..., "object": ...}` lines.
//! Status changes are computed lazily, so the stream looks for changes on a
//! short poll instead of being woken by writes; to a client it is the same.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream;
use serde_json::json;
use tokio::time::Instant;

use super::api_error::ApiError;
use super::cluster::ClusterInner;
use super::kinds::Kind;
use super::selector::Selector;
use super::store::{Change, Scope};

/// How often an open watch looks for changes.
const POLL: Duration = Duration::from_millis(100);

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
        let mut store = self.cluster.store();
        let changes = store.changes_since(&scope, self.last, crate::clock::now())?;
        self.last = store.resource_version();
        Ok(changes)
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
    let cursor = Cursor {
        cluster,
        request,
        last,
        deadline,
    };
    let head = stream::iter([Ok::<Bytes, Infallible>(encode(first))]);
    let tail = stream::unfold(cursor, |mut cursor| async move {
        loop {
            if Instant::now() >= cursor.deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
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
