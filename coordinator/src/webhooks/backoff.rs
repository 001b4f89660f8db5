//! When a failed webhook delivery is tried again, and when it is given up: exponential backoff with jitter,
//! computed from the attempt count stored in the delivery's row (so a restarted coordinator, or another one of the
//! same database, carries the schedule on). A crate like `backon` drives retries in a running loop; here the
//! schedule must live in the database between attempts, so it is this one documented formula.
//!
//! After the `n`-th failed attempt (n ≥ 1) the next one is due after `min(cap, base · 2^(n-1))`, of which a random
//! half is taken off ("equal jitter": many endpoints that failed together do not come back together). After
//! `max_attempts` attempts the delivery is given up, and the endpoint's next event goes out.

use std::time::Duration;

/// The retry schedule (`rollcage coordinator --webhook-retry-base-ms`, `--webhook-retry-cap-ms`,
/// `--webhook-max-attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The delay after the first failure (before jitter).
    pub base: Duration,
    /// The longest delay between two attempts.
    pub cap: Duration,
    /// Attempts before giving up (at least 1).
    pub max_attempts: u32,
}

/// The default first delay (ms).
pub const DEFAULT_BASE_MS: u64 = 10_000;
/// The default longest delay (ms).
pub const DEFAULT_CAP_MS: u64 = 3_600_000;
/// The default number of attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;

impl Default for Retry {
    /// 10 s doubling up to 1 h, 12 attempts: a receiver down for up to about 1.7 h (3.4 h without jitter) still
    /// gets every event; one down longer loses the event it was failing on, then gets the next ones.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(DEFAULT_BASE_MS),
            cap: Duration::from_millis(DEFAULT_CAP_MS),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }
}

/// What follows a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    RetryAfter(Duration),
    /// That was the last attempt.
    GiveUp,
}

impl Retry {
    /// After `attempts` attempts (this failure included), with `jitter` in `[0, 1)` (a random draw).
    pub fn after_failure(&self, attempts: u32, jitter: f64) -> Next {
        if attempts >= self.max_attempts.max(1) {
            return Next::GiveUp;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .base
            .saturating_mul(1u32 << exp)
            .min(self.cap)
            .max(Duration::from_millis(1));
        let half = full / 2;
        Next::RetryAfter(half + half.mul_f64(jitter.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_at_most_half_taken_off_then_gives_up() {
        let r = Retry::default();
        let secs = |n, j| match r.after_failure(n, j) {
            Next::RetryAfter(d) => d.as_secs_f64(),
            Next::GiveUp => -1.0,
        };
        // Without jitter (the top of the range): 10, 20, 40, … capped at 3600.
        let top: Vec<f64> = (1..12).map(|n| secs(n, 1.0)).collect();
        assert_eq!(
            top,
            [
                10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0, 2560.0, 3600.0, 3600.0
            ]
        );
        // The bottom of the range is half.
        assert_eq!(secs(1, 0.0), 5.0);
        assert_eq!(secs(11, 0.0), 1800.0);
        assert!((5.0..=10.0).contains(&secs(1, 0.37)));
        assert_eq!(r.after_failure(12, 0.5), Next::GiveUp);
        assert_eq!(r.after_failure(40, 0.5), Next::GiveUp);
        // Huge attempt counts never overflow.
        let long = Retry {
            max_attempts: u32::MAX,
            ..r
        };
        assert_eq!(
            long.after_failure(1_000, 1.0),
            Next::RetryAfter(Duration::from_secs(3600))
        );
        // One attempt only: the first failure gives up.
        let once = Retry {
            max_attempts: 1,
            ..r
        };
        assert_eq!(once.after_failure(1, 0.0), Next::GiveUp);
    }
}
