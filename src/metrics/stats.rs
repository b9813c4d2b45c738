//! Statistics for comparing classifiers on the same, aligned test items.
//!
//! Items are aligned across models: position `i` is the same test item for
//! every slice. A prediction of `None` (no valid answer, failed request) is
//! wrong and predicts no class. Everything is deterministic given its inputs
//! (bootstraps take a seed) so a report can be regenerated and rechecked.

use std::collections::BTreeMap;
use std::f64::consts::LN_2;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A two-sided interval together with the confidence it was built at, so a
/// report never has to guess which level it is printing.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    pub confidence: f64,
}

/// Errors for inputs that cannot be compared meaningfully.
#[derive(Debug, Error, PartialEq)]
pub enum StatsError {
    #[error("items are not aligned: {gold} gold labels, {a} predictions from A, {b} from B")]
    LengthMismatch { gold: usize, a: usize, b: usize },
    #[error("alpha must be strictly between 0 and 1, got {0}")]
    InvalidAlpha(f64),
}

/// Wichura's AS 241 coefficients, constant term first, copied digit for digit
/// from the paper so they can be checked against it. Rows: A/B numerator and
/// denominator near the centre, C/D for the body of the tails, E/F far tails.
#[rustfmt::skip]
#[allow(clippy::excessive_precision)]
const AS241: [[f64; 8]; 6] = [
    [3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3, 1.3731693765509461125e+4,
     4.5921953931549871457e+4, 6.7265770927008700853e+4, 3.3430575583588128105e+4, 2.5090809287301226727e+3],
    [1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
     2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4, 5.2264952788528545610e+3],
    [1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0, 3.64784832476320460504e0,
     1.27045825245236838258e0, 2.41780725177450611770e-1, 2.27238449892691845833e-2, 7.74545014278341407640e-4],
    [1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
     1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4, 1.05075007164441684324e-9],
    [6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0, 2.96560571828504891230e-1,
     2.65321895265761230930e-2, 1.24266094738807843860e-3, 2.71155556874348757815e-5, 2.01033439929228813265e-7],
    [1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
     7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7, 2.04426310338993978564e-15],
];

/// Inverse standard normal CDF (Wichura 1988, AS 241), accurate to about 1e-16.
/// Returns -inf for p <= 0, +inf for p >= 1 and NaN for NaN rather than panicking.
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    if p <= 0.0 || p >= 1.0 {
        return if p <= 0.0 {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        };
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        let r = 0.180625 - q * q;
        return q * rational(0, r);
    }
    let r = (-(p.min(1.0 - p)).ln()).sqrt();
    let magnitude = if r <= 5.0 {
        rational(2, r - 1.6)
    } else {
        rational(4, r - 5.0)
    };
    magnitude.copysign(q)
}

/// AS 241 rational function: numerator row `row` over denominator row `row + 1`.
fn rational(row: usize, x: f64) -> f64 {
    let horner = |c: &[f64; 8]| c.iter().rev().fold(0.0, |acc, &k| acc * x + k);
    horner(&AS241[row]) / horner(&AS241[row + 1])
}

/// Critical value z for a two-sided interval. Confidence is clamped to [0, 1]:
/// 0 gives z = 0 (a point), 1 gives z = inf (everything).
fn two_sided_z(confidence: f64) -> f64 {
    let tail = (1.0 - confidence.clamp(0.0, 1.0)) / 2.0;
    -normal_quantile(tail)
}

/// Wilson score interval for a proportion, without continuity correction.
///
/// Chosen over the Wald interval because it keeps near-nominal coverage at
/// accuracies close to 0 or 1. Edge cases never panic: n = 0, a NaN confidence
/// or confidence >= 1 give [0, 1]; `successes > n` is clamped to n.
pub fn wilson(successes: usize, n: usize, confidence: f64) -> Interval {
    let everything = Interval {
        lo: 0.0,
        hi: 1.0,
        confidence,
    };
    let z = two_sided_z(confidence);
    if n == 0 || !z.is_finite() {
        return everything;
    }
    let successes = successes.min(n);
    let (n_f, z2) = (n as f64, z * z);
    let p = successes as f64 / n_f;
    let shrink = 1.0 + z2 / n_f;
    let centre = (p + z2 / (2.0 * n_f)) / shrink;
    let half_width = z / shrink * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    let lo = if successes == 0 {
        0.0
    } else {
        (centre - half_width).max(0.0)
    };
    let hi = if successes == n {
        1.0
    } else {
        (centre + half_width).min(1.0)
    };
    Interval { lo, hi, confidence }
}

