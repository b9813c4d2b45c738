//! `summary.json`: the verdict of a suite run and every figure behind it, for machines. The
//! Markdown and HTML reports render this document and nothing else.

use serde::{Deserialize, Serialize};

use crate::cost::cascade::CascadeCurve;
use crate::cost::mistakes::MistakeCost;
use crate::metrics::stats::{Interval, PairedComparison};
use crate::report::Environment;
use crate::suite::{ModelKind, Status};

/// Version of `summary.json`'s layout.
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub schema_version: u32,
    pub suite: String,
    pub description: Option<String>,
    pub created_at: String,
    pub test_data: String,
    pub goals: GoalsSummary,
    /// The decision in plain sentences, most important first.
    pub verdict: Vec<String>,
    /// The cheapest model meeting the floor and the SLO.
    pub recommended: Option<String>,
    /// The most accurate model (the reference of the paired comparisons).
    pub most_accurate: Option<String>,
    pub models: Vec<ModelSummary>,
    /// Models of the suite without results (skipped, failed).
    pub not_evaluated: Vec<NotEvaluated>,
    /// Every model against the most accurate one, on the items both answered.
    pub comparisons: Vec<Comparison>,
    pub break_even: Vec<BreakEvenRow>,
    pub cascade: Option<CascadeSummary>,
    pub errors: Option<ErrorAnalysis>,
    pub environment: Option<Environment>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoalsSummary {
    pub slo_latency_ms: Option<f64>,
    pub slo_percentile: u8,
    /// The accuracy floor as applied.
    pub accuracy_floor: Option<f64>,
    /// How the floor was set, in words.
    pub floor_basis: String,
    pub hourly_usd: Option<f64>,
    pub utilisation: f64,
    pub monthly_hosting_usd: Option<f64>,
    pub amortise_months: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub kind: ModelKind,
    pub status: Status,
    /// What was evaluated: the folder, file or API model.
    pub model: String,
    pub items: usize,
    pub accuracy: f64,
    /// Wilson score interval.
    pub accuracy_ci: Interval,
    pub macro_f1: f64,
    /// Percentile bootstrap over items (seeded).
    pub macro_f1_ci: Interval,
    /// Answers that matched no label, or requests that failed.
    pub invalid: usize,
    pub latency: Option<LatencyFigures>,
    pub items_per_s: f64,
    pub usd_per_1000: Option<f64>,
    pub cost_basis: String,
    pub training: Option<TrainingCost>,
    pub mistakes: Option<MistakeCost>,
    pub meets_floor: Option<bool>,
    pub meets_slo: Option<bool>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyFigures {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// At the SLO's percentile.
    pub at_slo_percentile_ms: f64,
    /// Enough samples for that percentile by MLPerf LoadGen's rule.
    pub reliable: bool,
    /// What a sample covers.
    pub includes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingCost {
    pub recipe: String,
    pub seconds: f64,
    /// At the suite's hourly machine price.
    pub usd: Option<f64>,
    pub items_per_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotEvaluated {
    pub name: String,
    pub kind: ModelKind,
    pub status: Status,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub model: String,
    pub reference: String,
    pub paired: PairedComparison,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakEvenRow {
    pub local: String,
    pub api: String,
    /// Queries a month from which self-hosting is cheaper; `None`: never.
    pub monthly_queries: Option<u128>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CascadeSummary {
    pub local: String,
    pub fallback: String,
    pub curve: CascadeCurve,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorAnalysis {
    /// The model whose confusions are listed (the recommended one, else the most accurate).
    pub model: String,
    pub labels: Vec<String>,
    /// Rows gold, columns predicted, over `labels`.
    pub confusion: Vec<Vec<usize>>,
    pub top_confusions: Vec<Confusion>,
    /// The pair compared item by item: a local model and the best API (or other model).
    pub pair: Option<Disagreements>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confusion {
    pub gold: String,
    pub predicted: String,
    pub count: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Disagreements {
    pub a: String,
    pub b: String,
    pub a_only_right: usize,
    pub b_only_right: usize,
    pub a_only_examples: Vec<ItemExample>,
    pub b_only_examples: Vec<ItemExample>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemExample {
    pub id: String,
    pub text: String,
    pub gold: String,
    pub a_predicted: String,
    pub b_predicted: String,
}
