//! The delivery worker, one per replica: follows the event log by id,
//! turns matching events into deliveries, claims due deliveries with a
//! lease, sends them, and records every attempt. No row lock is held while
//! a receiver is called.

use std::time::{Duration, Instant};

use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use super::{Outcome, Request, RetryPolicy, Sender, render};
use crate::store::{
    Store,
    webhooks::{ClaimedDelivery, DeliveryClaim, FinishedAttempt, NextStep},
};

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// This replica's name in delivery leases.
    pub worker_id: String,
    /// Where people reach the service, for links in bodies.
    pub public_url: String,
    /// Bounds one attempt end to end.
    pub attempt_timeout: Duration,
    /// How long a claim lasts: well above the attempt timeout, so a live
    /// sender never loses its delivery to another replica mid-attempt.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Deliveries sent at once by this replica.
    pub max_in_flight: usize,
    /// Events read per fan-out transaction.
    pub fan_out_batch: i64,
    /// The longest the worker sleeps without looking at the database, in
    /// case a notification was lost.
    pub fallback_poll: Duration,
}

impl WorkerConfig {
    pub fn new(worker_id: impl Into<String>, public_url: impl Into<String>) -> Self {
        Self {
            worker_id: worker_id.into(),
            public_url: public_url.into(),
            attempt_timeout: Duration::from_secs(10),
            lease: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            max_in_flight: 16,
            fan_out_batch: 500,
            fallback_poll: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct WebhookWorker {
    store: Store,
    sender: Sender,
    config: WorkerConfig,
}

impl WebhookWorker {
    pub fn new(store: Store, config: WorkerConfig) -> anyhow::Result<WebhookWorker> {
        let sender = Sender::new(config.attempt_timeout)?;
        Ok(WebhookWorker {
            store,
            sender,
            config,
        })
    }

    /// Runs until `shutdown`; `event_horizon` moves as events settle (see
    /// `api::spawn_event_horizon`). Attempts in flight are finished (each
    /// is bounded by the attempt timeout).
    pub async fn run(
        self,
        mut event_horizon: watch::Receiver<Option<i64>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut sends: JoinSet<()> = JoinSet::new();
        tracing::info!(worker = %self.config.worker_id, "webhook worker started");
        loop {
            // Seen before the database is read: a notification that comes
            // while we work wakes the sleep below at once.
            let horizon = *event_horizon.borrow_and_update();
            if let Some(upto) = horizon {
                self.fan_out(upto).await;
            }
            let free = self.config.max_in_flight.saturating_sub(sends.len());
            // With every slot busy, only a finished send (or the fallback)
            // is worth waking for: due deliveries would wake us for nothing.
            let mut sleep = self.config.fallback_poll;
            if free > 0 {
                match self.claim(free).await {
                    Ok(claim) => {
                        if claim.deliveries.len() < free {
                            sleep = crate::clock::sleep_until(
                                claim.next_due,
                                self.config.fallback_poll,
                            );
                        }
                        for delivery in claim.deliveries {
                            let worker = self.clone();
                            sends.spawn(async move { worker.attempt(delivery).await });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying")
                    }
                }
            }
            let notified = async {
                if event_horizon.changed().await.is_err() {
                    // The notifier stopped (shutting down): rely on the timer.
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = notified => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = sends.join_next(), if !sends.is_empty() => {}
            }
        }
        while sends.join_next().await.is_some() {}
        tracing::info!(worker = %self.config.worker_id, "webhook worker stopped");
        Ok(())
    }

    /// Reads the event log until caught up. Errors are logged and retried
    /// on the next wake: the cursor only moves with committed deliveries.
    async fn fan_out(&self, upto: i64) {
        loop {
            match self
                .store
                .fan_out_webhooks(self.config.fan_out_batch, upto)
                .await
            {
                Ok(done) => {
                    if done.deliveries_created > 0 {
                        tracing::debug!(
                            events = done.events_read,
                            deliveries = done.deliveries_created,
                            "webhook deliveries queued"
                        );
                    }
                    let full_batch = i64::try_from(done.events_read)
                        .is_ok_and(|n| n >= self.config.fan_out_batch);
                    if !full_batch {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fan out events to webhooks; retrying");
                    return;
                }
            }
        }
    }

    async fn claim(&self, limit: usize) -> anyhow::Result<DeliveryClaim> {
        Ok(self
            .store
            .claim_deliveries(
                &self.config.worker_id,
                self.config.lease,
                i64::try_from(limit).unwrap_or(i64::MAX),
            )
            .await?)
    }

    /// One attempt: send, then record the outcome under the lease.
    async fn attempt(&self, delivery: ClaimedDelivery) {
        let attempt = delivery.attempts.saturating_add(1);
        let body = render(
            delivery.format,
            &delivery.event,
            &delivery.context,
            &self.config.public_url,
        );
        let started_at = crate::clock::now();
        let timer = Instant::now();
        let outcome = self
            .sender
            .send(Request {
                url: &delivery.url,
                secret: delivery.secret.expose(),
                event_kind: &delivery.event.kind,
                delivery_id: delivery.lease.delivery_id,
                body,
            })
            .await;
        let finished = FinishedAttempt {
            started_at,
            duration: timer.elapsed(),
            status: outcome.status(),
            error: outcome.error(),
            next: next_step(&self.config.retry, attempt, &outcome),
        };
        let lease = &delivery.lease;
        match self.store.finish_attempt(lease, attempt, &finished).await {
            Ok(true) => log_attempt(&delivery, attempt, &finished),
            Ok(false) => tracing::warn!(
                delivery = %lease.delivery_id,
                attempt,
                "webhook delivery lease lost during the attempt; its outcome was not recorded"
            ),
            // The lease runs out and the delivery is sent again: a receiver
            // may see it twice (with the same delivery id), but never lose it.
            Err(e) => tracing::warn!(
                delivery = %lease.delivery_id,
                error = %e,
                "cannot record a webhook attempt; it will be retried"
            ),
        }
    }
}

/// Success ends a delivery; a failure is retried until the policy's last
/// attempt. Any failure is worth retrying: a receiver's 4xx is as often a
/// deploy in progress as a real refusal, and attempts are capped anyway.
fn next_step(policy: &RetryPolicy, attempt: i32, outcome: &Outcome) -> NextStep {
    if outcome.is_delivered() {
        return NextStep::Succeeded;
    }
    match policy.delay_after(u32::try_from(attempt).unwrap_or(u32::MAX)) {
        Some(delay) => NextStep::RetryAfter(delay),
        None => NextStep::Failed,
    }
}

fn log_attempt(delivery: &ClaimedDelivery, attempt: i32, finished: &FinishedAttempt) {
    let id = delivery.lease.delivery_id;
    let kind = &delivery.event.kind;
    match finished.next {
        NextStep::Succeeded => {
            tracing::info!(delivery = %id, event = %kind, attempt, "webhook delivered");
        }
        NextStep::RetryAfter(delay) => tracing::info!(
            delivery = %id, event = %kind, attempt, retry_in = ?delay,
            error = finished.error.as_deref().unwrap_or_default(),
            "webhook attempt failed; will retry"
        ),
        NextStep::Failed => tracing::warn!(
            delivery = %id, event = %kind, attempt,
            error = finished.error.as_deref().unwrap_or_default(),
            "webhook delivery failed after its last attempt"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_attempt_succeeds_and_a_failed_one_retries_until_the_last() {
        let policy = RetryPolicy::default();
        let refused = Outcome::Refused {
            status: 500,
            detail: String::new(),
        };
        assert_eq!(
            next_step(&policy, 3, &Outcome::Delivered { status: 200 }),
            NextStep::Succeeded
        );
        assert_eq!(
            next_step(&policy, 1, &refused),
            NextStep::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(next_step(&policy, 8, &refused), NextStep::Failed);
    }
}
