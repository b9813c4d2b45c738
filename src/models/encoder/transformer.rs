//! The post-LayerNorm transformer encoder shared by BERT, DistilBERT and RoBERTa, run over
//! packed sequences: the tokens of a batch sit one after another, `(tokens, hidden)`, with no
//! padding, so a batch costs its real tokens and every linear layer is a single matrix product.
//!
//! Reference: HF transformers `modeling_bert.py`, `modeling_distilbert.py`,
//! `modeling_roberta.py`. Weights are read under each family's own tensor names and
//! pre-transposed once at load so that each product is `x @ w` on contiguous memory.
//!
//! Two paths compute the same function: on CPU, the fused `taskbench-kernels` encoder over
//! raw buffers reused between batches; elsewhere (CUDA, Metal), candle ops. Both are tested
//! against HF transformers. The CPU path can also run its matrix products in int8
//! ([`Precision::Int8`]), an approximation tested against its own f32 results.

use std::sync::Mutex;

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;
use taskbench_kernels::encoder as cpu;

use super::config::{Activation, EncoderConfig, Family};
use super::ops::{self, Dropout};

/// The arithmetic of the CPU encoder's matrix products.
///
/// `Int8` quantizes the four products of every block (QKV, attention output, feed-forward in
/// and out): weights once, symmetric per output channel; activations per token as they
/// arrive, asymmetric over [0, 255]; exact integer sums (AVX-512 VNNI where the CPU has it).
/// Embeddings, LayerNorm, softmax, GELU, the pooler and the head stay f32. See
/// `taskbench_kernels::int8` for the scheme.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 throughout (the default).
    #[default]
    Fp32,
    /// int8 matrix products, CPU only.
    Int8,
}

impl Precision {
    /// `"fp32"` or `"int8"`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token ids of several sequences laid end to end, with what the embeddings need.
pub struct PackedBatch {
    pub input_ids: Tensor,
    pub type_ids: Tensor,
    pub position_ids: Tensor,
    /// Length of each sequence, in order; their sum is the number of rows.
    pub seq_lens: Vec<usize>,
    /// The same ids as plain vectors, for the CPU kernels.
    ids: Vec<u32>,
    types: Vec<u32>,
    positions: Vec<u32>,
}

/// How position ids are assigned.
#[derive(Debug, Clone, Copy)]
pub enum Positions {
    /// 0, 1, 2, ... (BERT, DistilBERT).
    FromZero,
    /// RoBERTa: `padding_idx + 1 + (number of non-pad tokens before this one)` for real tokens
    /// and `padding_idx` for pad tokens, computed from the ids as HF does, so that a literal
    /// `<pad>` inside a text gets the same position as in transformers.
    Roberta { pad_id: u32 },
}

impl Positions {
    fn extend(self, ids: &[u32], out: &mut Vec<u32>) {
        match self {
            Positions::FromZero => out.extend(0..ids.len() as u32),
            Positions::Roberta { pad_id } => {
                let mut seen = 0u32;
                for &id in ids {
                    if id == pad_id {
                        out.push(pad_id);
                    } else {
                        seen += 1;
                        out.push(pad_id + seen);
                    }
                }
            }
        }
    }
}

impl PackedBatch {
    pub fn new(
        sequences: &[(Vec<u32>, Vec<u32>)],
        scheme: Positions,
        device: &Device,
    ) -> Result<Self> {
        let total: usize = sequences.iter().map(|(ids, _)| ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut types = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut seq_lens = Vec::with_capacity(sequences.len());
        for (seq_ids, seq_types) in sequences {
            ids.extend_from_slice(seq_ids);
            types.extend_from_slice(seq_types);
            scheme.extend(seq_ids, &mut positions);
            seq_lens.push(seq_ids.len());
        }
        Ok(Self {
            input_ids: Tensor::new(ids.as_slice(), device)?,
            type_ids: Tensor::new(types.as_slice(), device)?,
            position_ids: Tensor::new(positions.as_slice(), device)?,
            seq_lens,
            ids,
            types,
            positions,
        })
    }

    pub fn total_tokens(&self) -> usize {
        self.seq_lens.iter().sum()
    }

    /// Row of each sequence's first token ([CLS] / <s>).
    pub fn first_token_rows(&self) -> Vec<u32> {
        let mut rows = Vec::with_capacity(self.seq_lens.len());
        let mut start = 0;
        for len in &self.seq_lens {
            rows.push(start as u32);
            start += len;
        }
        rows
    }
}

/// A linear layer, weight `[out, in]` as HF stores it.
///
/// A fused layer (Q, K and V as one product) keeps its parts too: when they are trainable
/// variables, every forward concatenates them afresh, so that gradients reach each one and
/// updates are seen by the training forward and by the evaluations between epochs alike (the
/// concatenation made at load is a copy of the starting weights).
#[derive(Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    parts: Vec<(Tensor, Tensor)>,
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Ok(Self::from_parts(weight, bias))
    }

