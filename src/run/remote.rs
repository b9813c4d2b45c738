//! `taskbench eval --model openai:MODEL | anthropic:MODEL`: the same items, prompts and
//! answer parsing as a local generative model, sent to a hosted API many at a time, each
//! answer cached as it arrives (a rerun or an interrupted run resumes at no cost) and priced
//! from its measured token usage.
//!
//! Classification asks an OpenAI-compatible server for every token's log-probability and
//! top alternatives; the label probabilities come from those (`prompt::label_probs`), the
//! predicted label from the text as for any generative model. Without log-probabilities
//! (Anthropic, `--no-logprobs`, a server that sends none) the probabilities are one-hot on
//! the parsed label.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::eval::{EvalOptions, EvalOutcome};
use super::generative::{self, GenerativeOptions, Task, INVALID};
use crate::cost::{
    dry_run, estimate_tokens_from_chars, DryRunEstimate, ModelPrice, Pricing, TokenCounting,
    TokenUsage, Usd,
};
use crate::data;
use crate::metrics::scoring::ScoreSummary;
use crate::metrics::{classification_metrics, latency_summary, throughput};
use crate::models::remote::{
    run_all, Answer, ApiClient, Cache, CacheMode, CancelToken, ChatRequest, ClientOptions,
    Endpoint, ItemOutcome, ModelSpec, Provider, RateLimits, RetryPolicy, RunOptions,
    MAX_TOP_LOGPROBS,
};
use crate::models::{Message, ModelInfo};
use crate::prompt::label_probs::label_probabilities;
use crate::prompt::labels::parse_label;
use crate::report::environment::{peak_rss_bytes, Environment};
use crate::report::predictions::{Prediction, Probabilities};
use crate::report::results::{
    ApiReport, CostReport, EvalResults, GenerationReport, LatencyReport, ProbabilitySource,
    PromptingInfo, ScoringReport, Settings, SCHEMA_VERSION,
};

pub struct RemoteOptions {
    pub base_url: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub concurrency: usize,
    pub requests_per_minute: Option<f64>,
    pub tokens_per_minute: Option<f64>,
    pub no_stream: bool,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// The response cache; `None`: the default under the user's cache folder.
    pub cache: Option<PathBuf>,
    pub no_cache: bool,
    pub refresh: bool,
    pub pricing: Option<PathBuf>,
    pub max_cost: Option<Usd>,
    /// Ask OpenAI-compatible servers for log-probabilities when classifying (off:
    /// `--no-logprobs`, for servers that reject the fields).
    pub logprobs: bool,
}

impl Default for RemoteOptions {
    /// `taskbench eval`'s defaults.
    fn default() -> Self {
        RemoteOptions {
            base_url: None,
            api_key_file: None,
            concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
            no_stream: false,
            timeout: Duration::from_secs(60),
            max_attempts: 5,
            cache: None,
            no_cache: false,
            refresh: false,
            pricing: None,
            max_cost: None,
            logprobs: true,
        }
    }
}

/// The requests of a run, built before anything is sent.
struct Plan {
    items: Vec<data::Example>,
    labels: Vec<String>,
    requests: Vec<ChatRequest>,
    dataset: data::Dataset,
    max_tokens: usize,
    shots: usize,
}

/// The requests `eval` would send, one per item, for `bench`'s load scenarios.
pub(super) fn requests(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
) -> anyhow::Result<Vec<ChatRequest>> {
    let spec = ModelSpec::parse(&opts.model)?;
    Ok(plan(opts, gen, top_logprobs(&spec, gen, &opts.remote))?.requests)
}

/// The `top_logprobs` to ask for: the most OpenAI allows when classifying with an
/// OpenAI-compatible server (more alternatives, more of the label tree seen), unless turned
/// off; none for free text, where nothing reads them, and for Anthropic, which has none.
fn top_logprobs(
    spec: &ModelSpec,
    gen: &GenerativeOptions,
    remote: &RemoteOptions,
) -> Option<usize> {
    (gen.task == Task::Classify && spec.provider == Provider::OpenAi && remote.logprobs)
        .then_some(MAX_TOP_LOGPROBS)
}

