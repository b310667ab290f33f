//! When to try a failed delivery again, and when to give up.

use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt; doubles after each further one.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// Attempts in all, the first included; after the last the delivery fails.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    /// 1 s, 2 s, 4 s … 60 s: a receiver that is down for about two
    /// minutes (a deploy, a restart) still gets the event.
    fn default() -> Self {
        Self {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failed ones
    /// (1-based), or `None` when that was the last attempt allowed.
    pub fn delay_after(&self, attempts: u32) -> Option<Duration> {
        if attempts == 0 || attempts >= self.max_attempts {
            return None;
        }
        let doublings = (attempts - 1).min(31);
        let delay = self.first_delay.saturating_mul(1u32 << doublings);
        Some(delay.min(self.max_delay))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let delays: Vec<u64> = (1..8)
            .map(|n| policy.delay_after(n).map_or(0, |d| d.as_secs()))
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60]);
    }

    #[test]
    fn there_is_no_retry_after_the_last_attempt() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_after(8), None);
        assert_eq!(policy.delay_after(9), None);
    }

    #[test]
    fn many_attempts_do_not_overflow_the_delay() {
        let policy = RetryPolicy {
            max_attempts: 100,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.delay_after(90), Some(Duration::from_secs(60)));
    }
}
