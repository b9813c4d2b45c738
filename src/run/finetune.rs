//! `taskbench train` (full fine-tuning): every weight of the encoder and a new head trained on
//! the team's labelled data, as `../shared/anchors/finetune.py` does with PyTorch: AdamW with
//! decoupled weight decay, linear warm-up then decay, gradient clipping, dropout as the config
//! says, seeded shuffling.
//!
//! Batches are drawn from length buckets, so that the padded attention block of the training
//! forward wastes little (every other layer runs on packed tokens, with no padding at all). Each epoch ends with a checkpoint (weights, optimizer
//! moments, the dropout stream's position, history) written next to `--out` and renamed into
//! place; Ctrl-C stops after the current step with a checkpoint of the exact position, and
//! `--resume` continues from it to the same result an uninterrupted run gives.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::train::{
    check_output, describe_pooling, eval_record, load_splits, write_record, DataRecord,
    EpochRecord, PoolingChoice, Timing, TrainingRecord,
};
use crate::data::{Dataset, LoadOptions};
use crate::models::encoder::head::Pooling;
use crate::models::encoder::save::{save, ModelToSave};
use crate::models::encoder::trainable::Trainable;
use crate::models::encoder::{Encoder, Precision};
use crate::models::TokenizedText;
use crate::report::environment::Environment;
use crate::runtime::DeviceSpec;
use crate::train::argmax_rows;
use crate::train::optim::{clip_grad_norm, linear_warmup_decay, AdamW, AdamWConfig};

pub struct FinetuneOptions {
    pub model: String,
    pub data: PathBuf,
    pub eval: Option<PathBuf>,
    pub out: PathBuf,
    pub overwrite: bool,
    pub resume: bool,
    pub pooling: PoolingChoice,
    pub load: LoadOptions,
    pub device: DeviceSpec,
    pub seed: u64,
    pub hyper: Hyperparameters,
    /// Early stopping: stop after this many epochs without a better eval macro-F1.
    pub patience: Option<usize>,
    pub progress: bool,
    /// Stop (as Ctrl-C would) after this many optimizer steps; for tests of `--resume`.
    pub stop_after_steps: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    pub epochs: usize,
    pub learning_rate: f64,
    pub batch_size: usize,
    pub max_len: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Weight each class's loss by `n / (classes * count)` (scikit-learn's "balanced").
    pub class_weights: bool,
}

impl Default for Hyperparameters {
    /// `taskbench train`'s defaults.
    fn default() -> Self {
        Hyperparameters {
            epochs: 4,
            learning_rate: 1e-4,
            batch_size: 32,
            max_len: 128,
            warmup_ratio: 0.06,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            class_weights: false,
        }
    }
}

/// Set by the Ctrl-C handler; the loop stops after its current step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Where a run stands, saved with every checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    /// Identifies the run: a checkpoint only resumes the same data, model and settings.
    fingerprint: String,
    epoch: usize,
    batches_done: usize,
    steps: u64,
    dropout_word_pos: u128,
    history: Vec<EpochRecord>,
    best: Option<(usize, f64)>,
    epochs_without_gain: usize,
    loss_sum: f64,
    train_seconds: f64,
    /// Time already spent in the current epoch before an interruption.
    epoch_seconds: f64,
}