    /// Several linear layers over the same input fused into one product (Q, K and V).
    fn load_fused(vbs: &[VarBuilder], in_dim: usize, out_dim: usize) -> Result<Self> {
        let parts = vbs
            .iter()
            .map(|vb| {
                Ok((
                    vb.get((out_dim, in_dim), "weight")?,
                    vb.get(out_dim, "bias")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let (weight, bias) = concat(&parts)?;
        Ok(Self {
            weight,
            bias,
            parts,
        })
    }

    pub fn from_parts(weight: Tensor, bias: Tensor) -> Self {
        Self {
            weight,
            bias,
            parts: Vec::new(),
        }
    }

    /// `[in, out]` row-major copies for the CPU kernels.
    fn cpu_parts(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.weight.t()?.contiguous()?.flatten_all()?.to_vec1()?,
            self.bias.to_vec1()?,
        ))
    }

    /// The weight as HF stores it, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `act(xs · W^T + b)` for `xs` of shape `(rows, in)`.
    pub fn forward_act(&self, xs: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        if self.parts.first().is_some_and(|(w, _)| w.is_variable()) {
            let (weight, bias) = concat(&self.parts)?;
            return ops::linear(xs, &weight, &bias, act);
        }
        ops::linear(xs, &self.weight, &self.bias, act)
    }
}

fn concat(parts: &[(Tensor, Tensor)]) -> Result<(Tensor, Tensor)> {
    let weights: Vec<&Tensor> = parts.iter().map(|(w, _)| w).collect();
    let biases: Vec<&Tensor> = parts.iter().map(|(_, b)| b).collect();
    Ok((Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?))
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_act(xs, None)
    }
}

pub struct LayerNorm {
    gamma: Tensor,
    beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            gamma: vb.get(size, "weight")?,
            beta: vb.get(size, "bias")?,
            eps,
        })
    }

    fn cpu_parts(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.gamma.to_vec1()?, self.beta.to_vec1()?))
    }

    /// `LayerNorm(xs + residual)`; `training` selects the ops that record gradients.
    pub fn forward_residual(
        &self,
        xs: &Tensor,
        residual: &Tensor,
        training: bool,
    ) -> Result<Tensor> {
        ops::add_layer_norm(xs, residual, &self.gamma, &self.beta, self.eps, training)
    }
}

struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Option<Tensor>,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        let token_type = match cfg.type_vocab_size {
            0 => None,
            n => Some(vb.get((n, h), "token_type_embeddings.weight")?),
        };
        Ok(Self {
            word: vb.get((cfg.vocab_size, h), "word_embeddings.weight")?,
            position: vb.get(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type,
            norm: LayerNorm::load(&vb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
        })
    }

    fn forward(&self, batch: &PackedBatch, dropout: Option<&Dropout>) -> Result<Tensor> {
        let mut xs = self.word.index_select(&batch.input_ids, 0)?;
        if let Some(token_type) = &self.token_type {
            xs = (xs + token_type.index_select(&batch.type_ids, 0)?)?;
        }
        let position = self.position.index_select(&batch.position_ids, 0)?;
        let xs = self
            .norm
            .forward_residual(&xs, &position, dropout.is_some())?;
        match dropout {
            Some(d) => d.apply(&xs, d.hidden),
            None => Ok(xs),
        }
    }
}

