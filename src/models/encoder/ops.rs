//! The encoder's steps as plain candle ops, for every device. On CPU the encoder runs the
//! fused `taskbench-kernels` path instead (see `transformer.rs`); this one serves CUDA and
//! Metal, and is tested on CPU against the same references.

use candle_core::{Result, Tensor};

use super::config::Activation;

/// `act(x · w_t + bias)`; `x` is `(rows, k)`, `w_t` is `(k, n)`.
pub fn linear(xs: &Tensor, w_t: &Tensor, bias: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    let ys = xs.matmul(w_t)?.broadcast_add(bias)?;
    match act {
        None => Ok(ys),
        Some(act) => activation(&ys, act),
    }
}

fn activation(xs: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        Activation::GeluErf => xs.gelu_erf(),
        Activation::GeluTanh => xs.gelu(),
        Activation::Relu => xs.relu(),
    }
}

/// `LayerNorm(x + residual)` with `gamma_beta` = `[gamma; beta]`, shape `(2, width)`.
pub fn add_layer_norm(
    xs: &Tensor,
    residual: &Tensor,
    gamma_beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let gamma = gamma_beta.get(0)?;
    let beta = gamma_beta.get(1)?;
    candle_nn::ops::layer_norm(&(xs + residual)?.contiguous()?, &gamma, &beta, eps as f32)
}

/// Attention of each packed sequence over itself, from fused QKV rows `(tokens, 3 * hidden)`
/// to `(tokens, hidden)`.
/// One sequence at a time with candle's matmul and softmax.
pub fn packed_attention(
    qkv: &Tensor,
    seq_lens: &[usize],
    heads: usize,
    head_dim: usize,
) -> Result<Tensor> {
    let scale = 1.0 / (head_dim as f64).sqrt();
    let tokens: usize = seq_lens.iter().sum();
    let hidden = heads * head_dim;
    let split = qkv.reshape((tokens, 3, heads, head_dim))?;
    let mut contexts = Vec::with_capacity(seq_lens.len());
    let mut start = 0;
    for &len in seq_lens {
        let seq = split.narrow(0, start, len)?;
        // (len, heads, d) -> (heads, len, d)
        let part = |i: usize| seq.get_on_dim(1, i)?.transpose(0, 1)?.contiguous();
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let probs = candle_nn::ops::softmax_last_dim(&(q.matmul(&k.t()?)? * scale)?)?;
        contexts.push(probs.matmul(&v)?.transpose(0, 1)?.reshape((len, hidden))?);
        start += len;
    }
    Tensor::cat(&contexts, 0)
}