pub fn full(opts: &FinetuneOptions) -> anyhow::Result<TrainingRecord> {
    let start = Instant::now();
    if !opts.resume {
        check_output(&opts.out, opts.overwrite)?;
    }
    install_interrupt_handler();
    let (train, labels, eval_data) = load_splits(&opts.data, opts.eval.as_deref(), &opts.load)?;
    let mut loaded = super::load_encoder(&opts.model, &opts.device, Precision::Fp32)?;
    loaded
        .encoder
        .set_max_tokens(opts.hyper.max_len.min(loaded.encoder.max_tokens()))?;
    let base = &loaded.encoder;
    let pooling = match opts.pooling {
        PoolingChoice::Auto => base.default_pooling(),
        PoolingChoice::Cls => Pooling::Cls,
        PoolingChoice::Mean => Pooling::Mean,
    };
    let model = Trainable::new(base, labels.len(), pooling, opts.seed)?;
    let fingerprint = fingerprint(opts, &train, eval_data.as_ref(), base, pooling);
    let checkpoint = checkpoint_dir(&opts.out);

    let texts: Vec<&str> = train.examples.iter().map(|e| e.text.as_str()).collect();
    let tokenized = base.encode(&texts)?;
    let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
    let targets: Vec<u32> = train
        .examples
        .iter()
        .map(|e| {
            labels
                .iter()
                .position(|l| Some(l) == e.label.as_ref())
                .expect("labels come from this data") as u32
        })
        .collect();
    let eval_set = match &eval_data {
        Some(eval) => Some((
            eval,
            base.encode(
                &eval
                    .examples
                    .iter()
                    .map(|e| e.text.as_str())
                    .collect::<Vec<_>>(),
            )?,
        )),
        None => None,
    };
    let class_weights = opts
        .hyper
        .class_weights
        .then(|| balanced_weights(&targets, labels.len()));
    // The base model's weights (a candle copy and the fused CPU path's copy) are not needed
    // once the trainable copy exists and the texts are tokenized: keep what the output needs
    // and free them (180 MB for MiniLM, a sixth of training's peak).
    let base_dir = base.dir().to_owned();
    let base_sha256 = base.info_sha256();
    let through_pooler = pooling == Pooling::Cls && base.pooler().is_some();
    let load_seconds = loaded.load_seconds;
    drop(loaded);

    let batches_per_epoch = tokenized.len().div_ceil(opts.hyper.batch_size);
    let total_steps = (opts.hyper.epochs * batches_per_epoch) as u64;
    let warmup = (opts.hyper.warmup_ratio * total_steps as f64) as u64;
    let mut optimizer = AdamW::new(
        model.variables(),
        AdamWConfig {
            lr: opts.hyper.learning_rate,
            weight_decay: opts.hyper.weight_decay,
            ..Default::default()
        },
    )?;
    let mut progress = if opts.resume {
        resume_from(&checkpoint, &fingerprint, &model, &mut optimizer)?
    } else {
        Progress {
            fingerprint: fingerprint.clone(),
            epoch: 0,
            batches_done: 0,
            steps: 0,
            dropout_word_pos: 0,
            history: Vec::new(),
            best: None,
            epochs_without_gain: 0,
            loss_sum: 0.0,
            train_seconds: 0.0,
            epoch_seconds: 0.0,
        }
    };
    let mut best_weights: Option<HashMap<String, Tensor>> = match &progress.best {
        Some(_) => Some(candle_core::safetensors::load(
            checkpoint.join("best.safetensors"),
            &candle_core::Device::Cpu,
        )?),
        None => None,
    };

    while progress.epoch < opts.hyper.epochs {
        let epoch_start = Instant::now();
        let batches = epoch_batches(&lengths, opts.hyper.batch_size, opts.seed, progress.epoch);
        let bar = super::progress(
            tokenized.len(),
            &format!("epoch {}", progress.epoch + 1),
            opts.progress,
        );
        bar.set_position(
            (progress.batches_done * opts.hyper.batch_size).min(tokenized.len()) as u64,
        );
        for batch in batches.iter().skip(progress.batches_done) {
            optimizer.set_lr(linear_warmup_decay(
                progress.steps,
                warmup,
                total_steps,
                opts.hyper.learning_rate,
            ));
            let items: Vec<&TokenizedText> = batch.iter().map(|&i| &tokenized[i]).collect();
            let batch_targets: Vec<u32> = batch.iter().map(|&i| targets[i]).collect();
            let loss = train_step(
                &model,
                &mut optimizer,
                &items,
                &batch_targets,
                class_weights.as_deref(),
                opts.hyper.max_grad_norm,
            )?;
            if !loss.is_finite() {
                bail!(
                    "the loss became {loss} at epoch {} step {}; training stopped. {} Start again with a lower --lr (now {}), or check the data.",
                    progress.epoch + 1,
                    progress.steps + 1,
                    last_good(&checkpoint),
                    opts.hyper.learning_rate
                );
            }
            progress.loss_sum += loss as f64;
            progress.batches_done += 1;
            progress.steps += 1;
            bar.inc(batch.len() as u64);
            bar.set_message(format!("epoch {} loss {loss:.3}", progress.epoch + 1));
            let stop_requested = INTERRUPTED.load(Ordering::SeqCst)
                || opts.stop_after_steps.is_some_and(|n| progress.steps >= n);
            if stop_requested {
                bar.finish_and_clear();
                progress.train_seconds += epoch_start.elapsed().as_secs_f64();
                progress.epoch_seconds += epoch_start.elapsed().as_secs_f64();
                write_checkpoint(
                    &checkpoint,
                    &model,
                    &optimizer,
                    &mut progress,
                    best_weights.as_ref(),
                )?;
                bail!(
                    "stopped after {} steps (epoch {}, batch {} of {}); the checkpoint is in {}. Run the same command with --resume to continue.",
                    progress.steps,
                    progress.epoch + 1,
                    progress.batches_done,
                    batches_per_epoch,
                    checkpoint.display()
                );
            }
        }
        bar.finish_and_clear();
        progress.train_seconds += epoch_start.elapsed().as_secs_f64();
        let seconds = progress.epoch_seconds + epoch_start.elapsed().as_secs_f64();
        progress.epoch_seconds = 0.0;
        let mut record = EpochRecord {
            epoch: progress.epoch + 1,
            train_loss: progress.loss_sum / progress.batches_done.max(1) as f64,
            eval_accuracy: None,
            eval_macro_f1: None,
            seconds,
            items_per_second: tokenized.len() as f64 / seconds,
        };
        if let Some((eval, eval_tokens)) = &eval_set {
            let scores = eval_record(eval, &labels, &predict(&model, eval_tokens)?)?;
            record.eval_accuracy = Some(scores.accuracy);
            record.eval_macro_f1 = Some(scores.macro_f1);
            if progress.best.is_none_or(|(_, f1)| scores.macro_f1 > f1) {
                progress.best = Some((record.epoch, scores.macro_f1));
                progress.epochs_without_gain = 0;
                best_weights = Some(model.snapshot()?);
            } else {
                progress.epochs_without_gain += 1;
            }
        }
        eprintln!("{}", describe_epoch(&record, opts.hyper.epochs));
        progress.history.push(record);
        progress.epoch += 1;
        progress.batches_done = 0;
        progress.loss_sum = 0.0;
        write_checkpoint(
            &checkpoint,
            &model,
            &optimizer,
            &mut progress,
            best_weights.as_ref(),
        )?;
        if opts
            .patience
            .is_some_and(|p| progress.epochs_without_gain >= p)
        {
            eprintln!(
                "early stopping: no better eval macro-F1 for {} epochs",
                progress.epochs_without_gain
            );
            break;
        }
    }

    if let Some(best) = &best_weights {
        model.restore(best)?;
    }
    let eval = match &eval_set {
        Some((eval, tokens)) => Some(eval_record(eval, &labels, &predict(&model, tokens)?)?),
        None => None,
    };
    if opts.out.exists() {
        std::fs::remove_dir_all(&opts.out)
            .with_context(|| format!("{}: cannot replace", opts.out.display()))?;
    }
    let layout = model.layout()?;
    let output_layout = match pooling {
        Pooling::Cls => "hf-sequence-classification",
        Pooling::Mean => "sentence-transformers-dense",
    };
    let readme = readme(&opts.model, &labels, pooling, &opts.hyper);
    save(
        &ModelToSave {
            source_dir: &base_dir,
            labels: &labels,
            layout,
            max_tokens: opts.hyper.max_len,
            readme,
        },
        &opts.out,
    )?;
    let trained_items = progress.history.len() * tokenized.len();
    let record = TrainingRecord {
        schema_version: 1,
        recipe: "full",
        base_model: opts.model.clone(),
        base_weights_sha256: base_sha256,
        data: DataRecord::of(&train),
        eval,
        labels,
        pooling: describe_pooling(pooling, through_pooler),
        normalize: false,
        hyperparameters: serde_json::to_value(&opts.hyper)?,
        head_fit: None,
        best_epoch: progress.best.map(|(epoch, _)| epoch),
        epochs: progress.history,
        seed: opts.seed,
        seconds: Timing {
            load: load_seconds,
            features: None,
            fit: None,
            training: progress.train_seconds,
            total: start.elapsed().as_secs_f64(),
        },
        train_items_per_second: trained_items as f64 / progress.train_seconds.max(1e-9),
        environment: Environment::detect(),
        output_layout,
    };
    write_record(&opts.out, &record)?;
    let _ = std::fs::remove_dir_all(&checkpoint);
    Ok(record)
}

