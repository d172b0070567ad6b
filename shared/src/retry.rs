//! The one retry policy: capped exponential backoff with full jitter.
//! The SDK's own retries (throttling, 5xx) are configured from it too, so every
//! AWS call and every partial-batch retry backs off the same way.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Attempts for a write that loses a race by design (an audit append behind
    /// concurrent appends, a transaction on a hot aggregate): each loser must wait
    /// for every winner ahead of it, so this grows with the expected contenders.
    pub contended_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            contended_attempts: 10,
            base_delay: Duration::from_millis(25),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before retry number `retry` (1-based).
    pub fn delay_cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Full jitter: a uniform delay in [0, cap], so that retrying clients spread out.
    pub fn delay(&self, retry: u32) -> Duration {
        let cap = self.delay_cap(retry);
        let millis = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=millis))
    }

    pub async fn sleep_before(&self, retry: u32) {
        tokio::time::sleep(self.delay(retry)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay_cap(1), Duration::from_millis(25));
        assert_eq!(policy.delay_cap(2), Duration::from_millis(50));
        assert_eq!(policy.delay_cap(4), Duration::from_millis(200));
        assert_eq!(policy.delay_cap(10), Duration::from_secs(1));
        assert_eq!(policy.delay_cap(200), Duration::from_secs(1));
        for retry in 1..8 {
            assert!(policy.delay(retry) <= policy.delay_cap(retry));
        }
    }
}
