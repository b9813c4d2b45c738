//! The shape of a llama-family causal LM (Llama, SmolLM2, TinyLlama, Qwen2), read from GGUF
//! metadata or a HF `config.json`, in one struct the forward pass reads.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use serde::Deserialize;

/// Architectures the forward pass implements. Qwen2 differs from Llama only by the biases
/// on the query, key and value projections (and its defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
}

impl Architecture {
    pub const SUPPORTED: &'static str = "llama (Llama, SmolLM2, TinyLlama), qwen2 (Qwen2, Qwen2.5)";

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// How rotary embeddings pair up the dimensions of a head. llama.cpp's GGUF conversion of
/// Llama permutes the query and key weights so that pairs are adjacent (`Interleaved`); HF
/// checkpoints and Qwen2 GGUFs rotate the first half against the second (`Halves`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    Interleaved,
    Halves,
}

#[derive(Debug, Clone)]
pub struct LmConfig {
    pub architecture: Architecture,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rms_eps: f32,
    /// Round cached keys and values to f16, as llama.cpp's default cache does (GGUF models);
    /// HF checkpoints keep them in f32, as transformers does for float32 weights.
    pub kv_f16: bool,
}

impl LmConfig {
    /// From GGUF metadata (`ARCH.block_count` and friends). Errors name the missing key.
    pub fn from_gguf(metadata: &HashMap<String, Value>) -> Result<Self, String> {
        let arch_name = metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .ok_or("no general.architecture in the metadata")?;
        let architecture = match arch_name.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(format!(
                    "architecture \"{other}\" is not supported; supported: {}",
                    Architecture::SUPPORTED
                ))
            }
        };
        let key = |name: &str| format!("{arch_name}.{name}");
        let int = |name: &str| -> Result<usize, String> {
            let k = key(name);
            metadata
                .get(&k)
                .and_then(value_to_usize)
                .ok_or(format!("missing or non-integer metadata key {k}"))
        };
        let float = |name: &str, default: f32| -> f32 {
            metadata
                .get(&key(name))
                .and_then(|v| v.to_f32().ok().or(v.to_f64().ok().map(|x| x as f32)))
                .unwrap_or(default)
        };
        let scaling = metadata
            .get(&key("rope.scaling.type"))
            .and_then(|v| v.to_string().ok().cloned());
        check_rope_scaling(scaling.as_deref())?;
        if metadata.contains_key(&key("rope.scaling.factor")) && scaling.is_none() {
            check_rope_scaling(Some("factor"))?;
        }
        let hidden = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = int("attention.head_count_kv").unwrap_or(heads);
        let vocab = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => metadata
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.to_vec().ok())
                .map(Vec::len)
                .ok_or("no vocab_size and no tokenizer.ggml.tokens in the metadata")?,
        };
        let config = LmConfig {
            architecture,
            hidden,
            intermediate: int("feed_forward_length")?,
            layers: int("block_count")?,
            heads,
            kv_heads,
            head_dim: int("attention.key_length").unwrap_or(hidden / heads.max(1)),
            vocab,
            context: int("context_length").unwrap_or(2048),
            rope_theta: float("rope.freq_base", 10_000.0),
            rope_style: match architecture {
                Architecture::Llama => RopeStyle::Interleaved,
                Architecture::Qwen2 => RopeStyle::Halves,
            },
            rms_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            kv_f16: true,
        };
        config.check()?;
        Ok(config)
    }

    /// From a HF `config.json` (`LlamaForCausalLM`, `Qwen2ForCausalLM`).
    pub fn from_hf_json(text: &str) -> Result<Self, String> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let architecture = match raw.model_type.as_str() {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(format!(
                    "model_type \"{other}\" is not supported for generation; supported: {}",
                    Architecture::SUPPORTED
                ))
            }
        };
        let scaling = raw
            .rope_parameters
            .as_ref()
            .and_then(|p| p.rope_type.clone())
            .or_else(|| {
                let scaling = raw.rope_scaling.as_ref()?;
                let kind = scaling.get("rope_type").or(scaling.get("type"))?;
                kind.as_str().map(str::to_owned)
            });
        check_rope_scaling(scaling.as_deref())?;
        let heads = raw.num_attention_heads;
        let config = LmConfig {
            architecture,
            hidden: raw.hidden_size,
            intermediate: raw.intermediate_size,
            layers: raw.num_hidden_layers,
            heads,
            kv_heads: raw.num_key_value_heads.unwrap_or(heads),
            head_dim: raw.head_dim.unwrap_or(raw.hidden_size / heads.max(1)),
            vocab: raw.vocab_size,
            context: raw.max_position_embeddings.unwrap_or(2048),
            // transformers 5 writes `rope_parameters.rope_theta`; older versions `rope_theta`.
            rope_theta: raw
                .rope_theta
                .or(raw.rope_parameters.and_then(|p| p.rope_theta))
                .unwrap_or(10_000.0),
            rope_style: RopeStyle::Halves,
            rms_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            kv_f16: false,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "{} attention heads cannot share {} key/value heads",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) || self.head_dim == 0 {
            return Err(format!("head size {} is not even", self.head_dim));
        }
        Ok(())
    }

    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

fn value_to_usize(v: &Value) -> Option<usize> {
    v.to_u32()
        .map(|x| x as usize)
        .or_else(|_| v.to_u64().map(|x| x as usize))
        .or_else(|_| v.to_i32().map(|x| x.max(0) as usize))
        .ok()
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    max_position_embeddings: Option<usize>,
    rope_theta: Option<f32>,
    rope_parameters: Option<HfRopeParameters>,
    /// transformers 4's name for the scaling settings (`{"rope_type": "llama3", ...}`).
    rope_scaling: Option<serde_json::Value>,
    rms_norm_eps: Option<f32>,
}

#[derive(Deserialize)]
struct HfRopeParameters {
    rope_theta: Option<f32>,
    rope_type: Option<String>,
}

/// Rotary scaling (Llama 3's `llama3`, `linear`, `yarn`, ...) changes every position's
/// angles; the decoder implements plain RoPE only, so such a model is refused rather than
/// run with silently wrong outputs.
fn check_rope_scaling(kind: Option<&str>) -> Result<(), String> {
    match kind {
        None | Some("default") | Some("none") => Ok(()),
        Some(other) => Err(format!(
            "rotary scaling \"{other}\" is not supported yet (plain RoPE only); models such as Llama 3.x use it"
        )),
    }
}