/// Most tokens one forward/backward pass holds. A batch over it runs as several passes whose
/// gradients are summed (the same gradient: each pass's loss is its share of the batch loss);
/// Each pass also pays per-parameter costs (candle zero-fills and adds every weight's
/// gradient), so passes are as large as memory allows: a whole MiniLM batch of 32 x 64
/// tokens is one pass, peaking at 1.36 GiB (11% faster than two passes of 1,024).
const MAX_PASS_TOKENS: usize = 2048;

/// Forward, loss, backward (in passes of at most [`MAX_PASS_TOKENS`]), clipping and one
/// optimizer step; returns the batch loss.
fn train_step(
    model: &Trainable,
    optimizer: &mut AdamW,
    items: &[&TokenizedText],
    targets: &[u32],
    class_weights: Option<&[f32]>,
    max_grad_norm: f64,
) -> anyhow::Result<f32> {
    let weight_of = |t: u32| class_weights.map_or(1.0, |w| w[t as usize]);
    let normalizer: f32 = targets.iter().map(|&t| weight_of(t)).sum();
    let mut grads = GradStore::default();
    let mut total = 0.0f32;
    for (items, targets) in passes(items, targets) {
        let logits = model.logits(items, true)?;
        let loss = (weighted_nll_sum(&logits, targets, class_weights)? / normalizer as f64)?;
        let value = loss.to_scalar::<f32>()?;
        total += value;
        if !value.is_finite() {
            return Ok(total);
        }
        accumulate(&mut grads, loss.backward()?, optimizer.params())?;
    }
    if max_grad_norm > 0.0 {
        clip_grad_norm(optimizer.params(), &mut grads, max_grad_norm)?;
    }
    optimizer.step(&grads)?;
    Ok(total)
}

