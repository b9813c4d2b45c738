//! Classification quality: accuracy, per-class precision / recall / F1,
//! macro and weighted averages, and the confusion matrix.
//!
//! Conventions follow scikit-learn's `classification_report` (and
//! `precision_recall_fscore_support`) with `zero_division=0` and the default
//! `labels=None`:
//!
//! - precision of a class that was never predicted is 0; recall of a class
//!   with no support is 0; F1 is 0 whenever precision + recall is 0;
//! - **macro averages** (`macro_f1`, `macro_precision`, `macro_recall`) are the
//!   unweighted mean over the *active* classes: those with `support > 0` OR
//!   `predicted > 0`, i.e. the union of the gold and predicted labels, which
//!   is the label set scikit-learn uses when `labels` is not given. A class in
//!   `labels` that appears in neither column is listed in `per_class` (with
//!   zeros) but does not drag the macro averages down;
//! - **weighted F1** weights each class's F1 by its support.
//!
//! Unknown gold labels (`gold[i] == None`: the dataset's label is not one the
//! model can emit) are counted as errors, because a model cannot be right
//! about a label it does not know:
//!
//! - they count in `n` and as wrong for `accuracy` (`correct / n`), and in
//!   `unknown_gold`;
//! - they are left out of everything per-class: supports, the `predicted`
//!   counts, precision / recall / F1, the averages and the confusion matrix.
//!   The per-class numbers are therefore exactly scikit-learn's on the rows
//!   whose gold label is known, and `sum(confusion) == n - unknown_gold`.
//!
//! Empty input is not an error: it yields `n = 0`, `accuracy = 0` and zeros
//! everywhere. Mismatched lengths or out-of-range indices are
//! [`MetricsError`]s; the function never panics.

use serde::{Deserialize, Serialize};

use crate::metrics::MetricsError;

/// Precision, recall and F1 of one class, as in one row of
/// scikit-learn's `classification_report`.
///
/// Invariants: `precision`, `recall` and `f1` lie in `[0, 1]`; `support` is the
/// number of known-gold rows with this gold label, `predicted` the number of
/// known-gold rows predicted as this label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
    pub predicted: usize,
}

/// Everything taskbench reports about a classifier's predictions.
///
/// Invariants:
/// - `correct <= n - unknown_gold`, `accuracy == correct / n` (0 when `n == 0`);
/// - `per_class` and `labels` follow the caller's `labels` order, one entry
///   each; `confusion` is `labels.len()` × `labels.len()`, rows = gold,
///   columns = predicted, and its trace equals `correct`;
/// - the sum of `confusion` equals `n - unknown_gold`, the sum of supports
///   likewise;
/// - all ratios lie in `[0, 1]` and are finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    pub n: usize,
    pub correct: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub per_class: Vec<ClassStats>,
    pub labels: Vec<String>,
    /// Rows = gold, columns = predicted, both in `labels` order. Rows with an
    /// unknown gold label are not counted here.
    pub confusion: Vec<Vec<usize>>,
    pub unknown_gold: usize,
}

/// Scores `predicted` against `gold`, both given as indices into `labels`.
///
/// `gold[i] == None` marks a row whose gold label the model does not know; see
/// the module docs for how such rows are counted. Returns an error if the two
/// slices differ in length or an index is `>= labels.len()`; empty input
/// returns `n = 0` with every ratio 0.
pub fn classification_metrics(
    gold: &[Option<usize>],
    predicted: &[usize],
    labels: &[String],
) -> Result<ClassificationMetrics, MetricsError> {
    validate(gold, predicted, labels.len())?;
    let confusion = confusion_matrix(gold, predicted, labels.len());
    let per_class = per_class_stats(&confusion, labels);
    let correct = (0..labels.len()).map(|k| confusion[k][k]).sum();
    let n = gold.len();
    let active: Vec<&ClassStats> = per_class
        .iter()
        .filter(|c| c.support > 0 || c.predicted > 0)
        .collect();
    Ok(ClassificationMetrics {
        n,
        correct,
        accuracy: ratio(correct, n),
        macro_f1: mean_of(&active, |c| c.f1),
        weighted_f1: support_weighted_f1(&per_class),
        macro_precision: mean_of(&active, |c| c.precision),
        macro_recall: mean_of(&active, |c| c.recall),
        labels: labels.to_vec(),
        confusion,
        unknown_gold: gold.iter().filter(|g| g.is_none()).count(),
        per_class,
    })
}

