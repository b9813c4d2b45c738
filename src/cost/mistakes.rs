//! What mistakes cost the business. Wrong answers are not equally bad (a
//! fraud report filed as "other" can cost far more than a mislabelled FAQ),
//! so reports price errors with a cost matrix instead of only counting them.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How a missing prediction is named in [`MistakeCost::top`].
pub const NO_ANSWER: &str = "(no answer)";
/// How many of the most expensive mistake kinds a report lists.
const TOP_MISTAKES: usize = 10;

/// USD per wrong answer: `default` unless a (gold, predicted) pair overrides
/// it; `no_answer` for a missing prediction (defaults to `default`). Correct
/// answers cost 0. Serde shape (TOML or JSON):
/// `{ default = 5.0, no_answer = 2.0, pairs = [ { gold = "a", predicted = "b", usd = 50.0 } ] }`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostMatrix {
    #[serde(rename = "default")]
    pub default_usd: f64,
    #[serde(rename = "no_answer", default, skip_serializing_if = "Option::is_none")]
    pub no_answer_usd: Option<f64>,
    #[serde(default)]
    pub pairs: Vec<PairCost>,
}

/// One override: what it costs when `gold` is answered as `predicted`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PairCost {
    pub gold: String,
    pub predicted: String,
    pub usd: f64,
}

/// The bill for one model's mistakes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MistakeCost {
    pub total_usd: f64,
    /// `total_usd` scaled to 1,000 items; 0 when there are no items.
    pub usd_per_1000_queries: f64,
    /// (gold, predicted or [`NO_ANSWER`], count, usd), most expensive first
    /// (ties: more frequent first, then by names), at most 10 entries.
    pub top: Vec<(String, String, usize, f64)>,
}

/// Why a cost matrix or a set of predictions cannot be priced.
#[derive(Debug, Error, PartialEq)]
pub enum MistakeCostError {
    #[error(
        "cost pair {index}: {field} label \"{name}\" is not a known label (known labels: {known})"
    )]
    UnknownLabel {
        index: usize,
        field: &'static str,
        name: String,
        known: String,
    },
    #[error("{what} must be a finite, non-negative amount of USD, got {value}")]
    InvalidCost { what: String, value: f64 },
    #[error("cost pairs {first} and {second} both price gold \"{gold}\" predicted as \"{predicted}\"; keep one")]
    DuplicatePair {
        first: usize,
        second: usize,
        gold: String,
        predicted: String,
    },
    #[error("cost pair {index} prices \"{label}\" predicted as itself, but correct answers always cost 0")]
    CorrectAnswerPriced { index: usize, label: String },
    #[error("label \"{name}\" appears twice in the label list (positions {first} and {second})")]
    DuplicateLabel {
        name: String,
        first: usize,
        second: usize,
    },
    #[error("items are not aligned: {gold} gold labels but {pred} predictions")]
    LengthMismatch { gold: usize, pred: usize },
    #[error("item {item}: {field} label index {index} is out of range for {n_labels} labels")]
    LabelIndexOutOfRange {
        item: usize,
        field: &'static str,
        index: usize,
        n_labels: usize,
    },
}

impl CostMatrix {
    /// Checks the matrix against the task's labels so a typo in a config file
    /// fails loudly instead of silently pricing nothing.
    pub fn validate(&self, labels: &[String]) -> Result<(), MistakeCostError> {
        self.resolve_pairs(labels).map(|_| ())
    }