/// Consecutive slices of the batch holding at most [`MAX_PASS_TOKENS`] tokens each (at
/// least one item per pass).
fn passes<'a>(
    items: &'a [&'a TokenizedText],
    targets: &'a [u32],
) -> Vec<(&'a [&'a TokenizedText], &'a [u32])> {
    let mut out = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        if i > start && tokens + item.len() > MAX_PASS_TOKENS {
            out.push((&items[start..i], &targets[start..i]));
            start = i;
            tokens = 0;
        }
        tokens += item.len();
    }
    out.push((&items[start..], &targets[start..]));
    out
}

/// Adds one pass's parameter gradients into the batch's.
///
/// candle detaches the gradients of intermediate nodes but not those of the variables: a
/// weight's gradient (e.g. `grad^T · x`) still records the op that made it, and through `x`
/// the pass's whole forward graph. Detaching here frees each pass's activations once its
/// loss is dropped instead of at the end of the step (a third of training's peak memory).
fn accumulate(
    into: &mut GradStore,
    pass: GradStore,
    params: &[(String, candle_core::Var)],
) -> candle_core::Result<()> {
    for (_, var) in params {
        if let Some(grad) = pass.get(var.as_tensor()) {
            let grad = grad.detach();
            let sum = match into.get(var.as_tensor()) {
                Some(previous) => (previous + grad)?,
                None => grad,
            };
            into.insert(var.as_tensor(), sum);
        }
    }
    Ok(())
}

/// Sum over the items of the cross-entropy, each weighted by its class weight when given;
/// divided by the batch's total weight it is the mean (or PyTorch's
/// `cross_entropy(weight=...)`).
fn weighted_nll_sum(
    logits: &Tensor,
    targets: &[u32],
    class_weights: Option<&[f32]>,
) -> candle_core::Result<Tensor> {
    let device = logits.device();
    let targets_t = Tensor::new(targets, device)?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = log_probs
        .gather(&targets_t.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?;
    match class_weights {
        None => nll.sum_all(),
        Some(weights) => {
            let w: Vec<f32> = targets.iter().map(|&t| weights[t as usize]).collect();
            (nll * Tensor::new(w.as_slice(), device)?)?.sum_all()
        }
    }
}

/// scikit-learn's "balanced" class weights: `n / (classes * count)`.
fn balanced_weights(targets: &[u32], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &t in targets {
        counts[t as usize] += 1;
    }
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                targets.len() as f32 / (classes * c) as f32
            }
        })
        .collect()
}

