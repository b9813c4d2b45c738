//! Server: queries arrive by a seeded Poisson process at a target rate;
//! latency runs from each query's *scheduled* arrival to its completion, so
//! queueing counts; pass = chosen percentile within the SLO.

use super::engine::{execute, warm_up, Plan};
use super::result::{summarize, Context, RecordedSettings, Scenario, ScenarioResult};
use super::{cycle_items, server_schedule, validate, Arrival, Clock, LoadgenError, Sut};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Server knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Size of the query set (items are cycled if more queries are needed).
    pub query_count: usize,
    /// Target arrival rate.
    pub qps: f64,
    pub seed: u64,
    pub arrival: Arrival,
    /// Worker threads (1 for a local model using every core, N for an HTTP API).
    pub workers: usize,
    /// Requested batch cap; limited by the SUT's own.
    pub max_batch: usize,
    pub warmup: usize,
    /// Run at least this many measured queries...
    pub min_queries: usize,
    /// ...and until the schedule reaches at least this long.
    pub min_duration: Duration,
    /// Percentile judged against the SLO (LoadGen: 0.99).
    pub percentile: f64,
    pub slo_ms: f64,
    /// Dispatcher lag p99 above this makes the run invalid: the client, not the
    /// SUT, was the bottleneck.
    pub lag_tolerance_ms: f64,
}

impl ServerSettings {
    /// Defaults: Poisson, seed 0, 1 worker, SUT's largest batch, p99,
    /// 1024 queries / 10 s minimum, 8 warm-up queries, 5 ms lag tolerance.
    pub fn new(query_count: usize, qps: f64, slo_ms: f64) -> Self {
        Self {
            query_count,
            qps,
            seed: 0,
            arrival: Arrival::Poisson,
            workers: 1,
            max_batch: usize::MAX,
            warmup: 8,
            min_queries: 1024,
            min_duration: Duration::from_secs(10),
            percentile: 0.99,
            slo_ms,
            lag_tolerance_ms: 5.0,
        }
    }

    fn validate(&self) -> Result<(), LoadgenError> {
        validate::at_least_one("query_count", self.query_count)?;
        validate::at_least_one("workers", self.workers)?;
        validate::at_least_one("max_batch", self.max_batch)?;
        validate::positive("qps", self.qps)?;
        validate::fraction("percentile", self.percentile)?;
        validate::non_negative("slo_ms", self.slo_ms)?;
        validate::non_negative("lag_tolerance_ms", self.lag_tolerance_ms)
    }

    fn record(&self, max_batch: usize) -> RecordedSettings {
        RecordedSettings {
            qps: Some(self.qps),
            seed: Some(self.seed),
            arrival: Some(self.arrival),
            workers: self.workers,
            max_batch,
            warmup: self.warmup,
            query_count: self.query_count,
            min_queries: self.min_queries,
            min_duration_ms: self.min_duration.as_millis().try_into().unwrap_or(u64::MAX),
            percentile: self.percentile,
            slo_ms: Some(self.slo_ms),
            lag_tolerance_ms: Some(self.lag_tolerance_ms),
        }
    }
}

/// Runs the Server scenario (warm-up first, excluded from the results).
pub fn server(
    sut: &dyn Sut,
    s: &ServerSettings,
    clock: &dyn Clock,
) -> Result<ScenarioResult, LoadgenError> {
    s.validate()?;
    let max_batch = validate::effective_batch(s.max_batch, sut);
    let scheduled = server_schedule(s.arrival, s.qps, s.seed, s.min_queries, s.min_duration)?;
    let warmup_errors = warm_up(sut, s.warmup, s.query_count, max_batch);
    let items = cycle_items(scheduled.len(), s.query_count);
    let plan = Plan {
        scheduled,
        items,
        workers: s.workers,
        max_batch,
    };
    let ledger = execute(sut, &plan, clock);
    let ctx = Context {
        scenario: Scenario::Server,
        settings: s.record(max_batch),
        warmup_errors,
    };
    Ok(summarize(ctx, &ledger))
}
