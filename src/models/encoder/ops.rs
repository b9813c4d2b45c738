//! The encoder's steps as candle ops with a fused CPU path: on CPU each step is one
//! `taskbench-kernels` call with no intermediate tensors (bias folded into the matrix
//! product, the activation applied in place, residual + LayerNorm in one pass, attention over
//! packed sequences without transposes); on other devices they fall back to candle's own ops.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor};
use taskbench_kernels as kernels;

use super::config::Activation;

/// `act(x · w_t + bias)`; `x` is `(rows, k)`, `w_t` is `(k, n)`.
pub fn linear(xs: &Tensor, w_t: &Tensor, bias: &Tensor, act: Option<Activation>) -> Result<Tensor> {
    if xs.device().is_cpu() {
        return xs.contiguous()?.apply_op3_no_bwd(w_t, bias, &LinearOp { act });
    }
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
pub fn add_layer_norm(xs: &Tensor, residual: &Tensor, gamma_beta: &Tensor, eps: f64) -> Result<Tensor> {
    if xs.device().is_cpu() {
        return xs.contiguous()?.apply_op3_no_bwd(&residual.contiguous()?, gamma_beta, &AddLayerNorm { eps: eps as f32 });
    }
    let gamma = gamma_beta.get(0)?;
    let beta = gamma_beta.get(1)?;
    candle_nn::ops::layer_norm(&(xs + residual)?.contiguous()?, &gamma, &beta, eps as f32)
}

/// Attention of each packed sequence over itself, from fused QKV rows `(tokens, 3 * hidden)`
/// to `(tokens, hidden)`.
pub fn packed_attention(qkv: &Tensor, seq_lens: &[usize], heads: usize, head_dim: usize) -> Result<Tensor> {
    let scale = 1.0 / (head_dim as f64).sqrt();
    if qkv.device().is_cpu() {
        let op = PackedAttention { seq_lens: seq_lens.to_vec(), heads, head_dim, scale: scale as f32 };
        return qkv.contiguous()?.apply_op1_no_bwd(&op);
    }
    attention_per_sequence(qkv, seq_lens, heads, head_dim, scale)
}

/// The device-generic path: one sequence at a time with candle's matmul and softmax.
fn attention_per_sequence(qkv: &Tensor, seq_lens: &[usize], heads: usize, head_dim: usize, scale: f64) -> Result<Tensor> {
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

fn cpu_f32<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{what}: expected f32, got {:?}", storage.dtype());
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

struct LinearOp {
    act: Option<Activation>,
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear-bias-act"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, w, bias) = (cpu_f32(s1, l1, "linear x")?, cpu_f32(s2, l2, "linear w")?, cpu_f32(s3, l3, "linear bias")?);
        let (rows, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k != k2 || bias.len() != n {
            candle_core::bail!("linear: shapes ({rows}, {k}) x ({k2}, {n}) + ({})", bias.len());
        }
        let mut out = vec![0.0f32; rows * n];
        kernels::linear::linear_bias(x, rows, w, k, n, bias, rayon::current_num_threads(), &mut out);
        match self.act {
            None => {}
            Some(Activation::GeluErf) => kernels::gelu::gelu_erf_inplace(&mut out),
            Some(Activation::GeluTanh) => kernels::gelu::gelu_tanh_inplace(&mut out),
            Some(Activation::Relu) => out.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
        Ok((CpuStorage::F32(out), Shape::from((rows, n))))
    }
}

struct AddLayerNorm {
    eps: f32,
}

impl CustomOp3 for AddLayerNorm {
    fn name(&self) -> &'static str {
        "add-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, residual, gb) = (cpu_f32(s1, l1, "layer norm x")?, cpu_f32(s2, l2, "layer norm residual")?, cpu_f32(s3, l3, "layer norm weights")?);
        let width = gb.len() / 2;
        if l1.shape() != l2.shape() || l1.shape().dims().last() != Some(&width) {
            candle_core::bail!("add-layer-norm: shapes {:?} + {:?} with width {width}", l1.shape(), l2.shape());
        }
        let mut out = vec![0.0f32; x.len()];
        kernels::layernorm::add_layer_norm(x, residual, &gb[..width], &gb[width..], self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

struct PackedAttention {
    seq_lens: Vec<usize>,
    heads: usize,
    head_dim: usize,
    scale: f32,
}

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "packed-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let qkv = cpu_f32(storage, layout, "attention qkv")?;
        let tokens: usize = self.seq_lens.iter().sum();
        let hidden = self.heads * self.head_dim;
        if layout.shape().dims2()? != (tokens, 3 * hidden) {
            candle_core::bail!("packed-attention: qkv {:?}, expected ({tokens}, {})", layout.shape(), 3 * hidden);
        }
        let mut out = vec![0.0f32; tokens * hidden];
        kernels::attention::packed_attention(qkv, &self.seq_lens, self.heads, self.head_dim, self.scale, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}
