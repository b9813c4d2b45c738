//! `taskbench train --head-only`: a linear softmax head on a frozen encoder's features.
//!
//! Features come from the pooling the checkpoint was trained for (`--pooling auto`): the mean
//! over real tokens for a sentence-transformers model such as all-MiniLM-L6-v2, BERT's pooler
//! output for a plain HF checkpoint. The choice matters: on a 77-intent banking set, a head on
//! MiniLM's pooler output scores about 13 points below one on its mean-pooled output.
//! Full fine-tuning will slot in beside this as another `TrainMode`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;

use crate::data::{self, Dataset, LoadOptions};
use crate::models::encoder::head::Pooling;
use crate::models::encoder::save::{load_with_prefix, matrix, save, Backbone, Layout, ModelToSave};
use crate::models::encoder::{Encoder, Precision};
use crate::models::TokenizedText;
use crate::report::environment::Environment;
use crate::runtime::batching::token_budget_batches;
use crate::runtime::DeviceSpec;
use crate::train::softmax::{fit, FitOptions, FitReport, LinearHead};

/// `--pooling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PoolingChoice {
    /// What the checkpoint was trained for.
    Auto,
    Cls,
    Mean,
}

pub struct TrainOptions {
    pub model: String,
    pub data: PathBuf,
    pub eval: Option<PathBuf>,
    pub out: PathBuf,
    pub overwrite: bool,
    pub pooling: PoolingChoice,
    pub load: LoadOptions,
    pub device: DeviceSpec,
    pub threads: usize,
    pub max_batch_tokens: usize,
    pub seed: u64,
    pub fit: FitOptions,
    pub progress: bool,
}

/// `training.json`: what was trained, on what, how long it took (both recipes).
#[derive(Debug, Serialize)]
pub struct TrainingRecord {
    pub schema_version: u32,
    /// `head-only` or `full`.
    pub recipe: &'static str,
    pub base_model: String,
    pub base_weights_sha256: String,
    pub data: DataRecord,
    /// The `--eval` split's scores with the saved weights.
    pub eval: Option<EvalRecord>,
    pub labels: Vec<String>,
    pub pooling: String,
    pub normalize: bool,
    pub hyperparameters: serde_json::Value,
    /// Head-only: how the softmax fit ended.
    pub head_fit: Option<FitReport>,
    /// Full fine-tuning: one entry per epoch run.
    pub epochs: Vec<EpochRecord>,
    /// Full fine-tuning with `--eval`: the epoch whose weights were saved.
    pub best_epoch: Option<usize>,
    pub seed: u64,
    pub seconds: Timing,
    /// Training examples processed per second of training (features + fit for head-only).
    pub train_items_per_second: f64,
    pub environment: Environment,
    pub output_layout: &'static str,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub eval_accuracy: Option<f64>,
    pub eval_macro_f1: Option<f64>,
    pub seconds: f64,
    pub items_per_second: f64,
}

#[derive(Debug, Serialize)]
pub struct DataRecord {
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    pub per_label: Vec<(String, usize)>,
}

#[derive(Debug, Serialize)]
pub struct EvalRecord {
    pub path: String,
    pub sha256: String,
    pub rows: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
}

#[derive(Debug, Serialize)]
pub struct Timing {
    pub load: f64,
    /// Head-only: computing the frozen features.
    pub features: Option<f64>,
    /// Head-only: the softmax fit.
    pub fit: Option<f64>,
    /// All of training (features + fit, or every epoch with its evaluation).
    pub training: f64,
    pub total: f64,
}

