//! The engine: claims due rollouts with leases, drives each through one
//! tick of the state machine, and sleeps until the next one is due or a
//! `NOTIFY` says something changed.

mod act;
mod catalog;
mod gates;
mod health;
mod tick;
pub mod wake;

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use gates::HealthClients;
pub use health::EngineHealth;

use crate::{
    domain::Tuning,
    fleet::Fleet,
    store::{CATALOG_CHANNEL, Store, WAKE_CHANNEL},
};

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This replica's name in leases and events.
    pub worker_id: String,
    /// How long a claim lasts; a tick must finish well within it.
    pub lease: Duration,
    /// Rollouts driven at once by this replica.
    pub max_concurrent_ticks: usize,
    /// The longest the engine sleeps without looking at the database, in
    /// case a `NOTIFY` was lost (listener reconnecting).
    pub fallback_poll: Duration,
    pub tuning: Tuning,
}

impl EngineConfig {
    pub fn new(worker_id: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            lease: Duration::from_secs(30),
            max_concurrent_ticks: 64,
            fallback_poll: Duration::from_secs(2),
            tuning: Tuning::default(),
        }
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    fleet: Fleet,
    config: EngineConfig,
    /// Prometheus and HTTP clients for gates.
    health: HealthClients,
    heartbeat: EngineHealth,
    catalog: catalog::CatalogCache,
}

impl Engine {
    pub fn new(store: Store, fleet: Fleet, health: HealthClients, config: EngineConfig) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                store,
                fleet,
                config,
                health,
                heartbeat: EngineHealth::default(),
                catalog: catalog::CatalogCache::default(),
            }),
        }
    }

    pub fn health(&self) -> EngineHealth {
        self.inner.heartbeat.clone()
    }

    /// Runs until `shutdown` is cancelled; ticks in flight are finished
    /// (they are short and fenced) before it returns.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let inner = &self.inner;
        let mut listener = PgListener::connect_with(inner.store.pool()).await?;
        listener.listen_all([WAKE_CHANNEL, CATALOG_CHANNEL]).await?;
        let mut ticks: JoinSet<()> = JoinSet::new();
        tracing::info!(worker = %inner.config.worker_id, "engine started");
        loop {
            inner.heartbeat.beat();
            let free = inner
                .config
                .max_concurrent_ticks
                .saturating_sub(ticks.len());
            // A catalog change announced before a rollout became due must
            // be seen by that rollout's tick: read what already arrived.
            while let Some(notification) = listener.next_buffered() {
                self.note(&notification);
            }
            let fallback = inner.config.fallback_poll;
            // With every slot busy, a finishing tick is what wakes the loop.
            let mut sleep = fallback;
            if free > 0 {
                match self.claim_and_spawn(free, &mut ticks).await {
                    Ok((claimed, next_due)) if claimed < free => {
                        sleep = crate::clock::sleep_until(next_due, fallback);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot claim due rollouts; retrying"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                notification = listener.recv() => {
                    if let Ok(notification) = &notification {
                        self.note(notification);
                    }
                    if let Err(e) = notification {
                        // PgListener reconnects on the next recv; anything
                        // missed meanwhile is caught by the fallback poll.
                        tracing::warn!(error = %e, "wake-up listener lost its connection");
                        // A catalog change may have gone unannounced.
                        inner.catalog.clear();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = ticks.join_next(), if !ticks.is_empty() => {
                    // Claim once for every tick that ended meanwhile.
                    while ticks.try_join_next().is_some() {}
                }
            }
        }
        while ticks.join_next().await.is_some() {}
        tracing::info!(worker = %inner.config.worker_id, "engine stopped");
        Ok(())
    }

    fn note(&self, notification: &sqlx::postgres::PgNotification) {
        if notification.channel() == CATALOG_CHANNEL {
            self.inner.catalog.clear();
        }
    }

    /// Claims due rollouts and drives each once; returns how many. Lets
    /// tests and benchmarks step the engine without its loop.
    pub async fn run_due_once(&self) -> anyhow::Result<usize> {
        let mut ticks = JoinSet::new();
        let (count, _) = self
            .claim_and_spawn(self.inner.config.max_concurrent_ticks, &mut ticks)
            .await?;
        while ticks.join_next().await.is_some() {}
        Ok(count)
    }

    /// Claims and spawns up to `limit` ticks; answers how many, and when
    /// the earliest rollout not claimed is due.
    async fn claim_and_spawn(
        &self,
        limit: usize,
        ticks: &mut JoinSet<()>,
    ) -> anyhow::Result<(usize, Option<chrono::DateTime<chrono::Utc>>)> {
        let inner = &self.inner;
        let claim = inner
            .store
            .claim_due(
                &inner.config.worker_id,
                inner.config.lease.as_secs_f64(),
                i64::try_from(limit).unwrap_or(i64::MAX),
            )
            .await?;
        let count = claim.rollouts.len();
        for rollout in claim.rollouts {
            let engine = self.clone();
            ticks.spawn(async move {
                let lease = rollout.lease.clone();
                // A tick that outlives its lease could race a new owner; the
                // fencing would refuse its writes, but stop it anyway.
                let deadline = engine.inner.config.lease.mul_f64(0.8);
                match tokio::time::timeout(deadline, tick::drive(&engine.inner, rollout)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tick::give_back(&engine.inner, &lease, &e).await,
                    Err(_) => {
                        let e = anyhow::anyhow!("tick took longer than {deadline:?}");
                        tick::give_back(&engine.inner, &lease, &e).await;
                    }
                }
            });
        }
        Ok((count, claim.next_due))
    }
}
