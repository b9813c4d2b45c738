//! `taskbench eval` with a generative model (GGUF or HF causal LM): classification by label
//! scoring or by generating and parsing an answer, or open-ended generation scored against a
//! reference. Items run one at a time, as a chat service would see them, each timed from
//! prompt text to answer (time to first token and between tokens for generation).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use super::eval::EvalOptions;
use crate::data::{self, stratified_sample, LoadOptions};
use crate::metrics::scoring::{Judge, JudgeError, ScoreSummary, Scorer};
use crate::metrics::{classification_metrics, latency_summary, throughput};
use crate::models::causal::{CausalLm, Generation, Sampling};
use crate::models::Message;
use crate::prompt::labels::{parse_label, LabelMatch};
use crate::prompt::{select_examples, Example, LabelInfo, PromptTemplate};
use crate::report::environment::{peak_rss_bytes, Environment};
use crate::report::predictions::{Prediction, Probabilities};
use crate::report::results::{
    EvalResults, GenerationReport, LatencyReport, PromptingInfo, ScoringReport, Settings,
    SCHEMA_VERSION,
};

/// `--task`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Task {
    /// Pick one of the data set's labels for each text.
    Classify,
    /// Free text for each prompt, scored against the row's reference.
    Generate,
}

/// `--method`: how a generative model classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    /// Log-probability of each label after the prompt (the prompt computed once); a
    /// probability per label and never an invalid answer.
    Score,
    /// Generate, then map the text to a label (how API models are scored).
    Generate,
}

pub struct GenerativeOptions {
    pub task: Task,
    pub method: Method,
    /// A builtin name (`zero-shot`, `k-shot`) or a TOML template file.
    pub prompt_template: String,
    pub shots: Option<usize>,
    /// Labelled rows the k-shot examples are drawn from.
    pub examples: Option<PathBuf>,
    pub chat_template: Option<PathBuf>,
    pub no_chat_template: bool,
    pub max_tokens: Option<usize>,
    pub temperature: f32,
    pub scorer: Scorer,
    pub judge_model: Option<PathBuf>,
}

impl Default for GenerativeOptions {
    /// `taskbench eval`'s defaults.
    fn default() -> Self {
        GenerativeOptions {
            task: Task::Classify,
            method: Method::Score,
            prompt_template: "zero-shot".into(),
            shots: None,
            examples: None,
            chat_template: None,
            no_chat_template: false,
            max_tokens: None,
            temperature: 0.0,
            scorer: Scorer::Exact,
            judge_model: None,
        }
    }
}

pub fn eval_generative(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
) -> anyhow::Result<super::eval::EvalOutcome> {
    let load_start = Instant::now();
    let path = PathBuf::from(&opts.model);
    let mut lm = CausalLm::load(&path, gen.chat_template.as_deref())?;
    let weights = if path.is_dir() {
        None
    } else {
        Some(super::sha256_file(&path)?)
    };
    lm.info_mut().weights_sha256 = weights.unwrap_or_default();
    let load_seconds = load_start.elapsed().as_secs_f64();
    if !gen.no_chat_template && !lm.has_chat_template() {
        bail!(
            "{}: the model has no chat template; pass --chat-template FILE or --no-chat-template",
            path.display()
        );
    }
    match gen.task {
        Task::Classify => classify(opts, gen, &lm, load_seconds),
        Task::Generate => generate_task(opts, gen, &lm, load_seconds),
    }
}

/// One item's outcome, before it becomes a prediction line.
struct ItemRun {
    probabilities: Vec<f32>,
    predicted: Option<usize>,
    output: Option<String>,
    prompt_tokens: usize,
    truncated: usize,
    latency_s: f64,
    generation: Option<Generation>,
}