pub fn head_only(opts: &TrainOptions) -> anyhow::Result<TrainingRecord> {
    let start = Instant::now();
    check_output(&opts.out, opts.overwrite)?;
    let (train, labels, eval_data) = load_splits(&opts.data, opts.eval.as_deref(), &opts.load)?;
    let loaded = super::load_encoder(&opts.model, &opts.device, Precision::Fp32)?;
    let encoder = &loaded.encoder;
    let (pooling, normalize) = resolve_pooling(encoder, opts.pooling);
    let through_pooler = pooling == Pooling::Cls && encoder.pooler().is_some();

    let features_start = Instant::now();
    let features = extract(encoder, &train, pooling, normalize, opts, "features")?;
    let features_seconds = features_start.elapsed().as_secs_f64();
    let targets: Vec<usize> = train
        .examples
        .iter()
        .map(|e| {
            labels
                .iter()
                .position(|l| Some(l) == e.label.as_ref())
                .expect("labels come from this data")
        })
        .collect();

    let fit_start = Instant::now();
    let (head, fit_report) = fit(&features, &targets, labels.len(), &opts.fit);
    let fit_seconds = fit_start.elapsed().as_secs_f64();
    if !fit_report.final_loss.is_finite() {
        bail!(
            "training diverged (loss {}); lower --lr or raise --weight-decay",
            fit_report.final_loss
        );
    }
    let eval = match &eval_data {
        Some(eval) => Some(evaluate_head(
            encoder, eval, &head, &labels, pooling, normalize, opts,
        )?),
        None => None,
    };

    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out)
            .with_context(|| format!("{}: cannot replace", opts.out.display()))?;
    }
    let readme = readme(
        &opts.model,
        &labels,
        pooling,
        through_pooler,
        normalize,
        encoder.max_tokens(),
    );
    let layout = head_layout(&loaded.dir, &head, pooling, through_pooler, normalize)?;
    save(
        &ModelToSave {
            source_dir: &loaded.dir,
            labels: &labels,
            layout,
            max_tokens: encoder.max_tokens(),
            readme,
        },
        &opts.out,
    )?;
    let record = TrainingRecord {
        schema_version: 1,
        recipe: "head-only",
        base_model: opts.model.clone(),
        base_weights_sha256: encoder.info_sha256(),
        data: DataRecord::of(&train),
        eval,
        labels,
        pooling: describe_pooling(pooling, through_pooler),
        normalize,
        hyperparameters: serde_json::to_value(&opts.fit)?,
        head_fit: Some(fit_report),
        epochs: Vec::new(),
        best_epoch: None,
        seed: opts.seed,
        seconds: Timing {
            load: loaded.load_seconds,
            features: Some(features_seconds),
            fit: Some(fit_seconds),
            training: features_seconds + fit_seconds,
            total: start.elapsed().as_secs_f64(),
        },
        train_items_per_second: train.examples.len() as f64 / (features_seconds + fit_seconds),
        environment: Environment::detect(),
        output_layout: if through_pooler {
            "hf-bert-sequence-classification"
        } else {
            "sentence-transformers-dense"
        },
    };
    write_record(&opts.out, &record)?;
    Ok(record)
}

/// Writes `training.json` into the model folder.
pub(super) fn write_record(out: &Path, record: &TrainingRecord) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(record)?;
    std::fs::write(out.join("training.json"), json + "\n")
        .with_context(|| format!("{}: cannot write training.json", out.display()))?;
    Ok(())
}

impl DataRecord {
    pub(super) fn of(data: &Dataset) -> Self {
        Self {
            path: data.path.display().to_string(),
            sha256: data.sha256.clone(),
            rows: data.examples.len(),
            per_label: data.label_counts(),
        }
    }
}

/// Accuracy and macro-F1 of `predicted` (indices into `labels`) on a labelled split whose
/// labels were checked to be among `labels`.
pub(super) fn eval_record(
    eval: &Dataset,
    labels: &[String],
    predicted: &[usize],
) -> anyhow::Result<EvalRecord> {
    let gold: Vec<Option<usize>> = eval
        .examples
        .iter()
        .map(|e| {
            e.label
                .as_ref()
                .and_then(|l| labels.iter().position(|x| x == l))
        })
        .collect();
    let metrics = crate::metrics::classification_metrics(&gold, predicted, labels)?;
    Ok(EvalRecord {
        path: eval.path.display().to_string(),
        sha256: eval.sha256.clone(),
        rows: eval.examples.len(),
        accuracy: metrics.accuracy,
        macro_f1: metrics.macro_f1,
    })
}

