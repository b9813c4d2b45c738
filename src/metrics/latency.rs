//! Latency and throughput statistics, computed the way MLPerf LoadGen does.
//!
//! This module owns:
//! - [`percentile`]: LoadGen's percentile rule — sort ascending and take the
//!   element at index `floor(n * p)`, clamped to `n - 1`. There is **no
//!   interpolation**: every percentile is one of the observed samples.
//! - [`min_queries_for_percentile`]: the fewest samples LoadGen's early
//!   stopping accepts before it will report a percentile, so a summary can
//!   flag percentiles that rest on too few samples
//!   ([`LatencySummary::reliable_percentiles`]).
//! - [`latency_summary`] and [`throughput`]: the per-run summaries written to
//!   `results.json`.
//!
//! Source for both rules: the MLPerf Inference LoadGen (`mlcommons/inference`,
//! `loadgen/results.cc`, `PerformanceSummary::ProcessLatencies` and
//! `PerformanceSummary::EarlyStopping`, and `loadgen/early_stopping.cc`).

use serde::{Deserialize, Serialize};

/// Confidence LoadGen's early stopping demands (`confidence = 0.99` in
/// `PerformanceSummary::EarlyStopping`); its tolerance there is 0.
pub const LOADGEN_CONFIDENCE: f64 = 0.99;

/// The percentiles a [`LatencySummary`] reports, in field order.
pub const SUMMARY_PERCENTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];

/// Distribution of per-item latencies in milliseconds.
///
/// Invariants (for any summary returned by [`latency_summary`]):
/// `n >= 1`; all fields finite;
/// `min_ms <= p50_ms <= p90_ms <= p95_ms <= p99_ms <= max_ms`;
/// `min_ms <= mean_ms <= max_ms`; `stddev_ms >= 0`.
/// Percentiles follow [`percentile`] (no interpolation); `stddev_ms` is the
/// population standard deviation (divides by `n`, like `numpy.std`), so a
/// single sample has `stddev_ms == 0`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub n: usize,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub stddev_ms: f64,
}

/// Which of a summary's percentiles rest on at least as many samples as
/// LoadGen's early stopping requires ([`min_queries_for_percentile`]).
/// A `false` means the number is reported but should be read as anecdotal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReliablePercentiles {
    pub p50: bool,
    pub p90: bool,
    pub p95: bool,
    pub p99: bool,
}

impl LatencySummary {
    /// Flags each reported percentile whose sample count meets
    /// [`min_queries_for_percentile`] (e.g. p90 needs 64 samples, p99 662).
    pub fn reliable_percentiles(&self) -> ReliablePercentiles {
        let ok = |p| self.n >= min_queries_for_percentile(p);
        ReliablePercentiles {
            p50: ok(0.50),
            p90: ok(0.90),
            p95: ok(0.95),
            p99: ok(0.99),
        }
    }
}

/// Items and tokens processed per second of wall-clock time.
///
/// Invariant: all fields finite and `>= 0`. When `seconds` is not a positive
/// finite number the rates are 0 (not infinite or NaN, which JSON cannot
/// hold), and a non-finite or negative `seconds` is stored as 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub items: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub items_per_s: f64,
    pub tokens_per_s: f64,
}

/// Summarises latency samples (milliseconds).
///
/// Returns `None` when `samples_ms` is empty or holds a non-finite value (NaN
/// or ±infinity): a NaN has no place in a sort order and either would make the
/// mean meaningless, so such input is rejected rather than summarised.
/// The input need not be sorted; it is copied and sorted here.
pub fn latency_summary(samples_ms: &[f64]) -> Option<LatencySummary> {
    if samples_ms.is_empty() || samples_ms.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mut sorted = samples_ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
    let mean = mean(&sorted);
    Some(LatencySummary {
        n: sorted.len(),
        // Summation rounding can push the mean of equal samples a hair past
        // them; clamping keeps the documented min <= mean <= max.
        mean_ms: mean.clamp(min, max),
        min_ms: min,
        p50_ms: percentile(&sorted, SUMMARY_PERCENTILES[0]),
        p90_ms: percentile(&sorted, SUMMARY_PERCENTILES[1]),
        p95_ms: percentile(&sorted, SUMMARY_PERCENTILES[2]),
        p99_ms: percentile(&sorted, SUMMARY_PERCENTILES[3]),
        max_ms: max,
        stddev_ms: population_stddev(&sorted, mean),
    })
}