/// Share of the selected items answered correctly. `idx` lists item positions
/// (a bootstrap resample may repeat them); positions outside either slice are
/// skipped. An empty selection has accuracy 0.0 by definition.
pub fn accuracy(gold: &[usize], pred: &[Option<usize>], idx: &[usize]) -> f64 {
    let (mut counted, mut correct) = (0usize, 0usize);
    for &i in idx {
        if let (Some(&g), Some(&p)) = (gold.get(i), pred.get(i)) {
            counted += 1;
            correct += usize::from(p == Some(g));
        }
    }
    if counted == 0 {
        0.0
    } else {
        correct as f64 / counted as f64
    }
}

/// Macro-F1 over the selected items, with scikit-learn's convention
/// (`average="macro"`, `labels=None`, `zero_division=0`). See [`ClassCounts`].
pub fn macro_f1(gold: &[usize], pred: &[Option<usize>], n_labels: usize, idx: &[usize]) -> f64 {
    ClassCounts::with_labels(n_labels).macro_f1(gold, pred, idx)
}

const TRUE_POS: usize = 0;
const FALSE_POS: usize = 1;
const FALSE_NEG: usize = 2;

/// Per-class confusion counts kept between calls, so a bootstrap loop over
/// thousands of resamples allocates nothing. Labels at or above `n_labels`
/// still count as their own classes (as scikit-learn would) via a small map.
#[derive(Debug, Clone, Default)]
pub struct ClassCounts {
    in_range: Vec<[usize; 3]>,
    out_of_range: BTreeMap<usize, [usize; 3]>,
}

impl ClassCounts {
    pub fn with_labels(n_labels: usize) -> Self {
        ClassCounts {
            in_range: vec![[0; 3]; n_labels],
            out_of_range: BTreeMap::new(),
        }
    }

    /// Unweighted mean of per-class F1 over classes that occur in gold or in
    /// the predictions of the selected items. A `None` prediction is a miss
    /// for its gold class and predicts nothing. No classes at all gives 0.0.
    pub fn macro_f1(&mut self, gold: &[usize], pred: &[Option<usize>], idx: &[usize]) -> f64 {
        self.count(gold, pred, idx);
        self.mean_f1()
    }

    fn count(&mut self, gold: &[usize], pred: &[Option<usize>], idx: &[usize]) {
        self.in_range.fill([0; 3]);
        self.out_of_range.clear();
        for &i in idx {
            let (Some(&g), Some(&p)) = (gold.get(i), pred.get(i)) else {
                continue;
            };
            match p {
                Some(p) if p == g => self.slot(g)[TRUE_POS] += 1,
                Some(p) => {
                    self.slot(p)[FALSE_POS] += 1;
                    self.slot(g)[FALSE_NEG] += 1;
                }
                None => self.slot(g)[FALSE_NEG] += 1,
            }
        }
    }

    fn slot(&mut self, label: usize) -> &mut [usize; 3] {
        match self.in_range.get_mut(label) {
            Some(slot) => slot,
            None => self.out_of_range.entry(label).or_insert([0; 3]),
        }
    }

    fn mean_f1(&self) -> f64 {
        let (mut sum, mut classes) = (0.0, 0usize);
        for counts in self.in_range.iter().chain(self.out_of_range.values()) {
            let denominator = 2 * counts[TRUE_POS] + counts[FALSE_POS] + counts[FALSE_NEG];
            if denominator > 0 {
                sum += (2 * counts[TRUE_POS]) as f64 / denominator as f64;
                classes += 1;
            }
        }
        if classes == 0 {
            0.0
        } else {
            sum / classes as f64
        }
    }
}

/// Statistic values over `resamples` bootstrap resamples of `n` items, NaNs
/// dropped, sorted ascending. Empty when n = 0 (nothing to draw from).
fn resampled_statistics(
    n: usize,
    resamples: usize,
    seed: u64,
    statistic: &mut impl FnMut(&[usize]) -> f64,
) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sample = vec![0usize; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        sample
            .iter_mut()
            .for_each(|slot| *slot = rng.random_range(0..n));
        let value = statistic(&sample);
        if !value.is_nan() {
            values.push(value);
        }
    }
    values.sort_by(f64::total_cmp);
    values
}

