use chrono::{DateTime, Utc};

/// The current time. Everything else takes time as an argument, so that the
/// rollout machine can be driven by tests with a time of their choosing.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// How long to sleep until `at`, at most `cap`; `cap` when there is no `at`
/// (nothing due: only a wake-up or the fallback poll ends the sleep).
pub fn sleep_until(at: Option<DateTime<Utc>>, cap: std::time::Duration) -> std::time::Duration {
    match at {
        Some(at) => (at - now()).to_std().unwrap_or_default().min(cap),
        None => cap,
    }
}
