//! The commands' work, between the command line and the library: `eval` and `train`.
//! Each takes a plain options struct (checked by `cli`), opens files and models, and returns
//! results for `report` to show and write.

pub mod bench;
pub mod eval;
pub mod finetune;
pub mod generative;
pub mod remote;
pub mod suite;
pub mod train;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::models::encoder::{Encoder, Precision};
use crate::models::resolve::{parse_model_arg, resolve, ModelSource};
use crate::runtime::DeviceSpec;

/// Files an encoder folder must have, and those read when present.
const ENCODER_FILES: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];
const ENCODER_OPTIONAL: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Dense/config.json",
    "2_Dense/model.safetensors",
    "3_Dense/config.json",
    "3_Dense/model.safetensors",
];

/// A model opened from the user's `--model` argument.
pub struct LoadedEncoder {
    pub encoder: Encoder,
    pub dir: PathBuf,
    pub load_seconds: f64,
}

/// Resolves `--model` (a folder or `hf:ORG/NAME[@REV]`) and loads the encoder on `device`.
pub fn load_encoder(
    model_arg: &str,
    device: &DeviceSpec,
    precision: Precision,
) -> anyhow::Result<LoadedEncoder> {
    let start = Instant::now();
    let source = parse_model_arg(model_arg)?;
    let dir = match &source {
        ModelSource::Local(path) => path.clone(),
        ModelSource::Hub { .. } => resolve(&source, ENCODER_FILES, ENCODER_OPTIONAL)?.dir,
    };
    let device = crate::models::device::open(device)?;
    let mut encoder = Encoder::load(&dir, model_arg, &device)?;
    encoder.set_weights_sha256(sha256_file(&dir.join("model.safetensors"))?);
    encoder.set_precision(precision)?;
    Ok(LoadedEncoder {
        encoder,
        dir,
        load_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// A progress bar on a terminal; hidden in pipes, in CI and when `show` is false.
pub fn progress(len: usize, what: &str, show: bool) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let on_terminal =
        std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("CI").is_none();
    if !(show && on_terminal) {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
