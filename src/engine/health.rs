use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Utc};

/// The engine loop's heartbeat, so `/readyz` can tell a live process from a
/// live engine.
#[derive(Clone, Debug, Default)]
pub struct EngineHealth {
    last_beat_ms: Arc<AtomicI64>,
}

impl EngineHealth {
    pub fn beat(&self) {
        self.last_beat_ms
            .store(crate::clock::now().timestamp_millis(), Ordering::Relaxed);
    }

    pub fn last_beat(&self) -> Option<DateTime<Utc>> {
        match self.last_beat_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Whether the loop went round within `max_age`.
    pub fn is_ticking(&self, now: DateTime<Utc>, max_age: chrono::Duration) -> bool {
        self.last_beat().is_some_and(|at| now - at <= max_age)
    }
}