/// The fitted head on the unchanged backbone, in the layout its pooling calls for.
fn head_layout(
    base: &Path,
    head: &LinearHead,
    pooling: Pooling,
    through_pooler: bool,
    normalize: bool,
) -> anyhow::Result<Layout> {
    let weight = matrix(&head.weight)?;
    let bias = candle_core::Tensor::new(head.bias.as_slice(), &candle_core::Device::Cpu)?;
    let weights = base.join("model.safetensors");
    if through_pooler {
        let mut tensors = load_with_prefix(&weights, "bert")?;
        tensors.insert("classifier.weight".into(), weight);
        tensors.insert("classifier.bias".into(), bias);
        return Ok(Layout::HfClassifier {
            architecture: "BertForSequenceClassification".into(),
            tensors,
        });
    }
    Ok(Layout::SentenceTransformers {
        backbone: Backbone::CopyFile(weights),
        pooling,
        normalize,
        head_weight: weight,
        head_bias: bias,
    })
}

pub(super) fn check_output(out: &Path, overwrite: bool) -> anyhow::Result<()> {
    if out.exists() && !overwrite {
        bail!(
            "{}: already exists; pass --overwrite to replace it",
            out.display()
        );
    }
    if out.exists() && !out.is_dir() {
        bail!(
            "{}: is a file; --out names the model folder to write",
            out.display()
        );
    }
    Ok(())
}

/// The training split, its labels, and the optional eval split checked against them.
pub(super) fn load_splits(
    train: &Path,
    eval: Option<&Path>,
    load: &LoadOptions,
) -> anyhow::Result<(Dataset, Vec<String>, Option<Dataset>)> {
    let train = data::load(train, load)?;
    let labels = training_labels(&train)?;
    let eval = eval.map(|p| data::load(p, load)).transpose()?;
    if let Some(eval) = &eval {
        check_eval_labels(eval, &labels)?;
    }
    Ok((train, labels, eval))
}

/// The labels to learn, sorted so that the same data always gives the same ids.
fn training_labels(train: &Dataset) -> anyhow::Result<Vec<String>> {
    if train.examples.is_empty() {
        bail!("{}: no rows to train on", train.path.display());
    }
    let mut labels = train.labels();
    labels.sort();
    if labels.len() < 2 {
        bail!(
            "{}: every row has the label {:?}; a classifier needs at least two labels",
            train.path.display(),
            labels.first().map(String::as_str).unwrap_or("")
        );
    }
    Ok(labels)
}

fn check_eval_labels(eval: &Dataset, labels: &[String]) -> anyhow::Result<()> {
    let unseen: Vec<String> = eval
        .labels()
        .into_iter()
        .filter(|l| !labels.contains(l))
        .collect();
    if !unseen.is_empty() {
        bail!(
            "{}: labels not in the training data: {}",
            eval.path.display(),
            unseen.join(", ")
        );
    }
    Ok(())
}

pub(super) fn resolve_pooling(encoder: &Encoder, choice: PoolingChoice) -> (Pooling, bool) {
    let pooling = match choice {
        PoolingChoice::Auto => encoder.default_pooling(),
        PoolingChoice::Cls => Pooling::Cls,
        PoolingChoice::Mean => Pooling::Mean,
    };
    // Normalising belongs to the sentence-transformers recipe; keep it with that pooling.
    let normalize = encoder.normalizes() && pooling == encoder.default_pooling();
    (pooling, normalize)
}

pub(super) fn describe_pooling(pooling: Pooling, through_pooler: bool) -> String {
    match (pooling, through_pooler) {
        (Pooling::Mean, _) => "mean".into(),
        (Pooling::Cls, true) => "cls+pooler".into(),
        (Pooling::Cls, false) => "cls".into(),
    }
}

