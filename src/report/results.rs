//! The results document: [`EvalResults`], its versioned on-disk form `results.json`, and the
//! exporter that writes it ([`write_results`]) and the reader that checks it
//! ([`read_results`]).
//!
//! Versioning: [`SCHEMA_VERSION`] is bumped whenever a field is renamed, removed or changes
//! meaning; adding a field does not bump it (readers ignore fields they do not know).
//! [`read_results`] reads only its own version and says so when it meets another.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::environment::Environment;
use super::{output_path, write_atomic, ReportError};
use crate::metrics::{ClassificationMetrics, LatencySummary, ReliablePercentiles, Throughput};
use crate::models::ModelInfo;

/// Version of the `results.json` layout written and read by this build.
pub const SCHEMA_VERSION: u32 = 1;

/// File name [`write_results`] writes in the output folder.
pub const RESULTS_FILE: &str = "results.json";

/// [`EvalResults::kind`] of an evaluation run.
pub const KIND_EVAL: &str = "eval";

/// [`LatencyReport::scenario`] of one-item-at-a-time timing (MLPerf's SingleStream).
pub const SCENARIO_SINGLE_STREAM: &str = "single-stream";

/// What a single-stream latency sample covers, stored in [`LatencyReport::includes`].
pub const LATENCY_INCLUDES: &str = "tokenization + forward + softmax";

/// Everything one `taskbench eval` run found, as written to `results.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalResults {
    pub schema_version: u32,
    /// [`KIND_EVAL`].
    pub kind: String,
    /// When the run finished, RFC 3339 in UTC ([`created_at_now`]).
    pub created_at: String,
    pub model: ModelInfo,
    pub dataset: DatasetInfo,
    /// Classification quality; absent for `--task generate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<ClassificationMetrics>,
    /// Single-stream latency; `None` when that pass was not run.
    pub latency: Option<LatencyReport>,
    /// The offline (batched) pass over every evaluated item.
    pub throughput: Throughput,
    pub load_time_s: f64,
    /// High-water mark of resident memory ([`super::peak_rss_bytes`]); `None` off Linux.
    pub peak_rss_bytes: Option<u64>,
    pub settings: Settings,
    pub environment: Environment,
    /// Generative models: task, prompt, chat template, invalid answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompting: Option<PromptingInfo>,
    /// Generative models: time to first token, per output token, tokens/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationReport>,
    /// `--task generate`: the scorer's summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring: Option<ScoringReport>,
    /// What a query costs, in the unit local and API rows share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostReport>,
    /// Hosted-API runs: requests, cache hits, failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiReport>,
}

/// How a hosted-API run went, request by request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReport {
    pub provider: String,
    pub base_url: String,
    pub concurrency: usize,
    pub streamed: bool,
    /// Requests that reached the network, retries included.
    pub requests_sent: u64,
    pub answered: usize,
    /// Answers read from the response cache (no request, no cost, no latency sample).
    pub from_cache: usize,
    /// Items that still failed after the retries; each carries its error in predictions.
    pub failed: usize,
    /// Items not sent because their worst-case cost would have passed --max-cost.
    pub not_sent_max_cost: usize,
    /// Items not sent because the run was interrupted.
    pub not_sent_cancelled: usize,
    pub cache_errors: usize,
    /// Classification: where the label probabilities come from; `None` for free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<ProbabilitySource>,
    /// With log-probabilities asked for: answers that came back without them, whose
    /// probabilities are one-hot on the parsed label instead.
    #[serde(default)]
    pub logprobs_missing: usize,
}

/// Where a hosted model's label probabilities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbabilitySource {
    /// The answer's per-token log-probabilities (`prompt::label_probs`).
    Logprobs,
    /// One-hot on the label the answer's text parses to (no log-probabilities asked for:
    /// Anthropic, or `--no-logprobs`).
    ParsedText,
}

