//! The llama-family decoder (Llama, SmolLM2, TinyLlama, Qwen2) on CPU: RMSNorm, rotary
//! attention with grouped key/value heads, a SwiGLU feed-forward, over a key/value cache
//! allocated once per sequence.
//!
//! Written here rather than taken from candle-transformers' `quantized_llama`: that one
//! grows its cache with `Tensor::cat` (copying the whole cache every token), returns only the
//! last position's logits (label scoring needs every position of the label), and runs its
//! Q4_1 products without SIMD. Reference: HF transformers' `LlamaForCausalLM` and llama.cpp's
//! `llm_build_llama`; checked against llama.cpp's greedy tokens in `tests/generative`.

use rayon::prelude::*;

use super::config::{LmConfig, RopeStyle};
use super::weights::Matrix;

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Matrix,
    pub wk: Matrix,
    pub wv: Matrix,
    /// Qwen2's query / key / value biases.
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    pub wo: Matrix,
    pub ffn_norm: Vec<f32>,
    pub w_gate: Matrix,
    pub w_up: Matrix,
    pub w_down: Matrix,
}

pub struct Llama {
    pub config: LmConfig,
    pub embed: Matrix,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    /// `None`: the output head is the embedding matrix (tied, as in SmolLM2).
    pub output: Option<Matrix>,
}

/// Keys and values of every position seen so far, per layer, `[position][kv_dim]`.
/// Allocated for a capacity up front; `truncate` rewinds it so that a shared prompt is
/// computed once and reused (label scoring).
pub struct KvCache {
    keys: Vec<Vec<f32>>,
    values: Vec<Vec<f32>>,
    kv_dim: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    pub fn new(config: &LmConfig, capacity: usize) -> Self {
        let kv_dim = config.kv_dim();
        let layer = || Vec::with_capacity(capacity * kv_dim);
        KvCache {
            keys: (0..config.layers).map(|_| layer()).collect(),
            values: (0..config.layers).map(|_| layer()).collect(),
            kv_dim,
            capacity,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position from `len` on.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.truncate(self.len * self.kv_dim);
        }
    }
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    Last,
    All,
}

