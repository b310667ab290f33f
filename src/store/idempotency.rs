//! How long an `Idempotency-Key` is remembered. A pipeline retries within
//! minutes; a day covers a retry after an outage. After that the key is
//! forgotten and may be used again: a late retry of the same release then
//! meets the release itself (versions are immutable: 409), never a
//! second rollout.

use std::time::Duration;

use super::{Result, Store};

/// How long a key answers with its first response.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

impl Store {
    /// Deletes the keys older than [`KEY_LIFETIME`]; answers how many.
    pub async fn forget_expired_idempotency_keys(&self) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(KEY_LIFETIME.as_secs_f64())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }
}