/// Linear interpolation between order statistics (numpy's default "linear").
fn quantile_of_sorted(sorted: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = position - below as f64;
    sorted[below] + fraction * (sorted[above] - sorted[below])
}

/// Percentile interval of sorted bootstrap values; None when there are none.
fn percentile_interval(sorted: &[f64], confidence: f64) -> Option<Interval> {
    if sorted.is_empty() {
        return None;
    }
    let tail =
        (1.0 - if confidence.is_nan() {
            1.0
        } else {
            confidence.clamp(0.0, 1.0)
        }) / 2.0;
    let (lo, hi) = (
        quantile_of_sorted(sorted, tail),
        quantile_of_sorted(sorted, 1.0 - tail),
    );
    Some(Interval { lo, hi, confidence })
}

/// Percentile bootstrap interval of `statistic` over items 0..n, resampled
/// with replacement using `ChaCha8Rng::seed_from_u64(seed)` (deterministic).
///
/// When no resample can be drawn (n = 0 or resamples = 0) or every resampled
/// value is NaN, the interval collapses to the point estimate: lo = hi =
/// `statistic(0..n)`. A NaN confidence is treated as 1 (the full range).
pub fn bootstrap_ci(
    n: usize,
    resamples: usize,
    seed: u64,
    confidence: f64,
    mut statistic: impl FnMut(&[usize]) -> f64,
) -> Interval {
    let values = resampled_statistics(n, resamples, seed, &mut statistic);
    percentile_interval(&values, confidence).unwrap_or_else(|| {
        let all: Vec<usize> = (0..n).collect();
        let point = statistic(&all);
        Interval {
            lo: point,
            hi: point,
            confidence,
        }
    })
}

/// Two-sided bootstrap p-value for "the difference is zero":
/// `min(1, 2 * min(share of values <= 0, share of values >= 0))`.
/// Values exactly 0 count on both sides, so identical models give 1. No values give 1.
pub fn bootstrap_two_sided_p(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 1.0;
    }
    let share = |keep: fn(f64) -> bool| values.iter().filter(|&&v| keep(v)).count() as f64;
    let (at_most_zero, at_least_zero) = (share(|v| v <= 0.0), share(|v| v >= 0.0));
    (2.0 * at_most_zero.min(at_least_zero) / values.len() as f64).min(1.0)
}

/// ln P(X = k) and sum_{i<=k} P(X = i) / P(X = k) for X ~ Binomial(m, 1/2), k <= m/2.
/// Summing relative to the largest term keeps m in the hundreds of thousands stable.
fn half_binomial_tail_parts(k: usize, m: usize) -> (f64, f64) {
    let ln_choose: f64 = (0..k).map(|i| ((m - i) as f64 / (i + 1) as f64).ln()).sum();
    let (mut term, mut relative_sum) = (1.0f64, 1.0f64);
    for i in (1..=k).rev() {
        term *= i as f64 / (m - i + 1) as f64;
        relative_sum += term;
        if term < relative_sum * 1e-18 {
            break;
        }
    }
    (ln_choose - m as f64 * LN_2, relative_sum)
}

/// Two-sided exact McNemar p-value: `min(1, 2 * P(X <= min(b, c)))` with
/// X ~ Binomial(b + c, 1/2). `b` = A right and B wrong, `c` = A wrong and B right.
/// No discordant pairs give 1.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let m = b.saturating_add(c);
    if m == 0 {
        return 1.0;
    }
    let (ln_pmf, relative_sum) = half_binomial_tail_parts(b.min(c), m);
    (2.0 * (ln_pmf + relative_sum.ln()).exp()).min(1.0)
}

/// Mid-p McNemar (Fagerland et al. 2013): the exact p-value minus P(X = min(b, c)),
/// less conservative than the exact test while keeping close to nominal size.
pub fn mcnemar_mid_p(b: usize, c: usize) -> f64 {
    let m = b.saturating_add(c);
    if m == 0 {
        return 1.0;
    }
    let (ln_pmf, relative_sum) = half_binomial_tail_parts(b.min(c), m);
    (2.0 * ln_pmf.exp() * (relative_sum - 0.5)).min(1.0)
}