/// The `p`-quantile of `sorted` by LoadGen's rule: `sorted[floor(n * p)]`,
/// index clamped to `n - 1`. No interpolation.
///
/// Preconditions (not checked): `sorted` is ascending. `p` is meant to lie in
/// `[0, 1]`; `p <= 0` or NaN gives the minimum and `p >= 1` the maximum.
/// Returns NaN for an empty slice instead of panicking.
///
/// `n * p` is computed in `f64` and truncated exactly as LoadGen's
/// `sample_latencies[sample_count * percentile]` does, so representation
/// error carries over too (e.g. `100.0 * 0.29 == 28.999…` picks index 28).
/// Examples: n = 10, p = 0.9 → index 9 (the max); n = 100, p = 0.99 → index 99
/// (the max); n = 1000, p = 0.99 → index 990.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[percentile_index(n, p)],
    }
}

/// `floor(n * p)` clamped to `[0, n - 1]`; Rust's float-to-int cast already
/// saturates negatives and NaN to 0.
fn percentile_index(n: usize, p: f64) -> usize {
    ((n as f64 * p) as usize).min(n - 1)
}

/// Minimum number of samples before LoadGen's early stopping will report the
/// `p` percentile (default settings: confidence 0.99, tolerance 0).
///
/// LoadGen (`PerformanceSummary::EarlyStopping`, SingleStream / MultiStream)
/// demands at least `h_min + 1` queries, where `h_min` is the smallest `h`
/// with `P[at most 1 of h + 1 queries exceeds the true p-quantile] < 1 - 0.99`,
/// each query exceeding it independently with probability `1 - p`
/// (`find_min_passing(1, p, 0.0, 0.99)` in `early_stopping.cc`, which writes
/// that binomial CDF as `BetaRegularized[p, h, 2]`). The closed form used
/// here is `p^(h+1) + (h+1) p^h (1-p) = p^h (p + (h+1)(1-p))`.
///
/// Resulting values: p50 → 11, p90 → 64, p95 → 130, p99 → 662,
/// p99.9 → 6636 (LoadGen's own messages quote 64 for p90 and 662 for p99).
///
/// Domain: `p` in `(0, 1)`. For `p >= 1` or NaN no finite sample suffices and
/// the result is `usize::MAX`; `p <= 0` behaves as its limit (2).
pub fn min_queries_for_percentile(p: f64) -> usize {
    if p.is_nan() || p >= 1.0 {
        return usize::MAX;
    }
    let p = p.max(0.0);
    match min_passing_h(p) {
        Some(h) => usize::try_from(h + 1).unwrap_or(usize::MAX),
        None => usize::MAX,
    }
}

/// Upper bound on the search; beyond 2^53 `h` is no longer exact in `f64`.
const MAX_H: u64 = 1 << 53;

