//! `taskbench run SUITE.toml`: trains and evaluates every model a comparison needs on the same
//! test items, into one run folder that `taskbench report` reads on its own.
//!
//! Run folder layout:
//! - `suite.toml`: the suite as given, so the report needs nothing else;
//! - `run.json`: what happened to each model (evaluated, reused, skipped, failed);
//! - `models/NAME/`: classifiers trained by the suite, with `training.json`;
//! - `evals/NAME/`: `results.json`, `predictions.jsonl` and `inputs.json`, the fingerprint of
//!   everything the results depend on. A model whose fingerprint is unchanged is reused, not
//!   rerun; a finished model's files are written before the next model starts.

mod fingerprint;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use self::fingerprint::{Fingerprint, INPUTS_FILE};
use super::eval::{eval, EvalOptions, UnknownLabels};
use super::generative::{GenerativeOptions, Method};
use super::remote::RemoteOptions;
use super::train::PoolingChoice;
use crate::cost::{Usd, Utilisation};
use crate::data::LoadOptions;
use crate::report::{predictions, results};
use crate::runtime::DeviceSpec;
use crate::suite::{
    record, ModelEntry, ModelKind, ModelRun, RunRecord, Suite, TrainRecipe, EVALS_DIR, MODELS_DIR,
    SUITE_COPY,
};

/// What `taskbench run` was asked to do.
pub struct SuiteOptions {
    pub suite: Suite,
    /// The run folder.
    pub out: PathBuf,
    /// Run only these models (the others keep their earlier results, if any).
    pub only: Vec<String>,
    /// Rerun models whose inputs did not change.
    pub rerun: bool,
    pub device: DeviceSpec,
    pub threads: usize,
    pub progress: bool,
}

/// Runs the suite; returns what happened to each model. Finished work is on disk before the
/// next model starts, so an interrupted run resumes where it stopped.
pub fn run_suite(opts: &SuiteOptions) -> anyhow::Result<RunRecord> {
    let suite = &opts.suite;
    check_inputs(suite, &opts.only)?;
    prepare_run_folder(&opts.out, suite)?;
    let previous = record::read_existing(&opts.out)?;
    let mut runs = Vec::new();
    for entry in &suite.file.models {
        if !opts.only.is_empty() && !opts.only.contains(&entry.name) {
            let kept = previous.iter().find(|r| r.name == entry.name).cloned();
            runs.push(kept.unwrap_or_else(|| ModelRun::not_run(entry, "not in --only")));
            continue;
        }
        let run = run_model(opts, entry);
        eprintln!("{}", run.describe());
        runs.push(run);
        record::write(&opts.out, &suite.file.name, &runs)?;
    }
    let record = record::write(&opts.out, &suite.file.name, &runs)?;
    Ok(record)
}

/// Fails before any work when a file the suite names is missing, so a typo costs seconds,
/// not the hour of training before it.
fn check_inputs(suite: &Suite, only: &[String]) -> anyhow::Result<()> {
    let at = suite.path.display();
    for name in only {
        if suite.entry(name).is_none() {
            let known: Vec<&str> = suite.file.models.iter().map(|m| m.name.as_str()).collect();
            anyhow::bail!(
                "--only {name}: {at} has no model of that name (it has: {})",
                known.join(", ")
            );
        }
    }
    let data = &suite.file.data;
    for (what, path) in [("test", Some(&data.test)), ("train", data.train.as_ref())] {
        if let Some(path) = path {
            if !path.is_file() {
                anyhow::bail!("{at}: [data] {what} = {}: no such file", path.display());
            }
        }
    }
    if let Some(pricing) = &suite.file.costs.pricing {
        if !pricing.is_file() {
            anyhow::bail!(
                "{at}: [costs] pricing = {}: no such file",
                pricing.display()
            );
        }
    }
    let test = crate::data::load(&data.test, &load_options(suite))?;
    if let Some(matrix) = &suite.file.cost_matrix {
        matrix
            .validate(&test.labels())
            .map_err(|e| anyhow::anyhow!("{at}: [cost_matrix]: {e}"))?;
    }
    for entry in &suite.file.models {
        let spec = entry
            .model
            .as_ref()
            .or(entry.base.as_ref())
            .or(entry.serve.as_ref());
        let Some(spec) = spec else { continue };
        let is_path = !spec.contains(':') || Path::new(spec).exists();
        if is_path && !Path::new(spec).exists() {
            anyhow::bail!(
                "{at}: model {:?}: {spec}: no such file or folder (run `make models` for the bundled ones)",
                entry.name
            );
        }
    }
    Ok(())
}