/// Pooled features of every example, in order, batched by token budget.
fn extract(
    encoder: &Encoder,
    data: &Dataset,
    pooling: Pooling,
    normalize: bool,
    opts: &TrainOptions,
    what: &str,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let tokenized = encoder.encode(&texts)?;
    let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
    let batches = token_budget_batches(&lengths, opts.max_batch_tokens, 256);
    let bar = super::progress(texts.len(), what, opts.progress);
    let mut features = vec![Vec::new(); texts.len()];
    for batch in batches {
        let items: Vec<&TokenizedText> = batch.indices.iter().map(|&i| &tokenized[i]).collect();
        let rows = encoder.feature_rows(&items, pooling, normalize)?;
        for (i, row) in batch.indices.iter().zip(rows) {
            features[*i] = row;
        }
        bar.inc(batch.indices.len() as u64);
    }
    bar.finish_and_clear();
    Ok(features)
}

fn evaluate_head(
    encoder: &Encoder,
    eval: &Dataset,
    head: &LinearHead,
    labels: &[String],
    pooling: Pooling,
    normalize: bool,
    opts: &TrainOptions,
) -> anyhow::Result<EvalRecord> {
    let features = extract(encoder, eval, pooling, normalize, opts, "eval")?;
    let predicted: Vec<usize> = features.iter().map(|f| head.predict(f)).collect();
    eval_record(eval, labels, &predicted)
}

fn readme(
    base: &str,
    labels: &[String],
    pooling: Pooling,
    through_pooler: bool,
    normalize: bool,
    max_tokens: usize,
) -> String {
    let label_list = labels.join(", ");
    if through_pooler {
        return format!(
            "# Classifier: {base} + linear head (taskbench train --head-only)\n\n\
A frozen `{base}` with a linear head on BERT's pooler output, saved as a Hugging Face \
`BertForSequenceClassification`. Labels: {label_list}.\n\n\
```python\nfrom transformers import AutoTokenizer, AutoModelForSequenceClassification\nimport torch\n\n\
tok = AutoTokenizer.from_pretrained(PATH)\nmodel = AutoModelForSequenceClassification.from_pretrained(PATH).eval()\n\
enc = tok(texts, padding=True, truncation=True, max_length={max_tokens}, return_tensors=\"pt\")\n\
with torch.no_grad():\n    probs = model(**enc).logits.softmax(-1)\n\
labels = [model.config.id2label[i] for i in probs.argmax(-1).tolist()]\n```\n\n\
`training.json` records the data, settings and timings.\n"
        );
    }
    let pool = match pooling {
        Pooling::Mean => "mask = enc[\"attention_mask\"].unsqueeze(-1).float()\nfeatures = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)",
        Pooling::Cls => "features = hidden[:, 0]",
    };
    let norm = if normalize {
        "\nfeatures = torch.nn.functional.normalize(features, dim=-1)"
    } else {
        ""
    };
    let dense = if normalize { "3_Dense" } else { "2_Dense" };
    format!(
        "# Classifier: {base} + linear head (taskbench train --head-only)\n\n\
A frozen `{base}` with a linear head on its {} features, saved in the sentence-transformers \
layout: the head is the `Dense` module in `{dense}/` (identity activation, outputs are logits) \
and the labels are `id2label` in `config.json`. Labels: {label_list}.\n\n\
With sentence-transformers: `SentenceTransformer(PATH).encode(texts)` returns the logits.\n\n\
With transformers alone:\n\n\
```python\nfrom transformers import AutoTokenizer, AutoModel\nfrom safetensors.torch import load_file\nimport torch\n\n\
tok = AutoTokenizer.from_pretrained(PATH)\nmodel = AutoModel.from_pretrained(PATH).eval()\n\
head = load_file(f\"{{PATH}}/{dense}/model.safetensors\")\n\
enc = tok(texts, padding=True, truncation=True, max_length={max_tokens}, return_tensors=\"pt\")\n\
with torch.no_grad():\n    hidden = model(**enc).last_hidden_state\n{pool}{norm}\n\
probs = (features @ head[\"linear.weight\"].T + head[\"linear.bias\"]).softmax(-1)\n\
labels = [model.config.id2label[i] for i in probs.argmax(-1).tolist()]\n```\n\n\
`training.json` records the data, settings and timings.\n",
        if pooling == Pooling::Mean { "mean-pooled" } else { "first-token" }
    )
}