/// Smallest number of discordant pairs d for which a d-to-0 split could give an
/// exact McNemar p-value below alpha, i.e. the smallest d with 2 * 0.5^d < alpha.
/// Halving is exact in floating point, so powers of two are not misjudged.
pub fn min_discordant_for_significance(alpha: f64) -> usize {
    if alpha.is_nan() || alpha <= 0.0 {
        return usize::MAX;
    }
    let (mut d, mut best_possible_p) = (0usize, 2.0f64);
    while best_possible_p >= alpha {
        best_possible_p *= 0.5;
        d += 1;
    }
    d
}

/// What a paired comparison lets us claim.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    ABetter,
    BBetter,
    NoSignificantDifference,
    TooFewDisagreements,
}

/// Two models on the same items: the 2x2 agreement table, exact McNemar on
/// accuracy, a paired bootstrap on macro-F1 and a verdict.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct PairedComparison {
    pub n: usize,
    pub both_right: usize,
    /// A right, B wrong.
    pub a_only: usize,
    /// B right, A wrong.
    pub b_only: usize,
    pub both_wrong: usize,
    /// Accuracy of A minus accuracy of B, as a fraction.
    pub accuracy_diff: f64,
    pub mcnemar_p: f64,
    /// Macro-F1 of A minus macro-F1 of B on all items, as a fraction.
    pub f1_diff: f64,
    /// Paired percentile bootstrap interval of `f1_diff` at confidence 1 - alpha.
    pub f1_diff_ci: Interval,
    /// See [`bootstrap_two_sided_p`].
    pub f1_diff_p: f64,
    pub alpha: f64,
    pub min_discordant_for_significance: usize,
    pub verdict: Verdict,
}

/// Compares A and B on aligned items. The bootstrap draws the same item
/// indices for both models, so item difficulty cancels out of the difference.
pub fn compare_paired(
    gold: &[usize],
    a: &[Option<usize>],
    b: &[Option<usize>],
    n_labels: usize,
    resamples: usize,
    seed: u64,
    alpha: f64,
) -> Result<PairedComparison, StatsError> {
    if gold.len() != a.len() || gold.len() != b.len() {
        return Err(StatsError::LengthMismatch {
            gold: gold.len(),
            a: a.len(),
            b: b.len(),
        });
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(StatsError::InvalidAlpha(alpha));
    }
    let n = gold.len();
    let [both_right, a_only, b_only, both_wrong] = agreement_table(gold, a, b);
    let mut counts = ClassCounts::with_labels(n_labels);
    let mut f1_difference =
        |idx: &[usize]| counts.macro_f1(gold, a, idx) - counts.macro_f1(gold, b, idx);
    let f1_diff = f1_difference(&(0..n).collect::<Vec<_>>());
    let diffs = resampled_statistics(n, resamples, seed, &mut f1_difference);
    let confidence = 1.0 - alpha;
    let f1_diff_ci = percentile_interval(&diffs, confidence).unwrap_or(Interval {
        lo: f1_diff,
        hi: f1_diff,
        confidence,
    });
    let mcnemar_p = mcnemar_exact(a_only, b_only);
    let min_discordant = min_discordant_for_significance(alpha);
    Ok(PairedComparison {
        n,
        both_right,
        a_only,
        b_only,
        both_wrong,
        accuracy_diff: if n == 0 {
            0.0
        } else {
            (a_only as f64 - b_only as f64) / n as f64
        },
        mcnemar_p,
        f1_diff,
        f1_diff_ci,
        f1_diff_p: bootstrap_two_sided_p(&diffs),
        alpha,
        min_discordant_for_significance: min_discordant,
        verdict: decide_verdict(a_only, b_only, mcnemar_p, alpha, min_discordant),
    })
}

/// [both right, A only, B only, both wrong].
fn agreement_table(gold: &[usize], a: &[Option<usize>], b: &[Option<usize>]) -> [usize; 4] {
    let mut table = [0usize; 4];
    for ((&g, &pa), &pb) in gold.iter().zip(a).zip(b) {
        let (a_right, b_right) = (pa == Some(g), pb == Some(g));
        table[usize::from(!a_right) * 2 + usize::from(!b_right)] += 1;
    }
    [table[0], table[1], table[2], table[3]]
}

fn decide_verdict(a_only: usize, b_only: usize, p: f64, alpha: f64, min_d: usize) -> Verdict {
    if a_only.saturating_add(b_only) < min_d {
        Verdict::TooFewDisagreements
    } else if p < alpha {
        if a_only > b_only {
            Verdict::ABetter
        } else {
            Verdict::BBetter
        }
    } else {
        Verdict::NoSignificantDifference
    }
}