fn classify(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    lm: &CausalLm,
    load_seconds: f64,
) -> anyhow::Result<super::eval::EvalOutcome> {
    let ClassifySetup {
        dataset,
        labels,
        template,
        label_infos,
        examples,
        items,
    } = classify_setup(opts, gen)?;
    let max_tokens = max_tokens(gen);
    let answer_end = match gen.method {
        Method::Score => answer_end(lm, gen)?,
        Method::Generate => String::new(),
    };
    let bar = super::progress(items.len(), "generative", opts.progress);
    let start = Instant::now();
    let mut runs = Vec::with_capacity(items.len());
    for item in &items {
        let prompt = prompt_text(lm, gen, &template, &item.text, &label_infos, &examples)?;
        let run = match gen.method {
            Method::Score => score_item(lm, gen, &prompt, &labels, &answer_end)?,
            Method::Generate => generate_item(lm, &prompt, max_tokens, gen, opts.seed, &labels)?,
        };
        runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();

    // Unparseable answers get a class of their own: wrong for accuracy and, as in
    // scikit-learn's macro average over true and predicted labels, a class with F1 0.
    let invalid = runs.iter().filter(|r| r.predicted.is_none()).count();
    let mut metric_labels = labels.clone();
    if invalid > 0 {
        metric_labels.push(INVALID.to_string());
    }
    let gold: Vec<Option<usize>> = items
        .iter()
        .map(|e| {
            e.label
                .as_ref()
                .and_then(|l| labels.iter().position(|x| x == l))
        })
        .collect();
    let predicted: Vec<usize> = runs
        .iter()
        .map(|r| r.predicted.unwrap_or(labels.len()))
        .collect();
    let metrics = classification_metrics(&gold, &predicted, &metric_labels)?;
    let predictions = items
        .iter()
        .zip(&runs)
        .zip(&predicted)
        .map(|((e, r), &p)| Prediction {
            id: e.id.clone(),
            text: e.text.clone(),
            gold: e.label.clone(),
            predicted: metric_labels[p].clone(),
            correct: e.label.as_ref().map(|g| *g == metric_labels[p]),
            probabilities: Probabilities::from_labels(&labels, &r.probabilities)
                .unwrap_or_default(),
            latency_ms: Some(r.latency_s * 1e3),
            tokens: r.prompt_tokens,
            truncated_from: (r.truncated > 0).then_some(r.prompt_tokens + r.truncated),
            output: r.output.clone(),
            score: None,
            error: None,
        })
        .collect();
    let info = PromptingInfo {
        task: "classify".into(),
        method: Some(format!("{:?}", gen.method).to_lowercase()),
        prompt_template: Some(gen.prompt_template.clone()),
        shots: examples.len(),
        chat_template: !gen.no_chat_template,
        max_tokens,
        temperature: gen.temperature,
        invalid_outputs: invalid,
        truncated_prompt_tokens: runs.iter().map(|r| r.truncated).sum(),
    };
    let mut results = results(
        opts,
        lm,
        &dataset,
        &items,
        &runs,
        seconds,
        load_seconds,
        info,
    );
    results.metrics = Some(metrics);
    Ok(super::eval::EvalOutcome {
        results,
        predictions,
    })
}

pub const INVALID: &str = "(invalid)";

/// What classifying with a prompt needs, prepared before any model runs (local and API
/// models share it, so both see the same labels, prompt and examples).
pub(super) struct ClassifySetup {
    pub dataset: data::Dataset,
    /// The data set's labels: a generative model answers with their names.
    pub labels: Vec<String>,
    pub template: PromptTemplate,
    pub label_infos: Vec<LabelInfo>,
    pub examples: Vec<Example>,
    pub items: Vec<data::Example>,
}

pub(super) fn classify_setup(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
) -> anyhow::Result<ClassifySetup> {
    let dataset = data::load(&opts.data, &opts.load)?;
    let labels = dataset.labels();
    if labels.len() < 2 {
        bail!(
            "{}: classification needs at least two labels in the label column; found {}",
            dataset.path.display(),
            labels.len()
        );
    }
    let template = load_template(gen)?;
    let label_infos = template.resolve_labels(&LabelInfo::from_names(&labels))?;
    let examples = shots(gen, &template, opts)?;
    let items = sample(&dataset.examples, opts);
    Ok(ClassifySetup {
        dataset,
        labels,
        template,
        label_infos,
        examples,
        items,
    })
}

/// `--task generate` rows: the `prompt` and `reference` columns unless named otherwise; the
/// reference is optional (without it, outputs are kept but not scored).
pub(super) fn generation_data(
    opts: &EvalOptions,
) -> anyhow::Result<(data::Dataset, Vec<data::Example>)> {
    let load = LoadOptions {
        text_col: opts.load.text_col.clone().or(Some("prompt".into())),
        label_col: opts.load.label_col.clone().or(Some("reference".into())),
        id_col: opts.load.id_col.clone(),
        allow_unlabelled: true,
    };
    let dataset = data::load(&opts.data, &load)?;
    let items = sample(&dataset.examples, opts);
    Ok((dataset, items))
}

/// `--max-tokens`, else 16 for a label and 256 for free text.
pub(super) fn max_tokens(gen: &GenerativeOptions) -> usize {
    gen.max_tokens.unwrap_or(match gen.task {
        Task::Classify => 16,
        Task::Generate => 256,
    })
}

pub(super) fn load_template(gen: &GenerativeOptions) -> anyhow::Result<PromptTemplate> {
    let name = gen.prompt_template.as_str();
    let template = if std::path::Path::new(name).is_file() {
        PromptTemplate::from_file(name)?
    } else {
        PromptTemplate::builtin(name)?
    };
    Ok(match gen.shots {
        Some(k) => template.with_shots(k),
        None => template,
    })
}

/// The k-shot examples, drawn once (seeded, balanced over labels) from `--examples`.
pub(super) fn shots(
    gen: &GenerativeOptions,
    template: &PromptTemplate,
    opts: &EvalOptions,
) -> anyhow::Result<Vec<Example>> {
    let k = template.shots();
    if k == 0 {
        return Ok(Vec::new());
    }
    let Some(path) = &gen.examples else {
        bail!("a {k}-shot prompt needs labelled examples: pass --examples TRAIN.csv (rows other than the evaluated ones)");
    };
    let train = data::load(path, &LoadOptions::default())?;
    let pairs: Vec<(String, String)> = train
        .examples
        .iter()
        .filter_map(|e| Some((e.text.clone(), e.label.clone()?)))
        .collect();
    Ok(select_examples(&pairs, k, opts.seed))
}

pub(super) fn sample(examples: &[data::Example], opts: &EvalOptions) -> Vec<data::Example> {
    match opts.limit {
        Some(n) => stratified_sample(examples, n, opts.seed),
        None => examples.to_vec(),
    }
}

fn prompt_text(
    lm: &CausalLm,
    gen: &GenerativeOptions,
    template: &PromptTemplate,
    text: &str,
    labels: &[LabelInfo],
    examples: &[Example],
) -> anyhow::Result<String> {
    if gen.no_chat_template {
        return Ok(template.render_text(text, labels, examples)?);
    }
    let messages = template.render(text, labels, examples)?;
    Ok(lm.prompt_text(&messages, false)?)
}

/// Label scoring: each label's log-probability as the answer, softmaxed over the labels.
fn score_item(
    lm: &CausalLm,
    gen: &GenerativeOptions,
    prompt: &str,
    labels: &[String],
    answer_end: &str,
) -> anyhow::Result<ItemRun> {
    let start = Instant::now();
    let prompt_ids = lm.encode(prompt)?;
    let continuations = labels
        .iter()
        .map(|label| answer_ids(lm, gen, prompt, &prompt_ids, label, answer_end))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let log_probs = lm.score_continuations(&prompt_ids, &continuations)?;
    let probabilities = softmax(&log_probs);
    let predicted = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i);
    let longest = continuations.iter().map(Vec::len).max().unwrap_or(0);
    let truncated = (prompt_ids.len() + longest).saturating_sub(lm.config().context);
    Ok(ItemRun {
        probabilities,
        predicted,
        output: None,
        prompt_tokens: prompt_ids.len() - truncated,
        truncated,
        latency_s: start.elapsed().as_secs_f64(),
        generation: None,
    })
}

