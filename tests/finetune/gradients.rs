//! Library-level checks of the training step: gradients reach every weight, and the
//! gradients backward computes match central finite differences of the loss.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::{Device, Tensor, Var, D};
use taskbench::models::encoder::head::Pooling;
use taskbench::models::encoder::trainable::Trainable;
use taskbench::models::encoder::Encoder;
use taskbench::models::TokenizedText;
use taskbench::train::optim::{clip_grad_norm, AdamW, AdamWConfig};

use crate::common::*;

const TEXTS: [&str; 4] = [
    "my card was charged twice",
    "I want my money back please",
    "the app crashes when I log in",
    "where is my parcel",
];
const TARGETS: [u32; 4] = [0, 1, 2, 1];

fn load(dir: &Path) -> Encoder {
    Encoder::load(dir, &dir.display().to_string(), &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn tokenize(encoder: &Encoder) -> Vec<TokenizedText> {
    encoder.encode(&TEXTS).expect("tokenize")
}

/// Mean cross-entropy, as run/finetune.rs computes it without class weights.
fn mean_cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    let targets = Tensor::new(targets, logits.device())?;
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    log_probs
        .gather(&targets.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .mean_all()
}

fn loss_of(model: &Trainable, items: &[&TokenizedText]) -> Tensor {
    let logits = model.logits(items, true).expect("training forward");
    mean_cross_entropy(&logits, &TARGETS).expect("loss")
}

fn values(var: &Var) -> Vec<f32> {
    var.as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Attention key biases: adding the same vector to every key shifts each query's scores by
/// a constant, which softmax ignores, so their exact gradient is zero (backward gives
/// rounding noise, ~1e-10).
fn is_key_bias(name: &str) -> bool {
    name.ends_with("attention.self.key.bias") || name.ends_with("attention.k_lin.bias")
}

/// What one training step did to each variable.
struct Step {
    variables: usize,
    /// Variables with no gradient in the store.
    no_gradient: BTreeSet<String>,
    /// Variables (other than key biases) whose gradient is zero or below 1e-7 everywhere.
    zero_gradient: BTreeSet<String>,
    /// Key biases whose gradient is not negligible next to their key weight's.
    key_bias_gradient: Vec<String>,
    /// Variables the optimizer step left bit-identical.
    unchanged: BTreeSet<String>,
}

/// One optimizer step as run/finetune.rs takes it with the CLI defaults (training forward
/// with dropout, mean cross-entropy, backward, clipping at 1.0, AdamW at lr 1e-4 with
/// weight decay 0.01).
fn one_step(model_dir: &Path, pooling: Pooling) -> Step {
    let encoder = load(model_dir);
    let tokens = tokenize(&encoder);
    let items: Vec<&TokenizedText> = tokens.iter().collect();
    let model = Trainable::new(&encoder, 3, pooling, 7).expect("trainable");
    let vars = model.variables();
    let before: BTreeMap<String, Vec<f32>> =
        vars.iter().map(|(n, v)| (n.clone(), values(v))).collect();
    let mut optimizer = AdamW::new(
        vars.clone(),
        AdamWConfig {
            lr: 1e-4,
            weight_decay: 0.01,
            ..Default::default()
        },
    )
    .unwrap();

    let loss = loss_of(&model, &items);
    assert!(loss.to_scalar::<f32>().unwrap().is_finite());
    let mut grads = loss.backward().expect("backward");
    let largest: BTreeMap<String, f32> = vars
        .iter()
        .filter_map(|(n, v)| grads.get(v.as_tensor()).map(|g| (n.clone(), max_abs(g))))
        .collect();
    let mut step = Step {
        variables: vars.len(),
        no_gradient: BTreeSet::new(),
        zero_gradient: BTreeSet::new(),
        key_bias_gradient: Vec::new(),
        unchanged: BTreeSet::new(),
    };
    for (name, _) in &vars {
        match largest.get(name) {
            None => {
                step.no_gradient.insert(name.clone());
            }
            Some(&g) if is_key_bias(name) => {
                let weight = largest[&name.replace(".bias", ".weight")];
                if g.is_nan() || g > 1e-4 * weight {
                    step.key_bias_gradient
                        .push(format!("{name}: {g:e} (key weight {weight:e})"));
                }
            }
            Some(&g) if g.is_nan() || g <= 1e-7 => {
                step.zero_gradient.insert(name.clone());
            }
            Some(_) => {}
        }
    }
    clip_grad_norm(optimizer.params(), &mut grads, 1.0).unwrap();
    optimizer.step(&grads).unwrap();

    for (name, var) in &vars {
        let after = values(var);
        let diff = before[name]
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        if diff.is_nan() || diff == 0.0 {
            step.unchanged.insert(name.clone());
        }
    }
    step
}

fn assert_every_variable_trains(model_dir: &Path) {
    let step = one_step(model_dir, Pooling::Cls);
    let dir = model_dir.display();
    assert!(
        step.variables > 30,
        "{dir}: only {} variables",
        step.variables
    );
    assert!(
        step.no_gradient.is_empty(),
        "{dir}: no gradient for {:?}",
        step.no_gradient
    );
    assert!(
        step.zero_gradient.is_empty(),
        "{dir}: a zero gradient for {:?}",
        step.zero_gradient
    );
    assert!(
        step.key_bias_gradient.is_empty(),
        "{dir}: key-bias gradients should be ~0: {:?}",
        step.key_bias_gradient
    );
    assert!(
        step.unchanged.is_empty(),
        "{dir}: one step left these unchanged: {:?}",
        step.unchanged
    );
}

#[test]
fn one_step_moves_every_weight_of_tiny_bert() {
    assert_every_variable_trains(&tiny_bert());
}

#[test]
fn one_step_moves_every_weight_of_tiny_distilbert() {
    assert_every_variable_trains(&tiny_distilbert());
}

#[test]
fn one_step_moves_every_weight_of_tiny_roberta() {
    assert_every_variable_trains(&tiny_roberta());
}

#[test]
fn mean_pooling_trains_everything_but_the_unused_pooler() {
    let step = one_step(&tiny_bert(), Pooling::Mean);
    let pooler: BTreeSet<String> = ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(step.no_gradient, pooler, "variables without a gradient");
    assert!(
        step.zero_gradient.is_empty(),
        "a zero gradient for {:?}",
        step.zero_gradient
    );
    assert!(
        step.key_bias_gradient.is_empty(),
        "key-bias gradients should be ~0: {:?}",
        step.key_bias_gradient
    );
    assert_eq!(step.unchanged, pooler, "variables one step left unchanged");
}

/// The gradient backward computes, entry by entry, against central differences of the loss
/// (dropout off, so the loss is one function). Entries: the largest-gradient entry of each
/// of a spread of variables, plus a second entry of a few.
#[test]
fn gradients_match_finite_differences_on_tiny_bert() {
    let encoder = load(&tiny_bert());
    let tokens = tokenize(&encoder);
    let items: Vec<&TokenizedText> = tokens.iter().collect();
    let mut model = Trainable::new(&encoder, 4, Pooling::Cls, 11).expect("trainable");
    model.disable_dropout();
    let vars: BTreeMap<String, Var> = model.variables().into_iter().collect();

    let loss = loss_of(&model, &items);
    let grads = loss.backward().expect("backward");
    // Dropout off: the loss is a deterministic function of the weights.
    let again = loss_of(&model, &items).to_scalar::<f32>().unwrap();
    assert_eq!(
        loss.to_scalar::<f32>().unwrap(),
        again,
        "the loss with dropout off is not reproducible"
    );

    let picks: [(&str, usize); 16] = [
        ("bert.embeddings.word_embeddings.weight", 2),
        ("bert.embeddings.position_embeddings.weight", 1),
        ("bert.embeddings.token_type_embeddings.weight", 1),
        ("bert.embeddings.LayerNorm.weight", 2),
        ("bert.embeddings.LayerNorm.bias", 1),
        ("bert.encoder.layer.0.attention.self.query.weight", 2),
        ("bert.encoder.layer.0.attention.self.key.weight", 1),
        ("bert.encoder.layer.0.attention.self.value.bias", 1),
        ("bert.encoder.layer.0.attention.output.LayerNorm.weight", 1),
        ("bert.encoder.layer.0.intermediate.dense.weight", 1),
        ("bert.encoder.layer.1.attention.self.query.bias", 1),
        ("bert.encoder.layer.1.output.dense.weight", 1),
        ("bert.encoder.layer.1.output.LayerNorm.bias", 1),
        ("bert.pooler.dense.weight", 1),
        ("classifier.weight", 1),
        ("classifier.bias", 2),
    ];
    let h = 5e-3f32;
    let mut worst = (0f32, String::new());
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, how_many) in picks {
        let var = vars
            .get(name)
            .unwrap_or_else(|| panic!("no variable {name}"));
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let grad = grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // The largest entries (a meaningful relative tolerance), then one from the middle
        // of the sorted order if asked for two.
        let mut order: Vec<usize> = (0..grad.len()).collect();
        order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
        let chosen: Vec<usize> = match how_many {
            1 => vec![order[0]],
            _ => vec![order[0], order[order.len().min(40) / 2]],
        };
        let original = var.as_tensor().copy().unwrap();
        let base = values(var);
        for index in chosen {
            let at = |delta: f32| -> f32 {
                let mut v = base.clone();
                v[index] += delta;
                var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_of(&model, &items).to_scalar::<f32>().unwrap()
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            var.set(&original).unwrap();
            let analytic = grad[index];
            let error = (numeric - analytic).abs();
            let tolerance = 5e-5 + 0.01 * analytic.abs();
            let line = format!("{name}[{index}]: backward {analytic:+.6}, central difference {numeric:+.6}, error {error:.2e}");
            eprintln!("{line}");
            if error > worst.0 {
                worst = (error, line.clone());
            }
            if error.is_nan() || error > tolerance {
                failures.push(line);
            }
            checked += 1;
        }
    }
    // The weights are back as they were: the loss is the same.
    assert_eq!(loss_of(&model, &items).to_scalar::<f32>().unwrap(), again);
    eprintln!("checked {checked} entries; worst: {}", worst.1);
    assert!(checked >= 20, "only {checked} entries checked");
    assert!(
        failures.is_empty(),
        "gradients differ from finite differences (|err| > 5e-5 + 1% |grad|):\n{}",
        failures.join("\n")
    );
}