fn plan(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    top_logprobs: Option<usize>,
) -> anyhow::Result<Plan> {
    let max_tokens = generative::max_tokens(gen);
    let request = |messages: Vec<Message>| {
        let mut r = ChatRequest::new(messages, max_tokens as u32);
        r.temperature = Some(gen.temperature);
        r.logprobs = top_logprobs;
        r
    };
    if gen.task == Task::Generate {
        let (dataset, items) = generative::generation_data(opts)?;
        let requests = items
            .iter()
            .map(|e| request(vec![Message::user(e.text.clone())]))
            .collect();
        return Ok(Plan {
            items,
            labels: Vec::new(),
            requests,
            dataset,
            max_tokens,
            shots: 0,
        });
    }
    let setup = generative::classify_setup(opts, gen)?;
    let requests = setup
        .items
        .iter()
        .map(|e| {
            let messages = setup
                .template
                .render(&e.text, &setup.label_infos, &setup.examples)?;
            Ok(request(messages))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let generative::ClassifySetup {
        dataset,
        labels,
        examples,
        items,
        ..
    } = setup;
    Ok(Plan {
        items,
        labels,
        requests,
        dataset,
        max_tokens,
        shots: examples.len(),
    })
}

fn price<'a>(pricing: &'a Pricing, spec: &ModelSpec) -> anyhow::Result<&'a ModelPrice> {
    Ok(pricing.lookup(&spec.to_string())?.price)
}

/// `--dry-run`: tokens and cost of the whole run, estimated before anything is sent.
pub fn estimate(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    remote: &RemoteOptions,
) -> anyhow::Result<DryRunEstimate> {
    let spec = ModelSpec::parse(&opts.model)?;
    let pricing = Pricing::embedded_with_overrides(remote.pricing.as_deref())?;
    let price = price(&pricing, &spec)?;
    let plan = plan(opts, gen, top_logprobs(&spec, gen, remote))?;
    let prompt_tokens: Vec<u64> = plan.requests.iter().map(prompt_chars_tokens).collect();
    let expected = match gen.task {
        Task::Classify => plan
            .labels
            .iter()
            .map(|l| estimate_tokens_from_chars(l))
            .max()
            .unwrap_or(1)
            .min(plan.max_tokens as u64),
        Task::Generate => plan.max_tokens as u64 / 2,
    };
    Ok(dry_run(
        price,
        &prompt_tokens,
        TokenCounting::CharsOver4,
        expected,
        plan.max_tokens as u64,
    )?)
}

fn prompt_chars_tokens(request: &ChatRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| estimate_tokens_from_chars(&m.content) + 4)
        .sum()
}