/// One transformer block: self-attention, residual, LayerNorm, feed-forward, residual,
/// LayerNorm.
struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    ffn_in: Linear,
    ffn_out: Linear,
    ffn_norm: LayerNorm,
}

/// Tensor names of one block, per family.
struct LayerNames {
    q: &'static str,
    k: &'static str,
    v: &'static str,
    attn_out: &'static str,
    attn_norm: &'static str,
    ffn_in: &'static str,
    ffn_out: &'static str,
    ffn_norm: &'static str,
}

const BERT_NAMES: LayerNames = LayerNames {
    q: "attention.self.query",
    k: "attention.self.key",
    v: "attention.self.value",
    attn_out: "attention.output.dense",
    attn_norm: "attention.output.LayerNorm",
    ffn_in: "intermediate.dense",
    ffn_out: "output.dense",
    ffn_norm: "output.LayerNorm",
};

const DISTILBERT_NAMES: LayerNames = LayerNames {
    q: "attention.q_lin",
    k: "attention.k_lin",
    v: "attention.v_lin",
    attn_out: "attention.out_lin",
    attn_norm: "sa_layer_norm",
    ffn_in: "ffn.lin1",
    ffn_out: "ffn.lin2",
    ffn_norm: "output_layer_norm",
};

impl Layer {
    fn cpu_weights(&self) -> Result<cpu::LayerWeights> {
        let (qkv_w, qkv_b) = self.qkv.cpu_parts()?;
        let (out_w, out_b) = self.attn_out.cpu_parts()?;
        let (ffn_in_w, ffn_in_b) = self.ffn_in.cpu_parts()?;
        let (ffn_out_w, ffn_out_b) = self.ffn_out.cpu_parts()?;
        Ok(cpu::LayerWeights {
            qkv_w,
            qkv_b,
            out_w,
            out_b,
            attn_norm: self.attn_norm.cpu_parts()?,
            ffn_in_w,
            ffn_in_b,
            ffn_out_w,
            ffn_out_b,
            ffn_norm: self.ffn_norm.cpu_parts()?,
            packed: None,
        })
    }

    fn load(vb: &VarBuilder, cfg: &EncoderConfig, names: &LayerNames) -> Result<Self> {
        let (h, i, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(Self {
            qkv: Linear::load_fused(&[vb.pp(names.q), vb.pp(names.k), vb.pp(names.v)], h, h)?,
            attn_out: Linear::load(&vb.pp(names.attn_out), h, h)?,
            attn_norm: LayerNorm::load(&vb.pp(names.attn_norm), h, eps)?,
            ffn_in: Linear::load(&vb.pp(names.ffn_in), h, i)?,
            ffn_out: Linear::load(&vb.pp(names.ffn_out), i, h)?,
            ffn_norm: LayerNorm::load(&vb.pp(names.ffn_norm), h, eps)?,
        })
    }

    /// One block with candle ops; `dropout` is `Some` when training.
    fn forward(
        &self,
        xs: &Tensor,
        batch: &PackedBatch,
        shape: &AttentionShape,
        act: Activation,
        dropout: Option<&Dropout>,
    ) -> Result<Tensor> {
        let training = dropout.is_some();
        let drop = |t: Tensor| match dropout {
            Some(d) => d.apply(&t, d.hidden),
            None => Ok(t),
        };
        let qkv = self.qkv.forward_act(xs, None)?;
        let context =
            ops::packed_attention(&qkv, &batch.seq_lens, shape.heads, shape.head_dim, dropout)?;
        let attended = drop(self.attn_out.forward_act(&context, None)?)?;
        let xs = self.attn_norm.forward_residual(&attended, xs, training)?;
        let hidden = self.ffn_in.forward_act(&xs, Some(act))?;
        let out = drop(self.ffn_out.forward_act(&hidden, None)?)?;
        self.ffn_norm.forward_residual(&out, &xs, training)
    }
}

#[derive(Clone, Copy)]
struct AttentionShape {
    heads: usize,
    head_dim: usize,
}

/// The encoder backbone: embeddings and the stack of blocks.
pub struct Transformer {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    shape: AttentionShape,
    activation: Activation,
    positions: Positions,
    /// The fused CPU path, present when the model lives on the CPU.
    cpu: Option<CpuEncoder>,
}

/// Raw copies of the weights for the CPU kernels, and their reusable scratch space.
struct CpuEncoder {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: (Vec<f32>, Vec<f32>),
    layers: CpuLayers,
    shape: cpu::Shape,
    workspace: Mutex<cpu::Workspace>,
}

/// The blocks' weights in the precision the products run in (only one copy is kept).
enum CpuLayers {
    Fp32(Vec<cpu::LayerWeights>),
    Int8(Vec<cpu::Int8LayerWeights>),
}

impl CpuLayers {
    fn new(layers: &[Layer], precision: Precision, shape: &cpu::Shape) -> Result<Self> {
        let fp32 = layers.iter().map(Layer::cpu_weights);
        Ok(match precision {
            Precision::Fp32 => CpuLayers::Fp32(
                fp32.map(|w| {
                    let mut w = w?;
                    w.pack(shape);
                    Ok(w)
                })
                .collect::<Result<_>>()?,
            ),
            Precision::Int8 => CpuLayers::Int8(
                fp32.map(|w| Ok(cpu::Int8LayerWeights::quantize(&w?, shape)))
                    .collect::<Result<_>>()?,
            ),
        })
    }

