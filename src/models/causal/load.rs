//! Reading a causal LM's weights from a GGUF file or a HF safetensors folder into the
//! [`Llama`] the forward pass runs. Every tensor is checked against the shape the config
//! implies, so a mismatched or truncated file fails here with its name, not mid-generation.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use taskbench_kernels::quant::QuantKind;

use super::config::LmConfig;
use super::llama::{Layer, Llama};
use super::template::ChatTemplate;
use super::tokenizer::load_gguf_tokenizer;
use super::weights::Matrix;
use super::CausalError;
use crate::models::encoder::candle_message;

/// The tensors a loader hands out by the model's own names.
trait Source {
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, CausalError>;
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Matrix, CausalError>;
    fn has(&self, name: &str) -> bool;
}

/// Tensor names of one layout (GGUF's `blk.N.attn_q` or HF's `model.layers.N.self_attn.q_proj`).
struct Names {
    embed: &'static str,
    norm: &'static str,
    output: &'static str,
    layer: fn(usize, &str) -> String,
}

const GGUF_NAMES: Names = Names {
    embed: "token_embd.weight",
    norm: "output_norm.weight",
    output: "output.weight",
    layer: |i, part| {
        let name = match part {
            "attn_norm" => "attn_norm.weight",
            "q" => "attn_q.weight",
            "k" => "attn_k.weight",
            "v" => "attn_v.weight",
            "q_bias" => "attn_q.bias",
            "k_bias" => "attn_k.bias",
            "v_bias" => "attn_v.bias",
            "o" => "attn_output.weight",
            "ffn_norm" => "ffn_norm.weight",
            "gate" => "ffn_gate.weight",
            "up" => "ffn_up.weight",
            _ => "ffn_down.weight",
        };
        format!("blk.{i}.{name}")
    },
};

const HF_NAMES: Names = Names {
    embed: "model.embed_tokens.weight",
    norm: "model.norm.weight",
    output: "lm_head.weight",
    layer: |i, part| {
        let name = match part {
            "attn_norm" => "input_layernorm.weight",
            "q" => "self_attn.q_proj.weight",
            "k" => "self_attn.k_proj.weight",
            "v" => "self_attn.v_proj.weight",
            "q_bias" => "self_attn.q_proj.bias",
            "k_bias" => "self_attn.k_proj.bias",
            "v_bias" => "self_attn.v_proj.bias",
            "o" => "self_attn.o_proj.weight",
            "ffn_norm" => "post_attention_layernorm.weight",
            "gate" => "mlp.gate_proj.weight",
            "up" => "mlp.up_proj.weight",
            _ => "mlp.down_proj.weight",
        };
        format!("model.layers.{i}.{name}")
    },
};

fn build(config: LmConfig, src: &mut dyn Source, names: &Names) -> Result<Llama, CausalError> {
    let c = &config;
    let embed = src.matrix(names.embed, c.vocab, c.hidden)?;
    let mut layers = Vec::with_capacity(c.layers);
    for i in 0..c.layers {
        let n = |part: &str| (names.layer)(i, part);
        let bias = |src: &mut dyn Source, part: &str, len: usize| {
            let name = n(part);
            if src.has(&name) {
                src.vector(&name, len).map(Some)
            } else {
                Ok(None)
            }
        };
        layers.push(Layer {
            attn_norm: src.vector(&n("attn_norm"), c.hidden)?,
            wq: src.matrix(&n("q"), c.q_dim(), c.hidden)?,
            wk: src.matrix(&n("k"), c.kv_dim(), c.hidden)?,
            wv: src.matrix(&n("v"), c.kv_dim(), c.hidden)?,
            bq: bias(src, "q_bias", c.q_dim())?,
            bk: bias(src, "k_bias", c.kv_dim())?,
            bv: bias(src, "v_bias", c.kv_dim())?,
            wo: src.matrix(&n("o"), c.hidden, c.q_dim())?,
            ffn_norm: src.vector(&n("ffn_norm"), c.hidden)?,
            w_gate: src.matrix(&n("gate"), c.intermediate, c.hidden)?,
            w_up: src.matrix(&n("up"), c.intermediate, c.hidden)?,
            w_down: src.matrix(&n("down"), c.hidden, c.intermediate)?,
        });
    }
    let norm = src.vector(names.norm, c.hidden)?;
    let output = if src.has(names.output) {
        Some(src.matrix(names.output, c.vocab, c.hidden)?)
    } else {
        None
    };
    Ok(Llama {
        config,
        embed,
        layers,
        norm,
        output,
    })
}

/// A GGUF file: metadata, then tensors at offsets from `tensor_data_offset`.
pub struct GgufSource {
    path: PathBuf,
    reader: BufReader<File>,
    pub content: Content,
    file_len: u64,
}

