//! Per-query bookkeeping and the waiting queue, shared by the simulated and
//! the threaded engine so latency is accounted identically in both.

use super::Sut;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// Failed-query count plus the first message, which is usually the telling one.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ErrorTally {
    pub count: usize,
    pub first: Option<String>,
}

impl ErrorTally {
    /// Counts `n` failed queries caused by `msg`.
    pub fn record(&mut self, n: usize, msg: &str) {
        self.count += n;
        if self.first.is_none() {
            self.first = Some(msg.to_string());
        }
    }

    /// Adds another tally (e.g. warm-up errors) while keeping the earliest message.
    pub fn absorb(&mut self, other: &ErrorTally) {
        if let Some(msg) = &other.first {
            self.record(other.count, msg);
        }
    }
}

/// What happened to every measured query. Times are offsets from run start.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    scheduled: Vec<Duration>,
    issued: Vec<Option<Duration>>,
    completed: Vec<Option<Duration>>,
    failed: Vec<bool>,
    pub errors: ErrorTally,
    pub batches: usize,
    /// Completions reported for an already finished query; must stay 0.
    pub duplicates: usize,
}

impl Ledger {
    /// A ledger for a precomputed schedule.
    pub fn new(scheduled: Vec<Duration>) -> Self {
        let n = scheduled.len();
        Self {
            scheduled,
            issued: vec![None; n],
            completed: vec![None; n],
            failed: vec![false; n],
            ..Self::default()
        }
    }

    /// Adds one query due at `at` (closed-loop scenarios); returns its id.
    pub fn push(&mut self, at: Duration) -> usize {
        self.scheduled.push(at);
        self.issued.push(None);
        self.completed.push(None);
        self.failed.push(false);
        self.scheduled.len() - 1
    }

    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// Records that query `q` was handed to the queue at `at`.
    pub fn issue(&mut self, q: usize, at: Duration) {
        if let Some(slot) = self.issued.get_mut(q) {
            *slot = Some(at);
        }
    }

    /// Records the outcome of one `run_batch` call that ended at `at`.
    pub fn finish(&mut self, batch: &[usize], at: Duration, outcome: &Result<(), String>) {
        self.batches += 1;
        let fresh: Vec<usize> = batch.iter().copied().filter(|&q| self.is_open(q)).collect();
        self.duplicates += batch.len() - fresh.len();
        for &q in &fresh {
            match outcome {
                Ok(()) => self.completed[q] = Some(at),
                Err(_) => self.failed[q] = true,
            }
        }
        if let Err(msg) = outcome {
            self.errors.record(fresh.len(), msg);
        }
    }

    fn is_open(&self, q: usize) -> bool {
        q < self.len() && self.completed[q].is_none() && !self.failed[q]
    }

    /// Latency of each successful query: completion minus *scheduled* time, so
    /// time spent queued (in the dispatcher or the SUT) counts, as in LoadGen.
    pub fn latencies(&self) -> Vec<Duration> {
        self.paired(&self.completed)
    }

    /// How late each query was issued relative to its schedule.
    pub fn lags(&self) -> Vec<Duration> {
        self.paired(&self.issued)
    }

    fn paired(&self, times: &[Option<Duration>]) -> Vec<Duration> {
        let both = self.scheduled.iter().zip(times);
        both.filter_map(|(s, t)| t.map(|t| t.saturating_sub(*s)))
            .collect()
    }

    pub fn issued_count(&self) -> usize {
        self.issued.iter().flatten().count()
    }

    pub fn completed_count(&self) -> usize {
        self.completed.iter().flatten().count()
    }

    /// Time the last query finished (successfully or not).
    pub fn end(&self) -> Duration {
        self.completed
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or_default()
            .max(self.last_failure())
    }

    fn last_failure(&self) -> Duration {
        // Failed queries have no completion time; their issue time is a lower bound.
        let failed = self.issued.iter().zip(&self.failed).filter(|(_, f)| **f);
        failed.filter_map(|(t, _)| *t).max().unwrap_or_default()
    }
}

/// Queries issued but not yet taken by a worker, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct BatchQueue(VecDeque<usize>);

impl BatchQueue {
    pub fn push(&mut self, q: usize) {
        self.0.push_back(q);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Up to `max` oldest waiting queries: dynamic batching takes whatever is
    /// waiting instead of waiting for a full batch (as TEI does).
    pub fn take(&mut self, max: usize) -> Vec<usize> {
        let n = max.max(1).min(self.0.len());
        self.0.drain(..n).collect()
    }
}

/// Calls the SUT, turning a panic into an error so one bad call cannot take
/// down the run (or leave worker threads' locks poisoned).
pub(crate) fn call_sut(sut: &dyn Sut, items: &[usize]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| sut.run_batch(items)))
        .unwrap_or_else(|_| Err("SUT panicked in run_batch".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn latency_counts_from_schedule_and_duplicates_are_caught() {
        let mut l = Ledger::new(vec![ms(0), ms(10)]);
        l.issue(0, ms(0));
        l.issue(1, ms(12));
        l.finish(&[0, 1], ms(30), &Ok(()));
        l.finish(&[1], ms(40), &Ok(()));
        assert_eq!(l.latencies(), vec![ms(30), ms(20)]);
        assert_eq!(l.lags(), vec![ms(0), ms(2)]);
        assert_eq!((l.duplicates, l.batches, l.completed_count()), (1, 2, 2));
    }

    #[test]
    fn errors_keep_first_message() {
        let mut l = Ledger::new(vec![ms(0); 3]);
        l.finish(&[0, 1], ms(5), &Err("boom".into()));
        l.finish(&[2], ms(6), &Err("later".into()));
        assert_eq!(
            l.errors,
            ErrorTally {
                count: 3,
                first: Some("boom".into())
            }
        );
        assert!(l.latencies().is_empty());
    }

    #[test]
    fn queue_takes_oldest_up_to_max() {
        let mut q = BatchQueue::default();
        (0..5).for_each(|i| q.push(i));
        assert_eq!(q.take(3), vec![0, 1, 2]);
        assert_eq!(q.take(0), vec![3]);
        assert_eq!(q.take(9), vec![4]);
        assert!(q.take(2).is_empty());
    }
}