pub fn eval_remote(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    remote: &RemoteOptions,
) -> anyhow::Result<EvalOutcome> {
    let spec = ModelSpec::parse(&opts.model)?;
    let endpoint = Endpoint::resolve(
        spec.clone(),
        remote.base_url.as_deref(),
        remote.api_key_file.as_deref(),
    )?;
    let base_url = endpoint.base_url.clone();
    let client = Arc::new(ApiClient::new(
        endpoint,
        ClientOptions {
            stream: !remote.no_stream,
            timeout: remote.timeout,
            ..ClientOptions::default()
        },
    )?);
    let pricing = Pricing::embedded_with_overrides(remote.pricing.as_deref())?;
    let price = pricing
        .lookup(&spec.to_string())
        .ok()
        .map(|r| r.price.clone());
    if remote.max_cost.is_some() && price.is_none() {
        // The lookup's own error says how to add a price.
        pricing.lookup(&spec.to_string())?;
    }
    let top_logprobs = top_logprobs(&spec, gen, remote);
    let plan = plan(opts, gen, top_logprobs)?;
    let cache = open_cache(remote)?;
    let cache_mode = if remote.no_cache {
        CacheMode::Off
    } else if remote.refresh {
        CacheMode::Refresh
    } else {
        CacheMode::Use
    };

    // --max-cost: reserve each request's worst case in order before the run; those that do
    // not fit are not sent at all. Answers already cached cost nothing and reserve nothing.
    let mut sendable: Vec<usize> = (0..plan.requests.len()).collect();
    let mut over_budget = Vec::new();
    if let (Some(budget), Some(price)) = (remote.max_cost, &price) {
        let mut reserved = Usd::ZERO;
        sendable.clear();
        for (i, request) in plan.requests.iter().enumerate() {
            let cached = cache_mode == CacheMode::Use
                && cache.as_ref().is_some_and(|c| {
                    let key =
                        Cache::key(spec.provider, &base_url, &spec.model, &client.body(request));
                    matches!(c.get(&key), Ok(Some(_)))
                });
            let worst =
                price.worst_case(prompt_chars_tokens(request) * 2, request.max_tokens as u64);
            if cached || reserved + worst <= budget {
                if !cached {
                    reserved += worst;
                }
                sendable.push(i);
            } else {
                over_budget.push(i);
            }
        }
    }

    let cancel = CancelToken::new();
    let handler_cancel = cancel.clone();
    // A second Ctrl-C aborts in-flight requests too; the first lets them finish.
    let _ = ctrlc::set_handler(move || {
        if handler_cancel.is_cancelled() {
            handler_cancel.abort();
        } else {
            handler_cancel.cancel();
        }
    });
    let run_options = RunOptions {
        limits: RateLimits {
            concurrency: remote.concurrency.max(1),
            requests_per_minute: remote.requests_per_minute,
            tokens_per_minute: remote.tokens_per_minute,
        },
        retry: RetryPolicy {
            max_attempts: remote.max_attempts.max(1),
            ..RetryPolicy::default()
        },
        cache_mode,
        cancel,
    };
    let requests: Vec<ChatRequest> = sendable.iter().map(|&i| plan.requests[i].clone()).collect();
    let bar = super::progress(requests.len(), "api", opts.progress);
    let mut outcomes: Vec<Option<ItemOutcome>> = (0..plan.requests.len()).map(|_| None).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let start = std::time::Instant::now();
    let summary = runtime.block_on(run_all(
        client,
        cache.map(Arc::new),
        requests,
        &run_options,
        |outcome| {
            bar.inc(1);
            let index = sendable[outcome.index];
            outcomes[index] = Some(outcome);
        },
    ));
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let report = ApiReport {
        provider: spec.provider.as_str().to_string(),
        base_url,
        concurrency: remote.concurrency,
        streamed: !remote.no_stream,
        requests_sent: summary.requests_sent,
        answered: summary.answered,
        from_cache: summary.from_cache,
        failed: summary.failed,
        not_sent_max_cost: over_budget.len(),
        not_sent_cancelled: summary.not_started.len(),
        cache_errors: summary.cache_errors.len(),
        probabilities: (gen.task == Task::Classify).then_some(if top_logprobs.is_some() {
            ProbabilitySource::Logprobs
        } else {
            ProbabilitySource::ParsedText
        }),
        logprobs_missing: 0, // counted per answer in `assemble`
    };
    assemble(
        opts,
        gen,
        &spec,
        plan,
        outcomes,
        price.as_ref(),
        report,
        seconds,
    )
}

fn open_cache(remote: &RemoteOptions) -> anyhow::Result<Option<Cache>> {
    if remote.no_cache {
        return Ok(None);
    }
    let path = match &remote.cache {
        Some(path) => path.clone(),
        None => default_cache_path(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| {
            format!(
                "{}: cannot create the response cache folder",
                parent.display()
            )
        })?;
    }
    Ok(Some(Cache::open(&path)?))
}

