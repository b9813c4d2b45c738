//! Discrete-event engine for virtual clocks. Workers are simulated as running
//! in parallel; each batch's service time is whatever the SUT advanced the
//! clock by during `run_batch`. Events are handled in time order, so the
//! result is exact and reproducible (the dispatcher is ideal: no lag).

use super::engine::Plan;
use super::ledger::{call_sut, BatchQueue, Ledger};
use super::{Clock, Sut};
use std::time::Duration;

/// Simulates the plan; see the module docs.
pub(crate) fn run(sut: &dyn Sut, plan: &Plan, clock: &dyn Clock) -> Ledger {
    let mut sim = Sim::new(plan);
    while sim.has_work() {
        sim.step(sut, plan, clock);
    }
    sim.ledger
}

struct Sim<'a> {
    ledger: Ledger,
    queue: BatchQueue,
    /// When each worker is next free to pick up work.
    free_at: Vec<Duration>,
    scheduled: &'a [Duration],
    next_arrival: usize,
}

impl<'a> Sim<'a> {
    fn new(plan: &'a Plan) -> Self {
        Self {
            ledger: Ledger::new(plan.scheduled.clone()),
            queue: BatchQueue::default(),
            free_at: vec![Duration::ZERO; plan.workers.max(1)],
            scheduled: &plan.scheduled,
            next_arrival: 0,
        }
    }

    fn has_work(&self) -> bool {
        self.next_arrival < self.scheduled.len() || !self.queue.is_empty()
    }

    /// Lets the earliest-free worker act at its free time: take a batch, or,
    /// with nothing waiting, idle until the next arrival (then re-decide, since
    /// another worker may be free even earlier).
    fn step(&mut self, sut: &dyn Sut, plan: &Plan, clock: &dyn Clock) {
        let (w, t) = self.earliest_worker();
        self.admit_until(t);
        if self.queue.is_empty() {
            // has_work() guarantees an arrival is still pending here.
            if let Some(&due) = self.scheduled.get(self.next_arrival) {
                self.free_at[w] = due;
            }
            return;
        }
        let batch = self.queue.take(plan.max_batch);
        let (service, outcome) = measure(sut, clock, &plan.items_of(&batch));
        let end = t.saturating_add(service);
        self.ledger.finish(&batch, end, &outcome);
        self.free_at[w] = end;
    }

    /// Lowest free time; ties go to the lowest index, for determinism.
    fn earliest_worker(&self) -> (usize, Duration) {
        let mut best = (0, self.free_at[0]);
        for (w, &t) in self.free_at.iter().enumerate() {
            if t < best.1 {
                best = (w, t);
            }
        }
        best
    }

    /// Issues every query due by `t`, exactly on schedule.
    fn admit_until(&mut self, t: Duration) {
        while let Some(&due) = self.scheduled.get(self.next_arrival) {
            if due > t {
                break;
            }
            self.ledger.issue(self.next_arrival, due);
            self.queue.push(self.next_arrival);
            self.next_arrival += 1;
        }
    }
}

/// Runs one batch and returns how far it moved the (virtual) clock.
fn measure(sut: &dyn Sut, clock: &dyn Clock, items: &[usize]) -> (Duration, Result<(), String>) {
    let start = clock.now();
    let outcome = call_sut(sut, items);
    (clock.now().saturating_sub(start), outcome)
}
