//! A whole post-LayerNorm transformer encoder (BERT, DistilBERT, RoBERTa) on packed sequences,
//! on plain slices, with every intermediate in a [`Workspace`] that is reused from batch to
//! batch: no allocation inside the layer loop once the workspace has grown to the largest
//! batch. On CPU this replaces a chain of tensor ops that each allocated (and page-faulted)
//! its output; at 2048 tokens that cost 40% on top of the matrix products.
//!
//! Two precisions run the same block: [`layer_forward`] with f32 weights, and
//! [`layer_forward_int8`] with the four matrix products (QKV, attention output, feed-forward in
//! and out) in int8 ([`crate::int8`]: per-column weight scales, per-token activation scales);
//! LayerNorm, softmax, GELU and the residuals stay f32 in both.

use crate::int8::{Int8Linear, QuantizedRows};
use crate::packed::{self, PackedLinear};
use crate::{attention, gelu, layernorm};

mod region;

use region::{Block, Product};
pub use region::{Blocks, REGION_MAX_TOKENS};

/// Runs every block in place on `x` (`tokens x hidden`, sequences packed end to end): a
/// batch of at most [`REGION_MAX_TOKENS`] tokens in one parallel region (see
/// [`region`]), a larger one block by block with each product parallel on its own.
pub fn forward(
    x: &mut [f32],
    seq_lens: &[usize],
    blocks: Blocks,
    shape: &Shape,
    ws: &mut Workspace,
    threads: usize,
) {
    let tokens = x.len() / shape.hidden;
    if tokens <= REGION_MAX_TOKENS && threads > 1 {
        return region::forward_in_region(x, seq_lens, blocks, shape, ws, threads);
    }
    match blocks {
        Blocks::Fp32(layers) => layers
            .iter()
            .for_each(|w| layer_forward(x, seq_lens, w, shape, ws, threads)),
        Blocks::Int8(layers) => layers
            .iter()
            .for_each(|w| layer_forward_int8(x, seq_lens, w, shape, ws, threads)),
    }
}

/// The activation between the feed-forward products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    /// Applies the activation to `xs` in place.
    pub fn apply(self, xs: &mut [f32]) {
        match self {
            Activation::GeluErf => gelu::gelu_erf_inplace(xs),
            Activation::GeluTanh => gelu::gelu_tanh_inplace(xs),
            Activation::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
    }
}

/// One block's weights, matrices stored `[in, out]` row-major.
pub struct LayerWeights {
    pub qkv_w: Vec<f32>,
    pub qkv_b: Vec<f32>,
    pub out_w: Vec<f32>,
    pub out_b: Vec<f32>,
    pub attn_norm: (Vec<f32>, Vec<f32>),
    pub ffn_in_w: Vec<f32>,
    pub ffn_in_b: Vec<f32>,
    pub ffn_out_w: Vec<f32>,
    pub ffn_out_b: Vec<f32>,
    pub ffn_norm: (Vec<f32>, Vec<f32>),
    /// The four matrices packed for batches of few tokens, when [`LayerWeights::pack`] has
    /// run and the CPU has the packed kernel; `None` leaves those batches to gemm.
    pub packed: Option<Box<PackedProducts>>,
}

/// A block's four matrices packed for [`crate::packed`] (a second copy of the weights: the
/// large-batch path keeps gemm on the unpacked ones).
pub struct PackedProducts {
    pub qkv: PackedLinear,
    pub out: PackedLinear,
    pub ffn_in: PackedLinear,
    pub ffn_out: PackedLinear,
}

impl LayerWeights {
    /// Packs the matrices for single-stream batches if this CPU has the packed kernel.
    pub fn pack(&mut self, shape: &Shape) {
        if !packed::available() {
            return;
        }
        let (h, i) = (shape.hidden, shape.intermediate);
        self.packed = Some(Box::new(PackedProducts {
            qkv: PackedLinear::pack(&self.qkv_w, h, 3 * h, &self.qkv_b),
            out: PackedLinear::pack(&self.out_w, h, h, &self.out_b),
            ffn_in: PackedLinear::pack(&self.ffn_in_w, h, i, &self.ffn_in_b),
            ffn_out: PackedLinear::pack(&self.ffn_out_w, i, h, &self.ffn_out_b),
        }));
    }
}

/// One block's weights with the four matrices quantized to int8 (see [`crate::int8`]); the
/// LayerNorm parameters stay f32.
pub struct Int8LayerWeights {
    pub qkv: Int8Linear,
    pub out: Int8Linear,
    pub attn_norm: (Vec<f32>, Vec<f32>),
    pub ffn_in: Int8Linear,
    pub ffn_out: Int8Linear,
    pub ffn_norm: (Vec<f32>, Vec<f32>),
}

