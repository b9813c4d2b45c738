//! Pure evaluation metrics: the numbers that go into `results.json`.
//!
//! This module owns every statistic taskbench reports about a run and
//! nothing else: no I/O, no model code, no clocks. Each function takes plain
//! slices and returns a plain, serialisable struct, so a result can be
//! recomputed from the stored predictions and timings alone.
//!
//! - [`classification`]: accuracy, per-class precision / recall / F1, macro and
//!   weighted averages and the confusion matrix, following scikit-learn's
//!   `classification_report` with `zero_division=0`.
//! - [`latency`]: latency percentiles as MLPerf LoadGen computes them (no
//!   interpolation), LoadGen's early-stopping minimum sample counts, and
//!   throughput.
//!
//! Invariants shared by every result struct here:
//! - every `f64` field is finite (never NaN or infinite), because
//!   `serde_json` writes those as `null` and the file could not be read back;
//! - ratios (accuracy, precision, recall, F1) lie in `[0, 1]`.

pub mod classification;
pub mod latency;
pub mod scoring;
pub mod stats;

pub use classification::{classification_metrics, ClassStats, ClassificationMetrics};
pub use latency::{
    latency_summary, min_queries_for_percentile, percentile, throughput, LatencySummary,
    ReliablePercentiles, Throughput,
};

/// Why a metric could not be computed from its inputs.
///
/// These are caller mistakes (inputs that do not describe one evaluation),
/// reported as errors rather than panics so the CLI can say what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// `gold` and `predicted` must hold one entry per evaluated example.
    #[error("gold has {gold} entries but predicted has {predicted}")]
    LengthMismatch { gold: usize, predicted: usize },
    /// A class index does not name one of the `labels`.
    #[error("{which} label index {index} at row {row} is out of range for {n_labels} labels")]
    LabelOutOfRange {
        which: &'static str,
        row: usize,
        index: usize,
        n_labels: usize,
    },
}
