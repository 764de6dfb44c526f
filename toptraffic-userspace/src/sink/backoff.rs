//! Waits between delivery attempts: exponential, capped, with full jitter.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

/// Waits between attempts: exponential, capped, with full jitter so that
/// sinks failing together do not retry in lockstep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Backoff {
    pub(super) base: Duration,
    pub(super) cap: Duration,
}

impl Backoff {
    pub(super) const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(30),
    };

    /// The longest wait before retry `n` (1-based): base · 2^(n-1), capped.
    pub(super) fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(31);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A wait drawn uniformly from [0, ceiling(retry)] by `random`.
    pub(super) fn delay(&self, retry: u32, random: u64) -> Duration {
        self.ceiling(retry).mul_f64(random as f64 / u64::MAX as f64)
    }
}

/// A random u64 without a dependency or the clock: every `RandomState` is
/// keyed afresh, so hashing anything with a new one gives new bits.
pub(super) fn random_u64() -> u64 {
    RandomState::new().hash_one(0u8)
}