/// `$XDG_CACHE_HOME/taskbench/responses.sqlite`, else `~/.cache/taskbench/responses.sqlite`.
fn default_cache_path() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("taskbench").join("responses.sqlite")
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    opts: &EvalOptions,
    gen: &GenerativeOptions,
    spec: &ModelSpec,
    plan: Plan,
    outcomes: Vec<Option<ItemOutcome>>,
    price: Option<&ModelPrice>,
    mut api: ApiReport,
    seconds: f64,
) -> anyhow::Result<EvalOutcome> {
    let labels = &plan.labels;
    let mut metric_labels = labels.clone();
    metric_labels.push(INVALID.to_string());
    let mut usage_total = TokenUsage::default();
    let mut cost_total = Usd::ZERO;
    let mut priced_items = 0usize;
    let mut fresh_latency = Vec::new();
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut itl = Vec::new();
    let mut predictions = Vec::with_capacity(plan.items.len());
    let mut gold_idx = Vec::new();
    let mut predicted_idx = Vec::new();
    let mut invalid = 0usize;
    let mut logprobs_missing = 0usize;
    let mut summary = ScoreSummary::default();
    for (item, outcome) in plan.items.iter().zip(&outcomes) {
        let (output, error) = match outcome.as_ref().map(|o| &o.result) {
            Some(Ok(answer)) => {
                // Cached answers cost nothing now and say nothing about today's latency.
                if let (Some(usage), false) = (answer.usage, answer.from_cache) {
                    let usage = TokenUsage::new(usage.input_tokens, usage.output_tokens);
                    usage_total = usage_total + usage;
                    if let Some(price) = price {
                        cost_total += price.cost(usage);
                        priced_items += 1;
                    }
                }
                if !answer.from_cache {
                    let t = &answer.timing;
                    fresh_latency.push(t.latency.as_secs_f64() * 1e3);
                    if let Some(first) = t.ttft {
                        ttft.push(first.as_secs_f64() * 1e3);
                        if !t.itl.is_empty() {
                            let rest: f64 = t.itl.iter().map(|d| d.as_secs_f64()).sum();
                            tpot.push(rest / t.itl.len() as f64 * 1e3);
                        }
                    }
                    itl.extend(t.itl.iter().map(|d| d.as_secs_f64() * 1e3));
                }
                (Some(answer.text.clone()), None)
            }
            Some(Err(e)) => (None, Some(e.describe())),
            None => (
                None,
                Some("not sent: --max-cost budget or cancelled".to_string()),
            ),
        };
        let (predicted, correct, probabilities, score) = match gen.task {
            Task::Classify => {
                let answer = outcome.as_ref().and_then(|o| o.result.as_ref().ok());
                let classified = classify_answer(answer, labels);
                let index = classified.index;
                if index.is_none() {
                    invalid += 1;
                }
                if answer.is_some_and(|a| a.logprobs.is_none()) {
                    logprobs_missing += 1;
                }
                let p = index.unwrap_or(labels.len());
                gold_idx.push(
                    item.label
                        .as_ref()
                        .and_then(|l| labels.iter().position(|x| x == l)),
                );
                predicted_idx.push(p);
                let label = metric_labels[p].clone();
                let correct = item.label.as_ref().map(|g| *g == label);
                (
                    label,
                    correct,
                    Probabilities::from_labels(labels, &classified.probs).unwrap_or_default(),
                    None,
                )
            }
            Task::Generate => {
                let score = match (&item.label, &output) {
                    (Some(reference), Some(text)) => {
                        let result = gen.scorer.score(text, reference, None);
                        summary.add(&result);
                        result.ok().map(|r| r.score)
                    }
                    (Some(_), None) => {
                        summary.items += 1;
                        summary.errors += 1;
                        None
                    }
                    _ => None,
                };
                let correct = score.map(|s| s >= generative::pass_threshold(&gen.scorer));
                (String::new(), correct, Probabilities::default(), score)
            }
        };
        predictions.push(Prediction {
            id: item.id.clone(),
            text: item.text.clone(),
            gold: item.label.clone(),
            predicted,
            correct,
            probabilities,
            latency_ms: outcome
                .as_ref()
                .and_then(|o| o.result.as_ref().ok())
                .filter(|a| !a.from_cache)
                .map(|a| a.timing.latency.as_secs_f64() * 1e3),
            tokens: outcome
                .as_ref()
                .and_then(|o| o.result.as_ref().ok())
                .and_then(|a| a.usage)
                .map_or(0, |u| u.input_tokens as usize),
            truncated_from: None,
            output,
            score,
            error,
        });
    }
    if api.probabilities == Some(ProbabilitySource::Logprobs) {
        api.logprobs_missing = logprobs_missing;
    }
    let metrics = if gen.task == Task::Classify {
        if invalid == 0 {
            metric_labels.pop();
        }
        Some(classification_metrics(
            &gold_idx,
            &predicted_idx,
            &metric_labels,
        )?)
    } else {
        None
    };
    let n = plan.items.len();
    let cost = price.filter(|_| priced_items > 0).map(|price| CostReport {
        usd_per_1000_queries: cost_total.dollars() / priced_items as f64 * 1000.0,
        basis: format!(
            "API: {} measured tokens in / {} out over {} fresh answers at ${}/${} per million (as of {}, {})",
            usage_total.input_tokens,
            usage_total.output_tokens,
            priced_items,
            price.input_per_mtok,
            price.output_per_mtok,
            price.as_of,
            price.source
        ),
        hourly_usd: None,
        items_per_s: None,
        utilisation: None,
    });
    let tokens_total: usize = predictions.iter().map(|p| p.tokens).sum();
    let results = EvalResults {
        schema_version: SCHEMA_VERSION,
        kind: "eval".into(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        model: ModelInfo {
            precision: None,
            name: spec.to_string(),
            path: api.base_url.clone(),
            backend: api.provider.clone(),
            architecture: "api".into(),
            head: "lm".into(),
            pooling: "none".into(),
            num_labels: labels.len(),
            max_tokens: 0,
            parameters: 0,
            weights_sha256: String::new(),
            device: "remote".into(),
        },
        dataset: super::eval::dataset_summary(&plan.dataset, &plan.items, opts, 0, tokens_total),
        metrics,
        latency: latency_summary(&fresh_latency).map(|summary| LatencyReport {
            scenario: format!("concurrent ({} at a time)", api.concurrency),
            reliable: summary.reliable_percentiles(),
            summary,
            warmup_items: 0,
            includes: "request to last byte, fresh answers only (cached answers are left out)"
                .into(),
        }),
        throughput: throughput(n, tokens_total, seconds),
        load_time_s: 0.0,
        peak_rss_bytes: peak_rss_bytes(),
        settings: Settings {
            device: "remote".into(),
            threads: opts.threads,
            max_batch_tokens: 0,
            max_batch_items: api.concurrency,
            seed: opts.seed,
            single_stream: false,
        },
        environment: Environment::detect(),
        prompting: Some(PromptingInfo {
            task: format!("{:?}", gen.task).to_lowercase(),
            method: (gen.task == Task::Classify).then(|| "generate".to_string()),
            prompt_template: (gen.task == Task::Classify).then(|| gen.prompt_template.clone()),
            shots: plan.shots,
            chat_template: true,
            max_tokens: plan.max_tokens,
            temperature: gen.temperature,
            invalid_outputs: if gen.task == Task::Classify {
                invalid
            } else {
                0
            },
            truncated_prompt_tokens: 0,
        }),
        generation: (!ttft.is_empty()).then(|| GenerationReport {
            ttft: latency_summary(&ttft),
            tpot: latency_summary(&tpot),
            itl: latency_summary(&itl),
            prompt_tokens: usage_total.input_tokens as usize,
            output_tokens: usage_total.output_tokens as usize,
            prefill_tokens_per_s: 0.0,
            decode_tokens_per_s: generative::rate(itl.len(), itl.iter().sum::<f64>() / 1e3),
        }),
        scoring: (gen.task == Task::Generate && plan.dataset.label_col.is_some())
            .then(|| ScoringReport::new(gen.scorer.name(), &summary)),
        cost,
        api: Some(api),
    };
    Ok(EvalOutcome {
        results,
        predictions,
    })
}

/// One answer as a classification.
struct Classified {
    /// The label the text parses to; `None` (no answer, or no label in it) counts invalid.
    index: Option<usize>,
    /// One per label: from the answer's log-probabilities when it has them and they reach a
    /// label, else one-hot on `index` (all zero when invalid).
    probs: Vec<f32>,
}

/// The text decides the prediction, as for every generative model and for answers without
/// log-probabilities, so accuracy means the same with and without them; log-probabilities
/// only say how sure the model was. (Their argmax can differ from the text when probability
/// is spread over spellings of another label, or split by the shared-prefix rule; reporting
/// that as the prediction would score the API on a label it never wrote.)
fn classify_answer(answer: Option<&Answer>, labels: &[String]) -> Classified {
    let Some(answer) = answer else {
        return Classified {
            index: None,
            probs: vec![0.0; labels.len()],
        };
    };
    let index = parse_label(&answer.text, labels).index();
    let probs = match answer
        .logprobs
        .as_deref()
        .and_then(|tokens| label_probabilities(tokens, labels))
    {
        Some(found) => found.probs.iter().map(|&p| p as f32).collect(),
        None => (0..labels.len())
            .map(|i| if Some(i) == index { 1.0 } else { 0.0 })
            .collect(),
    };
    Classified { index, probs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::remote::{GeneratedToken, Timing, TokenLogprob};

    fn answer(text: &str, logprobs: Option<Vec<GeneratedToken>>) -> Answer {
        Answer {
            text: text.into(),
            usage: None,
            logprobs,
            finish_reason: Some("stop".into()),
            timing: Timing::default(),
            from_cache: false,
        }
    }

    /// One token `chosen` with probability 0.6 and `other` with 0.3.
    fn one_token(chosen: &str, other: &str) -> Option<Vec<GeneratedToken>> {
        let lp = |token: &str, p: f64| TokenLogprob {
            token: token.into(),
            logprob: p.ln(),
        };
        Some(vec![GeneratedToken {
            token: chosen.into(),
            logprob: 0.6f64.ln(),
            top_logprobs: vec![lp(chosen, 0.6), lp(other, 0.3)],
        }])
    }

    fn labels() -> Vec<String> {
        vec!["fire".into(), "water".into()]
    }

    #[test]
    fn logprobs_give_the_probabilities_and_the_text_the_label() {
        let got = classify_answer(
            Some(&answer("water", one_token("water", "fire"))),
            &labels(),
        );
        assert_eq!(got.index, Some(1));
        assert!((got.probs[0] - 1.0 / 3.0).abs() < 1e-6, "{:?}", got.probs);
        assert!((got.probs[1] - 2.0 / 3.0).abs() < 1e-6, "{:?}", got.probs);
    }

    #[test]
    fn without_logprobs_the_parsed_label_is_one_hot() {
        let got = classify_answer(Some(&answer("Fire.", None)), &labels());
        assert_eq!((got.index, got.probs), (Some(0), vec![1.0, 0.0]));
        let got = classify_answer(None, &labels());
        assert_eq!((got.index, got.probs), (None, vec![0.0, 0.0]));
    }

    #[test]
    fn an_answer_no_branch_of_which_names_a_label_stays_invalid() {
        let got = classify_answer(
            Some(&answer("maybe", one_token("maybe", "perhaps"))),
            &labels(),
        );
        assert_eq!((got.index, got.probs), (None, vec![0.0, 0.0]));
        // Invalid text whose alternatives name a label: probabilities, still no prediction.
        let got = classify_answer(
            Some(&answer("maybe", one_token("maybe", "fire"))),
            &labels(),
        );
        assert_eq!((got.index, got.probs), (None, vec![1.0, 0.0]));
    }
}