impl GgufSource {
    pub fn open(path: &Path) -> Result<Self, CausalError> {
        let io = |source| CausalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader).map_err(|e| CausalError::Format {
            path: path.to_owned(),
            message: format!(
                "not a readable GGUF file ({}); download or convert it again",
                candle_message(&e)
            ),
        })?;
        let source = GgufSource {
            path: path.to_owned(),
            reader,
            content,
            file_len,
        };
        source.check_complete()?;
        Ok(source)
    }

    /// Every tensor's bytes lie inside the file (a cut download fails here, by name).
    fn check_complete(&self) -> Result<(), CausalError> {
        for (name, info) in &self.content.tensor_infos {
            let elements = info.shape.elem_count() as u64;
            let dtype = info.ggml_dtype;
            let bytes = elements / dtype.block_size() as u64 * dtype.type_size() as u64;
            let end = self.content.tensor_data_offset + info.offset + bytes;
            if end > self.file_len {
                return Err(CausalError::Format {
                    path: self.path.clone(),
                    message: format!(
                        "truncated: tensor {name} ends at byte {end} but the file has {} bytes; download it again",
                        self.file_len
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn config(&self) -> Result<LmConfig, CausalError> {
        LmConfig::from_gguf(&self.content.metadata).map_err(|message| CausalError::Format {
            path: self.path.clone(),
            message,
        })
    }

    pub fn load(mut self) -> Result<(Llama, Content), CausalError> {
        let config = self.config()?;
        // Llama 3 GGUFs carry their rotary scaling as per-frequency factors in this tensor.
        if self.content.tensor_infos.contains_key("rope_freqs.weight") {
            return Err(CausalError::Format {
                path: self.path.clone(),
                message: "rotary frequency factors (rope_freqs.weight, Llama 3 scaling) are not supported yet (plain RoPE only)".into(),
            });
        }
        let model = build(config, &mut self, &GGUF_NAMES)?;
        Ok((model, self.content))
    }

    fn raw(&mut self, name: &str, shape: &[usize]) -> Result<Vec<u8>, CausalError> {
        let qtensor = self.qtensor(name, shape)?;
        qtensor
            .data()
            .map(|bytes| bytes.into_owned())
            .map_err(|e| self.fail(name, candle_message(&e)))
    }

    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CausalError> {
        let qtensor = self.qtensor(name, shape)?;
        qtensor
            .dequantize(&Device::Cpu)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| self.fail(name, candle_message(&e)))
    }

    fn fail(&self, name: &str, message: String) -> CausalError {
        CausalError::Format {
            path: self.path.clone(),
            message: format!("tensor {name}: {message}"),
        }
    }

    fn qtensor(&mut self, name: &str, shape: &[usize]) -> Result<QTensor, CausalError> {
        let path = self.path.clone();
        let fail = |message: String| CausalError::Format {
            path: path.clone(),
            message: format!("tensor {name}: {message}"),
        };
        let Some(info) = self.content.tensor_infos.get(name) else {
            return Err(fail("missing".into()));
        };
        if info.shape.dims() != shape {
            return Err(fail(format!(
                "shape {:?}, expected {shape:?} from the metadata",
                info.shape.dims()
            )));
        }
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| fail(candle_message(&e)))
    }
}

impl Source for GgufSource {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, CausalError> {
        self.tensor(name, &[len])
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Matrix, CausalError> {
        let kind = match self.content.tensor_infos.get(name).map(|i| i.ggml_dtype) {
            Some(GgmlDType::Q4_0) => Some(QuantKind::Q4_0),
            Some(GgmlDType::Q4_1) => Some(QuantKind::Q4_1),
            Some(GgmlDType::Q5_0) => Some(QuantKind::Q5_0),
            Some(GgmlDType::Q5_1) => Some(QuantKind::Q5_1),
            Some(GgmlDType::Q8_0) => Some(QuantKind::Q8_0),
            Some(GgmlDType::Q4K) => Some(QuantKind::Q4_K),
            Some(GgmlDType::Q5K) => Some(QuantKind::Q5_K),
            Some(GgmlDType::Q6K) => Some(QuantKind::Q6_K),
            _ => None,
        };
        match kind {
            // Kept as the file's blocks: the integer kernels read them directly.
            Some(kind) if cols.is_multiple_of(kind.block_elems()) => {
                let bytes = self.raw(name, &[rows, cols])?;
                Ok(Matrix::from_quantized(rows, cols, kind, bytes))
            }
            // Other types are widened to f32 once, here.
            _ => Ok(Matrix::from_f32(
                rows,
                cols,
                self.tensor(name, &[rows, cols])?,
            )),
        }
    }
}

/// A HF folder's `model.safetensors` (or its shards), any float dtype, widened to f32.
pub struct SafetensorsSource {
    path: PathBuf,
    tensors: std::collections::HashMap<String, Tensor>,
}

impl SafetensorsSource {
    pub fn open(files: &[PathBuf]) -> Result<Self, CausalError> {
        let mut tensors = std::collections::HashMap::new();
        for file in files {
            let loaded = candle_core::safetensors::load(file, &Device::Cpu).map_err(|e| {
                CausalError::Format {
                    path: file.clone(),
                    message: format!(
                        "not a valid safetensors file ({}); download or export it again",
                        candle_message(&e)
                    ),
                }
            })?;
            tensors.extend(loaded);
        }
        Ok(SafetensorsSource {
            path: files[0].clone(),
            tensors,
        })
    }

    pub fn load(mut self, config: LmConfig) -> Result<Llama, CausalError> {
        build(config, &mut self, &HF_NAMES)
    }

    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, CausalError> {
        let fail = |message: String| CausalError::Format {
            path: self.path.clone(),
            message: format!("tensor {name}: {message}"),
        };
        // Taken out of the map so that its memory goes as soon as it is converted.
        let Some(tensor) = self.tensors.remove(name) else {
            return Err(fail("missing".into()));
        };
        if tensor.dims() != shape {
            return Err(fail(format!(
                "shape {:?}, expected {shape:?} from config.json",
                tensor.dims()
            )));
        }
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .map_err(|e| fail(candle_message(&e)))
    }
}

impl Source for SafetensorsSource {
    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, CausalError> {
        self.tensor(name, &[len])
    }

    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Matrix, CausalError> {
        Ok(Matrix::from_f32(
            rows,
            cols,
            self.tensor(name, &[rows, cols])?,
        ))
    }
}

/// What loading a model folder or file yields.
pub struct Loaded {
    pub model: Llama,
    pub tokenizer: tokenizers::Tokenizer,
    pub special: super::SpecialTokens,
    pub template: Option<ChatTemplate>,
    /// BOS and EOS as text, for a `--chat-template` file's `bos_token` / `eos_token`.
    pub bos_text: Option<String>,
    pub eos_text: Option<String>,
}

/// A `.gguf` file: weights, tokenizer and chat template from its metadata (a
/// `tokenizer.json` beside the file takes precedence over the metadata's vocabulary).
pub fn gguf(path: &Path) -> Result<Loaded, CausalError> {
    let source = GgufSource::open(path)?;
    let (model, content) = source.load()?;
    let tokenizer_error = |message: String| CausalError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    let (mut tokenizer, info) =
        load_gguf_tokenizer(&content).map_err(|e| tokenizer_error(e.to_string()))?;
    let beside = path.with_file_name("tokenizer.json");
    if beside.is_file() {
        tokenizer = tokenizer_file(&beside)?;
    }
    let template = ChatTemplate::from_gguf(&content)?;
    Ok(Loaded {
        model,
        tokenizer,
        special: super::SpecialTokens {
            bos: info.bos_token_id,
            eos: info.eog_token_ids.clone(),
            add_bos: info.add_bos,
        },
        template,
        bos_text: info.bos_token,
        eos_text: info.eos_token,
    })
}

/// A HF folder: `config.json`, `model.safetensors` (or shards), `tokenizer.json`, and the
/// chat template and special tokens from `tokenizer_config.json`.
pub fn hf_folder(dir: &Path) -> Result<Loaded, CausalError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| CausalError::Io { path, source })
    };
    let config_path = dir.join("config.json");
    let config =
        LmConfig::from_hf_json(&read("config.json")?).map_err(|message| CausalError::Format {
            path: config_path.clone(),
            message,
        })?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| CausalError::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CausalError::Format {
            path: dir.to_owned(),
            message: "no .safetensors weights in the folder".into(),
        });
    }
    let model = SafetensorsSource::open(&files)?.load(config)?;
    let tokenizer = tokenizer_file(&dir.join("tokenizer.json"))?;
    let tok_config: serde_json::Value = match read("tokenizer_config.json") {
        Ok(text) => serde_json::from_str(&text).map_err(|e| CausalError::Format {
            path: dir.join("tokenizer_config.json"),
            message: e.to_string(),
        })?,
        Err(_) => serde_json::Value::Null,
    };
    let token_field = |key: &str| -> Option<String> {
        match &tok_config[key] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
            _ => None,
        }
    };
    let bos_text = token_field("bos_token");
    let eos_text = token_field("eos_token");
    let bos = bos_text.as_deref().and_then(|t| tokenizer.token_to_id(t));
    let eos = eos_text.as_deref().and_then(|t| tokenizer.token_to_id(t));
    let has_template = tok_config["chat_template"].is_string()
        || dir.join("chat_template.jinja").is_file()
        || dir.join("chat_template.json").is_file();
    let template = if has_template {
        Some(ChatTemplate::from_hf_dir(dir)?)
    } else {
        None
    };
    Ok(Loaded {
        model,
        special: super::SpecialTokens {
            bos,
            eos: end_tokens(&tokenizer, eos),
            // HF's Llama tokenizers add BOS in their post-processor; taskbench encodes
            // without special tokens, so it adds BOS itself when the config says so.
            add_bos: tok_config["add_bos_token"].as_bool().unwrap_or(false),
        },
        tokenizer,
        template,
        bos_text,
        eos_text,
    })
}

fn tokenizer_file(path: &Path) -> Result<tokenizers::Tokenizer, CausalError> {
    tokenizers::Tokenizer::from_file(path).map_err(|e| CausalError::Tokenizer {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The end-of-sequence id plus the end-of-turn markers chat models stop at.
fn end_tokens(tokenizer: &tokenizers::Tokenizer, eos: Option<u32>) -> Vec<u32> {
    let mut ids: Vec<u32> = eos.into_iter().collect();
    for marker in ["<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"] {
        if let Some(id) = tokenizer.token_to_id(marker) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    ids
}