    /// Validates and maps each override to (gold index, predicted index).
    fn resolve_pairs(
        &self,
        labels: &[String],
    ) -> Result<HashMap<(usize, usize), f64>, MistakeCostError> {
        let index_of = label_index(labels)?;
        check_cost("default".to_string(), self.default_usd)?;
        if let Some(no_answer) = self.no_answer_usd {
            check_cost("no_answer".to_string(), no_answer)?;
        }
        let mut resolved = HashMap::new();
        let mut first_seen: HashMap<(usize, usize), usize> = HashMap::new();
        for (index, pair) in self.pairs.iter().enumerate() {
            let lookup = |field, name: &String| {
                index_of
                    .get(name.as_str())
                    .copied()
                    .ok_or_else(|| MistakeCostError::UnknownLabel {
                        index,
                        field,
                        name: name.clone(),
                        known: labels.join(", "),
                    })
            };
            let key = (
                lookup("gold", &pair.gold)?,
                lookup("predicted", &pair.predicted)?,
            );
            check_cost(format!("cost pair {index} (usd)"), pair.usd)?;
            if key.0 == key.1 {
                return Err(MistakeCostError::CorrectAnswerPriced {
                    index,
                    label: pair.gold.clone(),
                });
            }
            if let Some(&first) = first_seen.get(&key) {
                return Err(MistakeCostError::DuplicatePair {
                    first,
                    second: index,
                    gold: pair.gold.clone(),
                    predicted: pair.predicted.clone(),
                });
            }
            first_seen.insert(key, index);
            resolved.insert(key, pair.usd);
        }
        Ok(resolved)
    }

    /// Prices every wrong answer of one model. Items are aligned: `gold[i]`
    /// and `pred[i]` are indices into `labels`. No items give a zero bill.
    pub fn mistake_cost(
        &self,
        labels: &[String],
        gold: &[usize],
        pred: &[Option<usize>],
    ) -> Result<MistakeCost, MistakeCostError> {
        let overrides = self.resolve_pairs(labels)?;
        let counts = count_mistakes(labels.len(), gold, pred)?;
        let mut priced: Vec<(usize, Option<usize>, usize, f64)> = counts
            .into_iter()
            .map(|((g, p), count)| (g, p, count, count as f64 * self.unit_cost(g, p, &overrides)))
            .collect();
        let name = |label: Option<usize>| {
            label
                .and_then(|l| labels.get(l))
                .map_or(NO_ANSWER, |s| s.as_str())
        };
        priced.sort_by(|x, y| {
            y.3.total_cmp(&x.3)
                .then(y.2.cmp(&x.2))
                .then_with(|| name(Some(x.0)).cmp(name(Some(y.0))))
                .then_with(|| name(x.1).cmp(name(y.1)))
        });
        // Summing in sorted order keeps the total identical from run to run.
        let total_usd: f64 = priced.iter().map(|entry| entry.3).sum();
        let top = priced
            .iter()
            .take(TOP_MISTAKES)
            .map(|&(g, p, count, usd)| (name(Some(g)).to_string(), name(p).to_string(), count, usd))
            .collect();
        let per_1000 = if gold.is_empty() {
            0.0
        } else {
            total_usd / gold.len() as f64 * 1000.0
        };
        Ok(MistakeCost {
            total_usd,
            usd_per_1000_queries: per_1000,
            top,
        })
    }

    fn unit_cost(
        &self,
        gold: usize,
        pred: Option<usize>,
        overrides: &HashMap<(usize, usize), f64>,
    ) -> f64 {
        match pred {
            None => self.no_answer_usd.unwrap_or(self.default_usd),
            Some(p) => overrides
                .get(&(gold, p))
                .copied()
                .unwrap_or(self.default_usd),
        }
    }
}

/// Name -> index, rejecting duplicate names (a pair naming one would be ambiguous).
fn label_index(labels: &[String]) -> Result<HashMap<&str, usize>, MistakeCostError> {
    let mut index_of = HashMap::with_capacity(labels.len());
    for (position, name) in labels.iter().enumerate() {
        if let Some(first) = index_of.insert(name.as_str(), position) {
            return Err(MistakeCostError::DuplicateLabel {
                name: name.clone(),
                first,
                second: position,
            });
        }
    }
    Ok(index_of)
}

fn check_cost(what: String, value: f64) -> Result<(), MistakeCostError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(MistakeCostError::InvalidCost { what, value })
    }
}