/// $ per 1,000 queries and what the figure rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostReport {
    pub usd_per_1000_queries: f64,
    /// In words: the machine price, throughput and utilisation, or the token prices.
    pub basis: String,
    pub hourly_usd: Option<f64>,
    pub items_per_s: Option<f64>,
    pub utilisation: Option<f64>,
}

/// The data set as evaluated: which file, which rows, and how its labels met the model's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub path: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
    /// `csv`, `tsv`, `jsonl`, ...
    pub format: String,
    pub text_col: String,
    pub label_col: Option<String>,
    pub rows_in_file: usize,
    pub rows_evaluated: usize,
    /// The `--limit` asked for, if any.
    pub limit: Option<usize>,
    /// Seed of the row sample.
    pub seed: u64,
    pub label_matches: Vec<LabelMatchInfo>,
    /// Evaluated rows whose gold label the model cannot emit (scored as errors).
    pub unknown_label_rows: usize,
    /// Items cut to the model's token limit.
    pub truncated_items: usize,
    /// Tokens over all evaluated items, after truncation.
    pub tokens_total: usize,
}

/// How one data-set label was matched to a model label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelMatchInfo {
    pub dataset_label: String,
    pub model_label: Option<String>,
    /// `exact`, `normalized`, `mapped` or `unknown`.
    pub how: String,
}

/// Per-item latency of the single-stream pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// [`SCENARIO_SINGLE_STREAM`].
    pub scenario: String,
    pub summary: LatencySummary,
    /// Which percentiles rest on enough samples (MLPerf LoadGen's early-stopping counts).
    pub reliable: ReliablePercentiles,
    /// Items run and discarded before timing started.
    pub warmup_items: usize,
    /// [`LATENCY_INCLUDES`].
    pub includes: String,
}

impl LatencyReport {
    /// A single-stream report whose `reliable` flags are derived from `summary`, so the two
    /// cannot disagree.
    pub fn single_stream(summary: LatencySummary, warmup_items: usize) -> Self {
        LatencyReport {
            scenario: SCENARIO_SINGLE_STREAM.to_string(),
            reliable: summary.reliable_percentiles(),
            summary,
            warmup_items,
            includes: LATENCY_INCLUDES.to_string(),
        }
    }
}

/// The knobs the run used.
/// How a generative run was set up, kept in `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptingInfo {
    /// `classify` or `generate`.
    pub task: String,
    /// `score` or `generate` (classification only).
    pub method: Option<String>,
    pub prompt_template: Option<String>,
    pub shots: usize,
    pub chat_template: bool,
    pub max_tokens: usize,
    pub temperature: f32,
    /// Answers that matched no label (`--method generate`); counted as wrong.
    pub invalid_outputs: usize,
    /// Prompt tokens dropped from the left to fit the context, over all items.
    pub truncated_prompt_tokens: usize,
}

/// Generation speed over the items, from client-side timings (as vLLM's benchmark defines
/// them): time to first token, time per output token = (latency - TTFT) / (tokens - 1),
/// and every inter-token gap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    pub ttft: Option<LatencySummary>,
    pub tpot: Option<LatencySummary>,
    pub itl: Option<LatencySummary>,
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Prompt tokens / seconds to the first token, over all items.
    pub prefill_tokens_per_s: f64,
    /// Output tokens after the first / seconds after the first token, over all items.
    pub decode_tokens_per_s: f64,
}

/// `--task generate` quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoringReport {
    pub scorer: String,
    pub items: usize,
    pub passed: usize,
    /// Items the scorer could not score (an unparseable judge answer, a bad pattern).
    pub errors: usize,
    pub mean_score: Option<f64>,
    pub pass_rate: Option<f64>,
}

