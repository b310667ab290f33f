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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_that_never_beat_or_stopped_beating_is_not_ticking() {
        let health = EngineHealth::default();
        let now = crate::clock::now();
        let max_age = chrono::Duration::seconds(10);
        assert!(!health.is_ticking(now, max_age), "never beat");
        health.beat();
        assert!(health.is_ticking(crate::clock::now(), max_age));
        let later = crate::clock::now() + chrono::Duration::seconds(11);
        assert!(
            !health.is_ticking(later, max_age),
            "a stuck loop fails readiness"
        );
    }
}