/// Predicted label index per item, without dropout.
fn predict(model: &Trainable, tokens: &[TokenizedText]) -> anyhow::Result<Vec<usize>> {
    // The weights are variables, so even this forward keeps its graph (every activation)
    // until the logits are dropped: passes are capped in tokens like training's.
    let items: Vec<&TokenizedText> = tokens.iter().collect();
    let targets = vec![0u32; items.len()];
    let mut predicted = Vec::with_capacity(tokens.len());
    for (pass, _) in passes(&items, &targets) {
        predicted.extend(argmax_rows(&model.logits(pass, false)?.to_vec2::<f32>()?));
    }
    Ok(predicted)
}

/// Batches sharing a length bucket: this many batches are drawn together and sorted by length.
const BUCKET_BATCHES: usize = 8;

/// The batches of an epoch, the same for a resumed run: a seeded shuffle, cut into groups of
/// [`BUCKET_BATCHES`] batches, each group sorted by length and split into batches (so that a
/// batch's sequences are of similar length and the padded attention block wastes little), and
/// the batches shuffled again so that lengths do not come in order.
fn epoch_batches(lengths: &[usize], batch_size: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(epoch as u64 * 0x9e37_79b9));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for group in order.chunks(batch_size * BUCKET_BATCHES) {
        let mut group = group.to_vec();
        group.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(group.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

fn describe_epoch(record: &EpochRecord, epochs: usize) -> String {
    let eval = match (record.eval_accuracy, record.eval_macro_f1) {
        (Some(acc), Some(f1)) => format!(", eval accuracy {acc:.4} macro-F1 {f1:.4}"),
        _ => String::new(),
    };
    format!(
        "epoch {}/{}: train loss {:.4}, {:.1} items/s, {:.1}s{eval}",
        record.epoch, epochs, record.train_loss, record.items_per_second, record.seconds
    )
}

fn checkpoint_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{name}.checkpoint"))
}

/// Where the last finished epoch's checkpoint is. It belongs to this run's settings, so it
/// is kept for inspection, not offered to --resume (resuming repeats the same steps).
fn last_good(checkpoint: &Path) -> String {
    if checkpoint.join("progress.json").is_file() {
        format!(
            "The checkpoint of the last finished epoch is kept in {}.",
            checkpoint.display()
        )
    } else {
        "No epoch had finished, so there is no checkpoint.".to_string()
    }
}

/// Identifies what a checkpoint belongs to, so `--resume` refuses a different run.
fn fingerprint(
    opts: &FinetuneOptions,
    train: &Dataset,
    eval: Option<&Dataset>,
    base: &Encoder,
    pooling: Pooling,
) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(train.sha256.as_bytes());
    hasher.update(base.info_sha256().as_bytes());
    hasher.update(format!("{pooling:?}{}{:?}", opts.seed, opts.hyper).as_bytes());
    if let Some(eval) = eval {
        hasher.update(eval.sha256.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Writes the checkpoint beside `--out`, replacing the previous one only once the new one
/// is complete (write to a temporary folder, then swap), so an interrupt never leaves a
/// half-written checkpoint.
fn write_checkpoint(
    dir: &Path,
    model: &Trainable,
    optimizer: &AdamW,
    progress: &mut Progress,
    best: Option<&HashMap<String, Tensor>>,
) -> anyhow::Result<()> {
    progress.dropout_word_pos = model.dropout().word_pos();
    let tmp = dir.with_extension("checkpoint-tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    model.save_weights(&tmp.join("weights.safetensors"))?;
    optimizer.save_state(&tmp.join("optimizer.safetensors"))?;
    if let Some(best) = best {
        candle_core::safetensors::save(best, tmp.join("best.safetensors"))?;
    }
    std::fs::write(
        tmp.join("progress.json"),
        serde_json::to_string_pretty(progress)?,
    )?;
    let old = dir.with_extension("checkpoint-old");
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old).with_context(|| format!("{}: cannot replace", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("{}: cannot write", dir.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn resume_from(
    dir: &Path,
    fingerprint: &str,
    model: &Trainable,
    optimizer: &mut AdamW,
) -> anyhow::Result<Progress> {
    let progress_path = dir.join("progress.json");
    let text = std::fs::read_to_string(&progress_path).with_context(|| {
        format!(
            "--resume: no checkpoint at {} (it is written after each epoch and on Ctrl-C)",
            dir.display()
        )
    })?;
    let progress: Progress = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a taskbench checkpoint", progress_path.display()))?;
    if progress.fingerprint != fingerprint {
        bail!(
            "--resume: the checkpoint in {} was made with other data, model or settings; rerun with the original ones, or without --resume to start over",
            dir.display()
        );
    }
    model.load_weights(&dir.join("weights.safetensors"))?;
    optimizer.load_state(&dir.join("optimizer.safetensors"))?;
    model.dropout().set_word_pos(progress.dropout_word_pos);
    eprintln!(
        "resuming from {} (epoch {}, step {})",
        dir.display(),
        progress.epoch + 1,
        progress.steps
    );
    Ok(progress)
}

fn install_interrupt_handler() {
    // A second install (a second run in one process) fails harmlessly: the flag is shared.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupt: finishing the current step and writing a checkpoint (Ctrl-C again to quit at once)");
    });
}

fn readme(base: &str, labels: &[String], pooling: Pooling, hyper: &Hyperparameters) -> String {
    let label_list = labels.join(", ");
    let how = match pooling {
        Pooling::Cls => "Saved as a Hugging Face sequence classifier: load it with `AutoModelForSequenceClassification.from_pretrained(PATH)`.".to_string(),
        Pooling::Mean => format!(
            "Mean-pooled, saved in the sentence-transformers layout with the head as the `Dense` module in `2_Dense/` (identity activation: outputs are logits); labels are `id2label` in `config.json`. `SentenceTransformer(PATH).encode(texts)` returns the logits. With transformers alone: mean of `AutoModel` last hidden states over the attention mask (truncate at {} tokens), then `features @ W.T + b` with `W, b` from `2_Dense/model.safetensors` (`linear.weight`, `linear.bias`).",
            hyper.max_len
        ),
    };
    format!(
        "# Classifier: {base}, fully fine-tuned (taskbench train)\n\nEvery weight of `{base}` trained with a new head on the labels: {label_list}.\n\n{how}\n\nSettings: {} epochs, learning rate {}, batch {}, max length {}, warm-up ratio {}, weight decay {}, gradient clipping at {}. `training.json` records the data, per-epoch metrics, timings and the machine.\n",
        hyper.epochs, hyper.learning_rate, hyper.batch_size, hyper.max_len, hyper.warmup_ratio, hyper.weight_decay, hyper.max_grad_norm
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(len: usize) -> TokenizedText {
        TokenizedText {
            ids: vec![1; len],
            type_ids: vec![0; len],
            truncated_from: None,
        }
    }

    #[test]
    fn passes_cover_the_batch_in_order_within_the_token_cap() {
        let owned: Vec<TokenizedText> = [1200, 600, 400, 1800, 3000, 20]
            .iter()
            .map(|&n| item(n))
            .collect();
        let items: Vec<&TokenizedText> = owned.iter().collect();
        let targets: Vec<u32> = (0..items.len() as u32).collect();
        let split = passes(&items, &targets);
        let sizes: Vec<Vec<usize>> = split
            .iter()
            .map(|(i, _)| i.iter().map(|t| t.len()).collect())
            .collect();
        // 1200+600 fits in 2048; 400 would not; 1800 alone; 3000 is over the cap but alone.
        assert_eq!(
            sizes,
            vec![vec![1200, 600], vec![400], vec![1800], vec![3000], vec![20]]
        );
        let rejoined: Vec<u32> = split.iter().flat_map(|(_, t)| t.iter().copied()).collect();
        assert_eq!(rejoined, targets);
    }

    #[test]
    fn balanced_weights_follow_scikit_learn() {
        // n / (classes * count): 4 / (3 * 3) and 4 / (3 * 1), as scikit-learn's "balanced";
        // a class absent from the data (scikit-learn refuses those) gets 0.
        let w = balanced_weights(&[0, 0, 0, 1], 3);
        assert!(
            (w[0] - 4.0 / 9.0).abs() < 1e-6 && (w[1] - 4.0 / 3.0).abs() < 1e-6 && w[2] == 0.0,
            "{w:?}"
        );
    }
}