/// Checks lengths and index ranges up front so the counting code can index
/// without bounds worries.
fn validate(
    gold: &[Option<usize>],
    predicted: &[usize],
    n_labels: usize,
) -> Result<(), MetricsError> {
    if gold.len() != predicted.len() {
        return Err(MetricsError::LengthMismatch {
            gold: gold.len(),
            predicted: predicted.len(),
        });
    }
    let out_of_range = |which, row, index| MetricsError::LabelOutOfRange {
        which,
        row,
        index,
        n_labels,
    };
    for (row, (g, &p)) in gold.iter().zip(predicted).enumerate() {
        if let Some(g) = *g {
            if g >= n_labels {
                return Err(out_of_range("gold", row, g));
            }
        }
        if p >= n_labels {
            return Err(out_of_range("predicted", row, p));
        }
    }
    Ok(())
}

/// Counts (gold, predicted) pairs; rows with unknown gold are skipped because
/// they have no row to go in.
fn confusion_matrix(gold: &[Option<usize>], predicted: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0usize; k]; k];
    for (g, &p) in gold.iter().zip(predicted) {
        if let Some(g) = *g {
            m[g][p] += 1;
        }
    }
    m
}

/// Derives each class's stats from the confusion matrix: support is the row
/// sum, predicted the column sum, true positives the diagonal.
fn per_class_stats(confusion: &[Vec<usize>], labels: &[String]) -> Vec<ClassStats> {
    labels
        .iter()
        .enumerate()
        .map(|(k, label)| {
            let tp = confusion[k][k];
            let support: usize = confusion[k].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[k]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            ClassStats {
                label: label.clone(),
                precision,
                recall,
                f1: f1(precision, recall),
                support,
                predicted,
            }
        })
        .collect()
}

/// Harmonic mean of precision and recall, 0 when both are 0
/// (scikit-learn's `zero_division=0`).
fn f1(precision: f64, recall: f64) -> f64 {
    let sum = precision + recall;
    if sum == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / sum
    }
}

