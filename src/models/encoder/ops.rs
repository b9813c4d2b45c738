//! The encoder's steps as plain candle ops, for every device: what CUDA and Metal run, and
//! what training runs (these ops record gradients). CPU inference takes the fused
//! `taskbench-kernels` path instead (see `transformer.rs`). Tested on CPU against the same
//! references as the fused path.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Result, Tensor, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::config::Activation;
use super::grad_ops::{GeluErf, LayerNormOp, LinearOp, MaskedSoftmaxOp, ScaleByMask};

/// Dropout as the checkpoint's config sets it, with its own seeded random stream so that a
/// training run is reproducible (and a resumed one continues identically).
pub struct Dropout {
    pub hidden: f32,
    pub attention: f32,
    pub classifier: f32,
    rng: Mutex<ChaCha8Rng>,
}

impl Dropout {
    pub fn new(hidden: f32, attention: f32, classifier: f32, seed: u64) -> Self {
        Self {
            hidden,
            attention,
            classifier,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// Zeroes each value with probability `p` and scales the rest by `1 / (1 - p)`.
    pub fn apply(&self, xs: &Tensor, p: f32) -> Result<Tensor> {
        if p <= 0.0 {
            return Ok(xs.clone());
        }
        let keep = 1.0 - p;
        let scale = 1.0 / keep;
        let mask = self.mask(xs.elem_count(), keep, scale);
        if on_cpu_f32(xs) {
            return xs.contiguous()?.apply_op1(ScaleByMask { mask });
        }
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs * mask
    }

    /// `scale` where a uniform draw from the stream is below `keep`, else 0: one 32-bit word
    /// per value, as `rng.random::<f32>()` draws, in chunks generated in parallel from their
    /// own positions in the stream (the same mask as drawing one value after another).
    fn mask(&self, len: usize, keep: f32, scale: f32) -> Vec<f32> {
        use rand::RngCore;
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 15;
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let start = rng.get_word_pos();
        let mut mask = vec![0.0f32; len];
        mask.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, values)| {
                let mut stream = rng.clone();
                stream.set_word_pos(start + (chunk * CHUNK) as u128);
                for v in values {
                    // rand's f32 from a u32: its top 24 bits times 2^-24.
                    let uniform = (stream.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32);
                    *v = if uniform < keep { scale } else { 0.0 };
                }
            });
        rng.set_word_pos(start + len as u128);
        mask
    }

    /// The random stream's position, to checkpoint it.
    pub fn word_pos(&self) -> u128 {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_word_pos()
    }

    pub fn set_word_pos(&self, pos: u128) {
        self.rng
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_word_pos(pos)
    }
}

/// `act(x · w^T + bias)`; `x` is `(rows, in)`, `w` is `(out, in)` as HF stores it.
pub fn linear(xs: &Tensor, w: &Tensor, bias: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let ys = if on_cpu_f32(xs) && xs.rank() == 2 {
        xs.contiguous()?
            .apply_op3_arc(&w.contiguous()?, bias, Arc::new(Box::new(LinearOp)))?
    } else {
        xs.matmul(&w.t()?)?.broadcast_add(bias)?
    };
    match act {
        None => Ok(ys),
        Some(act) => activation(&ys, act),
    }
}

fn activation(xs: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        // candle evaluates erf in f64 per element, forward and backward; on CPU the
        // vectorised kernels do both (a twentieth of a training step).
        Activation::GeluErf if on_cpu_f32(xs) => xs.contiguous()?.apply_op1(GeluErf),
        Activation::GeluErf => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
        Activation::Relu => xs.relu(),
    }
}

/// `LayerNorm(x + residual)`. When `differentiable`, composed of ops that record gradients:
/// candle-nn's fused `layer_norm` has no backward (candle issues 2168, 2977), so training
/// through it would silently update only the head.
pub fn add_layer_norm(
    xs: &Tensor,
    residual: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    differentiable: bool,
) -> Result<Tensor> {
    let x = (xs + residual)?;
    if !differentiable {
        return candle_nn::ops::layer_norm(&x.contiguous()?, gamma, beta, eps as f32);
    }
    if on_cpu_f32(&x) {
        // One op that keeps only its input for backward, where the composition below keeps
        // nine intermediates per LayerNorm (a sixth of training's peak memory).
        return x.contiguous()?.apply_op3_arc(
            gamma,
            beta,
            Arc::new(Box::new(LayerNormOp { eps: eps as f32 })),
        );
    }
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centered.broadcast_div(&(var + eps)?.sqrt()?)?;
    normed.broadcast_mul(gamma)?.broadcast_add(beta)
}

