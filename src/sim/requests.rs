//! Counts the API requests a cluster received, by method and path, so a
//! test can tell what a client asked, not only what it changed.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::cluster::ClusterInner;

/// Requests by `"METHOD /path"` (no query string).
#[derive(Default)]
pub struct RequestCounts(HashMap<String, u64>);

impl RequestCounts {
    pub fn get(&self, method: &str, path: &str) -> u64 {
        self.0
            .get(&format!("{method} {path}"))
            .copied()
            .unwrap_or(0)
    }
}

pub async fn count(
    State(cluster): State<Arc<ClusterInner>>,
    request: Request,
    next: Next,
) -> Response {
    let key = format!("{} {}", request.method(), request.uri().path());
    *cluster.request_counts().0.entry(key).or_insert(0) += 1;
    next.run(request).await
}
