//! Test SUTs and clocks shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use taskbench::runtime::load::{Clock, Sut, VirtualClock};

pub fn ms(n: f64) -> Duration {
    Duration::from_secs_f64(n / 1e3)
}

/// Simulated SUT: each batch "takes" base + per_item × len of virtual time.
pub struct SimSut<'a> {
    pub clock: &'a VirtualClock,
    pub base: Duration,
    pub per_item: Duration,
    pub max_batch: usize,
    /// Items for which run_batch reports an error.
    pub fail_item: Option<fn(usize) -> bool>,
}

impl<'a> SimSut<'a> {
    pub fn new(clock: &'a VirtualClock, base_ms: f64, per_item_ms: f64, max_batch: usize) -> Self {
        Self {
            clock,
            base: ms(base_ms),
            per_item: ms(per_item_ms),
            max_batch,
            fail_item: None,
        }
    }
}

impl Sut for SimSut<'_> {
    fn run_batch(&self, items: &[usize]) -> Result<(), String> {
        let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
        self.clock.advance(self.base + self.per_item * n);
        match self.fail_item {
            Some(f) if items.iter().any(|&i| f(i)) => {
                Err(format!("item failed in batch of {}", items.len()))
            }
            _ => Ok(()),
        }
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// Real-time SUT counting how often each item is answered; optionally panics.
pub struct CountingSut {
    pub counts: Vec<AtomicUsize>,
    pub max_batch: usize,
    pub sleep: Duration,
    pub panic_on: Option<usize>,
}

impl CountingSut {
    pub fn new(n: usize, max_batch: usize, sleep: Duration) -> Self {
        Self {
            counts: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            max_batch,
            sleep,
            panic_on: None,
        }
    }

    pub fn counts(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

impl Sut for CountingSut {
    fn run_batch(&self, items: &[usize]) -> Result<(), String> {
        if items.len() > self.max_batch {
            return Err(format!(
                "batch of {} over max {}",
                items.len(),
                self.max_batch
            ));
        }
        if let Some(p) = self.panic_on {
            assert!(!items.contains(&p), "test SUT panics on item {p}");
        }
        std::thread::sleep(self.sleep);
        for &i in items {
            self.counts[i].fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.max_batch
    }
}

/// A non-virtual clock that jumps `step` on every `now()` and never sleeps:
/// makes the threaded dispatcher fall behind deterministically.
pub struct StepClock {
    nanos: AtomicU64,
    step: u64,
}

impl StepClock {
    pub fn new(step: Duration) -> Self {
        Self {
            nanos: AtomicU64::new(0),
            step: step.as_nanos() as u64,
        }
    }
}

impl Clock for StepClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.fetch_add(self.step, Ordering::SeqCst))
    }

    fn sleep_until(&self, _t: Duration) {}
}