fn prepare_run_folder(out: &Path, suite: &Suite) -> anyhow::Result<()> {
    std::fs::create_dir_all(out.join(EVALS_DIR))
        .with_context(|| format!("{}: cannot create the run folder", out.display()))?;
    let copy = out.join(SUITE_COPY);
    std::fs::write(&copy, &suite.source)
        .with_context(|| format!("{}: cannot write", copy.display()))
}

/// Trains (if asked), evaluates and records one model; an error is recorded, not raised, so
/// one broken model does not cost the others' results.
fn run_model(opts: &SuiteOptions, entry: &ModelEntry) -> ModelRun {
    let start = Instant::now();
    if let Some(reason) = skip_reason(entry) {
        return ModelRun::skipped(entry, reason);
    }
    match train_and_eval(opts, entry) {
        Ok(reused) => ModelRun::done(entry, reused, start.elapsed().as_secs_f64()),
        Err(err) => ModelRun::failed(entry, format!("{err:#}"), start.elapsed().as_secs_f64()),
    }
}

/// API models whose key is not set are skipped with a line saying how to include them.
fn skip_reason(entry: &ModelEntry) -> Option<String> {
    if entry.kind() != ModelKind::Api || entry.base_url.is_some() {
        return None;
    }
    let spec = crate::models::remote::ModelSpec::parse(entry.model.as_deref()?).ok()?;
    let key_env = spec.provider.key_env();
    let url_env = spec.provider.base_url_env();
    let has_url = url_env.is_some_and(|v| std::env::var_os(v).is_some());
    if std::env::var_os(key_env).is_some() || has_url {
        return None;
    }
    Some(format!("set {key_env} to include it"))
}

/// Returns whether the results were reused.
fn train_and_eval(opts: &SuiteOptions, entry: &ModelEntry) -> anyhow::Result<bool> {
    let suite = &opts.suite;
    let eval_dir = opts.out.join(EVALS_DIR).join(&entry.name);
    let mut fingerprint = Fingerprint::for_eval(suite, entry)?;
    let mut model = entry
        .model
        .clone()
        .or(entry.serve.clone())
        .unwrap_or_default();
    if entry.kind() == ModelKind::Trained {
        let (dir, trained) = train(opts, entry)?;
        fingerprint.add("trained", &trained);
        model = dir.display().to_string();
    }
    if !opts.rerun && fingerprint.matches(&eval_dir) {
        return Ok(true);
    }
    let _ = std::fs::remove_file(eval_dir.join(INPUTS_FILE));
    let mut eval_opts = eval_options(opts, entry, model);
    let _server = match entry.kind() {
        ModelKind::Served => Some(start_server(opts, entry, &mut eval_opts)?),
        _ => None,
    };
    let outcome = eval(&eval_opts)?;
    results::write_results(&eval_dir, &outcome.results)?;
    predictions::write_predictions(&eval_dir, &outcome.predictions)?;
    fingerprint.write(&eval_dir)?;
    Ok(false)
}

/// Trains `entry` into `models/NAME` unless a model trained from the same inputs is there;
/// returns the folder and the training fingerprint.
fn train(opts: &SuiteOptions, entry: &ModelEntry) -> anyhow::Result<(PathBuf, String)> {
    let suite = &opts.suite;
    let dir = opts.out.join(MODELS_DIR).join(&entry.name);
    let fingerprint = Fingerprint::for_training(suite, entry)?;
    if !opts.rerun && fingerprint.matches(&dir) {
        return Ok((dir, fingerprint.digest()));
    }
    let base = entry.base.clone().unwrap_or_default();
    let train_data = suite.file.data.train.clone().unwrap_or_default();
    let pooling = match entry.pooling.as_deref() {
        Some("cls") => PoolingChoice::Cls,
        Some("mean") => PoolingChoice::Mean,
        _ => PoolingChoice::Auto,
    };
    let recipe = match entry.train {
        Some(TrainRecipe::HeadOnly) => "a head on the frozen encoder",
        _ => "full fine-tuning",
    };
    eprintln!("taskbench: {}: training ({recipe}) from {base}", entry.name);
    match entry.train {
        Some(TrainRecipe::HeadOnly) => {
            super::train::head_only(&super::train::TrainOptions {
                model: base,
                data: train_data,
                eval: None,
                out: dir.clone(),
                overwrite: true,
                pooling,
                load: load_options(suite),
                device: opts.device.clone(),
                threads: opts.threads,
                max_batch_tokens: 8192,
                seed: suite.file.defaults.seed,
                fit: crate::train::softmax::FitOptions {
                    learning_rate: entry.lr.unwrap_or(0.05) as f32,
                    ..Default::default()
                },
                progress: opts.progress,
            })?;
        }
        _ => {
            let defaults = super::finetune::Hyperparameters::default();
            super::finetune::full(&super::finetune::FinetuneOptions {
                model: base,
                data: train_data,
                eval: None,
                out: dir.clone(),
                overwrite: true,
                resume: false,
                pooling,
                load: load_options(suite),
                device: opts.device.clone(),
                seed: suite.file.defaults.seed,
                hyper: super::finetune::Hyperparameters {
                    epochs: entry.epochs.unwrap_or(defaults.epochs),
                    learning_rate: entry.lr.unwrap_or(defaults.learning_rate),
                    batch_size: entry.batch_size.unwrap_or(defaults.batch_size),
                    max_len: entry.max_len.unwrap_or(defaults.max_len),
                    ..defaults
                },
                patience: None,
                progress: opts.progress,
                stop_after_steps: None,
            })?;
        }
    }
    fingerprint.write(&dir)?;
    Ok((dir, fingerprint.digest()))
}

