//! One token through the decoder (a generation step), on a team of threads that meet at
//! barriers (`taskbench_kernels::team`) instead of a rayon fork-join per product.
//!
//! A step is ~7 small matrix-vector products per layer plus the head; on two cores a rayon
//! dispatch per product cost about a tenth of the step in wake-ups. Here the threads are
//! woken once per token and each layer is five phases separated by barriers:
//!
//! 1. RMSNorm and quantization of the input (every thread, redundantly: 576 values), then
//!    each thread's share of the rows of `[Wq; Wk; Wv]` (split on head boundaries), with bias,
//!    rotary embedding and the key/value cache write done by the thread that made the rows;
//! 2. attention, query heads split between the threads;
//! 3. the output projection's rows;
//! 4. residual, RMSNorm, quantization (redundantly), then the rows of the gate and up
//!    projections and `silu(gate) · up` for those rows;
//! 5. the down projection's rows, then the residual (redundantly, into each thread's own copy
//!    of the hidden state).
//!
//! Every product computes each output exactly as the batched path does (same kernel, same
//! order per row), so the step's logits do not depend on the number of threads.

use std::ops::Range;

use taskbench_kernels::decode_attention::{attend_row, Cache};
use taskbench_kernels::quant::QuantizedActs;
use taskbench_kernels::team::{self, Ctx, SharedMut};

use super::llama::{attention_shape, rms_norm_rows, round_f16, silu, KvCache, Llama, RopeAngles};
use super::weights::Matrix;

/// A thread's input to the products of one phase, quantized once for all of them (the
/// quantization is the same whatever the weights' kind).
#[derive(Default)]
struct Input {
    acts: QuantizedActs,
    fresh: bool,
}

impl Input {
    fn reset(&mut self) {
        self.fresh = false;
    }

    fn get(&mut self, x: &[f32]) -> &QuantizedActs {
        if !self.fresh {
            self.acts.quantize(x, x.len());
            self.fresh = true;
        }
        &self.acts
    }
}

/// Rows `range` of `w`'s product with `x` into `out` (`range.len()` values).
fn rows(w: &Matrix, input: &mut Input, x: &[f32], range: Range<usize>, out: &mut [f32]) {
    let (kind, bytes) = w.quantized().expect("checked by `supported`");
    taskbench_kernels::quant::qmatvec_rows(kind, bytes, input.get(x), range, out);
}

/// Whether the team step can run this model: every product on quantized weights.
pub(super) fn supported(model: &Llama) -> bool {
    let head = model.output.as_ref().unwrap_or(&model.embed);
    head.quantized().is_some()
        && model.layers.iter().all(|l| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .all(|m| m.quantized().is_some())
        })
}

