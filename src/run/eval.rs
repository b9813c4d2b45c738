//! `taskbench eval`: a classifier on a labelled file, with quality, latency and throughput.
//!
//! Two passes over the same items:
//! - offline: every item at once, batched by token budget and sorted by length; its
//!   predictions are the ones reported, its wall time gives throughput;
//! - single-stream (MLPerf's scenario): one item at a time after a warm-up, each timed from
//!   raw text to probabilities (tokenization included, as a service would see it).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use super::generative::GenerativeOptions;
use crate::cost::{local_cost, Usd, Utilisation};
use crate::data::{
    self, match_labels, stratified_sample, unknown_labels_message, Dataset, LoadOptions,
};
use crate::metrics::{classification_metrics, latency_summary, throughput};
use crate::models::encoder::Precision;
use crate::models::{Classifier, TokenizedText};
use crate::report::environment::{peak_rss_bytes, Environment};
use crate::report::predictions::Prediction;
use crate::report::results::CostReport;
use crate::report::results::{
    DatasetInfo, EvalResults, LabelMatchInfo, LatencyReport, Settings, SCHEMA_VERSION,
};
use crate::runtime::batching::token_budget_batches;
use crate::runtime::DeviceSpec;
use crate::train::softmax::argmax;

/// `--unknown-labels`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnknownLabels {
    /// Stop and list the labels the model does not know.
    Fail,
    /// Count those rows as wrong answers.
    Error,
}

pub struct EvalOptions {
    pub model: String,
    pub data: PathBuf,
    pub load: LoadOptions,
    pub label_map: Option<PathBuf>,
    pub unknown_labels: UnknownLabels,
    pub limit: Option<usize>,
    pub seed: u64,
    pub device: DeviceSpec,
    pub threads: usize,
    /// The encoder's matrix-product precision.
    pub precision: Precision,
    pub max_batch_tokens: usize,
    pub max_batch_items: usize,
    pub single_stream: bool,
    pub warmup: usize,
    pub progress: bool,
    /// Settings that only a generative model reads.
    pub generative: GenerativeOptions,
    /// `--hourly-cost`: the machine's price, for $ per 1,000 queries.
    pub hourly_cost: Option<Usd>,
    pub utilisation: Utilisation,
    /// Settings that only a hosted-API model reads.
    pub remote: super::remote::RemoteOptions,
}

pub struct EvalOutcome {
    pub results: EvalResults,
    pub predictions: Vec<Prediction>,
}

pub fn eval(opts: &EvalOptions) -> anyhow::Result<EvalOutcome> {
    let mut outcome = if crate::models::remote::is_remote_spec(&opts.model) {
        super::remote::eval_remote(opts, &opts.generative, &opts.remote)?
    } else if crate::models::causal::is_causal_lm(&opts.model) {
        super::generative::eval_generative(opts, &opts.generative)?
    } else {
        eval_encoder(opts)?
    };
    if let Some(hourly) = opts.hourly_cost {
        outcome.results.cost = Some(local_cost_report(
            hourly,
            opts.utilisation,
            &outcome.results,
        )?);
    }
    Ok(outcome)
}

/// `--hourly-cost`: the machine's price over the measured throughput, in $ per 1,000 queries
/// (the unit API rows use).
fn local_cost_report(
    hourly: Usd,
    utilisation: Utilisation,
    results: &EvalResults,
) -> anyhow::Result<CostReport> {
    let items_per_s = results.throughput.items_per_s;
    let cost = local_cost(hourly, items_per_s, utilisation)?;
    Ok(CostReport {
        usd_per_1000_queries: cost.per_thousand.dollars(),
        basis: format!(
            "{cost}, from the {} pass's throughput",
            if results.prompting.is_some() {
                "one-at-a-time"
            } else {
                "offline (batched)"
            }
        ),
        hourly_usd: Some(hourly.dollars()),
        items_per_s: Some(items_per_s),
        utilisation: Some(utilisation.fraction()),
    })
}