fn load_options(suite: &Suite) -> LoadOptions {
    let data = &suite.file.data;
    LoadOptions {
        text_col: data.text_col.clone(),
        label_col: data.label_col.clone(),
        id_col: data.id_col.clone(),
        ..Default::default()
    }
}

fn eval_options(opts: &SuiteOptions, entry: &ModelEntry, model: String) -> EvalOptions {
    let suite = &opts.suite.file;
    let local = entry.kind().is_local();
    let method = match entry.method.as_deref() {
        Some("generate") => Method::Generate,
        Some(_) => Method::Score,
        // Over HTTP there are no log-probabilities to score labels with.
        None if matches!(entry.kind(), ModelKind::Api | ModelKind::Served) => Method::Generate,
        None => Method::Score,
    };
    EvalOptions {
        model,
        data: suite.data.test.clone(),
        load: load_options(&opts.suite),
        label_map: None,
        unknown_labels: UnknownLabels::Error,
        limit: entry.limit.or(suite.defaults.limit),
        seed: suite.defaults.seed,
        device: opts.device.clone(),
        threads: opts.threads,
        precision: entry.precision.unwrap_or_default(),
        max_batch_tokens: 8192,
        max_batch_items: 64,
        single_stream: true,
        warmup: 10,
        progress: opts.progress,
        generative: GenerativeOptions {
            method,
            prompt_template: entry
                .prompt_template
                .clone()
                .unwrap_or_else(|| "zero-shot".into()),
            shots: entry.shots,
            examples: entry.shots.and(suite.data.train.clone()),
            max_tokens: entry.max_tokens,
            ..GenerativeOptions::default()
        },
        hourly_cost: local
            .then(|| suite.costs.hourly_usd.and_then(Usd::from_dollars))
            .flatten(),
        utilisation: Utilisation::new(suite.costs.utilisation).unwrap_or(Utilisation::FULL),
        remote: RemoteOptions {
            base_url: entry.base_url.clone(),
            concurrency: entry.concurrency.unwrap_or(suite.defaults.concurrency),
            requests_per_minute: entry.rpm,
            pricing: suite.costs.pricing.clone(),
            max_cost: entry.max_cost_usd.and_then(Usd::from_dollars),
            ..RemoteOptions::default()
        },
    }
}

/// Starts `taskbench serve` for `entry` on a free loopback port and points `eval_opts` at it
/// as an OpenAI-compatible API. The cache is off: a served model is measured, not replayed.
fn start_server(
    opts: &SuiteOptions,
    entry: &ModelEntry,
    eval_opts: &mut EvalOptions,
) -> anyhow::Result<crate::serve::BackgroundServer> {
    let path = entry.serve.clone().unwrap_or_default();
    let lm = crate::models::causal::CausalLm::load(Path::new(&path), None)?;
    let server = crate::serve::BackgroundServer::start(
        crate::serve::LocalModel::Generative(Box::new(lm)),
        &entry.name,
        "127.0.0.1:0".parse().expect("a literal address"),
        8192,
    )?;
    eprintln!(
        "taskbench: {}: serving {path} on {}",
        entry.name,
        server.base_url()
    );
    eval_opts.model = format!("openai:{}", entry.name);
    eval_opts.remote.base_url = Some(server.base_url());
    eval_opts.remote.no_cache = true;
    eval_opts.remote.concurrency = entry.concurrency.unwrap_or(1);
    eval_opts.hourly_cost = opts.suite.file.costs.hourly_usd.and_then(Usd::from_dollars);
    Ok(server)
}
