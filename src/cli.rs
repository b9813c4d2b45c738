//! The command line: clap arguments, checked into the `run` layer's options, and the output
//! each command prints. `main.rs` only calls [`main`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cost::{Usd, Utilisation};
use crate::data::LoadOptions;
use crate::metrics::scoring::Scorer;
use crate::models::encoder::Precision;
use crate::report;
use crate::run::bench::{BenchOptions, ScenarioChoice};
use crate::run::eval::{eval, EvalOptions, UnknownLabels};
use crate::run::finetune::{self, FinetuneOptions, Hyperparameters};
use crate::run::generative::{GenerativeOptions, Method, Task};
use crate::run::remote::RemoteOptions;
use crate::run::suite::SuiteOptions;
use crate::run::train::{head_only, PoolingChoice, TrainOptions, TrainingRecord};
use crate::runtime::{configure_threads, DeviceSpec};
use crate::suite::{Status, Suite};
use crate::train::softmax::FitOptions;

#[derive(Parser)]
#[command(
    name = "taskbench",
    version,
    about = "Does a small fine-tuned model beat a frontier API on your task, and what does each cost?"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate a model on your data: a classifier, a local generative model or a hosted API;
    /// quality, latency, throughput and cost.
    Eval(Box<EvalArgs>),
    /// Train a classifier from a base encoder: full fine-tuning, or `--head-only`.
    Train(TrainArgs),
    /// Serve a local model over HTTP: OpenAI-compatible /v1/chat/completions for generative
    /// models, /predict for classifiers.
    Serve(ServeArgs),
    /// Run a suite: train and evaluate every model of SUITE.toml on the same items, then
    /// write the report (report.html, report.md, summary.json) and print the verdict.
    Run(RunArgs),
    /// Rebuild the report of a run folder from its files alone.
    Report(ReportArgs),
    /// Measure a classifier or an HTTP endpoint under load, as MLPerf LoadGen's scenarios
    /// define it: single-stream, offline, or server (Poisson arrivals against a latency SLO).
    Bench(Box<BenchArgs>),
}

