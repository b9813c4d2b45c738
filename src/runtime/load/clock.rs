//! Time sources. Abstracted so the engine can run in virtual time in tests:
//! wall-clock assertions are flaky on a shared, noisy machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source measured from the clock's own origin.
pub trait Clock: Sync {
    /// Time elapsed since the clock's origin.
    fn now(&self) -> Duration;
    /// Blocks until `now() >= t`; returns at once if `t` is already past.
    fn sleep_until(&self, t: Duration);
    /// True for a clock that only moves when told to. Scenarios then use the
    /// deterministic discrete-event engine, because real threads racing on a
    /// virtual clock would not give reproducible results.
    fn is_virtual(&self) -> bool {
        false
    }
}

/// Wall-clock time from [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct RealClock {
    origin: Instant,
}

impl RealClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for RealClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep_until(&self, t: Duration) {
        let now = self.now();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

/// Virtual time: moves only via [`VirtualClock::advance`] (a simulated SUT
/// "spending" its service time) or [`Clock::sleep_until`] (jumps forward).
#[derive(Debug, Default)]
pub struct VirtualClock {
    nanos: AtomicU64,
}

impl VirtualClock {
    /// A virtual clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d` (saturating, never wraps).
    pub fn advance(&self, d: Duration) {
        let step = to_nanos(d);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(step))
            });
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, t: Duration) {
        self.nanos.fetch_max(to_nanos(t), Ordering::SeqCst);
    }

    fn is_virtual(&self) -> bool {
        true
    }
}

/// Nanoseconds as u64, saturating: u64 nanos cover ~584 years.
fn to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_forward() {
        let c = VirtualClock::new();
        c.advance(Duration::from_millis(5));
        c.sleep_until(Duration::from_millis(3));
        assert_eq!(c.now(), Duration::from_millis(5));
        c.sleep_until(Duration::from_millis(9));
        assert_eq!(c.now(), Duration::from_millis(9));
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Duration::from_nanos(u64::MAX));
    }
}