/// The tokens of `label` as the model's answer, including what ends the answer (`answer_end`),
/// so that a label that is a prefix of another ("card" / "card_arrival") is not favoured for
/// being shorter.
fn answer_ids(
    lm: &CausalLm,
    gen: &GenerativeOptions,
    prompt: &str,
    prompt_ids: &[u32],
    label: &str,
    answer_end: &str,
) -> anyhow::Result<Vec<u32>> {
    // A raw prompt ending in "Label:" is answered after a space; a chat template's assistant
    // turn starts fresh.
    let separator = if gen.no_chat_template && !prompt.ends_with(char::is_whitespace) {
        " "
    } else {
        ""
    };
    let full = format!("{prompt}{separator}{label}{answer_end}");
    let ids = lm.encode(&full)?;
    if ids.len() > prompt_ids.len() && ids[..prompt_ids.len()] == *prompt_ids {
        return Ok(ids[prompt_ids.len()..].to_vec());
    }
    // The prompt's last token merged with the answer's first: score the answer on its own.
    Ok(lm.encode_continuation(&full[prompt.len()..])?)
}

/// What ends an answer: a newline for raw prompts; with the chat template, what it writes
/// after an assistant message (`<|im_end|>\n` for ChatML). Computed once per run.
fn answer_end(lm: &CausalLm, gen: &GenerativeOptions) -> anyhow::Result<String> {
    if gen.no_chat_template {
        return Ok("\n".to_string());
    }
    end_of_turn(lm)
}

