//! The encoder's steps as plain candle ops, for every device: what CUDA and Metal run, and
//! what training runs (these ops record gradients). CPU inference takes the fused
//! `taskbench-kernels` path instead (see `transformer.rs`). Tested on CPU against the same
//! references as the fused path.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp3, DType, Layout, Result, Shape, Tensor, D};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::Activation;

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
        let mask: Vec<f32> = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (0..xs.elem_count())
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        scale
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs * mask
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
    let ys = xs.matmul(&w.t()?)?.broadcast_add(bias)?;
    match act {
        None => Ok(ys),
        Some(act) => activation(&ys, act),
    }
}

fn activation(xs: &Tensor, act: Activation) -> Result<Tensor> {
    match act {
        // candle evaluates erf in f64 per element, forward and backward; on CPU the
        // vectorised kernels do both (a twentieth of a training step).
        Activation::GeluErf if xs.device().is_cpu() && xs.dtype() == DType::F32 => {
            xs.contiguous()?.apply_op1(GeluErf)
        }
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
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        // One op that keeps only its input for backward, where the composition below keeps
        // nine intermediates per LayerNorm (a sixth of training's peak memory).
        return x.contiguous()?.apply_op3_arc(
            gamma,
            beta,
            std::sync::Arc::new(Box::new(LayerNormOp { eps: eps as f32 })),
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
    let mut scores = (q.matmul(&k.t()?)? * scale)?;
    if let Some(layout) = &layout {
        let mask = Tensor::new(layout.key_mask.as_slice(), device)?
            .reshape((batch, 1, 1, longest))?
            .to_dtype(scores.dtype())?;
        scores = scores.broadcast_add(&mask)?;
    }
    let probs = match dropout {
        // candle-nn's fused softmax_last_dim has no backward.
        Some(dropout) => dropout.apply(&softmax_with_grad(&scores)?, dropout.attention)?,
        None => candle_nn::ops::softmax_last_dim(&scores)?,
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

/// GELU (erf form) on CPU through `taskbench-kernels`, with its backward.
struct GeluErf;

/// The GELU derivative at each input, for [`GeluErf`]'s backward.
struct GeluErfDerivative;

fn map_cpu_f32(
    storage: &CpuStorage,
    layout: &Layout,
    name: &str,
    f: fn(&mut [f32]),
) -> Result<(CpuStorage, Shape)> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{name}: expected f32");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{name}: expected a contiguous tensor");
    };
    let mut out = data[start..end].to_vec();
    f(&mut out);
    Ok((CpuStorage::F32(out), layout.shape().clone()))
}

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_cpu_f32(
            storage,
            layout,
            self.name(),
            taskbench_kernels::gelu::gelu_erf_inplace,
        )
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let derivative = arg.contiguous()?.apply_op1_no_bwd(&GeluErfDerivative)?;
        Ok(Some(grad_res.mul(&derivative)?))
    }
}

impl CustomOp1 for GeluErfDerivative {
    fn name(&self) -> &'static str {
        "gelu-erf-derivative"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        map_cpu_f32(
            storage,
            layout,
            self.name(),
            taskbench_kernels::gelu::gelu_erf_derivative_inplace,
        )
    }
}

/// Softmax over the last dimension that records gradients: on CPU one op whose backward
/// needs only its output (`dx = y * (g - sum(g * y))`); elsewhere candle's composition.
fn softmax_with_grad(xs: &Tensor) -> Result<Tensor> {
    if xs.device().is_cpu() && xs.dtype() == DType::F32 {
        return xs.contiguous()?.apply_op1(SoftmaxOp);
    }
    candle_nn::ops::softmax(xs, D::Minus1)
}

struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "softmax-with-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let width = *layout.shape().dims().last().unwrap_or(&1);
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("softmax-with-grad: expected f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax-with-grad: expected a contiguous tensor");
        };
        let mut out = data[start..end].to_vec();
        taskbench_kernels::attention::softmax_rows(&mut out, width.max(1));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let dot = (grad_res * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((grad_res.broadcast_sub(&dot)? * res)?))
    }
}

/// LayerNorm over the last dimension of `x` with `gamma` and `beta`, recording gradients
/// for all three while saving only `x` (the backward recomputes the normalised values).
struct LayerNormOp {
    eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm-with-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let slice = |s: &'_ CpuStorage, l: &Layout| -> Result<Vec<f32>> {
            let CpuStorage::F32(data) = s else {
                candle_core::bail!("layer-norm-with-grad: expected f32");
            };
            let Some((start, end)) = l.contiguous_offsets() else {
                candle_core::bail!("layer-norm-with-grad: expected contiguous tensors");
            };
            Ok(data[start..end].to_vec())
        };
        let (mut x, gamma, beta) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        taskbench_kernels::layernorm::layer_norm_inplace(&mut x, &gamma, &beta, self.eps);
        Ok((CpuStorage::F32(x), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let width = gamma.dim(0)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let rstd = (centered.sqr()?.mean_keepdim(D::Minus1)? + self.eps as f64)?
            .sqrt()?
            .recip()?;
        let x_hat = centered.broadcast_mul(&rstd)?;
        let rows = x.elem_count() / width;
        let d_gamma = (g * &x_hat)?.reshape((rows, width))?.sum(0)?;
        let d_beta = g.reshape((rows, width))?.sum(0)?;
        let g_gamma = g.broadcast_mul(gamma)?;
        let mean_gg = g_gamma.mean_keepdim(D::Minus1)?;
        let mean_gg_xhat = (&g_gamma * &x_hat)?.mean_keepdim(D::Minus1)?;
        let dx = g_gamma
            .broadcast_sub(&mean_gg)?
            .sub(&x_hat.broadcast_mul(&mean_gg_xhat)?)?
            .broadcast_mul(&rstd)?;
        Ok((Some(dx), Some(d_gamma), Some(d_beta)))
    }
}
