//! Cascade: the small local model answers every item first; when its top
//! probability is below a threshold, the item is also sent to the hosted API
//! and the API's answer is used. Sweeping the threshold shows how much API
//! spend each point of accuracy costs, which is the question a buyer asks.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A threshold above every possible probability: everything goes to the API.
/// Probabilities are clamped to [0, 1], so anything above 1 works; 1.01 is
/// used so that a two-decimal table still tells it apart from 1.00.
pub const ALWAYS_API_THRESHOLD: f64 = 1.01;

/// Evenly spaced grid steps for [`default_thresholds`] (0.05 apart).
const GRID_STEPS: usize = 20;
/// Observed-probability quantiles added to the grid; with the grid and
/// [`ALWAYS_API_THRESHOLD`] this caps the default list at 101 thresholds.
const QUANTILE_COUNT: usize = 79;

/// Everything the cascade needs, aligned by item. Grouped in a struct so call
/// sites name each slice instead of passing six positional arguments.
#[derive(Debug, Clone, Copy)]
pub struct CascadeInputs<'a> {
    pub gold: &'a [usize],
    pub local_pred: &'a [Option<usize>],
    /// The local model's top class probability; None (or NaN) counts as 0,
    /// so such an item is deferred at every threshold above 0.
    pub local_top_prob: &'a [Option<f64>],
    pub api_pred: &'a [Option<usize>],
    pub local_usd_per_query: f64,
    pub api_usd_per_query: f64,
}

/// One threshold's outcome. Accuracy and share are fractions of all items.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct CascadePoint {
    pub threshold: f64,
    pub share_local: f64,
    pub accuracy: f64,
    pub usd_per_1000: f64,
}

/// The whole sweep plus the recommended point.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CascadeCurve {
    pub points: Vec<CascadePoint>,
    /// Cheapest point whose accuracy is at least `floor` (ties: higher
    /// accuracy, then the first listed). None when no floor was given, since
    /// without a requirement "cheapest" is just the local model, or when no
    /// point reaches the floor.
    pub best: Option<CascadePoint>,
    pub floor: Option<f64>,
}

/// Inputs that cannot describe a cascade.
#[derive(Debug, Error, PartialEq)]
pub enum CascadeError {
    #[error("the cascade needs at least one test item, got none")]
    Empty,
    #[error("items are not aligned: {gold} gold labels but {field} has {len} entries")]
    LengthMismatch {
        field: &'static str,
        gold: usize,
        len: usize,
    },
    #[error("{field} must be a finite, non-negative amount of USD, got {value}")]
    InvalidCost { field: &'static str, value: f64 },
    #[error("threshold number {index} is NaN; thresholds must be numbers")]
    InvalidThreshold { index: usize },
    #[error("the accuracy floor must be a fraction between 0 and 1, got {0}")]
    InvalidFloor(f64),
}

impl CascadeInputs<'_> {
    fn validate(&self) -> Result<(), CascadeError> {
        let gold = self.gold.len();
        if gold == 0 {
            return Err(CascadeError::Empty);
        }
        for (field, len) in [
            ("local_pred", self.local_pred.len()),
            ("local_top_prob", self.local_top_prob.len()),
            ("api_pred", self.api_pred.len()),
        ] {
            if len != gold {
                return Err(CascadeError::LengthMismatch { field, gold, len });
            }
        }
        check_cost("local_usd_per_query", self.local_usd_per_query)?;
        check_cost("api_usd_per_query", self.api_usd_per_query)
    }