impl Llama {
    pub fn parameters(&self) -> usize {
        let layer = |l: &Layer| {
            [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                .iter()
                .map(|m| m.parameters())
                .sum::<usize>()
                + l.attn_norm.len()
                + l.ffn_norm.len()
        };
        self.embed.parameters()
            + self.layers.iter().map(layer).sum::<usize>()
            + self.norm.len()
            + self.output.as_ref().map_or(0, Matrix::parameters)
    }

    /// Runs `tokens` at the positions after those in `cache`, appending their keys and
    /// values; returns the logits (`vocab` per row) of the last token or of every token.
    /// Panics if the cache has no room: callers size it (see [`KvCache::new`]).
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Vec<f32> {
        let c = &self.config;
        let m = tokens.len();
        assert!(m > 0, "forward needs at least one token");
        assert!(
            cache.len + m <= cache.capacity,
            "key/value cache of {} positions cannot take {} more after {}",
            cache.capacity,
            m,
            cache.len
        );
        let start = cache.len;
        let mut x = Vec::with_capacity(m * c.hidden);
        for &t in tokens {
            self.embed.row_into(t as usize, &mut x);
        }
        let rope = RopeAngles::new(c, start, m);
        let mut scratch = Scratch::new(c, m);
        for (l, layer) in self.layers.iter().enumerate() {
            self.attention_block(layer, l, &mut x, m, start, &rope, cache, &mut scratch);
            self.feed_forward_block(layer, &mut x, m, &mut scratch);
        }
        cache.len = start + m;
        let rows: &[f32] = match logits {
            Logits::Last => &x[(m - 1) * c.hidden..],
            Logits::All => &x,
        };
        let n = rows.len() / c.hidden;
        let mut normed = rows.to_vec();
        rms_norm_rows(&mut normed, &self.norm, c.rms_eps);
        let head = self.output.as_ref().unwrap_or(&self.embed);
        let mut out = vec![0.0; n * head.rows];
        head.matmul(&normed, n, &mut out);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn attention_block(
        &self,
        layer: &Layer,
        index: usize,
        x: &mut [f32],
        m: usize,
        start: usize,
        rope: &RopeAngles,
        cache: &mut KvCache,
        s: &mut Scratch,
    ) {
        let c = &self.config;
        s.normed.copy_from_slice(x);
        rms_norm_rows(&mut s.normed, &layer.attn_norm, c.rms_eps);
        layer.wq.matmul(&s.normed, m, &mut s.q);
        layer.wk.matmul(&s.normed, m, &mut s.k);
        layer.wv.matmul(&s.normed, m, &mut s.v);
        add_bias_rows(&mut s.q, layer.bq.as_deref());
        add_bias_rows(&mut s.k, layer.bk.as_deref());
        add_bias_rows(&mut s.v, layer.bv.as_deref());
        rope.apply(&mut s.q, c.heads, c.head_dim, c.rope_style);
        rope.apply(&mut s.k, c.kv_heads, c.head_dim, c.rope_style);
        // llama.cpp keeps keys and values in f16; rounding them the same way keeps greedy
        // outputs of GGUF models closest to its (measured in tests/generative). HF checkpoints
        // keep f32, as transformers does (rounding would cost ~1e-3 in their logits).
        if c.kv_f16 {
            cache.keys[index].extend(s.k.iter().map(|&v| round_f16(v)));
            cache.values[index].extend(s.v.iter().map(|&v| round_f16(v)));
        } else {
            cache.keys[index].extend_from_slice(&s.k);
            cache.values[index].extend_from_slice(&s.v);
        }
        causal_attention(
            c,
            &s.q,
            &cache.keys[index],
            &cache.values[index],
            start,
            m,
            &mut s.attn,
        );
        layer.wo.matmul(&s.attn, m, &mut s.out);
        add_rows(x, &s.out);
    }

    fn feed_forward_block(&self, layer: &Layer, x: &mut [f32], m: usize, s: &mut Scratch) {
        let c = &self.config;
        s.normed.copy_from_slice(x);
        rms_norm_rows(&mut s.normed, &layer.ffn_norm, c.rms_eps);
        layer.w_gate.matmul(&s.normed, m, &mut s.gate);
        layer.w_up.matmul(&s.normed, m, &mut s.up);
        for (g, u) in s.gate.iter_mut().zip(&s.up) {
            *g = silu(*g) * u;
        }
        layer.w_down.matmul(&s.gate, m, &mut s.out);
        add_rows(x, &s.out);
    }
}

/// Buffers one forward pass reuses across its layers.
struct Scratch {
    normed: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    out: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
}

impl Scratch {
    fn new(c: &LmConfig, m: usize) -> Self {
        Scratch {
            normed: vec![0.0; m * c.hidden],
            q: vec![0.0; m * c.q_dim()],
            k: vec![0.0; m * c.kv_dim()],
            v: vec![0.0; m * c.kv_dim()],
            attn: vec![0.0; m * c.q_dim()],
            out: vec![0.0; m * c.hidden],
            gate: vec![0.0; m * c.intermediate],
            up: vec![0.0; m * c.intermediate],
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn add_rows(x: &mut [f32], delta: &[f32]) {
    for (a, b) in x.iter_mut().zip(delta) {
        *a += b;
    }
}

fn add_bias_rows(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(bias) = bias {
        for row in x.chunks_exact_mut(bias.len()) {
            add_rows(row, bias);
        }
    }
}

/// `x / sqrt(mean(x²) + eps) * weight` per row, accumulated in f64 as llama.cpp's ggml does
/// (its `ggml_compute_forward_rms_norm` sums in `ggml_float`).
pub fn rms_norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(weight.len()) {
        let sum: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let scale = 1.0 / ((sum / row.len() as f64) as f32 + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    }
}

/// cos / sin of every (position, frequency) of one forward pass.
struct RopeAngles {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeAngles {
    fn new(c: &LmConfig, start: usize, m: usize) -> Self {
        let half = c.head_dim / 2;
        let mut cos = Vec::with_capacity(m * half);
        let mut sin = Vec::with_capacity(m * half);
        for p in start..start + m {
            for i in 0..half {
                let freq = c.rope_theta.powf(-2.0 * i as f32 / c.head_dim as f32);
                let angle = p as f32 * freq;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeAngles { half, cos, sin }
    }

    /// Rotates each head of each row (`heads x head_dim` per row) by its position's angles.
    fn apply(&self, x: &mut [f32], heads: usize, head_dim: usize, style: RopeStyle) {
        let half = self.half;
        for (row, p) in x.chunks_exact_mut(heads * head_dim).zip(0..) {
            let cos = &self.cos[p * half..(p + 1) * half];
            let sin = &self.sin[p * half..(p + 1) * half];
            for head in row.chunks_exact_mut(head_dim) {
                for i in 0..half {
                    let (a, b) = match style {
                        RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                        RopeStyle::Halves => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos[i] - x1 * sin[i];
                    head[b] = x0 * sin[i] + x1 * cos[i];
                }
            }
        }
    }
}

/// Softmax attention of `m` new queries (at positions `start..start + m`) over the cached
/// keys and values up to each query's own position. Heads share key/value heads in groups.
fn causal_attention(
    c: &LmConfig,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    start: usize,
    m: usize,
    out: &mut [f32],
) {
    let (hd, q_dim, kv_dim) = (c.head_dim, c.q_dim(), c.kv_dim());
    let group = c.heads / c.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    // One task per (query row, head); each writes its own head_dim slice of out.
    out.par_chunks_mut(hd)
        .enumerate()
        .with_min_len(8)
        .for_each(|(task, o)| {
            let (i, h) = (task / c.heads, task % c.heads);
            let kvh = h / group;
            let query = &q[i * q_dim + h * hd..][..hd];
            let visible = start + i + 1;
            let mut scores: Vec<f32> = (0..visible)
                .map(|j| dot(query, &keys[j * kv_dim + kvh * hd..][..hd]) * scale)
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0.0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                total += *s;
            }
            o.fill(0.0);
            for (j, s) in scores.iter().enumerate() {
                let w = s / total;
                for (acc, v) in o.iter_mut().zip(&values[j * kv_dim + kvh * hd..][..hd]) {
                    *acc += w * v;
                }
            }
        });
    debug_assert_eq!(out.len(), m * q_dim);
}

fn round_f16(v: f32) -> f32 {
    use taskbench_kernels::quant::{f16_to_f32, f32_to_f16};
    f16_to_f32(f32_to_f16(v))
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
