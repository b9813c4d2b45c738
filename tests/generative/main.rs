//! The causal-LM backend (`taskbench::models::causal`) against its references:
//!
//! * `tokenizer`, `greedy`: SmolLM2-135M-Instruct (Q4_1 GGUF, `make models`) against llama.cpp's
//!   token ids and greedy continuations (`tests/fixtures/smollm2/`, made by
//!   `scripts/make_llamacpp_reference.sh`).
//! * `kv_cache`: label scoring and generation over the key/value cache equal one full forward.
//! * `safetensors`: tiny random Llama / Qwen2 HF folders against transformers' logits
//!   (`tests/fixtures/tiny-llama`, `tiny-qwen2`, made by `scripts/make_causal_reference.py`).
//! * `chat_template`: templates render as transformers' `apply_chat_template`; errors name lines.
//! * `bad_input`: unsupported, truncated and foreign files, and prompts longer than the context.
//!
//! `TASKBENCH_TEST_GGUF=FILE` and `TASKBENCH_TEST_LLAMACPP=DIR` run the SmolLM2 tests on another
//! GGUF of the same model (a re-quantization) against references made for it by
//! `MODEL=FILE scripts/make_llamacpp_reference.sh DIR`.

mod bad_input;
mod chat_template;
mod greedy;
mod kv_cache;
mod safetensors;
mod tokenizer;

#[path = "../support/scratch.rs"]
mod scratch;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use taskbench::models::causal::CausalLm;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The SmolLM2 GGUF fetched by `make models`; a missing file fails (it does not skip).
pub fn smollm2_path() -> PathBuf {
    let path = match std::env::var_os("TASKBENCH_TEST_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    assert!(
        path.is_file(),
        "{} is missing: run `make models` (scripts/fetch-models.sh) before the tests",
        path.display()
    );
    path
}

/// SmolLM2 loaded once for every test of this target.
pub fn smollm2() -> &'static CausalLm {
    static MODEL: OnceLock<CausalLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = smollm2_path();
        CausalLm::load(&path, None).unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
    })
}

/// A tiny HF folder of `tests/fixtures` (`tiny-llama`, `tiny-qwen2`).
pub fn tiny(name: &str) -> CausalLm {
    let dir = fixtures().join(name);
    CausalLm::load(&dir, None).unwrap_or_else(|e| panic!("loading {}: {e}", dir.display()))
}

/// One line of `smollm2-llamacpp.jsonl`: llama.cpp's ids of `prompt` and its greedy
/// continuation (at most 24 tokens; shorter when it produced EOS).
#[derive(Deserialize)]
pub struct LlamaCppRef {
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
}

/// Tokens llama.cpp generated per prompt (`--gen-tokens` of the reference run).
pub const LLAMACPP_GEN_TOKENS: usize = 24;

pub fn llamacpp_refs() -> Vec<LlamaCppRef> {
    let dir = std::env::var_os("TASKBENCH_TEST_LLAMACPP")
        .map_or_else(|| fixtures().join("smollm2"), PathBuf::from);
    let path = dir.join("smollm2-llamacpp.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let refs: Vec<LlamaCppRef> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect();
    assert_eq!(refs.len(), 32, "{}: expected 32 prompts", path.display());
    refs
}

pub fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&v| v as f64 - max - log_sum).collect()
}

/// Index of the largest value (the lowest index on a tie) and its margin over the runner-up.
pub fn argmax_margin(row: &[f32]) -> (u32, f32) {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    let second = row
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != best)
        .map(|(_, &v)| v)
        .fold(f32::NEG_INFINITY, f32::max);
    (best as u32, row[best] - second)
}

pub fn preview(text: &str) -> String {
    let short: String = text.chars().take(50).collect();
    format!("{short:?}")
}