    /// Scores the policy "answer locally when the top probability >= threshold".
    fn point_at(&self, threshold: f64) -> CascadePoint {
        let (mut answered_locally, mut correct) = (0usize, 0usize);
        let items = self
            .gold
            .iter()
            .zip(self.local_pred)
            .zip(self.local_top_prob)
            .zip(self.api_pred);
        for (((&gold, &local), &probability), &api) in items {
            let keep_local = clamp_probability(probability) >= threshold;
            let answer = if keep_local { local } else { api };
            answered_locally += usize::from(keep_local);
            correct += usize::from(answer == Some(gold));
        }
        let n = self.gold.len() as f64;
        let deferred = self.gold.len() - answered_locally;
        let usd_total = n * self.local_usd_per_query + deferred as f64 * self.api_usd_per_query;
        CascadePoint {
            threshold,
            share_local: answered_locally as f64 / n,
            accuracy: correct as f64 / n,
            usd_per_1000: usd_total / n * 1000.0,
        }
    }
}

fn check_cost(field: &'static str, value: f64) -> Result<(), CascadeError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(CascadeError::InvalidCost { field, value })
    }
}

/// Missing or NaN probabilities become 0 (always defer when t > 0); values
/// outside [0, 1] are clamped so any threshold above 1 means "always API".
fn clamp_probability(probability: Option<f64>) -> f64 {
    probability
        .filter(|p| !p.is_nan())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0)
}

/// Scores every threshold (in the order given) and picks the cheapest point
/// meeting `floor`, an accuracy fraction in [0, 1].
pub fn cascade_curve(
    inputs: &CascadeInputs,
    thresholds: &[f64],
    floor: Option<f64>,
) -> Result<CascadeCurve, CascadeError> {
    inputs.validate()?;
    if let Some(index) = thresholds.iter().position(|t| t.is_nan()) {
        return Err(CascadeError::InvalidThreshold { index });
    }
    if let Some(floor) = floor.filter(|f| !(0.0..=1.0).contains(f)) {
        return Err(CascadeError::InvalidFloor(floor));
    }
    let points: Vec<CascadePoint> = thresholds.iter().map(|&t| inputs.point_at(t)).collect();
    let best = floor.and_then(|floor| cheapest_meeting(&points, floor));
    Ok(CascadeCurve {
        points,
        best,
        floor,
    })
}

/// Cheapest point with accuracy >= floor; equal cost prefers higher accuracy,
/// and `min_by` keeps the first of fully equal points, so the result is stable.
fn cheapest_meeting(points: &[CascadePoint], floor: f64) -> Option<CascadePoint> {
    points
        .iter()
        .filter(|point| point.accuracy >= floor)
        .min_by(|x, y| {
            x.usd_per_1000
                .total_cmp(&y.usd_per_1000)
                .then(y.accuracy.total_cmp(&x.accuracy))
        })
        .copied()
}

/// Thresholds worth scoring: 0 (local only), a 0.05 grid up to 1,
/// [`ALWAYS_API_THRESHOLD`] (API only), and up to 79 quantiles of the observed
/// probabilities, which are exactly where the curve changes. Sorted ascending,
/// without duplicates, at most 101 values.
pub fn default_thresholds(local_top_probs: &[Option<f64>]) -> Vec<f64> {
    let mut thresholds: Vec<f64> = (0..=GRID_STEPS)
        .map(|step| step as f64 / GRID_STEPS as f64)
        .collect();
    thresholds.push(ALWAYS_API_THRESHOLD);
    thresholds.extend(observed_quantiles(local_top_probs, QUANTILE_COUNT));
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    thresholds
}