impl PairedComparison {
    /// One plain-language sentence for a report, e.g.
    /// "A is more accurate than B (+3.1 points, McNemar p = 0.002, n = 480)".
    pub fn describe(&self, a_name: &str, b_name: &str) -> String {
        let (p, n) = (format_p(self.mcnemar_p), self.n);
        match self.verdict {
            Verdict::ABetter | Verdict::BBetter => {
                let (better, worse) = if self.verdict == Verdict::ABetter {
                    (a_name, b_name)
                } else {
                    (b_name, a_name)
                };
                let gap = points(self.accuracy_diff.abs());
                format!(
                    "{better} is more accurate than {worse} (+{gap} points, McNemar {p}, n = {n})"
                )
            }
            Verdict::NoSignificantDifference => format!(
                "no significant difference in accuracy between {a_name} and {b_name} at n = {n} \
                 (McNemar {p}; the {}% interval of macro-F1 {a_name} minus {b_name} is {} to {} points)",
                percent(self.f1_diff_ci.confidence),
                signed_points(self.f1_diff_ci.lo),
                signed_points(self.f1_diff_ci.hi)
            ),
            Verdict::TooFewDisagreements => format!(
                "{a_name} and {b_name} disagree on only {} of {n} items: too few to separate them \
                 at the {}% level (at least {} are needed)",
                self.a_only + self.b_only,
                percent(self.alpha),
                self.min_discordant_for_significance
            ),
        }
    }
}

fn format_p(p: f64) -> String {
    match p {
        p if p < 0.001 => "p < 0.001".to_string(),
        p if p < 0.01 => format!("p = {p:.3}"),
        p => format!("p = {p:.2}"),
    }
}

/// A fraction as percentage points with one decimal, never "-0.0".
fn points(fraction: f64) -> String {
    let rounded = (fraction * 1000.0).round() / 10.0;
    format!("{:.1}", if rounded == 0.0 { 0.0 } else { rounded })
}

fn signed_points(fraction: f64) -> String {
    let text = points(fraction);
    if text.starts_with('-') {
        text
    } else {
        format!("+{text}")
    }
}

