//! SingleStream: one query at a time, the next issued when the previous one
//! completes; judged on a latency percentile (LoadGen uses p90).

use super::engine::warm_up;
use super::ledger::{call_sut, Ledger};
use super::result::{summarize, Context, RecordedSettings, Scenario, ScenarioResult};
use super::{validate, Clock, LoadgenError, Sut, MAX_SCHEDULE};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// SingleStream knobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SingleStreamSettings {
    /// Size of the query set (items are cycled if more queries are needed).
    pub query_count: usize,
    /// Run at least this many measured queries...
    pub min_queries: usize,
    /// ...and for at least this long.
    pub min_duration: Duration,
    /// Untimed queries run first.
    pub warmup: usize,
    /// Percentile the run is reported on.
    pub percentile: f64,
}

impl SingleStreamSettings {
    /// Defaults: one pass over the set, 4 warm-up queries, p90.
    pub fn new(query_count: usize) -> Self {
        Self {
            query_count,
            min_queries: query_count,
            min_duration: Duration::ZERO,
            warmup: 4,
            percentile: 0.90,
        }
    }

    fn validate(&self) -> Result<(), LoadgenError> {
        validate::at_least_one("query_count", self.query_count)?;
        validate::fraction("percentile", self.percentile)
    }

    fn record(&self) -> RecordedSettings {
        RecordedSettings {
            qps: None,
            seed: None,
            arrival: None,
            workers: 1,
            max_batch: 1,
            warmup: self.warmup,
            query_count: self.query_count,
            min_queries: self.min_queries,
            min_duration_ms: self.min_duration.as_millis().try_into().unwrap_or(u64::MAX),
            percentile: self.percentile,
            slo_ms: None,
            lag_tolerance_ms: None,
        }
    }
}

/// Runs SingleStream; latency of each query is its own call's duration.
pub fn single_stream(
    sut: &dyn Sut,
    s: &SingleStreamSettings,
    clock: &dyn Clock,
) -> Result<ScenarioResult, LoadgenError> {
    s.validate()?;
    let warmup_errors = warm_up(sut, s.warmup, s.query_count, 1);
    let origin = clock.now();
    let mut ledger = Ledger::default();
    while !finished(&ledger, s, clock.now().saturating_sub(origin)) {
        let at = clock.now().saturating_sub(origin);
        let q = ledger.push(at);
        ledger.issue(q, at);
        let outcome = call_sut(sut, &[q % s.query_count]);
        ledger.finish(&[q], clock.now().saturating_sub(origin), &outcome);
    }
    let ctx = Context {
        scenario: Scenario::SingleStream,
        settings: s.record(),
        warmup_errors,
    };
    Ok(summarize(ctx, &ledger))
}

/// Both minimums met (at least one query), or the safety cap reached so a SUT
/// that never advances a virtual clock cannot loop forever.
fn finished(ledger: &Ledger, s: &SingleStreamSettings, elapsed: Duration) -> bool {
    let n = ledger.len();
    n >= MAX_SCHEDULE || (n >= s.min_queries.max(1) && elapsed >= s.min_duration)
}
