//! Real-time engine: the calling thread dispatches queries on schedule into a
//! shared queue; `workers` threads each take up to `max_batch` waiting
//! queries and call the SUT. One worker suits a local model that already uses
//! every core; several suit an HTTP API.

use super::engine::Plan;
use super::ledger::{call_sut, BatchQueue, Ledger};
use super::{Clock, Sut};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

/// Runs the plan in real time; see the module docs.
pub(crate) fn run(sut: &dyn Sut, plan: &Plan, clock: &dyn Clock) -> Ledger {
    let shared = Shared::new(Ledger::new(plan.scheduled.clone()));
    let origin = clock.now();
    thread::scope(|s| {
        for _ in 0..plan.workers.max(1) {
            s.spawn(|| work(sut, plan, clock, &shared, origin));
        }
        dispatch(plan, clock, &shared, origin);
    });
    shared.into_ledger()
}

struct State {
    queue: BatchQueue,
    ledger: Ledger,
    /// Set once every query is issued, so idle workers know to exit.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

impl Shared {
    fn new(ledger: Ledger) -> Self {
        let state = State {
            queue: BatchQueue::default(),
            ledger,
            closed: false,
        };
        Self {
            state: Mutex::new(state),
            ready: Condvar::new(),
        }
    }

    /// Locks, ignoring poison: SUT panics are caught before they could poison.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn into_ledger(self) -> Ledger {
        self.state
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .ledger
    }

    /// Blocks until there is work (returns a batch) or the run is over (None).
    fn next_batch(&self, max_batch: usize) -> Option<Vec<usize>> {
        let mut st = self.lock();
        loop {
            if !st.queue.is_empty() {
                return Some(st.queue.take(max_batch));
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Issues each query at its scheduled time, recording the actual issue time
/// so a dispatcher that falls behind (an overloaded client) shows up as lag.
fn dispatch(plan: &Plan, clock: &dyn Clock, shared: &Shared, origin: Duration) {
    for (q, due) in plan.scheduled.iter().enumerate() {
        clock.sleep_until(origin.saturating_add(*due));
        let at = clock.now().saturating_sub(origin);
        let mut st = shared.lock();
        st.ledger.issue(q, at);
        st.queue.push(q);
        drop(st);
        shared.ready.notify_one();
    }
    shared.lock().closed = true;
    shared.ready.notify_all();
}

/// Worker loop: take what is waiting, run it, record completion time.
fn work(sut: &dyn Sut, plan: &Plan, clock: &dyn Clock, shared: &Shared, origin: Duration) {
    while let Some(batch) = shared.next_batch(plan.max_batch) {
        let outcome = call_sut(sut, &plan.items_of(&batch));
        let at = clock.now().saturating_sub(origin);
        shared.lock().ledger.finish(&batch, at, &outcome);
    }
}
