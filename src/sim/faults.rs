//! Injects the HTTP-level faults of [`Faults`]: latency and random 500s.
//! (Refused connections are the listener's job, see [`super::listener`].)

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::api_error::ApiError;
use super::cluster::ClusterInner;
use super::options::Faults;

/// Whether this request is one of the `error_rate` fraction that fails.
fn roll(faults: &Faults) -> bool {
    faults.error_rate > 0.0 && rand::random::<f64>() < faults.error_rate
}

pub async fn inject(
    State(cluster): State<Arc<ClusterInner>>,
    request: Request,
    next: Next,
) -> Response {
    let faults = cluster.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if roll(&faults) {
        return ApiError::injected_fault().into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_rate_bounds_are_exact() {
        let never = Faults {
            error_rate: 0.0,
            ..Faults::default()
        };
        let always = Faults {
            error_rate: 1.0,
            ..Faults::default()
        };
        assert!((0..1000).all(|_| !roll(&never)));
        assert!((0..1000).all(|_| roll(&always)));
        let half = Faults {
            error_rate: 0.5,
            ..Faults::default()
        };
        let hits = (0..10_000).filter(|_| roll(&half)).count();
        assert!((4_000..6_000).contains(&hits), "{hits}");
    }
}
