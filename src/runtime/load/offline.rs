//! Offline: every query is available at time zero; workers drain them in
//! batches of up to `max_batch`; judged on throughput.

use super::engine::{execute, warm_up, Plan};
use super::result::{summarize, Context, RecordedSettings, Scenario, ScenarioResult};
use super::{cycle_items, validate, Clock, LoadgenError, Sut};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Offline knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineSettings {
    /// Size of the query set (items are cycled if `queries` is larger).
    pub query_count: usize,
    /// Number of measured queries, all issued at once.
    pub queries: usize,
    pub warmup: usize,
    /// Concurrent callers (1 for a local model, more for an HTTP API).
    pub workers: usize,
    /// Requested batch cap; limited by the SUT's own.
    pub max_batch: usize,
}

impl OfflineSettings {
    /// Defaults: one pass over the set, one worker, the SUT's largest batch.
    pub fn new(query_count: usize) -> Self {
        Self {
            query_count,
            queries: query_count,
            warmup: 4,
            workers: 1,
            max_batch: usize::MAX,
        }
    }

    fn validate(&self) -> Result<(), LoadgenError> {
        validate::at_least_one("query_count", self.query_count)?;
        validate::at_least_one("queries", self.queries)?;
        validate::at_least_one("workers", self.workers)?;
        validate::at_least_one("max_batch", self.max_batch)
    }

    fn record(&self, max_batch: usize) -> RecordedSettings {
        RecordedSettings {
            qps: None,
            seed: None,
            arrival: None,
            workers: self.workers,
            max_batch,
            warmup: self.warmup,
            query_count: self.query_count,
            min_queries: self.queries,
            min_duration_ms: 0,
            percentile: 0.90,
            slo_ms: None,
            lag_tolerance_ms: None,
        }
    }
}

/// Runs Offline; `items_per_s` is the headline number.
pub fn offline(
    sut: &dyn Sut,
    s: &OfflineSettings,
    clock: &dyn Clock,
) -> Result<ScenarioResult, LoadgenError> {
    s.validate()?;
    let max_batch = validate::effective_batch(s.max_batch, sut);
    let warmup_errors = warm_up(sut, s.warmup, s.query_count, max_batch);
    let plan = Plan {
        scheduled: vec![Duration::ZERO; s.queries],
        items: cycle_items(s.queries, s.query_count),
        workers: s.workers,
        max_batch,
    };
    let ledger = execute(sut, &plan, clock);
    let ctx = Context {
        scenario: Scenario::Offline,
        settings: s.record(max_batch),
        warmup_errors,
    };
    Ok(summarize(ctx, &ledger))
}