impl ScoringReport {
    pub fn new(scorer: &str, summary: &crate::metrics::scoring::ScoreSummary) -> Self {
        ScoringReport {
            scorer: scorer.to_string(),
            items: summary.items,
            passed: summary.passed,
            errors: summary.errors,
            mean_score: summary.mean_score(),
            pass_rate: summary.pass_rate(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub device: String,
    pub threads: usize,
    pub max_batch_tokens: usize,
    pub max_batch_items: usize,
    pub seed: u64,
    /// Whether the single-stream latency pass ran.
    pub single_stream: bool,
}

/// The current time for [`EvalResults::created_at`]: RFC 3339, UTC, whole seconds
/// (`2025-06-01T12:34:56Z`).
pub fn created_at_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `dir/results.json` (pretty-printed, trailing newline) atomically, creating `dir` if
/// needed, and returns its path.
///
/// Refuses a document with a NaN or infinite number: JSON would store it as `null` and
/// [`read_results`] could not read the file back.
pub fn write_results(dir: &Path, results: &EvalResults) -> Result<PathBuf, ReportError> {
    let path = output_path(dir, RESULTS_FILE)?;
    if let Some((field, value)) = first_non_finite(results) {
        return Err(ReportError::NonFinite { path, field, value });
    }
    write_atomic(&path, |w| {
        serde_json::to_writer_pretty(&mut *w, results)?;
        w.write_all(b"\n")
    })?;
    Ok(path)
}

/// Reads a `results.json`, refusing any `schema_version` but [`SCHEMA_VERSION`] and any kind
/// but [`KIND_EVAL`] before looking at the rest. JSON errors name the file and keep serde's
/// line and column.
pub fn read_results(path: &Path) -> Result<EvalResults, ReportError> {
    let text = fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    check_header(path, &text)?;
    serde_json::from_str(&text).map_err(|source| parse_error(path, source))
}

/// The two fields read before the rest, typed loosely so that any value can be reported.
#[derive(Deserialize)]
struct Header {
    schema_version: Option<serde_json::Value>,
    kind: Option<serde_json::Value>,
}

fn check_header(path: &Path, text: &str) -> Result<(), ReportError> {
    let header: Header = serde_json::from_str(text).map_err(|e| parse_error(path, e))?;
    let version = header
        .schema_version
        .ok_or_else(|| ReportError::MissingSchemaVersion {
            path: path.to_path_buf(),
        })?;
    if version.as_u64() != Some(u64::from(SCHEMA_VERSION)) {
        return Err(ReportError::SchemaVersion {
            path: path.to_path_buf(),
            found: version.to_string(),
            expected: SCHEMA_VERSION,
        });
    }
    match header.kind {
        Some(serde_json::Value::String(kind)) if kind != KIND_EVAL => Err(ReportError::Kind {
            path: path.to_path_buf(),
            found: kind,
            expected: KIND_EVAL,
        }),
        // A missing or non-string kind is left to the full parse, which names the field.
        _ => Ok(()),
    }
}

fn parse_error(path: &Path, source: serde_json::Error) -> ReportError {
    ReportError::Parse {
        path: path.to_path_buf(),
        source,
    }
}

/// The first `f64` of the document that JSON cannot represent, with its field path.
fn first_non_finite(r: &EvalResults) -> Option<(String, f64)> {
    float_fields(r).into_iter().find(|(_, v)| !v.is_finite())
}

/// Every `f64` in the document, named as in the JSON.
fn float_fields(r: &EvalResults) -> Vec<(String, f64)> {
    let t = &r.throughput;
    let mut fields: Vec<(String, f64)> = [
        ("throughput.seconds", t.seconds),
        ("throughput.items_per_s", t.items_per_s),
        ("throughput.tokens_per_s", t.tokens_per_s),
        ("load_time_s", r.load_time_s),
    ]
    .into_iter()
    .map(|(name, v)| (name.to_string(), v))
    .collect();
    if let Some(m) = &r.metrics {
        fields.extend(
            [
                ("metrics.accuracy", m.accuracy),
                ("metrics.macro_f1", m.macro_f1),
                ("metrics.weighted_f1", m.weighted_f1),
                ("metrics.macro_precision", m.macro_precision),
                ("metrics.macro_recall", m.macro_recall),
            ]
            .map(|(name, v)| (name.to_string(), v)),
        );
        for (i, c) in m.per_class.iter().enumerate() {
            for (name, v) in [
                ("precision", c.precision),
                ("recall", c.recall),
                ("f1", c.f1),
            ] {
                fields.push((format!("metrics.per_class[{i}].{name}"), v));
            }
        }
    }
    if let Some(lat) = &r.latency {
        fields.extend(latency_fields(&lat.summary));
    }
    fields
}

fn latency_fields(s: &LatencySummary) -> impl Iterator<Item = (String, f64)> {
    [
        ("mean_ms", s.mean_ms),
        ("min_ms", s.min_ms),
        ("p50_ms", s.p50_ms),
        ("p90_ms", s.p90_ms),
        ("p95_ms", s.p95_ms),
        ("p99_ms", s.p99_ms),
        ("max_ms", s.max_ms),
        ("stddev_ms", s.stddev_ms),
    ]
    .into_iter()
    .map(|(name, v)| (format!("latency.summary.{name}"), v))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::metrics::{classification_metrics, latency_summary, throughput};

    fn s(x: &str) -> String {
        x.to_string()
    }

    /// A small but complete document shared with the table tests.
    pub(crate) fn sample_results() -> EvalResults {
        let labels = vec![s("negative"), s("neutral"), s("positive")];
        let gold = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2].map(Some);
        let pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 2];
        let latencies: Vec<f64> = (1..=100).map(|i| 2.0 + f64::from(i) * 0.05).collect();
        EvalResults {
            schema_version: SCHEMA_VERSION,
            kind: s(KIND_EVAL),
            created_at: s("2025-06-01T12:00:00Z"),
            model: sample_model(),
            dataset: sample_dataset(&labels),
            metrics: Some(classification_metrics(&gold, &pred, &labels).unwrap()),
            latency: Some(LatencyReport::single_stream(
                latency_summary(&latencies).unwrap(),
                8,
            )),
            throughput: throughput(10, 412, 0.25),
            load_time_s: 0.8421,
            peak_rss_bytes: Some(512 * 1024 * 1024 + 300 * 1024),
            settings: Settings {
                device: s("cpu"),
                threads: 16,
                max_batch_tokens: 8192,
                max_batch_items: 64,
                seed: 42,
                single_stream: true,
            },
            environment: sample_environment(),
            prompting: None,
            generation: None,
            scoring: None,
            cost: None,
            api: None,
        }
    }

    fn sample_model() -> ModelInfo {
        ModelInfo {
            precision: None,
            name: s("models/minilm-sentiment"),
            path: s("/data/models/minilm-sentiment"),
            backend: s("candle"),
            architecture: s("bert"),
            head: s("pooler-classifier"),
            pooling: s("cls"),
            num_labels: 3,
            max_tokens: 512,
            parameters: 22_713_987,
            weights_sha256: s("ab".repeat(32).as_str()),
            device: s("cpu"),
        }
    }

    fn sample_dataset(labels: &[String]) -> DatasetInfo {
        DatasetInfo {
            path: s("datasets/reviews/test.csv"),
            sha256: s("cd".repeat(32).as_str()),
            format: s("csv"),
            text_col: s("text"),
            label_col: Some(s("label")),
            rows_in_file: 5000,
            rows_evaluated: 10,
            limit: Some(10),
            seed: 42,
            label_matches: labels
                .iter()
                .map(|l| LabelMatchInfo {
                    dataset_label: l.clone(),
                    model_label: Some(l.clone()),
                    how: s("exact"),
                })
                .collect(),
            unknown_label_rows: 0,
            truncated_items: 1,
            tokens_total: 412,
        }
    }

    fn sample_environment() -> Environment {
        Environment {
            cpu_model: s("Example CPU @ 3.0GHz"),
            cpu_features: vec![s("sse4.2"), s("avx"), s("avx2"), s("fma")],
            logical_cores: 16,
            physical_cores: Some(8),
            memory_bytes: 64 << 30,
            os: s("Linux (Ubuntu 24.04)"),
            kernel: Some(s("6.8.0")),
            taskbench_version: s("0.1.0"),
            git_commit: None,
            git_dirty: None,
            candle_version: s("0.11.1"),
            rustc_version: Some(s("rustc 1.95.0")),
            target: s("x86_64-unknown-linux-gnu"),
        }
    }

    fn to_value(r: &EvalResults) -> serde_json::Value {
        serde_json::to_value(r).unwrap()
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let results = sample_results();
        let path = write_results(dir.path(), &results).unwrap();
        assert_eq!(path, dir.path().join(RESULTS_FILE));
        let back = read_results(&path).unwrap();
        assert_eq!(to_value(&back), to_value(&results));
    }

    #[test]
    fn written_file_is_pretty_and_starts_with_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_results(dir.path(), &sample_results()).unwrap();
        let text = fs::read_to_string(path).unwrap();
        assert!(text.starts_with("{\n  \"schema_version\": 1,\n  \"kind\": \"eval\""));
        assert!(text.ends_with("}\n"));
    }

