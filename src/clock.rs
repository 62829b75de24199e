//! The millisecond clock the IO layers (the engine's driver, the sandbox agent) give the
//! sans-IO protocol core: monotonic, anchored to the wall clock once so that `CreatedDate`
//! stays a plausible epoch time, and convertible back to a tokio deadline.

use std::time::Duration;

use tokio::time::Instant;

/// Milliseconds since the epoch, advancing with the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    base_ms: u64,
}

impl Clock {
    /// Anchors a clock at the current wall time.
    pub fn new() -> Self {
        let base_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            start: Instant::now(),
            base_ms,
        }
    }

    /// Now, in the protocol's milliseconds.
    pub fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }

    /// The tokio instant of a protocol time (a deadline from `poll_timeout`).
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms.saturating_sub(self.base_ms))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_deadlines_agree() {
        let clock = Clock::new();
        let t0 = clock.now();
        assert!(t0 > 1_600_000_000_000, "anchored to the epoch: {t0}");
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(20));
        let t1 = clock.now();
        assert!(t1 >= t0 + 20, "{t0} -> {t1}");
        // A protocol time maps back to the instant it was read at (to the millisecond).
        let at = clock.instant_at(t1);
        assert!(at >= before && at <= Instant::now(), "{at:?}");
        assert_eq!(clock.instant_at(t1 + 100) - at, Duration::from_millis(100));
        // A time before the anchor maps to the anchor, not to a panic.
        assert!(clock.instant_at(0) <= before);
    }
}
