//! The post-LayerNorm transformer encoder shared by BERT, DistilBERT and RoBERTa, run over
//! packed sequences: the tokens of a batch sit one after another, `(tokens, hidden)`, with no
//! padding, so a batch costs its real tokens and every linear layer is a single matrix product.
//!
//! Reference: HF transformers `modeling_bert.py`, `modeling_distilbert.py`,
//! `modeling_roberta.py`. Weights are read under each family's own tensor names and
//! pre-transposed once at load so that each product is `x @ w` on contiguous memory.

use candle_core::{Device, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::config::{Activation, EncoderConfig, Family};
use super::ops;

/// Token ids of several sequences laid end to end, with what the embeddings need.
pub struct PackedBatch {
    pub input_ids: Tensor,
    pub type_ids: Tensor,
    pub position_ids: Tensor,
    /// Length of each sequence, in order; their sum is the number of rows.
    pub seq_lens: Vec<usize>,
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
    pub fn new(sequences: &[(Vec<u32>, Vec<u32>)], scheme: Positions, device: &Device) -> Result<Self> {
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
            input_ids: Tensor::from_vec(ids, total, device)?,
            type_ids: Tensor::from_vec(types, total, device)?,
            position_ids: Tensor::from_vec(positions, total, device)?,
            seq_lens,
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

/// A linear layer stored as `[in, out]` so the product needs no transposed view.
#[derive(Clone)]
pub struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn load(vb: &VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Ok(Self::from_parts(&weight, bias)?)
    }

    /// Several linear layers over the same input fused into one product (Q, K and V).
    fn load_fused(vbs: &[VarBuilder], in_dim: usize, out_dim: usize) -> Result<Self> {
        let mut weights = Vec::with_capacity(vbs.len());
        let mut biases = Vec::with_capacity(vbs.len());
        for vb in vbs {
            weights.push(vb.get((out_dim, in_dim), "weight")?);
            biases.push(vb.get(out_dim, "bias")?);
        }
        Self::from_parts(&Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?)
    }

    pub fn from_parts(weight: &Tensor, bias: Tensor) -> Result<Self> {
        Ok(Self { weight_t: weight.t()?.contiguous()?, bias })
    }

    /// The weight as HF stores it, `[out, in]`.
    pub fn weight(&self) -> Result<Tensor> {
        self.weight_t.t()?.contiguous()
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Linear {
    /// `act(xs · W^T + b)` for `xs` of shape `(rows, in)`.
    pub fn forward_act(&self, xs: &Tensor, act: Option<Activation>) -> Result<Tensor> {
        ops::linear(xs, &self.weight_t, &self.bias, act)
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_act(xs, None)
    }
}

/// LayerNorm with its weight and bias stacked as `(2, width)`, the form the fused CPU op reads.
pub struct LayerNorm {
    gamma_beta: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let gamma_beta = Tensor::stack(&[vb.get(size, "weight")?, vb.get(size, "bias")?], 0)?;
        Ok(Self { gamma_beta, eps })
    }

    /// `LayerNorm(xs + residual)`.
    pub fn forward_residual(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        ops::add_layer_norm(xs, residual, &self.gamma_beta, self.eps)
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
            position: vb.get((cfg.max_position_embeddings, h), "position_embeddings.weight")?,
            token_type,
            norm: LayerNorm::load(&vb.pp("LayerNorm"), h, cfg.layer_norm_eps)?,
        })
    }

    fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        let mut xs = self.word.index_select(&batch.input_ids, 0)?;
        if let Some(token_type) = &self.token_type {
            xs = (xs + token_type.index_select(&batch.type_ids, 0)?)?;
        }
        self.norm.forward_residual(&xs, &self.position.index_select(&batch.position_ids, 0)?)
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

    fn forward(&self, xs: &Tensor, batch: &PackedBatch, shape: &AttentionShape, act: Activation) -> Result<Tensor> {
        let qkv = self.qkv.forward(xs)?;
        let context = ops::packed_attention(&qkv, &batch.seq_lens, shape.heads, shape.head_dim)?;
        let xs = self.attn_norm.forward_residual(&self.attn_out.forward(&context)?, xs)?;
        let hidden = self.ffn_in.forward_act(&xs, Some(act))?;
        self.ffn_norm.forward_residual(&self.ffn_out.forward(&hidden)?, &xs)
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
        Ok(Self {
            embeddings: Embeddings::load(&vb.pp("embeddings"), cfg)?,
            layers,
            shape: AttentionShape { heads: cfg.num_heads, head_dim: cfg.head_dim() },
            activation: cfg.activation,
            positions: match cfg.family {
                Family::Roberta => Positions::Roberta { pad_id: cfg.pad_token_id },
                Family::Bert | Family::DistilBert => Positions::FromZero,
            },
        })
    }

    pub fn positions(&self) -> Positions {
        self.positions
    }

    /// Hidden states of every token, `(tokens, hidden)`.
    pub fn forward(&self, batch: &PackedBatch) -> Result<Tensor> {
        let mut xs = self.embeddings.forward(batch)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, batch, &self.shape, self.activation)?;
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
    let norm = xs.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    xs.broadcast_div(&norm)
}