#[derive(Args)]
struct BenchArgs {
    /// A classifier (HF folder or hf:ORG/NAME[@REVISION]) or an endpoint (openai:MODEL with
    /// --base-url, e.g. a `taskbench serve`; anthropic:MODEL).
    #[arg(long)]
    model: String,
    /// The queries: the text column of a .csv, .tsv or .jsonl (labels not needed for a
    /// classifier; an endpoint gets the prompt `eval` would send, which needs them).
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    #[arg(long, value_enum, default_value = "single-stream")]
    scenario: ScenarioChoice,
    /// Server: mean arrival rate, queries per second (Poisson).
    #[arg(long)]
    qps: Option<f64>,
    /// Server: the latency objective in ms at --percentile.
    #[arg(long)]
    slo_ms: Option<f64>,
    /// The latency percentile judged, as a fraction [default: 0.90 single-stream, 0.99 server].
    #[arg(long)]
    percentile: Option<f64>,
    /// Server: search for the highest --qps whose --percentile latency meets --slo-ms.
    #[arg(long)]
    find_max_qps: bool,
    /// Queries per run [default: the data's rows, and at least what --percentile needs by
    /// LoadGen's early-stopping rule: 64 for p90, 662 for p99].
    #[arg(long)]
    min_queries: Option<usize>,
    /// Seconds a single-stream or server run lasts at least.
    #[arg(long, default_value_t = 10.0)]
    min_duration: f64,
    /// Queries run before timing starts.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// Server: a run whose dispatcher issued queries later than this (p99, ms) than the
    /// Poisson schedule says is invalid: an overloaded client would flatter the model.
    #[arg(long, default_value_t = 10.0)]
    max_lag_ms: f64,
    /// Server: queries in flight at once [default: 1 for a local model, 8 for an endpoint].
    #[arg(long)]
    workers: Option<usize>,
    /// Largest batch a local model is given (offline, and queued queries in server).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch: u64,
    /// Evaluate a seeded, stratified sample of N rows as the query set.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Write bench.json here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Encoders: fp32, or int8 matrix products (per-channel weights, per-token activations,
    /// VNNI on CPU).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// Allow a load test against a provider's paid API.
    #[arg(long)]
    allow_paid: bool,
    #[command(flatten)]
    generative: GenerativeArgs,
    /// An OpenAI-compatible server's base URL [default: $OPENAI_BASE_URL, else the provider's].
    #[arg(long)]
    base_url: Option<String>,
    /// Read the API key from this file [default: $OPENAI_API_KEY / $ANTHROPIC_API_KEY].
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct RunArgs {
    /// The suite file (TOML): data, models, goals, prices.
    suite: PathBuf,
    /// The run folder [default: runs/SUITE_NAME].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only this model (repeatable); the others keep their earlier results.
    #[arg(long)]
    only: Vec<String>,
    /// Rerun models even when their inputs have not changed.
    #[arg(long)]
    rerun: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct ReportArgs {
    /// A folder written by `taskbench run`.
    run_dir: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    /// A classifier (HF folder or hf:ORG/NAME[@REVISION]) or a generative model (.gguf file
    /// or llama / qwen2 HF folder).
    #[arg(long)]
    model: String,
    /// The model's name in /v1/models and responses [default: the file or folder name].
    #[arg(long)]
    name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A Jinja chat template replacing the generative model's own.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Encoders: fp32, or int8 matrix products (per-channel weights, per-token activations,
    /// VNNI on CPU).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

#[derive(Args)]
struct DataArgs {
    /// Column (CSV/TSV) or key (JSONL) holding the text [default: text, sentence, content, ...].
    #[arg(long)]
    text_col: Option<String>,
    /// Column or key holding the label [default: label, category, class, intent, ...].
    #[arg(long)]
    label_col: Option<String>,
    /// Column or key holding a row id [default: id, else the row number].
    #[arg(long)]
    id_col: Option<String>,
}

impl DataArgs {
    fn load_options(&self) -> LoadOptions {
        LoadOptions {
            text_col: self.text_col.clone(),
            label_col: self.label_col.clone(),
            id_col: self.id_col.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args)]
struct RuntimeArgs {
    /// cpu, cuda[:N] or metal[:N] (cuda and metal need the cargo feature of that name).
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// CPU threads [default: all cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    threads: Option<u64>,
    /// Largest batch, in tokens of its longest item times its rows.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch_tokens: u64,
    /// Seed for sampling (--limit) and anything else random.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// No progress bars (they are also hidden when stderr is not a terminal or CI is set).
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// A classifier (HF folder or hf:ORG/NAME[@REVISION]), a generative model (a .gguf file or a
    /// llama / qwen2 HF folder) or a hosted API (openai:MODEL, anthropic:MODEL).
    #[arg(long)]
    model: String,
    /// Labelled data: .csv, .tsv or .jsonl.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    data_args: DataArgs,
    /// JSON object or two-column CSV mapping dataset labels to the model's labels.
    #[arg(long)]
    label_map: Option<PathBuf>,
    /// What to do with rows whose label the model does not know.
    #[arg(long, value_enum, default_value = "fail")]
    unknown_labels: UnknownLabels,
    /// Evaluate a seeded, stratified sample of N rows.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Write results.json and predictions.jsonl here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Most rows in one batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch_items: u64,
    /// Skip the one-item-at-a-time latency pass.
    #[arg(long)]
    no_single_stream: bool,
    /// Items run before the single-stream timings start.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    #[command(flatten)]
    generative: GenerativeArgs,
    #[command(flatten)]
    remote: RemoteArgs,
    /// Encoders: fp32, or int8 matrix products (per-channel weights, per-token activations,
    /// VNNI on CPU).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    precision: Precision,
    /// The machine's price in $ per hour: turns measured throughput into $ per 1,000 queries.
    #[arg(long)]
    hourly_cost: Option<Usd>,
    /// Share of the hour the machine is busy with queries, in (0, 1], for --hourly-cost.
    #[arg(long, default_value_t = 1.0)]
    utilisation: f64,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Options read only when --model is a generative model (a .gguf file or a llama / qwen2
/// HF folder).
#[derive(Args)]
#[command(next_help_heading = "Generative models")]
struct GenerativeArgs {
    /// classify: pick one of the data set's labels; generate: free text per `prompt`
    /// column, scored against `reference`.
    #[arg(long, value_enum, default_value = "classify")]
    task: Task,
    /// How to classify: score = log-probability of each label; generate = generate, then
    /// map the text to a label.
    #[arg(long, value_enum, default_value = "score")]
    method: Method,
    /// Prompt template: zero-shot, k-shot, or a TOML file (system, user, shots,
    /// answer_prefix, [labels.NAME] description).
    #[arg(long, default_value = "zero-shot")]
    prompt_template: String,
    /// k for a k-shot prompt (overrides the template's `shots`).
    #[arg(long)]
    shots: Option<usize>,
    /// Labelled rows the k-shot examples are drawn from (seeded, balanced over labels).
    #[arg(long)]
    examples: Option<PathBuf>,
    /// A Jinja chat template replacing the model's own.
    #[arg(long)]
    chat_template: Option<PathBuf>,
    /// Send the prompt as raw text, without the chat template.
    #[arg(long)]
    no_chat_template: bool,
    /// Most tokens generated per item [default: 16 for classification, 256 for generate].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// --task generate: exact, normalized, regex[:PATTERN], json, judge[:THRESHOLD].
    #[arg(long, default_value = "exact")]
    scorer: Scorer,
    /// --scorer judge: the model that grades outputs (a GGUF file or HF folder).
    #[arg(long)]
    judge_model: Option<PathBuf>,
}

/// Options read only when --model is a hosted API (openai:MODEL, anthropic:MODEL).
#[derive(Args)]
#[command(next_help_heading = "Hosted APIs")]
struct RemoteArgs {
    /// An OpenAI-compatible server's base URL (vLLM, TGI, Ollama, llama.cpp, LiteLLM)
    /// [default: $OPENAI_BASE_URL, else the provider's API].
    #[arg(long)]
    base_url: Option<String>,
    /// Read the API key from this file [default: $OPENAI_API_KEY / $ANTHROPIC_API_KEY].
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Client-side limit on requests per minute.
    #[arg(long)]
    rpm: Option<f64>,
    /// Client-side limit on tokens per minute.
    #[arg(long)]
    tpm: Option<f64>,
    /// Ask for whole responses instead of streams (then TTFT is not measured).
    #[arg(long)]
    no_stream: bool,
    /// Seconds before a request attempt is abandoned and retried.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Attempts per item before it is recorded as failed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// The response cache (SQLite) [default: ~/.cache/taskbench/responses.sqlite].
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Neither read nor write the response cache.
    #[arg(long)]
    no_cache: bool,
    /// Ask again even when an answer is cached, and replace it.
    #[arg(long)]
    refresh: bool,
    /// A pricing TOML whose entries replace models/pricing.toml's.
    #[arg(long)]
    pricing: Option<PathBuf>,
    /// Stop before the run could cost more than this many dollars.
    #[arg(long)]
    max_cost: Option<Usd>,
    /// Estimate the run's tokens and cost, send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Don't ask an OpenAI-compatible server for log-probabilities (for servers that
    /// reject `logprobs`); label probabilities then come from the parsed answer alone.
    #[arg(long)]
    no_logprobs: bool,
}

impl RemoteArgs {
    fn options(&self) -> RemoteOptions {
        RemoteOptions {
            base_url: self.base_url.clone(),
            api_key_file: self.api_key_file.clone(),
            concurrency: self.concurrency as usize,
            requests_per_minute: self.rpm,
            tokens_per_minute: self.tpm,
            no_stream: self.no_stream,
            timeout: std::time::Duration::from_secs_f64(self.timeout.max(0.001)),
            max_attempts: self.max_attempts,
            cache: self.cache.clone(),
            no_cache: self.no_cache,
            refresh: self.refresh,
            pricing: self.pricing.clone(),
            max_cost: self.max_cost,
            logprobs: !self.no_logprobs,
        }
    }
}

impl GenerativeArgs {
    fn options(self) -> GenerativeOptions {
        GenerativeOptions {
            task: self.task,
            method: self.method,
            prompt_template: self.prompt_template,
            shots: self.shots,
            examples: self.examples,
            chat_template: self.chat_template,
            no_chat_template: self.no_chat_template,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            scorer: self.scorer,
            judge_model: self.judge_model,
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Base encoder: a HF model folder or hf:ORG/NAME[@REVISION].
    #[arg(long)]
    model: String,
    /// Labelled training data: .csv, .tsv or .jsonl.
    #[arg(long)]
    data: PathBuf,
    /// Labelled data to report accuracy on after training.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Output model folder.
    #[arg(long)]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    overwrite: bool,
    /// Freeze the encoder and fit only a linear head on its features (fast: features once,
    /// then a softmax fit). Without it, every weight is fine-tuned.
    #[arg(long)]
    head_only: bool,
    /// Features for the head: auto = what the checkpoint was trained for (mean for a
    /// sentence-transformers model, the pooler / first token otherwise).
    #[arg(long, value_enum, default_value = "auto")]
    pooling: PoolingChoice,
    /// Learning rate [default: 1e-4 for fine-tuning, 0.05 for the head-only fit].
    #[arg(long)]
    lr: Option<f64>,
    /// Weight decay [default: 0.01 AdamW decay for fine-tuning, 1e-3 L2 penalty head-only].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Head-only: most optimisation steps of the fit.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    max_steps: u64,
    /// Fine-tuning: passes over the training data.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: u64,
    /// Fine-tuning: examples per optimizer step.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Fine-tuning: truncate texts to this many tokens.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
    max_len: u64,
    /// Fine-tuning: share of the steps spent warming the learning rate up from 0.
    #[arg(long, default_value_t = 0.06)]
    warmup_ratio: f64,
    /// Fine-tuning: clip the gradients' global L2 norm to this (0 = off).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Fine-tuning: weight each class's loss by n / (classes * count), for imbalanced data.
    #[arg(long)]
    class_weights: bool,
    /// Fine-tuning: stop after this many epochs without a better --eval macro-F1 (the best
    /// epoch's weights are saved).
    #[arg(long, requires = "eval")]
    patience: Option<usize>,
    /// Fine-tuning: continue an interrupted run from its checkpoint (OUT.checkpoint).
    #[arg(long)]
    resume: bool,
    /// Stop as Ctrl-C would after this many steps (for testing --resume).
    #[arg(long, hide = true)]
    stop_after_steps: Option<u64>,
    #[command(flatten)]
    data_args: DataArgs,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// Runs the command line; returns the process exit code: 0 ok, 1 a quality gate failed (a
/// suite's model, a bench SLO, a hosted API's items that failed every retry), 2 an error.
pub fn main() -> i32 {
    let cli = Cli::parse();
    crate::runtime::configure_memory();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("taskbench: {err:#}");
            2
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Eval(args) => run_eval(*args),
        Command::Train(args) => run_train(args),
        Command::Serve(args) => run_serve(args),
        Command::Run(args) => run_suite(args),
        Command::Report(args) => run_report(args),
        Command::Bench(args) => run_bench(*args),
    }
}

fn run_suite(args: RunArgs) -> anyhow::Result<i32> {
    let threads = configure_threads(args.runtime.threads.map(|n| n as usize));
    let suite = Suite::load(&args.suite)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(&suite.file.name));
    let record = crate::run::suite::run_suite(&SuiteOptions {
        suite,
        out: out.clone(),
        only: args.only,
        rerun: args.rerun,
        device: args.runtime.device,
        threads,
        progress: !args.runtime.quiet,
    })?;
    let written = report::suite::write_reports(&out)?;
    print_stdout(&report::suite::render_terminal(&written.summary));
    print_stdout(&format!(
        "report: {}
(also {} and {})
",
        written.html.display(),
        written.markdown.display(),
        written.json.display()
    ));
    let failed = record
        .models
        .iter()
        .filter(|m| m.status == Status::Failed)
        .count();
    if failed > 0 {
        eprintln!(
            "taskbench: {failed} model(s) failed; their errors are in {}",
            out.join("run.json").display()
        );
        return Ok(1);
    }
    Ok(0)
}

fn run_bench(args: BenchArgs) -> anyhow::Result<i32> {
    let threads = configure_threads(args.runtime.threads.map(|n| n as usize));
    if !(args.min_duration.is_finite() && args.min_duration >= 0.0) {
        anyhow::bail!(
            "--min-duration {}: expected seconds, 0 or more",
            args.min_duration
        );
    }
    let opts = BenchOptions {
        eval: EvalOptions {
            model: args.model,
            data: args.data,
            load: args.data_args.load_options(),
            label_map: None,
            unknown_labels: UnknownLabels::Error,
            limit: args.limit.map(|n| n as usize),
            seed: args.runtime.seed,
            device: args.runtime.device,
            threads,
            precision: args.precision,
            max_batch_tokens: args.runtime.max_batch_tokens as usize,
            max_batch_items: args.max_batch as usize,
            single_stream: false,
            warmup: args.warmup,
            progress: !args.runtime.quiet,
            generative: args.generative.options(),
            hourly_cost: None,
            utilisation: Utilisation::FULL,
            remote: RemoteOptions {
                base_url: args.base_url,
                api_key_file: args.api_key_file,
                no_cache: true,
                ..RemoteOptions::default()
            },
        },
        scenario: args.scenario,
        qps: args.qps,
        slo_ms: args.slo_ms,
        percentile: args.percentile,
        find_max_qps: args.find_max_qps,
        min_queries: args.min_queries,
        min_duration: std::time::Duration::from_secs_f64(args.min_duration),
        warmup: args.warmup,
        workers: args.workers,
        max_lag_ms: args.max_lag_ms,
        max_batch: args.max_batch as usize,
        allow_paid: args.allow_paid,
    };
    let results = crate::run::bench::bench(&opts)?;
    let written = match &args.out {
        Some(dir) => Some(report::bench::write_bench(dir, &results)?),
        None => None,
    };
    print_stdout(&report::bench::render_bench(&results));
    if let Some(path) = written {
        print_stdout(&format!("wrote {}\n", path.display()));
    }
    let failed = results
        .result
        .as_ref()
        .is_some_and(|r| r.passed == Some(false))
        || (opts.find_max_qps && results.result.is_none());
    Ok(if failed { 1 } else { 0 })
}

fn run_report(args: ReportArgs) -> anyhow::Result<i32> {
    let written = report::suite::write_reports(&args.run_dir)?;
    print_stdout(&report::suite::render_terminal(&written.summary));
    print_stdout(&format!(
        "wrote {}, {} and {}\n",
        written.html.display(),
        written.markdown.display(),
        written.json.display()
    ));
    Ok(0)
}

fn run_serve(args: ServeArgs) -> anyhow::Result<i32> {
    configure_threads(args.runtime.threads.map(|n| n as usize));
    let model = if crate::models::causal::is_causal_lm(&args.model) {
        let lm = crate::models::causal::CausalLm::load(
            std::path::Path::new(&args.model),
            args.chat_template.as_deref(),
        )?;
        crate::serve::LocalModel::Generative(Box::new(lm))
    } else {
        let loaded = crate::run::load_encoder(&args.model, &args.runtime.device, args.precision)?;
        loaded.encoder.require_head()?;
        crate::serve::LocalModel::Classifier(Box::new(loaded.encoder))
    };
    let name = args.name.unwrap_or_else(|| {
        std::path::Path::new(&args.model)
            .file_name()
            .map_or(args.model.clone(), |n| n.to_string_lossy().into_owned())
    });
    let addr = std::net::SocketAddr::new(args.host, args.port);
    crate::serve::serve(model, &name, addr, args.runtime.max_batch_tokens as usize)?;
    Ok(0)
}

fn run_eval(args: EvalArgs) -> anyhow::Result<i32> {
    let threads = configure_threads(args.runtime.threads.map(|n| n as usize));
    let opts = EvalOptions {
        model: args.model,
        data: args.data,
        load: args.data_args.load_options(),
        label_map: args.label_map,
        unknown_labels: args.unknown_labels,
        limit: args.limit.map(|n| n as usize),
        seed: args.runtime.seed,
        device: args.runtime.device,
        threads,
        precision: args.precision,
        max_batch_tokens: args.runtime.max_batch_tokens as usize,
        max_batch_items: args.max_batch_items as usize,
        single_stream: !args.no_single_stream,
        warmup: args.warmup,
        progress: !args.runtime.quiet,
        generative: args.generative.options(),
        hourly_cost: args.hourly_cost,
        utilisation: Utilisation::new(args.utilisation)?,
        remote: args.remote.options(),
    };
    if args.remote.dry_run {
        if !crate::models::remote::is_remote_spec(&opts.model) {
            anyhow::bail!(
                "--dry-run estimates hosted-API runs; --model {} is local",
                opts.model
            );
        }
        let estimate = crate::run::remote::estimate(&opts, &opts.generative, &opts.remote)?;
        print_stdout(&format!("{estimate}\n"));
        return Ok(0);
    }
    let outcome = eval(&opts)?;
    // Files first: a closed stdout (`| head`) must not lose the results.
    let written = match &args.out {
        Some(out) => {
            let results = report::results::write_results(out, &outcome.results)?;
            let predictions = report::predictions::write_predictions(out, &outcome.predictions)?;
            Some(format!(
                "wrote {} and {}\n",
                results.display(),
                predictions.display()
            ))
        }
        None => None,
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout());
    print_stdout(&report::table::render_eval(&outcome.results, color));
    print_stdout(&written.unwrap_or_default());
    Ok(failed_items(&outcome.results, args.out.as_deref()))
}

/// Exit code 1 when a hosted API left items unanswered after every retry: the numbers then
/// cover fewer items than were asked for, which a script must not take for a clean run.
/// Items held back by --max-cost or Ctrl-C were the user's choice and do not count.
fn failed_items(results: &report::results::EvalResults, out: Option<&std::path::Path>) -> i32 {
    let failed = results.api.as_ref().map_or(0, |api| api.failed);
    if failed == 0 {
        return 0;
    }
    let errors = match out {
        Some(dir) => format!(
            "each one's error is in {}",
            dir.join("predictions.jsonl").display()
        ),
        None => "pass --out to keep each one's error".into(),
    };
    eprintln!(
        "taskbench: {failed} of {} items failed after every retry; {errors}",
        results.dataset.rows_evaluated
    );
    1
}

fn run_train(args: TrainArgs) -> anyhow::Result<i32> {
    let threads = configure_threads(args.runtime.threads.map(|n| n as usize));
    if args.head_only {
        return run_head_only(args, threads);
    }
    let opts = FinetuneOptions {
        model: args.model,
        data: args.data,
        eval: args.eval,
        out: args.out,
        overwrite: args.overwrite,
        resume: args.resume,
        pooling: args.pooling,
        load: args.data_args.load_options(),
        device: args.runtime.device,
        seed: args.runtime.seed,
        hyper: Hyperparameters {
            epochs: args.epochs as usize,
            learning_rate: args.lr.unwrap_or(1e-4),
            batch_size: args.batch_size as usize,
            max_len: args.max_len as usize,
            warmup_ratio: args.warmup_ratio,
            weight_decay: args.weight_decay.unwrap_or(0.01),
            max_grad_norm: args.max_grad_norm,
            class_weights: args.class_weights,
        },
        patience: args.patience,
        progress: !args.runtime.quiet,
        stop_after_steps: args.stop_after_steps,
    };
    let record = finetune::full(&opts)?;
    print_stdout(&format!(
        "fine-tuned {} ({} labels, {} pooling) on {} rows of {}: {} epochs in {:.1}s ({:.1} items/s){}\n",
        record.base_model,
        record.labels.len(),
        record.pooling,
        record.data.rows,
        record.data.path,
        record.epochs.len(),
        record.seconds.training,
        record.train_items_per_second,
        describe_eval(&record)
    ));
    print_stdout(&format!(
        "wrote {} ({})\n",
        opts.out.display(),
        record.output_layout
    ));
    Ok(0)
}

fn run_head_only(args: TrainArgs, threads: usize) -> anyhow::Result<i32> {
    if args.resume {
        anyhow::bail!("--resume applies to fine-tuning; a head-only fit takes seconds, rerun it");
    }
    let opts = TrainOptions {
        model: args.model,
        data: args.data,
        eval: args.eval,
        out: args.out,
        overwrite: args.overwrite,
        pooling: args.pooling,
        load: args.data_args.load_options(),
        device: args.runtime.device,
        threads,
        max_batch_tokens: args.runtime.max_batch_tokens as usize,
        seed: args.runtime.seed,
        fit: FitOptions {
            weight_decay: args.weight_decay.unwrap_or(1e-3) as f32,
            learning_rate: args.lr.unwrap_or(0.05) as f32,
            max_steps: args.max_steps as usize,
            ..Default::default()
        },
        progress: !args.runtime.quiet,
    };
    let record = head_only(&opts)?;
    print_stdout(&format!(
        "trained a linear head ({} labels, {} pooling) on {} rows of {} in {:.1}s (features {:.1}s, fit {:.1}s): train accuracy {:.3}{}\n",
        record.labels.len(),
        record.pooling,
        record.data.rows,
        record.data.path,
        record.seconds.total,
        record.seconds.features.unwrap_or_default(),
        record.seconds.fit.unwrap_or_default(),
        record.head_fit.as_ref().map_or(f32::NAN, |f| f.train_accuracy),
        describe_eval(&record)
    ));
    print_stdout(&format!(
        "wrote {} ({})\n",
        opts.out.display(),
        record.output_layout
    ));
    Ok(0)
}

fn describe_eval(record: &TrainingRecord) -> String {
    record
        .eval
        .as_ref()
        .map(|e| {
            format!(
                ", on {}: accuracy {:.4}, macro-F1 {:.4}",
                e.path, e.accuracy, e.macro_f1
            )
        })
        .unwrap_or_default()
}

/// Writes to stdout; a reader that went away (`taskbench eval ... | head`) is not an error
/// worth a panic, so the output just stops.
fn print_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        std::process::exit(0);
    }
}