/// `count` evenly spaced order statistics of the (clamped) probabilities;
/// using observed values rather than interpolations keeps each one a breakpoint.
fn observed_quantiles(local_top_probs: &[Option<f64>], count: usize) -> Vec<f64> {
    let mut observed: Vec<f64> = local_top_probs
        .iter()
        .map(|&p| clamp_probability(p))
        .collect();
    if observed.is_empty() || count < 2 {
        return observed.into_iter().take(count).collect();
    }
    observed.sort_by(f64::total_cmp);
    let last = observed.len() - 1;
    (0..count)
        .map(|k| observed[k * last / (count - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLD: [usize; 6] = [0, 1, 2, 0, 1, 2];
    const LOCAL: [Option<usize>; 6] = [Some(0), Some(1), Some(0), Some(1), None, Some(2)];
    const PROBS: [Option<f64>; 6] = [
        Some(0.95),
        Some(0.80),
        Some(0.60),
        Some(0.40),
        None,
        Some(0.70),
    ];
    const API: [Option<usize>; 6] = [Some(0), Some(0), Some(2), Some(0), Some(1), None];

    /// Local model right on items 0, 1, 5 (3/6); API right on 0, 2, 3, 4 (4/6).
    fn six_items() -> CascadeInputs<'static> {
        CascadeInputs {
            gold: &GOLD,
            local_pred: &LOCAL,
            local_top_prob: &PROBS,
            api_pred: &API,
            local_usd_per_query: 0.0001,
            api_usd_per_query: 0.002,
        }
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "{actual} vs {expected}");
    }

    fn only_point(threshold: f64) -> CascadePoint {
        cascade_curve(&six_items(), &[threshold], None)
            .unwrap()
            .points[0]
    }

    #[test]
    fn zero_threshold_is_the_local_model_alone() {
        let point = only_point(0.0);
        assert_eq!((point.share_local, point.accuracy), (1.0, 0.5));
        assert_close(point.usd_per_1000, 0.1);
    }

    #[test]
    fn threshold_above_every_probability_is_the_api_alone() {
        let point = only_point(ALWAYS_API_THRESHOLD);
        assert_eq!(point.share_local, 0.0);
        assert_close(point.accuracy, 4.0 / 6.0);
        assert_close(point.usd_per_1000, 2.1);
    }

    #[test]
    fn hand_checked_six_item_cascade() {
        // t = 0.65 keeps items 0, 1, 5 local (all right); the API fixes 2, 3, 4.
        let point = only_point(0.65);
        assert_eq!((point.share_local, point.accuracy), (0.5, 1.0));
        assert_close(point.usd_per_1000, 1000.0 * (0.0001 + 0.5 * 0.002));
        // t = 0.9 keeps item 0 only; the API gets 2, 3, 4 right and 1, 5 wrong.
        let point = only_point(0.9);
        assert_close(point.share_local, 1.0 / 6.0);
        assert_close(point.accuracy, 4.0 / 6.0);
        assert_close(point.usd_per_1000, 1000.0 * (0.0001 + 5.0 / 6.0 * 0.002));
        // Probability exactly at the threshold stays local.
        assert_close(only_point(0.7).share_local, 0.5);
    }

    #[test]
    fn best_is_the_cheapest_point_meeting_the_floor() {
        let thresholds = [0.0, 0.65, 0.9, ALWAYS_API_THRESHOLD];
        let best = |floor| {
            cascade_curve(&six_items(), &thresholds, floor)
                .unwrap()
                .best
        };
        assert_eq!(best(Some(0.6)).map(|p| p.threshold), Some(0.65));
        assert_eq!(best(Some(1.0)).map(|p| p.threshold), Some(0.65));
        assert_eq!(best(Some(0.5)).map(|p| p.threshold), Some(0.0));
        assert_eq!(best(None), None);
        let without_065 = cascade_curve(&six_items(), &[0.0, 0.9, 1.01], Some(0.9)).unwrap();
        assert_eq!(without_065.best, None);
        assert_eq!(without_065.floor, Some(0.9));
    }

    #[test]
    fn equal_cost_prefers_higher_accuracy() {
        let point = |threshold, accuracy, usd_per_1000| CascadePoint {
            threshold,
            share_local: 0.5,
            accuracy,
            usd_per_1000,
        };
        let points = [
            point(0.1, 0.80, 2.0),
            point(0.2, 0.85, 1.0),
            point(0.3, 0.90, 1.0),
        ];
        assert_eq!(
            cheapest_meeting(&points, 0.8).map(|p| p.threshold),
            Some(0.3)
        );
        assert_eq!(cheapest_meeting(&points, 0.95), None);
    }

    #[test]
    fn missing_nan_and_out_of_range_probabilities_are_handled() {
        let probs = [None, Some(f64::NAN), Some(1.3), Some(-0.2)];
        let gold = [0, 0, 0, 0];
        let inputs = CascadeInputs {
            gold: &gold,
            local_pred: &[Some(0); 4],
            local_top_prob: &probs,
            api_pred: &[Some(1); 4],
            local_usd_per_query: 0.0,
            api_usd_per_query: 1.0,
        };
        let curve = cascade_curve(&inputs, &[0.0, 0.5, 1.0, ALWAYS_API_THRESHOLD], None).unwrap();
        let shares: Vec<f64> = curve.points.iter().map(|p| p.share_local).collect();
        assert_eq!(shares, vec![1.0, 0.25, 0.25, 0.0]);
        assert_eq!(curve.points[3].usd_per_1000, 1000.0);
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let mut inputs = six_items();
        inputs.api_pred = &API[..5];
        let mismatch = cascade_curve(&inputs, &[0.5], None);
        assert_eq!(
            mismatch,
            Err(CascadeError::LengthMismatch {
                field: "api_pred",
                gold: 6,
                len: 5
            })
        );
        let empty = CascadeInputs {
            gold: &[],
            local_pred: &[],
            local_top_prob: &[],
            api_pred: &[],
            ..six_items()
        };
        assert_eq!(
            cascade_curve(&empty, &[0.5], None),
            Err(CascadeError::Empty)
        );
        let negative = CascadeInputs {
            api_usd_per_query: -1.0,
            ..six_items()
        };
        assert!(matches!(
            cascade_curve(&negative, &[0.5], None),
            Err(CascadeError::InvalidCost { .. })
        ));
        let nan_threshold = cascade_curve(&six_items(), &[0.1, f64::NAN], None);
        assert_eq!(
            nan_threshold,
            Err(CascadeError::InvalidThreshold { index: 1 })
        );
        assert_eq!(
            cascade_curve(&six_items(), &[0.5], Some(1.5)),
            Err(CascadeError::InvalidFloor(1.5))
        );
        let message = CascadeError::LengthMismatch {
            field: "api_pred",
            gold: 6,
            len: 5,
        }
        .to_string();
        assert_eq!(
            message,
            "items are not aligned: 6 gold labels but api_pred has 5 entries"
        );
    }

    #[test]
    fn default_thresholds_cover_the_extremes_and_observed_breakpoints() {
        let thresholds = default_thresholds(&PROBS);
        assert_eq!(thresholds.first(), Some(&0.0));
        assert_eq!(thresholds.last(), Some(&ALWAYS_API_THRESHOLD));
        assert!(
            thresholds.contains(&1.0) && thresholds.contains(&0.05) && thresholds.contains(&0.95)
        );
        for observed in [0.4, 0.6, 0.7, 0.8] {
            assert!(thresholds.contains(&observed), "missing {observed}");
        }
        assert!(
            thresholds.windows(2).all(|pair| pair[0] < pair[1]),
            "not strictly ascending"
        );
        assert_eq!(default_thresholds(&[]).len(), GRID_STEPS + 2);
    }

    #[test]
    fn default_thresholds_are_capped_for_many_distinct_probabilities() {
        let probs: Vec<Option<f64>> = (0..10_000)
            .map(|i| Some(0.3 + f64::from(i) * 7e-5))
            .collect();
        let thresholds = default_thresholds(&probs);
        assert!(
            thresholds.len() <= 101 && thresholds.len() > 90,
            "{}",
            thresholds.len()
        );
        assert!(thresholds.contains(&0.3) && thresholds.contains(&(0.3 + 9_999.0 * 7e-5)));
    }

    #[test]
    fn curve_serializes_for_reports() {
        let curve = cascade_curve(&six_items(), &[0.65], Some(0.9)).unwrap();
        let json = serde_json::to_value(&curve).unwrap();
        assert_eq!(json["best"]["threshold"], 0.65);
        assert_eq!(json["points"][0]["share_local"], 0.5);
    }
}