fn eval_encoder(opts: &EvalOptions) -> anyhow::Result<EvalOutcome> {
    let dataset = data::load(&opts.data, &opts.load)?;
    let loaded = super::load_encoder(&opts.model, &opts.device, opts.precision)?;
    loaded.encoder.require_head()?;
    let model: &dyn Classifier = &loaded.encoder;
    let labels = model.labels().to_vec();

    let matched = match_labels(&dataset.labels(), &labels, opts.label_map.as_deref())?;
    let unknown = matched.unknown(&dataset.examples);
    if !unknown.is_empty() && opts.unknown_labels == UnknownLabels::Fail {
        bail!(
            "{}",
            unknown_labels_message(&dataset.path, &unknown, &labels)
        );
    }
    let examples = match opts.limit {
        Some(n) => stratified_sample(&dataset.examples, n, opts.seed),
        None => dataset.examples.clone(),
    };
    if examples.is_empty() {
        bail!("{}: no rows to evaluate", dataset.path.display());
    }
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let gold: Vec<Option<usize>> = examples
        .iter()
        .map(|e| e.label.as_deref().and_then(|l| matched.model_index(l)))
        .collect();

    let offline = run_offline(model, &texts, opts)?;
    let latencies = if opts.single_stream {
        Some(run_single_stream(model, &texts, opts)?)
    } else {
        None
    };

    let predicted: Vec<usize> = offline.probabilities.iter().map(|p| argmax(p)).collect();
    let metrics = classification_metrics(&gold, &predicted, &labels)?;
    let tokens_total: usize = offline.tokenized.iter().map(TokenizedText::len).sum();
    let predictions = examples
        .iter()
        .enumerate()
        .map(|(i, e)| Prediction {
            id: e.id.clone(),
            text: e.text.clone(),
            gold: e.label.clone(),
            predicted: labels[predicted[i]].clone(),
            correct: e.label.as_ref().map(|_| gold[i] == Some(predicted[i])),
            probabilities: labels
                .iter()
                .cloned()
                .zip(offline.probabilities[i].iter().copied())
                .collect(),
            latency_ms: latencies.as_ref().map(|l| l[i]),
            tokens: offline.tokenized[i].len(),
            truncated_from: offline.tokenized[i].truncated_from,
            output: None,
            score: None,
            error: None,
        })
        .collect();
    let latency = latencies
        .as_ref()
        .and_then(|l| latency_summary(l))
        .map(|summary| LatencyReport {
            scenario: "single-stream".into(),
            reliable: summary.reliable_percentiles(),
            summary,
            warmup_items: opts.warmup.min(texts.len()),
            includes: "tokenization + forward + softmax".into(),
        });
    let results = EvalResults {
        schema_version: SCHEMA_VERSION,
        kind: "eval".into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        model: model.info().clone(),
        dataset: dataset_info(
            &dataset,
            &matched,
            &examples,
            opts,
            &offline.tokenized,
            tokens_total,
        ),
        metrics: Some(metrics),
        latency,
        throughput: throughput(texts.len(), tokens_total, offline.seconds),
        load_time_s: loaded.load_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        settings: Settings {
            device: opts.device.to_string(),
            threads: opts.threads,
            max_batch_tokens: opts.max_batch_tokens,
            max_batch_items: opts.max_batch_items,
            seed: opts.seed,
            single_stream: opts.single_stream,
        },
        environment: Environment::detect(),
        prompting: None,
        generation: None,
        scoring: None,
        cost: None,
        api: None,
    };
    Ok(EvalOutcome {
        results,
        predictions,
    })
}

struct Offline {
    tokenized: Vec<TokenizedText>,
    probabilities: Vec<Vec<f32>>,
    seconds: f64,
}

/// All items, batched by token budget, results back in input order.
fn run_offline(
    model: &dyn Classifier,
    texts: &[&str],
    opts: &EvalOptions,
) -> anyhow::Result<Offline> {
    let start = Instant::now();
    let tokenized = model.tokenize(texts)?;
    let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
    let bar = super::progress(texts.len(), "offline", opts.progress);
    let mut probabilities = vec![Vec::new(); texts.len()];
    for batch in token_budget_batches(&lengths, opts.max_batch_tokens, opts.max_batch_items) {
        let items: Vec<&TokenizedText> = batch.indices.iter().map(|&i| &tokenized[i]).collect();
        for (i, probs) in batch.indices.iter().zip(model.classify(&items)?) {
            probabilities[*i] = probs;
        }
        bar.inc(batch.indices.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Offline {
        tokenized,
        probabilities,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One item at a time; returns each item's latency in ms, in input order.
fn run_single_stream(
    model: &dyn Classifier,
    texts: &[&str],
    opts: &EvalOptions,
) -> anyhow::Result<Vec<f64>> {
    for text in texts.iter().take(opts.warmup) {
        classify_one(model, text)?;
    }
    let bar = super::progress(texts.len(), "single-stream", opts.progress);
    let mut latencies = Vec::with_capacity(texts.len());
    for text in texts {
        let start = Instant::now();
        classify_one(model, text)?;
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(latencies)
}

fn classify_one(model: &dyn Classifier, text: &str) -> anyhow::Result<Vec<f32>> {
    let tokenized = model.tokenize(&[text])?;
    Ok(model.classify(&[&tokenized[0]])?.remove(0))
}

fn dataset_info(
    dataset: &Dataset,
    matched: &data::LabelMatch,
    examples: &[data::Example],
    opts: &EvalOptions,
    tokenized: &[TokenizedText],
    tokens_total: usize,
) -> DatasetInfo {
    let model_labels = matched.model_labels();
    let truncated = tokenized
        .iter()
        .filter(|t| t.truncated_from.is_some())
        .count();
    DatasetInfo {
        label_matches: matched
            .entries()
            .iter()
            .map(|entry| LabelMatchInfo {
                dataset_label: entry.dataset_label.clone(),
                model_label: entry.model_index.map(|i| model_labels[i].clone()),
                how: entry
                    .kind
                    .map_or("unknown".into(), |k| format!("{k:?}").to_lowercase()),
            })
            .collect(),
        unknown_label_rows: examples
            .iter()
            .filter(|e| {
                e.label
                    .as_deref()
                    .is_some_and(|l| matched.model_index(l).is_none())
            })
            .count(),
        ..dataset_summary(dataset, examples, opts, truncated, tokens_total)
    }
}

/// The data set part of the results without label matching (generative and API models take
/// the data set's own labels; encoders add their matching on top).
pub(super) fn dataset_summary(
    dataset: &Dataset,
    examples: &[data::Example],
    opts: &EvalOptions,
    truncated_items: usize,
    tokens_total: usize,
) -> DatasetInfo {
    DatasetInfo {
        path: dataset.path.display().to_string(),
        sha256: dataset.sha256.clone(),
        format: format!("{:?}", dataset.format).to_lowercase(),
        text_col: dataset.text_col.clone(),
        label_col: dataset.label_col.clone(),
        rows_in_file: dataset.examples.len(),
        rows_evaluated: examples.len(),
        limit: opts.limit,
        seed: opts.seed,
        label_matches: Vec::new(),
        unknown_label_rows: 0,
        truncated_items,
        tokens_total,
    }
}