/// What the chat template writes after an assistant message, found by rendering a one-turn
/// conversation with a marker answer.
fn end_of_turn(lm: &CausalLm) -> anyhow::Result<String> {
    const MARKER: &str = "\u{E000}answer\u{E000}";
    let rendered = lm.prompt_text_finished(&[Message::user("q"), Message::assistant(MARKER)])?;
    Ok(rendered
        .rsplit_once(MARKER)
        .map(|(_, tail)| tail.to_string())
        .unwrap_or_default())
}

fn generate_item(
    lm: &CausalLm,
    prompt: &str,
    max_tokens: usize,
    gen: &GenerativeOptions,
    seed: u64,
    labels: &[String],
) -> anyhow::Result<ItemRun> {
    let start = Instant::now();
    let prompt_ids = lm.encode(prompt)?;
    let sampling = Sampling {
        max_tokens,
        temperature: gen.temperature,
        seed,
    };
    let generation = lm.generate(&prompt_ids, &sampling, |_| {})?;
    let latency_s = start.elapsed().as_secs_f64();
    let found = parse_label(&generation.text, labels);
    let predicted = match found {
        LabelMatch::Invalid => None,
        other => other.index(),
    };
    let mut probabilities = vec![0.0; labels.len()];
    if let Some(i) = predicted {
        probabilities[i] = 1.0;
    }
    Ok(ItemRun {
        probabilities,
        predicted,
        output: Some(generation.text.clone()),
        prompt_tokens: generation.prompt_tokens,
        truncated: generation.truncated_tokens,
        latency_s,
        generation: Some(generation),
    })
}

