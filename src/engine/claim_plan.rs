//! When the engine's loop asks the database for due rollouts. A claim
//! answers when the next rollout it did not take is due (rollouts leased
//! by ticks in flight count at their lease's end), and a tick's commit
//! answers when its own rollout is due again. Between the two the loop
//! knows the next due time without asking: a tick that ends is no reason
//! to claim, unless its rollout is due at once or the last claim took all
//! it could. Claiming after every tick made the claim the most frequent
//! statement at a steady load, each one reading every running rollout to
//! find the next due time.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How a tick ended, for the loop's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TickEnd {
    /// Committed: its rollout is due again then (`None`: only an operator
    /// or another rollout's end moves it, and those notify).
    DueAt(Option<DateTime<Utc>>),
    /// Failed or timed out: its rollout was given back with a retry time
    /// the loop does not know.
    Unknown,
}

#[derive(Debug)]
pub(super) struct ClaimPlan {
    /// The longest the loop goes without a claim, in case a wake-up was
    /// lost (listener reconnecting) or another engine left work behind.
    fallback: Duration,
    /// The earliest due time known.
    next_due: Option<DateTime<Utc>>,
    /// Something only the database can tell about happened (a
    /// notification, a tick that failed, the timer).
    ask: bool,
    /// The last claim took as many rollouts as it could: more may be due.
    saturated: bool,
    last_claim: Option<DateTime<Utc>>,
}

impl ClaimPlan {
    pub(super) fn new(fallback: Duration) -> ClaimPlan {
        ClaimPlan {
            fallback,
            next_due: None,
            ask: true,
            saturated: false,
            last_claim: None,
        }
    }

    /// Whether to claim now (when a tick slot is free).
    pub(super) fn claim_now(&self, now: DateTime<Utc>) -> bool {
        self.ask
            || self.saturated
            || self.next_due.is_some_and(|due| due <= now)
            || self
                .last_claim
                .is_none_or(|at| (now - at).to_std().unwrap_or_default() >= self.fallback)
    }

    /// A claim answered: whether it filled every free slot, and when the
    /// next rollout it did not take is due.
    pub(super) fn claimed(
        &mut self,
        now: DateTime<Utc>,
        saturated: bool,
        next_due: Option<DateTime<Utc>>,
    ) {
        self.ask = false;
        self.saturated = saturated;
        self.next_due = next_due;
        self.last_claim = Some(now);
    }

    /// A claim failed: try again after the fallback, not at once.
    pub(super) fn failed(&mut self, now: DateTime<Utc>) {
        self.ask = false;
        self.saturated = false;
        self.next_due = None;
        self.last_claim = Some(now);
    }

    /// How long the loop may sleep, with `can_claim` when a slot is free.
    pub(super) fn sleep(&self, now: DateTime<Utc>, can_claim: bool) -> Duration {
        // With every slot busy, a finishing tick is what wakes the loop.
        if !can_claim || self.saturated {
            return self.fallback;
        }
        match self.next_due {
            Some(at) => (at - now).to_std().unwrap_or_default().min(self.fallback),
            None => self.fallback,
        }
    }

    pub(super) fn notified(&mut self) {
        self.ask = true;
    }

    /// The sleep ran out: something is due, or the fallback came.
    pub(super) fn slept(&mut self) {
        self.ask = true;
    }

    pub(super) fn tick_ended(&mut self, end: TickEnd) {
        match end {
            TickEnd::DueAt(Some(at)) => {
                self.next_due = Some(self.next_due.map_or(at, |due| due.min(at)));
            }
            TickEnd::DueAt(None) => {}
            TickEnd::Unknown => self.ask = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    const FALLBACK: Duration = Duration::from_secs(2);

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + TimeDelta::milliseconds(ms)
    }

    /// A plan right after a claim at 0 ms that took fewer than it could
    /// and said the next rollout is due at `next_due` ms.
    fn after_claim(next_due: Option<i64>) -> ClaimPlan {
        let mut plan = ClaimPlan::new(FALLBACK);
        assert!(plan.claim_now(at(0)), "a new loop claims first");
        plan.claimed(at(0), false, next_due.map(at));
        plan
    }

    #[test]
    fn a_tick_that_ends_with_its_rollout_due_later_is_no_reason_to_claim() {
        let mut plan = after_claim(Some(5_000));
        plan.tick_ended(TickEnd::DueAt(Some(at(800))));
        assert!(!plan.claim_now(at(10)));
        assert_eq!(
            plan.sleep(at(10), true),
            Duration::from_millis(790),
            "sleeps until the ended tick's rollout is due"
        );
        assert!(plan.claim_now(at(800)), "and claims then");
    }

    #[test]
    fn a_tick_whose_rollout_was_woken_meanwhile_makes_the_loop_claim_at_once() {
        let mut plan = after_claim(None);
        plan.tick_ended(TickEnd::DueAt(Some(at(5))));
        assert!(plan.claim_now(at(10)));
        assert_eq!(plan.sleep(at(10), true), Duration::ZERO);
    }

    #[test]
    fn a_tick_that_failed_makes_the_loop_ask_the_database() {
        let mut plan = after_claim(None);
        plan.tick_ended(TickEnd::DueAt(None));
        assert!(!plan.claim_now(at(10)));
        plan.tick_ended(TickEnd::Unknown);
        assert!(plan.claim_now(at(10)));
    }

    #[test]
    fn after_a_claim_that_filled_every_slot_each_ending_tick_claims_again() {
        let mut plan = ClaimPlan::new(FALLBACK);
        plan.claimed(at(0), true, Some(at(60_000)));
        assert_eq!(plan.sleep(at(0), false), FALLBACK);
        plan.tick_ended(TickEnd::DueAt(Some(at(60_000))));
        assert!(plan.claim_now(at(10)));
    }

    #[test]
    fn notifications_and_the_timer_make_the_loop_claim() {
        let mut plan = after_claim(Some(5_000));
        plan.notified();
        assert!(plan.claim_now(at(10)));
        let mut plan = after_claim(Some(5_000));
        plan.slept();
        assert!(plan.claim_now(at(10)));
    }

    #[test]
    fn the_loop_claims_at_least_once_per_fallback_while_ticks_keep_ending() {
        let mut plan = after_claim(Some(60_000));
        plan.tick_ended(TickEnd::DueAt(Some(at(30_000))));
        assert!(!plan.claim_now(at(1_999)));
        assert!(plan.claim_now(at(2_000)));
    }

    #[test]
    fn a_failed_claim_is_retried_after_the_fallback_not_at_once() {
        let mut plan = ClaimPlan::new(FALLBACK);
        plan.failed(at(0));
        assert!(!plan.claim_now(at(10)));
        assert_eq!(plan.sleep(at(10), true), FALLBACK);
        plan.slept();
        assert!(plan.claim_now(at(2_000)));
    }
}
