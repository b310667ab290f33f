//! Forgets the `Idempotency-Key`s past their lifetime
//! ([`crate::store::idempotency::KEY_LIFETIME`]), so the table holds about a
//! day of keys instead of every key ever sent. Every replica runs it; the
//! deletes do not conflict.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often expired keys are deleted. An expired key is already treated
/// as new when it comes back, so this only bounds the table's size.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Deletes expired keys now and then every [`EXPIRY_INTERVAL`], until
/// `shutdown`.
pub fn spawn_key_expiry(store: Store, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(EXPIRY_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            match store.forget_expired_idempotency_keys().await {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(forgotten, "expired idempotency keys forgotten"),
                Err(error) => {
                    tracing::warn!(%error, "cannot forget expired idempotency keys; trying again later");
                }
            }
        }
    });
}