/// Runs `token` at the position after those in `cache` (which has room: the caller checks),
/// appends its keys and values and returns its logits.
pub(super) fn step(model: &Llama, token: u32, cache: &mut KvCache) -> Vec<f32> {
    let c = &model.config;
    let (hidden, q_dim, kv_dim, hd) = (c.hidden, c.q_dim(), c.kv_dim(), c.head_dim);
    let (pos, cap) = (cache.len(), cache.capacity());
    let round = |v: f32| if c.kv_f16 { round_f16(v) } else { v };
    let mut x0 = Vec::with_capacity(hidden);
    model.embed.row_into(token as usize, &mut x0);
    let rope = RopeAngles::new(c, pos, 1);
    let shape = attention_shape(c);
    let head = model.output.as_ref().unwrap_or(&model.embed);
    let mut q = vec![0.0f32; q_dim];
    let mut attn = vec![0.0f32; q_dim];
    let mut out = vec![0.0f32; hidden];
    let mut gate = vec![0.0f32; c.intermediate];
    let mut up = vec![0.0f32; c.intermediate];
    let mut logits = vec![0.0f32; head.rows];
    let (q, attn, out, gate, up, logits_s) = (
        SharedMut::new(&mut q),
        SharedMut::new(&mut attn),
        SharedMut::new(&mut out),
        SharedMut::new(&mut gate),
        SharedMut::new(&mut up),
        SharedMut::new(&mut logits),
    );
    let (keys, values) = cache.layers_mut();
    let keys: Vec<SharedMut> = keys.iter_mut().map(|k| SharedMut::new(k)).collect();
    let values: Vec<SharedMut> = values.iter_mut().map(|v| SharedMut::new(v)).collect();
    let threads = rayon::current_num_threads();
    team::run(threads, &|ctx: &Ctx| {
        let mut x = x0.clone();
        let mut normed = vec![0.0f32; hidden];
        let mut input = Input::default();
        let mut scores = Vec::new();
        let mut kbuf = vec![0.0f32; kv_dim];
        for (l, layer) in model.layers.iter().enumerate() {
            normed.copy_from_slice(&x);
            rms_norm_rows(&mut normed, &layer.attn_norm, c.rms_eps);
            input.reset();
            // Phase 1: rows of [Wq; Wk; Wv], split on head boundaries.
            let r = ctx.split(q_dim + 2 * kv_dim, hd);
            let qr = r.start.min(q_dim)..r.end.min(q_dim);
            let kr = r.start.clamp(q_dim, q_dim + kv_dim) - q_dim
                ..r.end.clamp(q_dim, q_dim + kv_dim) - q_dim;
            let vr = r.start.max(q_dim + kv_dim) - q_dim - kv_dim
                ..r.end.max(q_dim + kv_dim) - q_dim - kv_dim;
            // SAFETY: this thread alone touches rows `qr` of q until the barrier below.
            let qpart = unsafe { q.part(qr.clone()) };
            rows(&layer.wq, &mut input, &normed, qr.clone(), qpart);
            post_qkv(
                layer.bq.as_deref(),
                qpart,
                qr.start,
                &rope,
                hd,
                c.rope_style,
                true,
            );
            let kpart = &mut kbuf[..kr.len()];
            rows(&layer.wk, &mut input, &normed, kr.clone(), kpart);
            post_qkv(
                layer.bk.as_deref(),
                kpart,
                kr.start,
                &rope,
                hd,
                c.rope_style,
                true,
            );
            // SAFETY: position `pos` of this layer's cache, elements `kr` / `vr`, are written
            // by this thread alone and read only after the barrier below.
            for (e, &v) in kr.clone().zip(kpart.iter()) {
                unsafe { keys[l].part(e * cap + pos..e * cap + pos + 1)[0] = round(v) };
            }
            let vpart = unsafe { values[l].part(pos * kv_dim + vr.start..pos * kv_dim + vr.end) };
            rows(&layer.wv, &mut input, &normed, vr.clone(), vpart);
            post_qkv(
                layer.bv.as_deref(),
                vpart,
                vr.start,
                &rope,
                hd,
                c.rope_style,
                false,
            );
            for v in vpart.iter_mut() {
                *v = round(*v);
            }
            ctx.barrier();
            // Phase 2: attention, this thread's query heads.
            let heads = ctx.split(c.heads, 1);
            // SAFETY: q and positions 0..=pos of the cache are written only before the
            // barrier above; this thread alone writes columns `heads` of attn.
            unsafe {
                let layer_cache = Cache {
                    keys_t: keys[l].all(),
                    stride: cap,
                    values: values[l].all(),
                };
                attend_row(
                    &shape,
                    q.all(),
                    layer_cache,
                    pos + 1,
                    heads.clone(),
                    &mut scores,
                    attn.part(heads.start * hd..heads.end * hd),
                );
            }
            ctx.barrier();
            // Phase 3: the output projection.
            input.reset();
            let r = ctx.split(hidden, 16);
            // SAFETY: attn is complete (barrier above) and not written until the next layer's
            // phase 2; this thread alone writes rows `r` of out until the barrier below.
            unsafe { rows(&layer.wo, &mut input, attn.all(), r.clone(), out.part(r)) };
            ctx.barrier();
            // Phase 4: residual, norm, gate and up.
            // SAFETY: out is complete and written again only in phase 5, after a barrier
            // that every thread reaches after this read.
            for (a, b) in x.iter_mut().zip(unsafe { out.all() }) {
                *a += b;
            }
            normed.copy_from_slice(&x);
            rms_norm_rows(&mut normed, &layer.ffn_norm, c.rms_eps);
            input.reset();
            let r = ctx.split(c.intermediate, 16);
            // SAFETY: rows `r` of gate and up are this thread's until the barrier below.
            let (g, u) = unsafe { (gate.part(r.clone()), up.part(r.clone())) };
            rows(&layer.w_gate, &mut input, &normed, r.clone(), g);
            rows(&layer.w_up, &mut input, &normed, r.clone(), u);
            for (g, u) in g.iter_mut().zip(u.iter()) {
                *g = silu(*g) * u;
            }
            ctx.barrier();
            // Phase 5: down, residual.
            input.reset();
            let r = ctx.split(hidden, 16);
            // SAFETY: gate is complete (barrier above) and written again only in the next
            // layer's phase 4; rows `r` of out are this thread's until the barrier below.
            unsafe {
                rows(
                    &layer.w_down,
                    &mut input,
                    gate.all(),
                    r.clone(),
                    out.part(r),
                )
            };
            ctx.barrier();
            // SAFETY: out is complete; the next write (next layer's phase 3) follows two
            // barriers that every thread reaches after this read.
            for (a, b) in x.iter_mut().zip(unsafe { out.all() }) {
                *a += b;
            }
        }
        normed.copy_from_slice(&x);
        rms_norm_rows(&mut normed, &model.norm, c.rms_eps);
        input.reset();
        let r = ctx.split(head.rows, 16);
        // SAFETY: rows `r` of the logits are this thread's; the caller reads them after the
        // region.
        unsafe { rows(head, &mut input, &normed, r.clone(), logits_s.part(r)) };
    });
    cache.advance(1);
    logits
}

/// Bias and (for queries and keys) rotary embedding of rows `at..at + part.len()` of a
/// projection, on whole heads (`at` and the length are multiples of `hd`).
fn post_qkv(
    bias: Option<&[f32]>,
    part: &mut [f32],
    at: usize,
    rope: &RopeAngles,
    hd: usize,
    style: super::config::RopeStyle,
    rotate: bool,
) {
    if let Some(bias) = bias {
        for (v, b) in part.iter_mut().zip(&bias[at..]) {
            *v += b;
        }
    }
    if rotate && !part.is_empty() {
        debug_assert!(at.is_multiple_of(hd) && part.len().is_multiple_of(hd));
        rope.apply(part, part.len() / hd, hd, style);
    }
}
