//! A whole post-LayerNorm transformer encoder (BERT, DistilBERT, RoBERTa) on packed sequences,
//! on plain slices, with every intermediate in a [`Workspace`] that is reused from batch to
//! batch: no allocation inside the layer loop once the workspace has grown to the largest
//! batch. On CPU this replaces a chain of tensor ops that each allocated (and page-faulted)
//! its output; at 2048 tokens that cost 40% on top of the matrix products.

use crate::{attention, gelu, layernorm, linear};

/// The activation between the feed-forward products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
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
    let h = shape.hidden;
    let tokens = x.len() / h;
    let d = h / shape.heads;
    let qkv = grow(&mut ws.qkv, tokens * 3 * h);
    linear::linear_bias(x, tokens, &w.qkv_w, h, 3 * h, &w.qkv_b, threads, qkv);
    let context = grow(&mut ws.context, tokens * h);
    attention::packed_attention(
        qkv,
        seq_lens,
        shape.heads,
        d,
        1.0 / (d as f32).sqrt(),
        context,
    );
    let projected = grow(&mut ws.projected, tokens * h);
    linear::linear_bias(
        context, tokens, &w.out_w, h, h, &w.out_b, threads, projected,
    );
    layernorm::add_layer_norm_inplace(x, projected, &w.attn_norm.0, &w.attn_norm.1, shape.eps);
    let ffn = grow(&mut ws.ffn, tokens * shape.intermediate);
    linear::linear_bias(
        x,
        tokens,
        &w.ffn_in_w,
        h,
        shape.intermediate,
        &w.ffn_in_b,
        threads,
        ffn,
    );
    match shape.activation {
        Activation::GeluErf => gelu::gelu_erf_inplace(ffn),
        Activation::GeluTanh => gelu::gelu_tanh_inplace(ffn),
        Activation::Relu => ffn.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
    let projected = grow(&mut ws.projected, tokens * h);
    linear::linear_bias(
        ffn,
        tokens,
        &w.ffn_out_w,
        shape.intermediate,
        h,
        &w.ffn_out_b,
        threads,
        projected,
    );
    layernorm::add_layer_norm_inplace(x, projected, &w.ffn_norm.0, &w.ffn_norm.1, shape.eps);
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