    #[test]
    fn write_creates_the_folder_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("runs/one");
        write_results(&out, &sample_results()).unwrap();
        write_results(&out, &sample_results()).unwrap();
        let names: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [RESULTS_FILE]);
    }

    fn write_value(dir: &Path, v: &serde_json::Value) -> PathBuf {
        let path = dir.join(RESULTS_FILE);
        fs::write(&path, serde_json::to_string_pretty(v).unwrap()).unwrap();
        path
    }

    #[test]
    fn other_schema_version_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = to_value(&sample_results());
        v["schema_version"] = 2.into();
        // Even a file that would not otherwise parse is refused for its version first.
        v["metrics"] = serde_json::Value::Null;
        let err = read_results(&write_value(dir.path(), &v)).unwrap_err();
        assert!(matches!(
            err,
            ReportError::SchemaVersion { expected: 1, .. }
        ));
        let msg = err.to_string();
        assert!(
            msg.ends_with("results.json has schema_version 2; this taskbench reads version 1"),
            "{msg}"
        );
        assert!(msg.starts_with(&dir.path().display().to_string()), "{msg}");
    }

    #[test]
    fn missing_or_odd_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = to_value(&sample_results());
        v["schema_version"] = "1".into();
        let err = read_results(&write_value(dir.path(), &v)).unwrap_err();
        assert!(err.to_string().contains("schema_version \"1\""), "{err}");
        v.as_object_mut().unwrap().remove("schema_version");
        let err = read_results(&write_value(dir.path(), &v)).unwrap_err();
        assert!(matches!(err, ReportError::MissingSchemaVersion { .. }));
    }

    #[test]
    fn other_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = to_value(&sample_results());
        v["kind"] = "compare".into();
        let err = read_results(&write_value(dir.path(), &v)).unwrap_err();
        assert!(err.to_string().contains("\"compare\""), "{err}");
    }

    #[test]
    fn json_errors_name_the_file_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RESULTS_FILE);
        fs::write(
            &path,
            "{\"schema_version\": 1, \"kind\": \"eval\",\n \"model\": 7}",
        )
        .unwrap();
        let err = read_results(&path).unwrap_err();
        assert!(err.to_string().contains(RESULTS_FILE), "{err}");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("line 2"), "{cause}");
        fs::write(&path, "not json").unwrap();
        assert!(matches!(
            read_results(&path),
            Err(ReportError::Parse { .. })
        ));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_results(&dir.path().join("nope.json")).unwrap_err();
        assert!(matches!(err, ReportError::Read { .. }));
        assert!(err.to_string().contains("nope.json"));
    }

    #[test]
    fn non_finite_numbers_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = sample_results();
        r.metrics.as_mut().unwrap().per_class[1].f1 = f64::NAN;
        let err = write_results(dir.path(), &r).unwrap_err();
        assert!(err.to_string().contains("metrics.per_class[1].f1"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn created_at_is_rfc3339_utc() {
        let t = created_at_now();
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
        assert!(t.ends_with('Z'), "{t}");
    }
}