/// Attention of each packed sequence over itself, from fused QKV rows `(tokens, 3 * hidden)`
/// to `(tokens, hidden)`; attention dropout when training.
///
/// The sequences are gathered into a padded `(batch, longest, ...)` block so that the whole
/// batch is a handful of batched products (one op per step rather than one per sequence,
/// which matters most for the backward pass); padded keys are masked out, padded rows are
/// dropped on the way back to the packed layout. Batches sorted by length pad little.
pub fn packed_attention(
    qkv: &Tensor,
    seq_lens: &[usize],
    heads: usize,
    head_dim: usize,
    dropout: Option<&Dropout>,
) -> Result<Tensor> {
    let scale = 1.0 / (head_dim as f64).sqrt();
    let device = qkv.device();
    let batch = seq_lens.len();
    let longest = seq_lens.iter().copied().max().unwrap_or(0);
    let hidden = heads * head_dim;
    let layout = seq_lens
        .iter()
        .any(|&len| len != longest)
        .then(|| PaddedLayout::new(seq_lens, longest));
    let block = if let Some(layout) = &layout {
        let zero_row = Tensor::zeros((1, 3 * hidden), qkv.dtype(), device)?;
        let source = Tensor::cat(&[qkv, &zero_row], 0)?;
        source.index_select(&Tensor::new(layout.gather.as_slice(), device)?, 0)?
    } else {
        qkv.clone()
    };
    let block = block.reshape((batch, longest, 3, heads, head_dim))?;
    // (batch, longest, heads, d) -> (batch, heads, longest, d)
    let part = |i: usize| {
        block
            .narrow(2, i, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (part(0)?, part(1)?, part(2)?);
    let scores = q.matmul(&k.t()?)?;
    let probs = if dropout.is_some() && on_cpu_f32(&scores) {
        let op = MaskedSoftmaxOp {
            scale: scale as f32,
            key_lens: seq_lens.to_vec(),
        };
        scores.apply_op1(op)?
    } else {
        let mut scores = (scores * scale)?;
        if let Some(layout) = &layout {
            let mask = Tensor::new(layout.key_mask.as_slice(), device)?
                .reshape((batch, 1, 1, longest))?
                .to_dtype(scores.dtype())?;
            scores = scores.broadcast_add(&mask)?;
        }
        match dropout {
            // candle-nn's fused softmax_last_dim has no backward.
            Some(_) => candle_nn::ops::softmax(&scores, D::Minus1)?,
            None => candle_nn::ops::softmax_last_dim(&scores)?,
        }
    };
    let probs = match dropout {
        Some(dropout) => dropout.apply(&probs, dropout.attention)?,
        None => probs,
    };
    let context = probs
        .matmul(&v)?
        .transpose(1, 2)?
        .reshape((batch * longest, hidden))?;
    match &layout {
        Some(layout) => context.index_select(&Tensor::new(layout.scatter.as_slice(), device)?, 0),
        None => Ok(context),
    }
}

/// Index maps between the packed rows and a padded `(batch, longest)` block.
struct PaddedLayout {
    /// For each padded slot, its packed row, or `tokens` (an appended zero row) for padding.
    gather: Vec<u32>,
    /// For each packed row, its padded slot.
    scatter: Vec<u32>,
    /// 0 for real keys, a large negative number for padding, per (sequence, key slot).
    key_mask: Vec<f32>,
}

impl PaddedLayout {
    fn new(seq_lens: &[usize], longest: usize) -> Self {
        let tokens: usize = seq_lens.iter().sum();
        let mut gather = Vec::with_capacity(seq_lens.len() * longest);
        let mut scatter = Vec::with_capacity(tokens);
        let mut key_mask = Vec::with_capacity(seq_lens.len() * longest);
        let mut start = 0;
        for (s, &len) in seq_lens.iter().enumerate() {
            for slot in 0..longest {
                let real = slot < len;
                gather.push(if real {
                    (start + slot) as u32
                } else {
                    tokens as u32
                });
                key_mask.push(if real { 0.0 } else { -1e9 });
                if real {
                    scatter.push((s * longest + slot) as u32);
                }
            }
            start += len;
        }
        Self {
            gather,
            scatter,
            key_mask,
        }
    }
}

/// Whether the CPU training ops of [`super::grad_ops`] apply.
fn on_cpu_f32(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn dropout_masks_equal_drawing_one_value_after_another() {
        let dropout = Dropout::new(0.1, 0.1, 0.1, 7);
        let mut sequential = ChaCha8Rng::seed_from_u64(7);
        // Two masks (the second starts mid-stream), longer than a chunk and not a multiple.
        for len in [100_003usize, 70_001] {
            let mask = dropout.mask(len, 0.9, 2.0);
            let want: Vec<f32> = (0..len)
                .map(|_| {
                    if sequential.random::<f32>() < 0.9 {
                        2.0
                    } else {
                        0.0
                    }
                })
                .collect();
            assert_eq!(mask, want);
            assert_eq!(dropout.word_pos(), sequential.get_word_pos());
        }
    }
}
