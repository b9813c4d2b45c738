//! The plan both engines execute, and the choice between them.

use super::ledger::{call_sut, ErrorTally, Ledger};
use super::{sim, threaded, Clock, Sut};
use std::time::Duration;

/// Everything an engine needs: when each query is due and what it carries.
#[derive(Debug)]
pub(crate) struct Plan {
    pub scheduled: Vec<Duration>,
    pub items: Vec<usize>,
    pub workers: usize,
    pub max_batch: usize,
}

impl Plan {
    /// Items for a batch of query ids.
    pub fn items_of(&self, batch: &[usize]) -> Vec<usize> {
        batch
            .iter()
            .filter_map(|&q| self.items.get(q).copied())
            .collect()
    }
}

/// Runs the plan: simulated for a virtual clock (deterministic), threaded otherwise.
pub(crate) fn execute(sut: &dyn Sut, plan: &Plan, clock: &dyn Clock) -> Ledger {
    if clock.is_virtual() {
        sim::run(sut, plan, clock)
    } else {
        threaded::run(sut, plan, clock)
    }
}

/// Untimed warm-up over the first `n` items (cycled), in batches of
/// `max_batch`, so one-off costs (loading, JIT, connection setup) stay out of
/// the measurement. Its errors still count: a broken SUT must not pass.
pub(crate) fn warm_up(sut: &dyn Sut, n: usize, query_count: usize, max_batch: usize) -> ErrorTally {
    let items = super::cycle_items(n, query_count);
    let mut tally = ErrorTally::default();
    for chunk in items.chunks(max_batch.max(1)) {
        if let Err(msg) = call_sut(sut, chunk) {
            tally.record(chunk.len(), &msg);
        }
    }
    tally
}