    fn precision(&self) -> Precision {
        match self {
            CpuLayers::Fp32(_) => Precision::Fp32,
            CpuLayers::Int8(_) => Precision::Int8,
        }
    }
}

impl CpuEncoder {
    fn new(embeddings: &Embeddings, layers: &[Layer], cfg: &EncoderConfig) -> Result<Self> {
        let shape = cpu::Shape {
            hidden: cfg.hidden_size,
            heads: cfg.num_heads,
            intermediate: cfg.intermediate_size,
            eps: cfg.layer_norm_eps as f32,
            activation: match cfg.activation {
                Activation::GeluErf => cpu::Activation::GeluErf,
                Activation::GeluTanh => cpu::Activation::GeluTanh,
                Activation::Relu => cpu::Activation::Relu,
            },
        };
        Ok(Self {
            word: embeddings.word.flatten_all()?.to_vec1()?,
            position: embeddings.position.flatten_all()?.to_vec1()?,
            token_type: match &embeddings.token_type {
                Some(t) => t.flatten_all()?.to_vec1()?,
                None => Vec::new(),
            },
            embed_norm: embeddings.norm.cpu_parts()?,
            layers: CpuLayers::new(layers, Precision::Fp32, &shape)?,
            shape,
            workspace: Mutex::new(cpu::Workspace::default()),
        })
    }

