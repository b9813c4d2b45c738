//! The serializable result of one scenario run, and how it is judged.

use super::ledger::{ErrorTally, Ledger};
use super::schedule::Arrival;
use super::stats::{self, LatencySummary};
use serde::{Deserialize, Serialize};

/// Which LoadGen scenario produced a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    SingleStream,
    Offline,
    Server,
}

/// Every knob a run used (effective values), so a result is self-describing.
/// Knobs a scenario lacks are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedSettings {
    pub qps: Option<f64>,
    pub seed: Option<u64>,
    pub arrival: Option<Arrival>,
    pub workers: usize,
    /// Effective cap: the requested one limited by the SUT's `max_batch`.
    pub max_batch: usize,
    pub warmup: usize,
    pub query_count: usize,
    pub min_queries: usize,
    pub min_duration_ms: u64,
    pub percentile: f64,
    pub slo_ms: Option<f64>,
    pub lag_tolerance_ms: Option<f64>,
}

/// Outcome of one scenario run. Latencies are in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    pub settings: RecordedSettings,
    /// Measured queries in the plan (warm-up excluded).
    pub queries: usize,
    pub issued: usize,
    /// Successfully answered measured queries.
    pub completed: usize,
    /// Failed queries, warm-up included (a run with errors never passes).
    pub errors: usize,
    pub first_error: Option<String>,
    /// From run start to the last completion.
    pub duration_s: f64,
    /// Completed queries per second (LoadGen's "completed samples per second").
    pub achieved_qps: f64,
    /// Items per second; equals `achieved_qps` while each query is one item.
    pub items_per_s: f64,
    pub batches: usize,
    pub mean_batch: f64,
    pub latency: Option<LatencySummary>,
    /// The percentile the run is judged on (e.g. 0.99).
    pub percentile: f64,
    pub percentile_ms: Option<f64>,
    /// Queries needed for `percentile` to be trustworthy (LoadGen rule, 99% confidence).
    pub min_queries_for_percentile: usize,
    pub reliable: bool,
    /// `None` when the scenario has no SLO (SingleStream, Offline).
    pub passed: Option<bool>,
    /// One line saying why it passed, failed or is invalid.
    pub verdict: String,
    /// p99 of (issue time − scheduled time): how far the dispatcher fell behind.
    pub dispatcher_lag_ms_p99: f64,
    pub dispatcher_behind: bool,
    /// More queries were needed than the query set holds, so items repeated.
    pub cycled_queries: bool,
}

/// Scenario-specific inputs to [`summarize`].
pub(crate) struct Context {
    pub scenario: Scenario,
    pub settings: RecordedSettings,
    pub warmup_errors: ErrorTally,
}

/// Builds the result from the ledger and judges it.
pub(crate) fn summarize(ctx: Context, ledger: &Ledger) -> ScenarioResult {
    let mut errors = ledger.errors.clone();
    errors.absorb(&ctx.warmup_errors);
    let latencies = ledger.latencies();
    let completed = ledger.completed_count();
    let duration_s = ledger.end().as_secs_f64();
    let rate = per_second(completed, duration_s);
    let p = ctx.settings.percentile;
    let min_needed = stats::min_queries_for_percentile(p);
    let lag_p99 = stats::percentile_of(&stats::sorted_ms(&ledger.lags()), 0.99).unwrap_or(0.0);
    let mut r = ScenarioResult {
        scenario: ctx.scenario,
        queries: ledger.len(),
        issued: ledger.issued_count(),
        completed,
        errors: errors.count,
        first_error: errors.first,
        duration_s,
        achieved_qps: rate,
        items_per_s: rate,
        batches: ledger.batches,
        mean_batch: mean_batch(ledger),
        latency: stats::summary(&latencies),
        percentile: p,
        percentile_ms: stats::percentile_of(&stats::sorted_ms(&latencies), p),
        min_queries_for_percentile: min_needed,
        reliable: completed >= min_needed,
        passed: None,
        verdict: String::new(),
        dispatcher_lag_ms_p99: lag_p99,
        dispatcher_behind: ctx
            .settings
            .lag_tolerance_ms
            .is_some_and(|tol| lag_p99 > tol),
        cycled_queries: ledger.len() > ctx.settings.query_count,
        settings: ctx.settings,
    };
    (r.passed, r.verdict) = judge(&r);
    r
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn mean_batch(ledger: &Ledger) -> f64 {
    let taken = ledger.completed_count() + ledger.errors.count;
    if ledger.batches == 0 {
        0.0
    } else {
        taken as f64 / ledger.batches as f64
    }
}

/// Pass only with no errors, enough queries for the percentile, a dispatcher
/// that kept up, and the percentile within the SLO. Checked in that order so
/// the verdict names the most basic problem.
fn judge(r: &ScenarioResult) -> (Option<bool>, String) {
    let pct = format!("p{}", r.percentile * 100.0);
    if r.errors > 0 {
        let first = r.first_error.as_deref().unwrap_or("");
        return (
            r.settings.slo_ms.map(|_| false),
            format!("fail: {} queries failed (first: {first})", r.errors),
        );
    }
    if !r.reliable {
        let why = format!(
            "invalid: too few queries ({} < {} needed for {pct})",
            r.completed, r.min_queries_for_percentile
        );
        return (r.settings.slo_ms.map(|_| false), why);
    }
    let Some(slo) = r.settings.slo_ms else {
        return (None, "ok".into());
    };
    if r.dispatcher_behind {
        return (
            Some(false),
            format!(
                "invalid: dispatcher fell behind (lag p99 {:.3} ms)",
                r.dispatcher_lag_ms_p99
            ),
        );
    }
    let got = r.percentile_ms.unwrap_or(f64::INFINITY);
    if got <= slo {
        (
            Some(true),
            format!("pass: {pct} {got:.3} ms <= SLO {slo} ms"),
        )
    } else {
        (
            Some(false),
            format!("fail: {pct} {got:.3} ms > SLO {slo} ms"),
        )
    }
}
