//! The one place a cluster call is timed out and retried.
//!
//! kube's default client stack carries its own retry layer
//! (`Config::default_retry`, on by default in kube 5): up to 15 retries of
//! 429/503/504 with exponential backoff capped at 1000 s and honouring
//! `Retry-After`, so a struggling API server could hold a single call for
//! many minutes. Fleet clients switch that layer off (see `connect`) and this
//! budget is the only retry: every attempt is bounded by the call timeout,
//! only transient failures are retried, and the number of attempts is fixed,
//! so a call returns within about `attempts × (timeout + backoff)`.

use std::future::Future;
use std::time::Duration;

use super::error::{Class, FleetError, classify};

/// How long one attempt may take and how many attempts a call gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    pub timeout: Duration,
    pub attempts: u32,
}

/// First pause between attempts; doubled each time, capped by [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Keeps the whole budget short: the engine has its own, slower, retry loop
/// across wake-ups, so waiting longer here would only delay its decisions.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Budget {
    /// Runs `attempt` until it succeeds, fails permanently, or the budget is
    /// spent. `what` names the operation and object for error messages.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        cluster: &str,
        what: &str,
        mut attempt: F,
    ) -> Result<T, FleetError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let attempts = self.attempts.max(1);
        let mut tried = 0;
        loop {
            tried += 1;
            let message = match tokio::time::timeout(self.timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => match classify(&err) {
                    (Class::Transient, message) => message,
                    (Class::Conflict, message) => {
                        return Err(FleetError::Conflict {
                            cluster: cluster.to_owned(),
                            message: format!("{what}: {message}"),
                        });
                    }
                    (Class::Permanent, message) => {
                        return Err(FleetError::Rejected {
                            cluster: cluster.to_owned(),
                            message: format!("{what}: {message}"),
                        });
                    }
                },
                Err(_elapsed) => format!("no answer within {:?}", self.timeout),
            };
            if tried >= attempts {
                return Err(FleetError::Unreachable {
                    cluster: cluster.to_owned(),
                    message: format!("{what}: {message} (gave up after {tried} attempt(s))"),
                });
            }
            let pause = backoff(tried);
            tracing::warn!(cluster, what, attempt = tried, error = %message, ?pause, "transient cluster error, retrying");
            tokio::time::sleep(pause).await;
        }
    }
}

/// Pause after the `tried`-th failed attempt, with up to 50% jitter so calls
/// that failed together (one flaky API server, many objects) spread out.
fn backoff(tried: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << tried.saturating_sub(1).min(10))
        .min(MAX_BACKOFF);
    let jitter_ms = rand::random_range(0..=base.as_millis() as u64 / 2);
    base + Duration::from_millis(jitter_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure(message, "X").with_code(code)))
    }

    const BUDGET: Budget = Budget {
        timeout: Duration::from_millis(200),
        attempts: 3,
    };

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let result = BUDGET
            .run("eu-1", "get x", || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 2 { Err(api(500, "boom")) } else { Ok(n) } }
            })
            .await;
        assert_eq!(result, Ok(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn transient_errors_stop_at_the_budget() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = BUDGET
            .run("eu-1", "get x", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(api(503, "busy")) }
            })
            .await;
        let err = result.expect_err("budget spent");
        assert!(err.is_transient());
        assert!(
            err.to_string()
                .contains("get x: HTTP 503 X: busy (gave up after 3 attempt(s))"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn conflicts_and_rejections_are_not_retried() {
        for (code, conflict) in [(409, true), (422, false)] {
            let calls = AtomicU32::new(0);
            let err = BUDGET
                .run("eu-1", "apply x", || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async move { Err::<(), _>(api(code, "no")) }
                })
                .await
                .expect_err("fails");
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(matches!(err, FleetError::Conflict { .. }), conflict);
            assert_eq!(matches!(err, FleetError::Rejected { .. }), !conflict);
        }
    }

    #[tokio::test]
    async fn a_hanging_call_is_cut_by_the_timeout() {
        let err = BUDGET
            .run("eu-1", "get x", || {
                std::future::pending::<Result<(), kube::Error>>()
            })
            .await
            .expect_err("times out");
        assert!(err.is_transient());
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(
            backoff(1) >= Duration::from_millis(100) && backoff(1) <= Duration::from_millis(150)
        );
        assert!(backoff(2) >= Duration::from_millis(200));
        assert!(backoff(30) <= Duration::from_millis(1500));
    }
}
