use chrono::{DateTime, Utc};

/// The current time. Everything else takes time as an argument, so that the
/// rollout machine can be driven by tests with a time of their choosing.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}
