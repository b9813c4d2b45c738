//! Latency figures of a scenario, computed by [`crate::metrics::latency`] so that `bench`,
//! `eval` and the report share one percentile definition (LoadGen's) and one minimum-query
//! rule (LoadGen's early stopping, confidence 0.99).

use std::time::Duration;

pub use crate::metrics::latency::{min_queries_for_percentile, percentile, LatencySummary};

/// Durations as ascending milliseconds.
pub(crate) fn sorted_ms(values: &[Duration]) -> Vec<f64> {
    let mut ms: Vec<f64> = values.iter().map(|d| to_ms(*d)).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Milliseconds as f64, the unit every report uses.
pub(crate) fn to_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p` percentile of ascending data, `None` for no data (a zero would read as
/// "infinitely fast").
pub(crate) fn percentile_of(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| percentile(sorted, p))
}

/// The distribution of `latencies`, `None` when there are none.
pub(crate) fn summary(latencies: &[Duration]) -> Option<LatencySummary> {
    crate::metrics::latency_summary(&sorted_ms(latencies))
}