impl Int8LayerWeights {
    /// Quantizes the matrices of `w` (a block of `shape`).
    pub fn quantize(w: &LayerWeights, shape: &Shape) -> Self {
        let (h, i) = (shape.hidden, shape.intermediate);
        Self {
            qkv: Int8Linear::quantize(&w.qkv_w, h, 3 * h, &w.qkv_b),
            out: Int8Linear::quantize(&w.out_w, h, h, &w.out_b),
            attn_norm: w.attn_norm.clone(),
            ffn_in: Int8Linear::quantize(&w.ffn_in_w, h, i, &w.ffn_in_b),
            ffn_out: Int8Linear::quantize(&w.ffn_out_w, i, h, &w.ffn_out_b),
            ffn_norm: w.ffn_norm.clone(),
        }
    }

    /// Bytes held by the block's weights.
    pub fn bytes(&self) -> usize {
        let norms = 4 * 2 * (self.attn_norm.0.len() + self.ffn_norm.0.len());
        self.qkv.bytes() + self.out.bytes() + self.ffn_in.bytes() + self.ffn_out.bytes() + norms
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub eps: f32,
    pub activation: Activation,
}

/// Scratch buffers, grown to the largest batch seen and then reused.
#[derive(Default)]
pub struct Workspace {
    qkv: Vec<f32>,
    context: Vec<f32>,
    projected: Vec<f32>,
    ffn: Vec<f32>,
    /// The int8 path's quantized activations, reused by its four products.
    quantized: QuantizedRows,
    /// In a region that quantizes as a step of its own, the feed-forward output's (the
    /// other products' inputs use `quantized`).
    quantized_wide: QuantizedRows,
}

fn grow(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    &mut buf[..len]
}

/// Runs one block in place on `x` (`tokens x hidden`, sequences packed end to end).
pub fn layer_forward(
    x: &mut [f32],
    seq_lens: &[usize],
    w: &LayerWeights,
    shape: &Shape,
    ws: &mut Workspace,
    threads: usize,
) {
    block_forward(x, seq_lens, w, shape, ws, threads)
}

/// [`layer_forward`] with the matrix products in int8: each product's input rows are
/// quantized as they arrive, and the feed-forward activation runs in the first product's
/// epilogue.
pub fn layer_forward_int8(
    x: &mut [f32],
    seq_lens: &[usize],
    w: &Int8LayerWeights,
    shape: &Shape,
    ws: &mut Workspace,
    threads: usize,
) {
    block_forward(x, seq_lens, w, shape, ws, threads)
}

/// One block, each product parallel on its own, in either precision.
fn block_forward(
    x: &mut [f32],
    seq_lens: &[usize],
    w: &impl Block,
    shape: &Shape,
    ws: &mut Workspace,
    threads: usize,
) {
    let h = shape.hidden;
    let tokens = x.len() / h;
    let d = h / shape.heads;
    let q = &mut ws.quantized;
    let qkv = grow(&mut ws.qkv, tokens * 3 * h);
    w.whole_product(Product::Qkv, x, tokens, None, threads, q, qkv);
    let context = grow(&mut ws.context, tokens * h);
    let scale = 1.0 / (d as f32).sqrt();
    attention::packed_attention(qkv, seq_lens, shape.heads, d, scale, context);
    let projected = grow(&mut ws.projected, tokens * h);
    w.whole_product(Product::Out, context, tokens, None, threads, q, projected);
    let (gamma, beta) = w.attn_norm();
    layernorm::add_layer_norm_inplace(x, projected, gamma, beta, shape.eps);
    let ffn = grow(&mut ws.ffn, tokens * shape.intermediate);
    let act = Some(shape.activation);
    w.whole_product(Product::FfnIn, x, tokens, act, threads, q, ffn);
    let projected = grow(&mut ws.projected, tokens * h);
    w.whole_product(Product::FfnOut, ffn, tokens, None, threads, q, projected);
    let (gamma, beta) = w.ffn_norm();
    layernorm::add_layer_norm_inplace(x, projected, gamma, beta, shape.eps);
}

/// Embedding sum (word + position + token type) followed by LayerNorm, into `out`
/// (`tokens x hidden`). Tables are row-major `[rows, hidden]`; `token_type` may be empty.
#[allow(clippy::too_many_arguments)]
pub fn embed(
    ids: &[u32],
    positions: &[u32],
    type_ids: &[u32],
    word: &[f32],
    position: &[f32],
    token_type: &[f32],
    norm: &(Vec<f32>, Vec<f32>),
    eps: f32,
    out: &mut [f32],
) {
    let h = norm.0.len();
    let zeros = vec![0.0f32; h];
    for (t, row) in out.chunks_exact_mut(h).enumerate() {
        let w = &word[ids[t] as usize * h..][..h];
        let p = &position[positions[t] as usize * h..][..h];
        for ((o, a), b) in row.iter_mut().zip(w).zip(p) {
            *o = a + b;
        }
        let tt = if token_type.is_empty() {
            &zeros[..]
        } else {
            &token_type[type_ids[t] as usize * h..][..h]
        };
        layernorm::add_layer_norm_inplace(row, tt, &norm.0, &norm.1, eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    fn block(shape: &Shape, seed: u64) -> LayerWeights {
        let (h, i) = (shape.hidden, shape.intermediate);
        let m = |k: usize, n: usize, s: u64| test_values(k * n, seed + s, 1.5 / (k as f32).sqrt());
        let v = |n: usize, s: u64, scale: f32| test_values(n, seed + s, scale);
        let norm = |s: u64| {
            let g = v(h, s, 0.5).iter().map(|x| x + 1.0).collect();
            (g, v(h, s + 1, 0.2))
        };
        LayerWeights {
            qkv_w: m(h, 3 * h, 1),
            qkv_b: v(3 * h, 2, 0.1),
            out_w: m(h, h, 3),
            out_b: v(h, 4, 0.1),
            attn_norm: norm(5),
            ffn_in_w: m(h, i, 7),
            ffn_in_b: v(i, 8, 0.1),
            ffn_out_w: m(i, h, 9),
            ffn_out_b: v(h, 10, 0.1),
            ffn_norm: norm(11),
            packed: None,
        }
    }

    /// The one-region path computes what the block-by-block path computes, in both
    /// precisions, for any thread count: fp32 within 1e-5 (gemm on a column range, or the
    /// packed kernel, sums in another order), int8 exactly (integer sums, same quantized
    /// inputs).
    #[test]
    fn region_matches_block_by_block() {
        for (hidden, heads, intermediate, seq_lens) in [
            (32usize, 4usize, 37usize, vec![1usize, 5, 11]),
            (128, 4, 300, vec![16]),
            (96, 3, 200, vec![7, 1, 30, 2]),
            // Past packed::MAX_ROWS: gemm in the region.
            (64, 2, 100, vec![90, 20]),
        ] {
            let shape = Shape {
                hidden,
                heads,
                intermediate,
                eps: 1e-12,
                activation: Activation::GeluErf,
            };
            let fp32: Vec<LayerWeights> = (0..2).map(|l| block(&shape, 60 + l * 20)).collect();
            let fp32_packed: Vec<LayerWeights> = (0..2)
                .map(|l| {
                    let mut w = block(&shape, 60 + l * 20);
                    w.pack(&shape);
                    w
                })
                .collect();
            let int8: Vec<Int8LayerWeights> = fp32
                .iter()
                .map(|w| Int8LayerWeights::quantize(w, &shape))
                .collect();
            let tokens: usize = seq_lens.iter().sum();
            let x = test_values(tokens * hidden, 43, 1.0);
            let mut ws = Workspace::default();
            for (blocks, tolerance) in [
                (Blocks::Fp32(&fp32), 1e-5f32),
                (Blocks::Fp32(&fp32_packed), 1e-5),
                (Blocks::Int8(&int8), 0.0),
            ] {
                let mut want = x.clone();
                match blocks {
                    Blocks::Fp32(ls) => ls
                        .iter()
                        .for_each(|w| layer_forward(&mut want, &seq_lens, w, &shape, &mut ws, 1)),
                    Blocks::Int8(ls) => ls.iter().for_each(|w| {
                        layer_forward_int8(&mut want, &seq_lens, w, &shape, &mut ws, 1)
                    }),
                }
                for threads in [1, 2, 3] {
                    let mut got = x.clone();
                    region::forward_in_region(
                        &mut got, &seq_lens, blocks, &shape, &mut ws, threads,
                    );
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(g, e)| (g - e).abs())
                        .fold(0.0f32, f32::max);
                    assert!(
                        worst <= tolerance,
                        "hidden {hidden}, {threads} threads: worst difference {worst}"
                    );
                }
            }
        }
    }

    /// The int8 block follows the f32 block closely on random weights and inputs: the
    /// relative RMS difference of the outputs (LayerNorm-scaled, so O(1)) stays below 3%,
    /// and no value moves by more than 0.25.
    #[test]
    fn int8_block_tracks_the_f32_block() {
        for (hidden, heads, intermediate, seq_lens) in [
            (32usize, 4usize, 37usize, vec![1usize, 5, 11]),
            (128, 4, 300, vec![16, 3, 40]),
        ] {
            let shape = Shape {
                hidden,
                heads,
                intermediate,
                eps: 1e-12,
                activation: Activation::GeluErf,
            };
            let w = block(&shape, 40);
            let q = Int8LayerWeights::quantize(&w, &shape);
            let tokens: usize = seq_lens.iter().sum();
            let x = test_values(tokens * hidden, 41, 1.0);
            let mut ws = Workspace::default();
            let mut want = x.clone();
            layer_forward(&mut want, &seq_lens, &w, &shape, &mut ws, 2);
            for threads in [1, 2] {
                let mut got = x.clone();
                layer_forward_int8(&mut got, &seq_lens, &q, &shape, &mut ws, threads);
                let (mut num, mut den, mut worst) = (0.0f64, 0.0f64, 0.0f32);
                for (g, e) in got.iter().zip(&want) {
                    num += ((g - e) as f64).powi(2);
                    den += (*e as f64).powi(2);
                    worst = worst.max((g - e).abs());
                }
                let rel = (num / den).sqrt();
                assert!(
                    rel < 0.03 && worst < 0.25,
                    "hidden {hidden}: relative RMS {rel}, worst {worst} ({threads} threads)"
                );
            }
        }
    }
}