/// `num / den`, or 0 for an empty denominator (`zero_division=0`).
fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Unweighted mean over the given classes, 0 if there are none (e.g. every
/// gold label was unknown).
fn mean_of(classes: &[&ClassStats], field: impl Fn(&ClassStats) -> f64) -> f64 {
    if classes.is_empty() {
        return 0.0;
    }
    classes.iter().map(|c| field(c)).sum::<f64>() / classes.len() as f64
}

/// F1 averaged with support as weights; classes without support weigh 0, so
/// iterating over all of them equals scikit-learn's union-of-labels average.
fn support_weighted_f1(per_class: &[ClassStats]) -> f64 {
    let total: usize = per_class.iter().map(|c| c.support).sum();
    if total == 0 {
        return 0.0;
    }
    per_class
        .iter()
        .map(|c| c.f1 * c.support as f64)
        .sum::<f64>()
        / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn known(gold: &[usize]) -> Vec<Option<usize>> {
        gold.iter().copied().map(Some).collect()
    }

    /// Exact-ish comparison: sklearn and we do the same float operations, but
    /// possibly in a different order.
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn assert_close(name: &str, got: f64, want: f64) {
        assert!(close(got, want), "{name}: got {got}, want {want}");
    }

    fn assert_class(c: &ClassStats, p: f64, r: f64, f: f64, support: usize) {
        assert_close(&format!("{} precision", c.label), c.precision, p);
        assert_close(&format!("{} recall", c.label), c.recall, r);
        assert_close(&format!("{} f1", c.label), c.f1, f);
        assert_eq!(c.support, support, "{} support", c.label);
    }

    // Expected values from scikit-learn 1.9.1:
    //   y_true = [0,0,0,1,1,1,2,2,2,2]; y_pred = [0,0,1,1,1,0,0,1,1,0]
    //   accuracy_score(y_true, y_pred)
    //   precision_recall_fscore_support(y_true, y_pred, labels=[0,1,2], zero_division=0)
    //   f1_score / precision_score / recall_score(y_true, y_pred, average="macro"|"weighted", zero_division=0)
    //   confusion_matrix(y_true, y_pred, labels=[0,1,2])
    #[test]
    fn sklearn_class_never_predicted() {
        let gold = known(&[0, 0, 0, 1, 1, 1, 2, 2, 2, 2]);
        let pred = [0, 0, 1, 1, 1, 0, 0, 1, 1, 0];
        let m = classification_metrics(&gold, &pred, &labels(&["a", "b", "c"])).unwrap();
        assert_eq!((m.n, m.correct, m.unknown_gold), (10, 4, 0));
        assert_close("accuracy", m.accuracy, 0.4);
        assert_class(&m.per_class[0], 0.4, 0.6666666666666666, 0.5, 3);
        assert_class(&m.per_class[1], 0.4, 0.6666666666666666, 0.5, 3);
        assert_class(&m.per_class[2], 0.0, 0.0, 0.0, 4);
        assert_eq!(m.per_class[2].predicted, 0);
        assert_close("macro_f1", m.macro_f1, 0.3333333333333333);
        assert_close("macro_precision", m.macro_precision, 0.26666666666666666);
        assert_close("macro_recall", m.macro_recall, 0.4444444444444444);
        assert_close("weighted_f1", m.weighted_f1, 0.3);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![1, 2, 0], vec![2, 2, 0]]
        );
    }

    // Label "c" is predicted but never gold; label "d" is in `labels` but in
    // neither column, so sklearn's default label set is {0,1,2}. From
    // scikit-learn 1.9.1:
    //   y_true = [0,0,1,1,1,0,1,0]; y_pred = [0,2,1,1,2,0,0,0]
    //   accuracy_score(y_true, y_pred)
    //   precision_recall_fscore_support(y_true, y_pred, labels=[0,1,2,3], zero_division=0)
    //   f1_score / precision_score / recall_score(y_true, y_pred, average="macro"|"weighted", zero_division=0)
    //   confusion_matrix(y_true, y_pred, labels=[0,1,2,3])
    #[test]
    fn sklearn_class_predicted_but_absent_from_gold() {
        let gold = known(&[0, 0, 1, 1, 1, 0, 1, 0]);
        let pred = [0, 2, 1, 1, 2, 0, 0, 0];
        let m = classification_metrics(&gold, &pred, &labels(&["a", "b", "c", "d"])).unwrap();
        assert_eq!((m.n, m.correct), (8, 5));
        assert_close("accuracy", m.accuracy, 0.625);
        assert_class(&m.per_class[0], 0.75, 0.75, 0.75, 4);
        assert_class(&m.per_class[1], 1.0, 0.5, 0.6666666666666666, 4);
        assert_class(&m.per_class[2], 0.0, 0.0, 0.0, 0);
        assert_class(&m.per_class[3], 0.0, 0.0, 0.0, 0);
        assert_eq!((m.per_class[2].predicted, m.per_class[3].predicted), (2, 0));
        assert_close("macro_f1", m.macro_f1, 0.47222222222222215);
        assert_close("macro_precision", m.macro_precision, 0.5833333333333334);
        assert_close("macro_recall", m.macro_recall, 0.4166666666666667);
        assert_close("weighted_f1", m.weighted_f1, 0.7083333333333333);
        let want = vec![vec![3, 0, 1, 0], vec![1, 2, 1, 0], vec![0; 4], vec![0; 4]];
        assert_eq!(m.confusion, want);
    }

    // Rows 1 and 4 have unknown gold. Accuracy counts them as wrong (sklearn
    // with -1 as their gold, which no prediction matches); everything else is
    // sklearn on the 7 known rows. From scikit-learn 1.9.1:
    //   accuracy_score([0,-1,1,2,-1,2,1,0,2], [0,1,1,2,0,1,1,2,2])
    //   y_true = [0,1,2,2,1,0,2]; y_pred = [0,1,2,1,1,2,2]
    //   precision_recall_fscore_support(y_true, y_pred, labels=[0,1,2], zero_division=0)
    //   f1_score / precision_score / recall_score(y_true, y_pred, average="macro"|"weighted", zero_division=0)
    //   confusion_matrix(y_true, y_pred, labels=[0,1,2])
    #[test]
    fn sklearn_unknown_gold_labels() {
        let gold = [
            Some(0),
            None,
            Some(1),
            Some(2),
            None,
            Some(2),
            Some(1),
            Some(0),
            Some(2),
        ];
        let pred = [0, 1, 1, 2, 0, 1, 1, 2, 2];
        let m = classification_metrics(&gold, &pred, &labels(&["a", "b", "c"])).unwrap();
        assert_eq!((m.n, m.correct, m.unknown_gold), (9, 5, 2));
        assert_close("accuracy", m.accuracy, 0.5555555555555556);
        assert_class(&m.per_class[0], 1.0, 0.5, 0.6666666666666666, 2);
        assert_class(&m.per_class[1], 0.6666666666666666, 1.0, 0.8, 2);
        assert_class(
            &m.per_class[2],
            0.6666666666666666,
            0.6666666666666666,
            0.6666666666666666,
            3,
        );
        assert_close("macro_f1", m.macro_f1, 0.7111111111111111);
        assert_close("macro_precision", m.macro_precision, 0.7777777777777777);
        assert_close("macro_recall", m.macro_recall, 0.7222222222222222);
        assert_close("weighted_f1", m.weighted_f1, 0.7047619047619048);
        assert_eq!(
            m.confusion,
            vec![vec![1, 0, 1], vec![0, 2, 0], vec![0, 1, 2]]
        );
    }

    #[test]
    fn empty_input_is_all_zero() {
        let m = classification_metrics(&[], &[], &labels(&["a", "b"])).unwrap();
        assert_eq!((m.n, m.correct, m.unknown_gold), (0, 0, 0));
        assert_eq!(m.accuracy, 0.0);
        assert_eq!((m.macro_f1, m.weighted_f1), (0.0, 0.0));
        assert_eq!(m.per_class.len(), 2);
        assert_eq!(m.confusion, vec![vec![0, 0], vec![0, 0]]);
    }

    #[test]
    fn empty_labels_and_input_is_all_zero() {
        let m = classification_metrics(&[], &[], &[]).unwrap();
        assert_eq!(m.n, 0);
        assert!(m.per_class.is_empty() && m.confusion.is_empty());
    }

    #[test]
    fn all_gold_unknown_scores_zero_without_nan() {
        let m = classification_metrics(&[None, None], &[0, 1], &labels(&["a", "b"])).unwrap();
        assert_eq!((m.n, m.correct, m.unknown_gold), (2, 0, 2));
        assert_eq!((m.accuracy, m.macro_f1, m.weighted_f1), (0.0, 0.0, 0.0));
        // Predictions on unknown-gold rows do not count as "predicted".
        assert!(m.per_class.iter().all(|c| c.predicted == 0));
    }

    #[test]
    fn perfect_predictions_score_one() {
        let gold = known(&[0, 1, 2, 1]);
        let m = classification_metrics(&gold, &[0, 1, 2, 1], &labels(&["a", "b", "c"])).unwrap();
        assert_eq!(m.accuracy, 1.0);
        assert_eq!((m.macro_f1, m.weighted_f1), (1.0, 1.0));
        assert_eq!((m.macro_precision, m.macro_recall), (1.0, 1.0));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let err = classification_metrics(&[Some(0)], &[], &labels(&["a"])).unwrap_err();
        assert_eq!(
            err,
            MetricsError::LengthMismatch {
                gold: 1,
                predicted: 0
            }
        );
    }

    #[test]
    fn out_of_range_indices_are_errors() {
        let l = labels(&["a", "b"]);
        let err = classification_metrics(&[Some(2)], &[0], &l).unwrap_err();
        assert!(matches!(
            err,
            MetricsError::LabelOutOfRange {
                which: "gold",
                index: 2,
                ..
            }
        ));
        let err = classification_metrics(&[None], &[5], &l).unwrap_err();
        assert!(matches!(
            err,
            MetricsError::LabelOutOfRange {
                which: "predicted",
                row: 0,
                ..
            }
        ));
    }

    #[test]
    fn serde_round_trip() {
        let gold = [Some(0), None, Some(1)];
        let m = classification_metrics(&gold, &[0, 0, 0], &labels(&["a", "b"])).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: ClassificationMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    fn rows() -> impl Strategy<Value = (usize, Vec<(Option<usize>, usize)>)> {
        (1usize..6).prop_flat_map(|k| {
            let row = (prop::option::weighted(0.9, 0..k), 0..k);
            (Just(k), prop::collection::vec(row, 0..200))
        })
    }

    fn run(k: usize, rows: &[(Option<usize>, usize)]) -> ClassificationMetrics {
        let names: Vec<String> = (0..k).map(|i| format!("c{i}")).collect();
        let (gold, pred): (Vec<_>, Vec<_>) = rows.iter().copied().unzip();
        classification_metrics(&gold, &pred, &names).unwrap()
    }

    proptest! {
        #[test]
        fn counts_are_consistent((k, rows) in rows()) {
            let m = run(k, &rows);
            let known = m.n - m.unknown_gold;
            let total: usize = m.confusion.iter().flatten().sum();
            let trace: usize = (0..k).map(|i| m.confusion[i][i]).sum();
            prop_assert_eq!(total, known);
            prop_assert_eq!(trace, m.correct);
            prop_assert_eq!(m.per_class.iter().map(|c| c.support).sum::<usize>(), known);
            prop_assert_eq!(m.per_class.iter().map(|c| c.predicted).sum::<usize>(), known);
        }

        #[test]
        fn ratios_are_finite_and_in_unit_interval((k, rows) in rows()) {
            let m = run(k, &rows);
            let unit = |x: f64| x.is_finite() && (0.0..=1.0).contains(&x);
            prop_assert!(unit(m.accuracy) && unit(m.macro_f1) && unit(m.weighted_f1));
            prop_assert!(unit(m.macro_precision) && unit(m.macro_recall));
            for c in &m.per_class {
                prop_assert!(unit(c.precision) && unit(c.recall) && unit(c.f1));
            }
        }

        #[test]
        fn unseen_labels_do_not_change_macro_averages((k, rows) in rows()) {
            // Appending a label nobody uses must leave every average as it was:
            // the macro set is the union of gold and predicted labels.
            let a = run(k, &rows);
            let b = run(k + 1, &rows);
            prop_assert_eq!(
                (a.macro_f1, a.macro_precision, a.macro_recall, a.weighted_f1, a.accuracy),
                (b.macro_f1, b.macro_precision, b.macro_recall, b.weighted_f1, b.accuracy)
            );
        }
    }
}
