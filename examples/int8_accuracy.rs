//! Accuracy of an encoder classifier in fp32 and in int8 on one labelled file, side by side:
//! how much `Precision::Int8` costs in accuracy, on real data.
//!
//!     cargo run --release --example int8_accuracy -- MODEL_DIR TEST.csv [THREADS]
//!
//! MODEL_DIR is a classifier folder (e.g. what `taskbench train --head-only` writes); TEST is
//! any file `taskbench eval` reads with the default columns. Prints, per precision, accuracy
//! and seconds, then how often the two agree on the label and the largest probability
//! difference. Labels are matched after `normalize_label` (case, spaces, `_`, `-`).

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use taskbench::data::{self, normalize_label, LoadOptions};
use taskbench::models::encoder::{Encoder, Precision};
use taskbench::models::{Classifier, TokenizedText};
use taskbench::runtime::batching::token_budget_batches;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_dir, test, rest @ ..] = args.as_slice() else {
        bail!("usage: int8_accuracy MODEL_DIR TEST.csv [THREADS]");
    };
    let threads = rest.first().map(|t| t.parse()).transpose()?;
    taskbench::runtime::configure_threads(threads);
    let mut model = Encoder::load(Path::new(model_dir), model_dir, &Device::Cpu)
        .with_context(|| format!("loading {model_dir}"))?;
    let data = data::load(Path::new(test), &LoadOptions::default())?;
    let labels: Vec<String> = model.labels().iter().map(|l| normalize_label(l)).collect();
    let gold: Vec<usize> = data
        .examples
        .iter()
        .map(|e| {
            let label = normalize_label(e.label.as_deref().unwrap_or_default());
            labels
                .iter()
                .position(|l| *l == label)
                .with_context(|| format!("label {label:?} is not one of the model's"))
        })
        .collect::<Result<_>>()?;
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let tokenized = model.tokenize(&texts)?;
    let mut runs = Vec::new();
    for precision in [Precision::Fp32, Precision::Int8] {
        model.set_precision(precision)?;
        let start = Instant::now();
        let probs = classify_all(&model, &tokenized)?;
        let secs = start.elapsed().as_secs_f64();
        let predicted: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let correct = predicted.iter().zip(&gold).filter(|(p, g)| p == g).count();
        println!(
            "{precision}: accuracy {:.2}% ({correct}/{}), {secs:.2} s",
            100.0 * correct as f64 / gold.len() as f64,
            gold.len()
        );
        runs.push((probs, predicted));
    }
    let (fp32, int8) = (&runs[0], &runs[1]);
    let agree = fp32.1.iter().zip(&int8.1).filter(|(a, b)| a == b).count();
    let worst = fp32
        .0
        .iter()
        .zip(&int8.0)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    println!(
        "agreement {:.2}% ({agree}/{}), max abs probability difference {worst:.4}",
        100.0 * agree as f64 / gold.len() as f64,
        gold.len()
    );
    Ok(())
}

/// Probabilities for every item, batched as `eval` does (sorted by length, 8192 tokens).
fn classify_all(model: &Encoder, tokenized: &[TokenizedText]) -> Result<Vec<Vec<f32>>> {
    let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
    let mut probs = vec![Vec::new(); tokenized.len()];
    for batch in token_budget_batches(&lengths, 8192, 64) {
        let items: Vec<&TokenizedText> = batch.indices.iter().map(|&i| &tokenized[i]).collect();
        for (&i, p) in batch.indices.iter().zip(model.classify(&items)?) {
            probs[i] = p;
        }
    }
    Ok(probs)
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}
