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

use taskbench_kernels::decode_attention::{attend_row, Cache, Shape};

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

/// Keys and values of every position seen so far, per layer: keys transposed,
/// `[kv_dim][capacity]` (the attention kernel's layout: see `decode_attention`), values
/// `[position][kv_dim]`. Allocated for a capacity up front; `truncate` rewinds it so that a
/// shared prompt is computed once and reused (label scoring).
pub struct KvCache {
    /// Per layer, `kv_dim × capacity` values, the first `len` positions of each row in use.
    keys_t: Vec<Vec<f32>>,
    /// Per layer, `capacity × kv_dim` values, the first `len` positions in use.
    values: Vec<Vec<f32>>,
    capacity: usize,
    len: usize,
}

impl KvCache {
    pub fn new(config: &LmConfig, capacity: usize) -> Self {
        let kv_dim = config.kv_dim();
        let layer = || vec![0.0f32; capacity * kv_dim];
        KvCache {
            keys_t: (0..config.layers).map(|_| layer()).collect(),
            values: (0..config.layers).map(|_| layer()).collect(),
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
    }

    /// Every layer's whole key (transposed) and value buffers.
    pub(super) fn layers_mut(&mut self) -> (&mut [Vec<f32>], &mut [Vec<f32>]) {
        (&mut self.keys_t, &mut self.values)
    }

    /// Layer `layer`'s cache as the attention kernel reads it.
    fn layer(&self, layer: usize) -> Cache<'_> {
        Cache {
            keys_t: &self.keys_t[layer],
            stride: self.capacity,
            values: &self.values[layer],
        }
    }

    /// Counts `n` more positions as written.
    pub(super) fn advance(&mut self, n: usize) {
        assert!(self.len + n <= self.capacity);
        self.len += n;
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
        if m == 1 && super::decode::supported(self) {
            return super::decode::step(self, tokens[0], cache);
        }
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
        let qkv: &mut [(&Matrix, &mut [f32])] = &mut [
            (&layer.wq, &mut s.q),
            (&layer.wk, &mut s.k),
            (&layer.wv, &mut s.v),
        ];
        Matrix::matmuls(&s.normed, m, qkv);
        add_bias_rows(&mut s.q, layer.bq.as_deref());
        add_bias_rows(&mut s.k, layer.bk.as_deref());
        add_bias_rows(&mut s.v, layer.bv.as_deref());
        rope.apply(&mut s.q, c.heads, c.head_dim, c.rope_style);
        rope.apply(&mut s.k, c.kv_heads, c.head_dim, c.rope_style);
        // llama.cpp keeps keys and values in f16; rounding them the same way keeps greedy
        // outputs of GGUF models closest to its (measured in tests/generative). HF checkpoints
        // keep f32, as transformers does (rounding would cost ~1e-3 in their logits).
        let (kv_dim, cap) = (c.kv_dim(), cache.capacity);
        let round = |v: f32| if c.kv_f16 { round_f16(v) } else { v };
        let (keys_t, values) = (&mut cache.keys_t[index], &mut cache.values[index]);
        for (i, row) in s.k.chunks_exact(kv_dim).enumerate() {
            for (e, &v) in row.iter().enumerate() {
                keys_t[e * cap + start + i] = round(v);
            }
        }
        for (dst, &v) in values[start * kv_dim..(start + m) * kv_dim]
            .iter_mut()
            .zip(&s.v)
        {
            *dst = round(v);
        }
        causal_attention(c, &s.q, cache.layer(index), start, m, &mut s.attn);
        layer.wo.matmul(&s.attn, m, &mut s.out);
        add_rows(x, &s.out);
    }

    fn feed_forward_block(&self, layer: &Layer, x: &mut [f32], m: usize, s: &mut Scratch) {
        let c = &self.config;
        s.normed.copy_from_slice(x);
        rms_norm_rows(&mut s.normed, &layer.ffn_norm, c.rms_eps);
        let gate_up: &mut [(&Matrix, &mut [f32])] =
            &mut [(&layer.w_gate, &mut s.gate), (&layer.w_up, &mut s.up)];
        Matrix::matmuls(&s.normed, m, gate_up);
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

pub(super) fn silu(x: f32) -> f32 {
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
pub(super) struct RopeAngles {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeAngles {
    pub(super) fn new(c: &LmConfig, start: usize, m: usize) -> Self {
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
    pub(super) fn apply(&self, x: &mut [f32], heads: usize, head_dim: usize, style: RopeStyle) {
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
/// keys and values up to each query's own position (`taskbench_kernels::decode_attention`,
/// one query row at a time; the decode step calls the same kernel).
fn causal_attention(
    c: &LmConfig,
    q: &[f32],
    cache: Cache,
    start: usize,
    m: usize,
    out: &mut [f32],
) {
    let shape = attention_shape(c);
    let q_dim = c.q_dim();
    out.par_chunks_mut(q_dim)
        .zip(q.par_chunks(q_dim))
        .enumerate()
        .with_min_len(4)
        .for_each_init(Vec::new, |scores, (i, (o, q))| {
            attend_row(&shape, q, cache, start + i + 1, 0..c.heads, scores, o);
        });
    debug_assert_eq!(out.len(), m * q_dim);
}

/// The attention kernel's view of a layer.
pub(super) fn attention_shape(c: &LmConfig) -> Shape {
    Shape {
        heads: c.heads,
        kv_heads: c.kv_heads,
        head_dim: c.head_dim,
        scale: 1.0 / (c.head_dim as f32).sqrt(),
    }
}

pub(super) fn round_f16(v: f32) -> f32 {
    use taskbench_kernels::quant::{f16_to_f32, f32_to_f16};
    f16_to_f32(f32_to_f16(v))
}