    fn forward(&self, batch: &PackedBatch, device: &Device) -> Result<Tensor> {
        let tokens = batch.ids.len();
        let h = self.shape.hidden;
        let mut xs = vec![0.0f32; tokens * h];
        cpu::embed(
            &batch.ids,
            &batch.positions,
            &batch.types,
            &self.word,
            &self.position,
            &self.token_type,
            &self.embed_norm,
            self.shape.eps,
            &mut xs,
        );
        // A poisoned lock only means another batch panicked mid-way; the buffers are
        // scratch and fully rewritten, so they are safe to reuse.
        let mut workspace = self.workspace.lock().unwrap_or_else(|e| e.into_inner());
        let threads = rayon::current_num_threads();
        let blocks = match &self.layers {
            CpuLayers::Fp32(layers) => cpu::Blocks::Fp32(layers),
            CpuLayers::Int8(layers) => cpu::Blocks::Int8(layers),
        };
        cpu::forward(
            &mut xs,
            &batch.seq_lens,
            blocks,
            &self.shape,
            &mut workspace,
            threads,
        );
        Tensor::from_vec(xs, (tokens, h), device)
    }
}

impl Transformer {
    /// `vb` points at the backbone (`bert.`, `distilbert.`, `roberta.` or the root).
    pub fn load(vb: &VarBuilder, cfg: &EncoderConfig) -> Result<Self> {
        let (layers_vb, names) = match cfg.family {
            Family::DistilBert => (vb.pp("transformer.layer"), &DISTILBERT_NAMES),
            Family::Bert | Family::Roberta => (vb.pp("encoder.layer"), &BERT_NAMES),
        };
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(&layers_vb.pp(i), cfg, names))
            .collect::<Result<Vec<_>>>()?;
        let embeddings = Embeddings::load(&vb.pp("embeddings"), cfg)?;
        let cpu = match vb.device() {
            Device::Cpu => Some(CpuEncoder::new(&embeddings, &layers, cfg)?),
            _ => None,
        };
        Ok(Self {
            embeddings,
            layers,
            cpu,
            shape: AttentionShape {
                heads: cfg.num_heads,
                head_dim: cfg.head_dim(),
            },
            activation: cfg.activation,
            positions: match cfg.family {
                Family::Roberta => Positions::Roberta {
                    pad_id: cfg.pad_token_id,
                },
                Family::Bert | Family::DistilBert => Positions::FromZero,
            },
        })
    }

    pub fn positions(&self) -> Positions {
        self.positions
    }

    /// Drops the fused CPU path so that the candle ops run on CPU too (to test them); they
    /// are f32 whatever the precision was.
    pub fn use_candle_ops(&mut self) {
        self.cpu = None;
    }

    /// The precision of the matrix products: the CPU path's, f32 elsewhere.
    pub fn precision(&self) -> Precision {
        self.cpu
            .as_ref()
            .map_or(Precision::Fp32, |cpu| cpu.layers.precision())
    }

    /// Switches the fused CPU path's matrix products to `precision`, rebuilding its weights
    /// from the model's f32 tensors (int8: quantized once, here). Returns false, changing
    /// nothing, when there is no CPU path (the model is on another device) and `precision`
    /// is not f32.
    pub fn set_precision(&mut self, precision: Precision) -> Result<bool> {
        let Some(cpu) = &mut self.cpu else {
            return Ok(precision == Precision::Fp32);
        };
        if cpu.layers.precision() != precision {
            cpu.layers = CpuLayers::new(&self.layers, precision, &cpu.shape)?;
        }
        Ok(true)
    }

    /// Hidden states of every token, `(tokens, hidden)`.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        if let Some(cpu) = &self.cpu {
            return cpu.forward(batch, batch.input_ids.device());
        }
        self.forward_candle(batch, None)
    }

    /// Hidden states with candle ops that record gradients, dropout applied: the training
    /// forward.
    pub fn forward_train(&self, batch: &PackedBatch, dropout: &Dropout) -> Result<Tensor> {
        self.forward_candle(batch, Some(dropout))
    }

    fn forward_candle(&self, batch: &PackedBatch, dropout: Option<&Dropout>) -> Result<Tensor> {
        let mut xs = self.embeddings.forward(batch, dropout)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, batch, &self.shape, self.activation, dropout)?;
        }
        Ok(xs)
    }
}

/// Mean of each sequence's token states, `(sequences, hidden)`.
pub fn mean_pool(hidden: &Tensor, seq_lens: &[usize]) -> Result<Tensor> {
    let mut means = Vec::with_capacity(seq_lens.len());
    let mut start = 0;
    for &len in seq_lens {
        means.push(hidden.narrow(0, start, len)?.mean_keepdim(0)?);
        start += len;
    }
    Tensor::cat(&means, 0)
}

/// Divides each row by its L2 norm, as sentence-transformers' `Normalize` does (with its
/// 1e-12 floor, so an all-zero row stays zero).
pub fn l2_normalize(xs: &Tensor) -> Result<Tensor> {
    let norm = xs
        .sqr()?
        .sum_keepdim(D::Minus1)?
        .sqrt()?
        .clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
}