/// 0.95 -> "95", 0.05 -> "5", 0.005 -> "0.5".
fn percent(fraction: f64) -> String {
    format!("{}", (fraction * 100_000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64, tolerance: f64) {
        let gap = (actual - expected).abs();
        assert!(gap <= tolerance, "{actual} vs {expected} (gap {gap:e})");
    }

    fn all(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    #[test]
    fn normal_quantile_matches_reference_values_in_every_region() {
        assert_close(normal_quantile(0.975), 1.959963984540054, 1e-14);
        assert_close(normal_quantile(0.5), 0.0, 0.0);
        assert_close(normal_quantile(0.9), 1.2815515655446004, 1e-14);
        assert_close(normal_quantile(0.995), 2.5758293035489004, 1e-14);
        assert_close(normal_quantile(0.025), -1.959963984540054, 1e-14);
        assert_close(normal_quantile(1e-10), -6.361340902404056, 1e-12);
        assert_close(normal_quantile(1e-20), -9.262340089798408, 1e-12);
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(f64::NAN).is_nan());
    }

    #[test]
    fn wilson_matches_newcombe_1998_table_one() {
        for (k, n, lo, hi) in [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
            (1, 29, 0.0061, 0.1718),
        ] {
            let interval = wilson(k, n, 0.95);
            assert_close(interval.lo, lo, 5e-5);
            assert_close(interval.hi, hi, 5e-5);
            assert_eq!(interval.confidence, 0.95);
        }
    }

    #[test]
    fn wilson_handles_degenerate_inputs_without_panicking() {
        let everything = Interval {
            lo: 0.0,
            hi: 1.0,
            confidence: 0.95,
        };
        assert_eq!(wilson(0, 0, 0.95), everything);
        assert_eq!(wilson(7, 5, 0.95), wilson(5, 5, 0.95));
        assert_eq!(wilson(5, 5, 0.95).hi, 1.0);
        assert_eq!(wilson(3, 10, 1.0).lo, 0.0);
        assert!(wilson(3, 10, f64::NAN).hi == 1.0);
        let point = wilson(3, 10, 0.0);
        assert_close(point.lo, 0.3, 1e-15);
        assert_close(point.hi, 0.3, 1e-15);
    }

    #[test]
    fn wilson_exact_coverage_is_near_nominal() {
        let (n, p) = (200usize, 0.8f64);
        let mut pmf = (1.0 - p).powi(n as i32);
        let mut coverage = 0.0;
        for k in 0..=n {
            let interval = wilson(k, n, 0.95);
            if interval.lo <= p && p <= interval.hi {
                coverage += pmf;
            }
            pmf *= (n - k) as f64 / (k + 1) as f64 * p / (1.0 - p);
        }
        assert!((0.93..=0.97).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn accuracy_uses_the_selected_items_with_repeats() {
        let gold = [0, 1, 2, 1];
        let pred = [Some(0), None, Some(1), Some(1)];
        assert_close(accuracy(&gold, &pred, &all(4)), 0.5, 0.0);
        assert_close(accuracy(&gold, &pred, &[0, 0, 0, 1]), 0.75, 0.0);
        assert_close(accuracy(&gold, &pred, &[1, 9]), 0.0, 0.0);
        assert_eq!(accuracy(&gold, &pred, &[]), 0.0);
    }

    #[test]
    fn macro_f1_matches_hand_worked_example_with_no_answers() {
        // class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 1, fp 1, fn 1 (None) -> 0.5;
        // class 2: fn 1 -> 0; class 3 never occurs -> excluded. Mean = 1/3.
        let gold = [0, 0, 1, 1, 2];
        let pred = [Some(0), Some(1), Some(1), None, Some(0)];
        assert_close(macro_f1(&gold, &pred, 4, &all(5)), 1.0 / 3.0, 1e-15);
        assert_close(macro_f1(&gold, &pred, 4, &[0, 0, 2]), 1.0, 1e-15);
    }

    #[test]
    fn macro_f1_counts_classes_that_are_only_predicted() {
        // scikit-learn: f1_score([0, 0, 1], [0, 2, 1], average="macro") = (2/3 + 1 + 0) / 3.
        let (gold, pred) = ([0, 0, 1], [Some(0), Some(2), Some(1)]);
        assert_close(macro_f1(&gold, &pred, 3, &all(3)), 5.0 / 9.0, 1e-15);
        // A label beyond n_labels is still its own class: (1 + 0 + 0) / 3.
        assert_close(
            macro_f1(&[0, 1], &[Some(0), Some(7)], 2, &all(2)),
            1.0 / 3.0,
            1e-15,
        );
        assert_eq!(macro_f1(&[0, 1], &[None, None], 2, &all(2)), 0.0);
        assert_eq!(macro_f1(&[0, 1], &[None, None], 2, &[]), 0.0);
    }

    #[test]
    fn reused_class_counts_do_not_leak_between_calls() {
        let gold = [0, 1, 2, 2];
        let pred = [Some(1), Some(9), Some(2), None];
        let mut counts = ClassCounts::with_labels(3);
        let first = counts.macro_f1(&gold, &pred, &all(4));
        counts.macro_f1(&gold, &[Some(0); 4], &[3, 3]);
        assert_eq!(counts.macro_f1(&gold, &pred, &all(4)), first);
        assert_eq!(first, macro_f1(&gold, &pred, 3, &all(4)));
    }

    fn exact_two_sided(b: u64, c: u64) -> f64 {
        let m = b + c;
        let choose = |k: u64| (0..k).fold(1u128, |acc, i| acc * (m - i) as u128 / (i + 1) as u128);
        let tail: u128 = (0..=b.min(c)).map(choose).sum();
        (2.0 * tail as f64 / 2f64.powi(m as i32)).min(1.0)
    }

    #[test]
    fn mcnemar_exact_matches_known_values_and_direct_sums() {
        assert_close(mcnemar_exact(1, 9), 0.021484375, 1e-15);
        assert_close(mcnemar_exact(9, 1), 2.0 * 11.0 / 1024.0, 1e-15);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(7, 7), 1.0);
        assert_close(mcnemar_exact(0, 6), 0.03125, 1e-16);
        for b in 0..=30u64 {
            for c in 0..=30u64 {
                let expected = exact_two_sided(b, c);
                let got = mcnemar_exact(b as usize, c as usize);
                assert!(
                    (got - expected).abs() <= 1e-12 * expected.max(1e-300),
                    "{b},{c}"
                );
            }
        }
    }

    #[test]
    fn mcnemar_exact_is_stable_for_large_counts() {
        assert_eq!(mcnemar_exact(50_000, 50_000), 1.0);
        let p = mcnemar_exact(49_000, 51_000);
        // The continuity-corrected normal approximation is excellent at this size.
        let z = -normal_quantile(p / 2.0);
        assert_close(z, 1999.0 / 100_000f64.sqrt(), 0.02);
        assert!(p < mcnemar_exact(49_500, 50_500));
        assert_eq!(mcnemar_exact(0, 100_000), 0.0);
    }

    #[test]
    fn mcnemar_mid_p_subtracts_the_observed_point_mass() {
        assert_close(mcnemar_mid_p(1, 9), 12.0 / 1024.0, 1e-15);
        assert_close(mcnemar_mid_p(4, 4), 1.0, 1e-15);
        assert_eq!(mcnemar_mid_p(0, 0), 1.0);
        assert!(mcnemar_mid_p(3, 12) < mcnemar_exact(3, 12));
    }

    #[test]
    fn min_discordant_is_the_smallest_count_that_can_be_significant() {
        assert_eq!(min_discordant_for_significance(0.05), 6);
        assert_eq!(min_discordant_for_significance(0.01), 8);
        assert_eq!(min_discordant_for_significance(0.0625), 6); // 2 * 0.5^5 is not < 0.0625
        assert_eq!(min_discordant_for_significance(0.0), usize::MAX);
        assert!(mcnemar_exact(0, 6) < 0.05 && mcnemar_exact(0, 5) >= 0.05);
    }

    #[test]
    fn bootstrap_is_deterministic_per_seed_and_collapses_without_items() {
        // Distinct real values, so different seeds give visibly different percentiles.
        let outcomes: Vec<f64> = (0..50).map(|i| f64::from(i * 37 % 50) / 7.0).collect();
        let mean = |idx: &[usize]| idx.iter().map(|&i| outcomes[i]).sum::<f64>() / idx.len() as f64;
        let first = bootstrap_ci(50, 300, 7, 0.9, mean);
        assert_eq!(first, bootstrap_ci(50, 300, 7, 0.9, mean));
        assert_ne!(first, bootstrap_ci(50, 300, 8, 0.9, mean));
        let point = mean(&all(50));
        assert!(first.lo < point && point < first.hi && first.hi - first.lo < 2.0);
        let empty = bootstrap_ci(0, 300, 7, 0.9, |_| 0.25);
        assert_eq!(
            empty,
            Interval {
                lo: 0.25,
                hi: 0.25,
                confidence: 0.9
            }
        );
        assert_eq!(bootstrap_ci(50, 0, 7, 0.9, mean).lo, point);
    }

    #[test]
    fn bootstrap_draws_every_item_and_nothing_outside() {
        let mut seen = [0usize; 6];
        bootstrap_ci(5, 200, 11, 0.95, |idx| {
            idx.iter().for_each(|&i| seen[i.min(5)] += 1);
            assert_eq!(idx.len(), 5);
            0.0
        });
        assert!(seen[..5].iter().all(|&count| count > 120), "{seen:?}");
        assert_eq!(seen[5], 0);
    }

    #[test]
    fn percentile_bootstrap_of_accuracy_has_near_nominal_coverage() {
        let mut data_rng = ChaCha8Rng::seed_from_u64(2024);
        let gold = vec![0usize; 200];
        let mut covered = 0;
        for dataset in 0..400u64 {
            let pred: Vec<Option<usize>> = (0..200)
                .map(|_| Some(usize::from(!data_rng.random_bool(0.8))))
                .collect();
            let interval = bootstrap_ci(200, 500, dataset, 0.95, |idx| accuracy(&gold, &pred, idx));
            covered += usize::from(interval.lo <= 0.8 && 0.8 <= interval.hi);
        }
        let coverage = covered as f64 / 400.0;
        assert!((0.90..=0.98).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn bootstrap_p_value_follows_its_documented_definition() {
        assert_eq!(bootstrap_two_sided_p(&[-1.0, 0.0, 1.0, 2.0]), 1.0);
        assert_eq!(bootstrap_two_sided_p(&[-1.0, 1.0, 2.0, 3.0]), 0.5);
        assert_eq!(bootstrap_two_sided_p(&[1.0, 2.0, 3.0, 4.0]), 0.0);
        assert_eq!(bootstrap_two_sided_p(&[0.0, 0.0]), 1.0);
        assert_eq!(bootstrap_two_sided_p(&[]), 1.0);
    }

    /// 100 items of class 0 (n_labels 2); A and B are right except where listed.
    fn compare(a_wrong: &[usize], b_wrong: &[usize]) -> PairedComparison {
        let gold = vec![0usize; 100];
        let answers = |wrong: &[usize]| -> Vec<Option<usize>> {
            (0..100)
                .map(|i| if wrong.contains(&i) { Some(1) } else { Some(0) })
                .collect()
        };
        compare_paired(&gold, &answers(a_wrong), &answers(b_wrong), 2, 400, 1, 0.05).unwrap()
    }

    #[test]
    fn compare_paired_reaches_each_verdict() {
        let twenty: Vec<usize> = (0..20).collect();
        let a_better = compare(&[], &twenty);
        assert_eq!(
            (a_better.both_right, a_better.a_only, a_better.b_only),
            (80, 20, 0)
        );
        assert_eq!(a_better.verdict, Verdict::ABetter);
        assert_close(a_better.accuracy_diff, 0.2, 1e-15);
        assert!(
            a_better.f1_diff > 0.0 && a_better.f1_diff_ci.lo > 0.0 && a_better.f1_diff_p < 0.05
        );
        assert_eq!(compare(&twenty, &[]).verdict, Verdict::BBetter);
        let tie = compare(&[0, 1, 2, 3, 4, 90], &[10, 11, 12, 13, 14, 90]);
        assert_eq!((tie.a_only, tie.b_only, tie.both_wrong), (5, 5, 1));
        assert_eq!(tie.verdict, Verdict::NoSignificantDifference);
        assert_eq!(tie.mcnemar_p, 1.0);
        let few = compare(&[], &[1, 2, 3]);
        assert_eq!(few.verdict, Verdict::TooFewDisagreements);
        assert_eq!(few.min_discordant_for_significance, 6);
    }

    #[test]
    fn compare_paired_identical_models_and_bad_input() {
        let same = compare(&[3, 4], &[3, 4]);
        assert_eq!(
            (same.f1_diff, same.f1_diff_ci.lo, same.f1_diff_ci.hi),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(same.f1_diff_p, 1.0);
        let mismatch = compare_paired(&[0, 1], &[Some(0)], &[None, None], 2, 10, 0, 0.05);
        assert_eq!(
            mismatch,
            Err(StatsError::LengthMismatch {
                gold: 2,
                a: 1,
                b: 2
            })
        );
        let bad_alpha = compare_paired(&[0], &[Some(0)], &[None], 2, 10, 0, 1.5);
        assert_eq!(bad_alpha, Err(StatsError::InvalidAlpha(1.5)));
        let empty = compare_paired(&[], &[], &[], 2, 10, 0, 0.05).unwrap();
        assert_eq!(
            (empty.n, empty.mcnemar_p, empty.verdict),
            (0, 1.0, Verdict::TooFewDisagreements)
        );
    }

    #[test]
    fn describe_gives_plain_sentences() {
        let twenty: Vec<usize> = (0..20).collect();
        assert_eq!(
            compare(&twenty, &[]).describe("gpt", "small"),
            "small is more accurate than gpt (+20.0 points, McNemar p < 0.001, n = 100)"
        );
        let tie = compare(&[0, 1, 2, 3, 4], &[10, 11, 12, 13, 14]).describe("A", "B");
        let expected = "no significant difference in accuracy between A and B at n = 100 \
                        (McNemar p = 1.00; the 95% interval of macro-F1 A minus B is -";
        assert!(
            tie.starts_with(expected) && tie.ends_with(" points)"),
            "{tie}"
        );
        assert_eq!(
            compare(&[], &[1, 2, 3]).describe("A", "B"),
            "A and B disagree on only 3 of 100 items: too few to separate them at the 5% level \
             (at least 6 are needed)"
        );
        assert_eq!(
            (format_p(0.0042), format_p(0.41)),
            ("p = 0.004".into(), "p = 0.41".into())
        );
        assert_eq!(
            (signed_points(-0.0004), signed_points(0.031)),
            ("+0.0".into(), "+3.1".into())
        );
    }

    #[test]
    fn verdict_serializes_in_snake_case() {
        let json = serde_json::to_string(&Verdict::TooFewDisagreements).unwrap();
        assert_eq!(json, "\"too_few_disagreements\"");
    }
}
