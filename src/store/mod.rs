//! PostgreSQL: the only place Meridian's state lives. SQL stays in small
//! functions per table family; every engine write is fenced by the
//! rollout's version and the engine's lease.

pub mod catalog;
pub mod catalog_changes;
pub mod embedded;
pub mod event_horizon;
pub mod events;
pub mod idempotency;
pub mod rollouts;
mod tick_commit;
pub mod tokens;
pub mod webhooks;

use sqlx::{PgPool, postgres::PgPoolOptions};

pub use rollouts::{
    Claim, ClaimedRollout, Created, IdempotencyKey, Lease, NewRelease, OnActive, ReleaseRecord,
    RolloutFilter, RolloutRecord,
};
pub use tick_commit::TickCommit;

/// The channel that wakes engines: a rollout became due (new rollout,
/// operator action). Only a hint; engines also poll on a short fallback.
pub const WAKE_CHANNEL: &str = "meridian_wake";
/// The channel that announces new events (payload: the event id).
pub const EVENTS_CHANNEL: &str = "meridian_events";
/// The channel that tells engines a cluster or application changed, so
/// they drop what they kept of the catalog.
pub const CATALOG_CHANNEL: &str = "meridian_catalog";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// Another engine holds the rollout now, or it changed under us: the
    /// write was refused and nothing changed.
    #[error("lease lost on rollout {0}")]
    LeaseLost(uuid::Uuid),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        use anyhow::Context as _;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // A ping before every acquire was half of all round trips at
            // load. A connection that died is noticed by the query that
            // uses it (the tick is retried, the request answered 503) and
            // is not returned to the pool.
            .test_before_acquire(false)
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}", redact_url(url)))?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(Store { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The `next_due` column of a claim statement's answer: every row carries
/// the same time, and there is always at least one.
fn next_due_of(rows: &[sqlx::postgres::PgRow]) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    use sqlx::Row as _;
    match rows.first() {
        Some(row) => Ok(row.try_get("next_due")?),
        None => Ok(None),
    }
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "<unparseable url>".to_owned(),
    }
}