/// Smallest `h >= 1` passing [`early_stop_passes`]. The odds fall strictly
/// as `h` grows, so doubling finds a passing bound and bisection the minimum.
fn min_passing_h(p: f64) -> Option<u64> {
    let mut hi = 1u64;
    while !early_stop_passes(hi, p) {
        if hi >= MAX_H {
            return None;
        }
        hi *= 2;
    }
    // Invariant: `lo` fails (h = 0 counts as failing), `hi` passes.
    let mut lo = 0u64;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if early_stop_passes(mid, p) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// LoadGen's test with one over-latency query allowed: odds of at most one
/// over-latency query among `h + 1` fall strictly below `1 - confidence`.
fn early_stop_passes(h: u64, p: f64) -> bool {
    let h = h as f64;
    let odds = p.powf(h) * (p + (h + 1.0) * (1.0 - p));
    odds < 1.0 - LOADGEN_CONFIDENCE
}

/// Rates over a wall-clock span; see [`Throughput`] for how a zero, negative
/// or non-finite `seconds` is handled.
pub fn throughput(items: usize, tokens: usize, seconds: f64) -> Throughput {
    let valid = seconds.is_finite() && seconds > 0.0;
    let rate = |count: usize| if valid { count as f64 / seconds } else { 0.0 };
    Throughput {
        items,
        tokens,
        seconds: if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        },
        items_per_s: rate(items),
        tokens_per_s: rate(tokens),
    }
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Two-pass population standard deviation: subtracting the mean first avoids
/// the cancellation of the sum-of-squares formula.
fn population_stddev(xs: &[f64], mean: f64) -> f64 {
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
    var.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ramp(n: usize) -> Vec<f64> {
        (0..n).map(|i| i as f64).collect()
    }

    #[test]
    fn percentile_index_rule_small_arrays() {
        assert_eq!(percentile(&ramp(10), 0.9), 9.0);
        assert_eq!(percentile(&ramp(10), 0.5), 5.0);
        assert_eq!(percentile(&ramp(10), 0.0), 0.0);
        assert_eq!(percentile(&ramp(100), 0.99), 99.0, "n=100 p99 is the max");
        assert_eq!(percentile(&ramp(1000), 0.99), 990.0);
        assert_eq!(percentile(&ramp(1000), 0.999), 999.0);
        assert_eq!(percentile(&ramp(7), 0.5), 3.0, "floor(3.5) = 3");
        assert_eq!(percentile(&[42.0], 0.99), 42.0);
    }

    #[test]
    fn percentile_keeps_loadgen_float_truncation() {
        // 100.0 * 0.29 is 28.999999999999996 in f64; LoadGen truncates it too.
        assert_eq!(percentile(&ramp(100), 0.29), 28.0);
    }

    #[test]
    fn percentile_out_of_domain_is_clamped_not_panicking() {
        let xs = ramp(5);
        assert_eq!(percentile(&xs, 1.0), 4.0);
        assert_eq!(percentile(&xs, 7.0), 4.0);
        assert_eq!(percentile(&xs, -1.0), 0.0);
        assert_eq!(percentile(&xs, f64::NAN), 0.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn summary_of_known_samples() {
        let s = latency_summary(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.n, 4);
        assert_eq!((s.min_ms, s.max_ms, s.mean_ms), (1.0, 4.0, 2.5));
        // n=4: p50 -> idx 2, p90 -> idx 3 (floor 3.6), p99 -> idx 3.
        assert_eq!(
            (s.p50_ms, s.p90_ms, s.p95_ms, s.p99_ms),
            (3.0, 4.0, 4.0, 4.0)
        );
        assert!((s.stddev_ms - 1.25f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn summary_rejects_empty_and_non_finite() {
        assert!(latency_summary(&[]).is_none());
        assert!(latency_summary(&[1.0, f64::NAN]).is_none());
        assert!(latency_summary(&[f64::INFINITY]).is_none());
        assert!(latency_summary(&[f64::NEG_INFINITY, 2.0]).is_none());
    }

    #[test]
    fn single_sample_summary() {
        let s = latency_summary(&[7.5]).unwrap();
        assert_eq!(
            (s.min_ms, s.p50_ms, s.p99_ms, s.max_ms),
            (7.5, 7.5, 7.5, 7.5)
        );
        assert_eq!((s.mean_ms, s.stddev_ms), (7.5, 0.0));
    }

    #[test]
    fn min_queries_match_loadgen_defaults() {
        // Same procedure run through LoadGen's own BetaRegularized series in
        // Python gives identical numbers; 64 (p90) and 662 (p99) are the
        // counts LoadGen's early-stopping messages quote.
        assert_eq!(min_queries_for_percentile(0.5), 11);
        assert_eq!(min_queries_for_percentile(0.9), 64);
        assert_eq!(min_queries_for_percentile(0.95), 130);
        assert_eq!(min_queries_for_percentile(0.99), 662);
        assert_eq!(min_queries_for_percentile(0.999), 6636);
    }

    #[test]
    fn min_queries_out_of_domain() {
        assert_eq!(min_queries_for_percentile(1.0), usize::MAX);
        assert_eq!(min_queries_for_percentile(f64::NAN), usize::MAX);
        assert_eq!(min_queries_for_percentile(0.0), 2);
        assert_eq!(min_queries_for_percentile(-3.0), 2);
    }

    #[test]
    fn reliability_flags_follow_sample_count() {
        let flags = |n| latency_summary(&ramp(n)).unwrap().reliable_percentiles();
        let none = ReliablePercentiles {
            p50: false,
            p90: false,
            p95: false,
            p99: false,
        };
        assert_eq!(flags(10), none);
        assert_eq!(flags(11), ReliablePercentiles { p50: true, ..none });
        assert_eq!(flags(63), ReliablePercentiles { p50: true, ..none });
        assert_eq!(
            flags(64),
            ReliablePercentiles {
                p50: true,
                p90: true,
                ..none
            }
        );
        assert_eq!(
            flags(661),
            ReliablePercentiles {
                p99: false,
                p50: true,
                p90: true,
                p95: true
            }
        );
        assert!(flags(662).p99);
    }

    #[test]
    fn throughput_rates() {
        let t = throughput(100, 2500, 4.0);
        assert_eq!((t.items_per_s, t.tokens_per_s), (25.0, 625.0));
    }

    #[test]
    fn throughput_without_elapsed_time_is_zero_not_infinite() {
        for secs in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let t = throughput(10, 10, secs);
            assert_eq!(
                (t.items_per_s, t.tokens_per_s, t.seconds),
                (0.0, 0.0, 0.0),
                "{secs}"
            );
        }
    }

    #[test]
    fn serde_round_trip() {
        let s = latency_summary(&[1.5, 2.5, 9.0]).unwrap();
        let back: LatencySummary =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let t = throughput(3, 30, 1.5);
        let back: Throughput = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        let r = s.reliable_percentiles();
        let back: ReliablePercentiles =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    fn samples() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(0.0f64..1e6, 1..400)
    }

    proptest! {
        #[test]
        fn summary_percentiles_are_ordered(xs in samples()) {
            let s = latency_summary(&xs).unwrap();
            prop_assert!(s.min_ms <= s.p50_ms);
            prop_assert!(s.p50_ms <= s.p90_ms);
            prop_assert!(s.p90_ms <= s.p95_ms);
            prop_assert!(s.p95_ms <= s.p99_ms);
            prop_assert!(s.p99_ms <= s.max_ms);
            prop_assert!(s.min_ms <= s.mean_ms && s.mean_ms <= s.max_ms);
            prop_assert!(s.stddev_ms >= 0.0 && s.stddev_ms.is_finite());
            prop_assert_eq!(s.n, xs.len());
        }

        #[test]
        fn percentile_is_a_sample_and_monotone_in_p(xs in samples(), a in 0.0f64..=1.0, b in 0.0f64..=1.0) {
            let mut sorted = xs.clone();
            sorted.sort_by(f64::total_cmp);
            let (lo, hi) = (a.min(b), a.max(b));
            let (plo, phi) = (percentile(&sorted, lo), percentile(&sorted, hi));
            prop_assert!(plo <= phi);
            prop_assert!(sorted.contains(&plo));
            prop_assert_eq!(plo, sorted[((sorted.len() as f64 * lo) as usize).min(sorted.len() - 1)]);
        }

        #[test]
        fn summary_ignores_input_order(mut xs in samples()) {
            let a = latency_summary(&xs).unwrap();
            xs.reverse();
            let b = latency_summary(&xs).unwrap();
            prop_assert_eq!(
                (a.p50_ms, a.p90_ms, a.p95_ms, a.p99_ms, a.min_ms, a.max_ms),
                (b.p50_ms, b.p90_ms, b.p95_ms, b.p99_ms, b.min_ms, b.max_ms)
            );
        }

        #[test]
        fn min_queries_grow_with_p(a in 0.01f64..0.999, b in 0.01f64..0.999) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(min_queries_for_percentile(lo) <= min_queries_for_percentile(hi));
        }
    }
}
