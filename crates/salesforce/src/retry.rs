//! Retry policy: jittered exponential backoff.
//!
//! Attempt `n` (0-based, counting retries only) waits
//! `min(max_delay, base_delay * multiplier^n)`, scaled by a random factor in
//! `[1 - jitter, 1]` ("equal-ish" jitter: never longer than the exponential bound, so
//! `max_delay` is a hard ceiling). A server-provided `Retry-After` wins when longer, capped
//! at `max_delay`.

use std::time::Duration;

/// How often and how patiently to retry retryable failures.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 disables retries).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base_delay: Duration,
    /// Ceiling for any single delay.
    pub max_delay: Duration,
    /// Growth factor per retry (≥ 1).
    pub multiplier: f64,
    /// Fraction of each delay that is randomised (0 = no jitter, 1 = full jitter).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::standard()
    }
}

impl RetryPolicy {
    /// Production default: 5 attempts, 1 s doubling to at most 30 s, 50 % jitter.
    pub fn standard() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }

    /// Fast preset for tests: 6 attempts, 5 ms doubling to at most 50 ms.
    pub fn for_test() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }

    /// No retries at all.
    pub fn no_retries() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Self::for_test()
        }
    }

    /// The un-jittered delay before retry number `retry` (0-based).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let factor = multiplier.powi(i32::try_from(retry).unwrap_or(i32::MAX));
        let base = self.base_delay.as_secs_f64();
        let raw = base * factor;
        let max = self.max_delay.as_secs_f64();
        if !raw.is_finite() || raw >= max {
            self.max_delay
        } else {
            Duration::from_secs_f64(raw)
        }
    }

    /// The delay before retry number `retry`, given a uniform random `unit` in `[0, 1)`.
    pub fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(retry);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(1.0 - jitter * unit)
    }

    /// The delay before retry number `retry`, with fresh randomness and an optional
    /// server hint.
    pub fn next_delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let computed = self.delay(retry, rand::random::<f64>());
        match retry_after {
            Some(hint) if hint > computed => hint.min(self.max_delay),
            _ => computed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn standard_sequence() {
        let policy = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::standard()
        };
        let delays: Vec<u64> = (0..7).map(|n| policy.delay(n, 0.5).as_secs()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn retry_after_hint_is_capped() {
        let policy = RetryPolicy::for_test();
        assert_eq!(
            policy.next_delay(0, Some(Duration::from_secs(100))),
            Duration::from_millis(50)
        );
        assert!(policy.next_delay(0, Some(Duration::from_millis(1))) <= Duration::from_millis(5));
    }

    proptest! {
        #[test]
        fn delay_is_bounded(retry in 0u32..200, unit in 0.0f64..1.0, jitter in 0.0f64..=1.0, base_ms in 0u64..10_000, max_ms in 0u64..100_000, mult in 1.0f64..10.0) {
            let policy = RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(base_ms), max_delay: Duration::from_millis(max_ms), multiplier: mult, jitter };
            let delay = policy.delay(retry, unit);
            let ceiling = policy.ceiling(retry);
            prop_assert!(delay <= ceiling);
            prop_assert!(ceiling <= policy.max_delay);
            prop_assert!(delay.as_secs_f64() >= ceiling.as_secs_f64() * (1.0 - jitter) - 1e-9);
        }

        #[test]
        fn ceiling_is_monotonic(retry in 0u32..100, mult in 1.0f64..5.0) {
            let policy = RetryPolicy { multiplier: mult, ..RetryPolicy::standard() };
            prop_assert!(policy.ceiling(retry) <= policy.ceiling(retry + 1));
        }
    }
}