/// Counts wrong answers per (gold, predicted) kind, checking every index.
fn count_mistakes(
    n_labels: usize,
    gold: &[usize],
    pred: &[Option<usize>],
) -> Result<HashMap<(usize, Option<usize>), usize>, MistakeCostError> {
    if gold.len() != pred.len() {
        return Err(MistakeCostError::LengthMismatch {
            gold: gold.len(),
            pred: pred.len(),
        });
    }
    let out_of_range = |item, field, index| MistakeCostError::LabelIndexOutOfRange {
        item,
        field,
        index,
        n_labels,
    };
    let mut counts = HashMap::new();
    for (item, (&g, &p)) in gold.iter().zip(pred).enumerate() {
        if g >= n_labels {
            return Err(out_of_range(item, "gold", g));
        }
        if let Some(p) = p.filter(|&p| p >= n_labels) {
            return Err(out_of_range(item, "predicted", p));
        }
        if p != Some(g) {
            *counts.entry((g, p)).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["billing", "fraud", "other"].map(String::from).to_vec()
    }

    fn matrix() -> CostMatrix {
        serde_json::from_str(
            r#"{ "default": 5.0, "no_answer": 2.0,
                 "pairs": [ { "gold": "fraud", "predicted": "other", "usd": 50.0 } ] }"#,
        )
        .unwrap()
    }

    fn pair(gold: &str, predicted: &str, usd: f64) -> PairCost {
        PairCost {
            gold: gold.into(),
            predicted: predicted.into(),
            usd,
        }
    }

    #[test]
    fn deserializes_from_the_documented_shape() {
        let expected = CostMatrix {
            default_usd: 5.0,
            no_answer_usd: Some(2.0),
            pairs: vec![pair("fraud", "other", 50.0)],
        };
        assert_eq!(matrix(), expected);
        let minimal: CostMatrix = serde_json::from_str(r#"{ "default": 1.5 }"#).unwrap();
        assert_eq!((minimal.no_answer_usd, minimal.pairs.len()), (None, 0));
        assert!(serde_json::from_str::<CostMatrix>(r#"{ "defualt": 1.5 }"#).is_err());
        let typo_in_pair =
            r#"{ "default": 1, "pairs": [ { "gold": "a", "predicted": "b", "cost": 2 } ] }"#;
        assert!(serde_json::from_str::<CostMatrix>(typo_in_pair).is_err());
    }

    #[test]
    fn prices_a_hand_worked_example() {
        let gold = [1, 1, 0, 2, 0, 1, 2];
        let pred = [Some(2), Some(2), Some(0), None, Some(1), Some(1), Some(0)];
        let bill = matrix().mistake_cost(&labels(), &gold, &pred).unwrap();
        // fraud->other 2 x 50, billing->fraud 5, other->billing 5, other->(no answer) 2.
        assert_eq!(bill.total_usd, 112.0);
        assert!((bill.usd_per_1000_queries - 112.0 / 7.0 * 1000.0).abs() < 1e-9);
        let entry = |g: &str, p: &str, count, usd| (g.to_string(), p.to_string(), count, usd);
        assert_eq!(
            bill.top,
            vec![
                entry("fraud", "other", 2, 100.0),
                entry("billing", "fraud", 1, 5.0),
                entry("other", "billing", 1, 5.0),
                entry("other", NO_ANSWER, 1, 2.0),
            ]
        );
    }

    #[test]
    fn no_answer_defaults_to_the_default_cost_and_correct_answers_are_free() {
        let matrix = CostMatrix {
            default_usd: 3.0,
            no_answer_usd: None,
            pairs: vec![],
        };
        let bill = matrix
            .mistake_cost(&labels(), &[0, 1, 2], &[None, Some(1), Some(2)])
            .unwrap();
        assert_eq!((bill.total_usd, bill.top.len()), (3.0, 1));
        let perfect = matrix
            .mistake_cost(&labels(), &[0, 1], &[Some(0), Some(1)])
            .unwrap();
        assert_eq!((perfect.total_usd, perfect.top.len()), (0.0, 0));
        let empty = matrix.mistake_cost(&labels(), &[], &[]).unwrap();
        assert_eq!((empty.total_usd, empty.usd_per_1000_queries), (0.0, 0.0));
    }

    #[test]
    fn top_lists_at_most_ten_kinds_most_expensive_first() {
        let many: Vec<String> = (0..12).map(|i| format!("label{i:02}")).collect();
        let pairs = (1..12)
            .map(|i| pair("label00", &many[i], i as f64))
            .collect();
        let matrix = CostMatrix {
            default_usd: 1.0,
            no_answer_usd: None,
            pairs,
        };
        let pred: Vec<Option<usize>> = (1..12).map(Some).collect();
        let bill = matrix.mistake_cost(&many, &[0; 11], &pred).unwrap();
        assert_eq!(bill.top.len(), 10);
        assert_eq!(bill.top[0], ("label00".into(), "label11".into(), 1, 11.0));
        assert_eq!(bill.top[9].3, 2.0);
        assert_eq!(bill.total_usd, 66.0);
    }

    #[test]
    fn validate_names_the_unknown_label_and_lists_the_known_ones() {
        let mut matrix = matrix();
        matrix.pairs.push(pair("billing", "refund", 9.0));
        let error = matrix.validate(&labels()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cost pair 1: predicted label \"refund\" is not a known label (known labels: billing, fraud, other)"
        );
        matrix.pairs[1] = pair("Fraud", "other", 9.0);
        assert!(matches!(
            matrix.validate(&labels()),
            Err(MistakeCostError::UnknownLabel { field: "gold", .. })
        ));
    }

    #[test]
    fn validate_rejects_bad_costs_duplicates_and_self_pairs() {
        let with = |edit: fn(&mut CostMatrix)| {
            let mut matrix = matrix();
            edit(&mut matrix);
            matrix.validate(&labels())
        };
        assert_eq!(with(|_| {}), Ok(()));
        assert!(matches!(
            with(|m| m.default_usd = -1.0),
            Err(MistakeCostError::InvalidCost { .. })
        ));
        assert!(matches!(
            with(|m| m.no_answer_usd = Some(f64::INFINITY)),
            Err(MistakeCostError::InvalidCost { .. })
        ));
        let nan_pair = with(|m| m.pairs[0].usd = f64::NAN).unwrap_err().to_string();
        assert_eq!(
            nan_pair,
            "cost pair 0 (usd) must be a finite, non-negative amount of USD, got NaN"
        );
        let duplicate = with(|m| m.pairs.push(pair("fraud", "other", 7.0)));
        assert!(matches!(
            duplicate,
            Err(MistakeCostError::DuplicatePair {
                first: 0,
                second: 1,
                ..
            })
        ));
        let self_pair = with(|m| m.pairs.push(pair("other", "other", 7.0)));
        assert!(matches!(
            self_pair,
            Err(MistakeCostError::CorrectAnswerPriced { index: 1, .. })
        ));
        let twice = ["a", "b", "a"].map(String::from);
        assert!(matches!(
            matrix().validate(&twice),
            Err(MistakeCostError::DuplicateLabel {
                first: 0,
                second: 2,
                ..
            })
        ));
    }

    #[test]
    fn mistake_cost_rejects_misaligned_or_out_of_range_items() {
        let labels = labels();
        let result = matrix().mistake_cost(&labels, &[0, 1], &[Some(0)]);
        assert_eq!(
            result,
            Err(MistakeCostError::LengthMismatch { gold: 2, pred: 1 })
        );
        let bad_gold = matrix().mistake_cost(&labels, &[0, 3], &[Some(0), Some(0)]);
        assert_eq!(
            bad_gold,
            Err(MistakeCostError::LabelIndexOutOfRange {
                item: 1,
                field: "gold",
                index: 3,
                n_labels: 3
            })
        );
        let bad_pred = matrix().mistake_cost(&labels, &[0], &[Some(9)]);
        assert!(matches!(
            bad_pred,
            Err(MistakeCostError::LabelIndexOutOfRange {
                field: "predicted",
                ..
            })
        ));
        let mut invalid = matrix();
        invalid.default_usd = f64::NAN;
        assert!(invalid.mistake_cost(&labels, &[0], &[Some(1)]).is_err());
    }
}