fn generate_task(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    lm: &CausalLm,
    load_seconds: f64,
) -> anyhow::Result<super::eval::EvalOutcome> {
    let (dataset, items) = generation_data(opts)?;
    let max_tokens = max_tokens(gen);
    let mut judge = match &gen.judge_model {
        Some(path) => Some(LocalJudge {
            lm: CausalLm::load(path, None)?,
            max_tokens: 64,
        }),
        None => None,
    };
    if gen.scorer.needs_judge() && judge.is_none() {
        bail!("--scorer judge needs --judge-model MODEL (a GGUF file or HF folder)");
    }
    let bar = super::progress(items.len(), "generate", opts.progress);
    let start = Instant::now();
    let mut runs = Vec::with_capacity(items.len());
    let mut summary = ScoreSummary::default();
    let mut scores = Vec::with_capacity(items.len());
    for item in &items {
        let messages = [Message::user(item.text.clone())];
        let prompt = lm.prompt_text(&messages, gen.no_chat_template)?;
        let run = generate_item(lm, &prompt, max_tokens, gen, opts.seed, &[])?;
        let output = run.output.clone().unwrap_or_default();
        let score = match &item.label {
            Some(reference) => {
                let result = gen.scorer.score(
                    &output,
                    reference,
                    judge.as_mut().map(|j| j as &mut dyn Judge),
                );
                summary.add(&result);
                Some(result.map(|r| r.score).ok())
            }
            None => None,
        };
        scores.push(score.flatten());
        runs.push(run);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let predictions = items
        .iter()
        .zip(&runs)
        .zip(&scores)
        .map(|((e, r), score)| Prediction {
            id: e.id.clone(),
            text: e.text.clone(),
            gold: e.label.clone(),
            predicted: String::new(),
            correct: score.map(|s| s >= pass_threshold(&gen.scorer)),
            probabilities: Probabilities::default(),
            latency_ms: Some(r.latency_s * 1e3),
            tokens: r.prompt_tokens,
            truncated_from: (r.truncated > 0).then_some(r.prompt_tokens + r.truncated),
            output: r.output.clone(),
            score: *score,
            error: None,
        })
        .collect();
    let info = PromptingInfo {
        task: "generate".into(),
        method: None,
        prompt_template: None,
        shots: 0,
        chat_template: !gen.no_chat_template,
        max_tokens,
        temperature: gen.temperature,
        invalid_outputs: 0,
        truncated_prompt_tokens: runs.iter().map(|r| r.truncated).sum(),
    };
    let mut results = results(
        opts,
        lm,
        &dataset,
        &items,
        &runs,
        seconds,
        load_seconds,
        info,
    );
    if dataset.label_col.is_some() {
        results.scoring = Some(ScoringReport::new(gen.scorer.name(), &summary));
    }
    Ok(super::eval::EvalOutcome {
        results,
        predictions,
    })
}

pub(super) fn pass_threshold(scorer: &Scorer) -> f64 {
    match scorer {
        Scorer::Judge(config) => config.threshold,
        _ => 1.0,
    }
}

/// A local generative model as the judge of another's outputs.
struct LocalJudge {
    lm: CausalLm,
    max_tokens: usize,
}

impl Judge for LocalJudge {
    fn complete(&mut self, messages: &[Message]) -> Result<String, JudgeError> {
        let raw = !self.lm.has_chat_template();
        let prompt = self.lm.prompt_text(messages, raw)?;
        let ids = self.lm.encode(&prompt)?;
        let sampling = Sampling {
            max_tokens: self.max_tokens,
            temperature: 0.0,
            seed: 0,
        };
        Ok(self.lm.generate(&ids, &sampling, |_| {})?.text)
    }
}

#[allow(clippy::too_many_arguments)]
fn results(
    opts: &EvalOptions,
    lm: &CausalLm,
    dataset: &data::Dataset,
    items: &[data::Example],
    runs: &[ItemRun],
    seconds: f64,
    load_seconds: f64,
    prompting: PromptingInfo,
) -> EvalResults {
    let latencies: Vec<f64> = runs.iter().map(|r| r.latency_s * 1e3).collect();
    let tokens_total: usize = runs.iter().map(|r| r.prompt_tokens).sum();
    let truncated_items = runs.iter().filter(|r| r.truncated > 0).count();
    EvalResults {
        schema_version: SCHEMA_VERSION,
        kind: "eval".into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        model: lm.info().clone(),
        dataset: super::eval::dataset_summary(dataset, items, opts, truncated_items, tokens_total),
        metrics: None,
        latency: latency_summary(&latencies).map(|summary| LatencyReport {
            scenario: "single-stream".into(),
            reliable: summary.reliable_percentiles(),
            summary,
            warmup_items: 0,
            includes: "prompt rendering + tokenization + generation or label scoring".into(),
        }),
        throughput: throughput(items.len(), tokens_total, seconds),
        load_time_s: load_seconds,
        peak_rss_bytes: peak_rss_bytes(),
        settings: Settings {
            device: "cpu".into(),
            threads: opts.threads,
            max_batch_tokens: 0,
            max_batch_items: 1,
            seed: opts.seed,
            single_stream: true,
        },
        environment: Environment::detect(),
        prompting: Some(prompting),
        generation: generation_report(runs),
        scoring: None,
        cost: None,
        api: None,
    }
}

fn generation_report(runs: &[ItemRun]) -> Option<GenerationReport> {
    let generations: Vec<&Generation> = runs.iter().filter_map(|r| r.generation.as_ref()).collect();
    if generations.is_empty() {
        return None;
    }
    let ttft: Vec<f64> = generations.iter().map(|g| g.ttft_s * 1e3).collect();
    let tpot: Vec<f64> = generations
        .iter()
        .filter(|g| g.ids.len() > 1)
        .map(|g| g.inter_token_s.iter().sum::<f64>() / (g.inter_token_s.len()) as f64 * 1e3)
        .collect();
    let itl: Vec<f64> = generations
        .iter()
        .flat_map(|g| g.inter_token_s.iter().map(|s| s * 1e3))
        .collect();
    let prompt_tokens: usize = generations.iter().map(|g| g.prompt_tokens).sum();
    let output_tokens: usize = generations.iter().map(|g| g.ids.len()).sum();
    let prefill_s: f64 = generations.iter().map(|g| g.ttft_s).sum();
    let decode_s: f64 = generations
        .iter()
        .flat_map(|g| g.inter_token_s.iter())
        .sum();
    let decoded: usize = generations.iter().map(|g| g.inter_token_s.len()).sum();
    Some(GenerationReport {
        ttft: latency_summary(&ttft),
        tpot: latency_summary(&tpot),
        itl: latency_summary(&itl),
        prompt_tokens,
        output_tokens,
        prefill_tokens_per_s: rate(prompt_tokens, prefill_s),
        decode_tokens_per_s: rate(decoded, decode_s),
    })
}

pub(super) fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

fn softmax(log_probs: &[f64]) -> Vec<f32> {
    let max = log_probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = log_probs.iter().map(|&v| (v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / total) as f32).collect()
}
