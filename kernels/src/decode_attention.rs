//! Causal attention of one query row over a key/value cache, as a decoder runs it: the row's
//! heads against the keys and values of every visible position, heads sharing key/value
//! heads in groups (GQA).
//!
//! Separate from [`crate::attention`] (the encoder's packed, unmasked attention over fused QKV
//! rows): here there is one query per head, and keys and values are read once per group of
//! query heads that share them.
//!
//! Numerics: exactly those of the plain loop (`s_j = (Σ_d q_d·k_jd, in order of d) · scale`,
//! `e_j = exp(s_j − max)` with the C library's `expf`, `total = Σ_j e_j` in order,
//! `o = Σ_j (e_j / total)·v_j` in order of j, no fused multiply-adds), which
//! [`attend_row_plain`] is. Greedy agreement with llama.cpp hangs on near-ties that any other
//! summation order moves, so the vector path computes the same sums in the same order: the
//! keys are stored transposed (`[kv_head][d][position]`), so 16 positions' dot products run
//! in the 16 lanes, each lane summing over `d` in order; the value sums run over `d` in lanes.

use std::ops::Range;

/// Head layout of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (`heads` a multiple of it); query head `h` reads key/value head
    /// `h / (heads / kv_heads)`.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Multiplies every score (usually `1/sqrt(head_dim)`).
    pub scale: f32,
}

impl Shape {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// A layer's cache as the kernel reads it: `keys_t` is `[kv_heads][head_dim][stride]` (keys
/// transposed, position fastest), `values` is `[position][kv_heads × head_dim]`.
#[derive(Clone, Copy)]
pub struct Cache<'a> {
    pub keys_t: &'a [f32],
    pub stride: usize,
    pub values: &'a [f32],
}

/// Heads `heads` of one query row over the first `len` positions of `cache`: `q` is the row
/// (`shape.heads × d`), `out` gets those heads' outputs (`heads.len() × d`, the same columns
/// of the row's output). `scores` is scratch, grown as needed.
#[allow(clippy::too_many_arguments)]
pub fn attend_row(
    shape: &Shape,
    q: &[f32],
    cache: Cache,
    len: usize,
    heads: Range<usize>,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let (hd, group) = (shape.head_dim, shape.group());
    assert!(shape.kv_heads > 0 && shape.heads.is_multiple_of(shape.kv_heads));
    assert!(q.len() == shape.heads * hd && out.len() == heads.len() * hd);
    assert!(len > 0 && len <= cache.stride);
    assert!(cache.keys_t.len() >= shape.kv_dim() * cache.stride);
    assert!(cache.values.len() >= len * shape.kv_dim());
    assert!(heads.end <= shape.heads);
    if scores.len() < 4 * len {
        scores.resize(4 * len, 0.0);
    }
    // Runs of up to 4 consecutive heads that share a key/value head.
    let mut h = heads.start;
    while h < heads.end {
        let kvh = h / group;
        let n = (heads.end - h).min((kvh + 1) * group - h).min(4);
        let run = Run {
            shape,
            q: &q[h * hd..(h + n) * hd],
            cache,
            len,
            kvh,
        };
        let at = (h - heads.start) * hd;
        run.compute(n, &mut scores[..n * len], &mut out[at..at + n * hd]);
        h += n;
    }
}

/// `n ≤ 4` query heads sharing key/value head `kvh`.
struct Run<'a> {
    shape: &'a Shape,
    q: &'a [f32],
    cache: Cache<'a>,
    len: usize,
    kvh: usize,
}

impl Run<'_> {
    fn compute(&self, n: usize, scores: &mut [f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.shape.head_dim.is_multiple_of(16) && crate::has_avx512() {
            // SAFETY: AVX-512 F is present; the slices were checked by `attend_row`.
            unsafe {
                match n {
                    1 => avx512::run::<1>(self, scores, out),
                    2 => avx512::run::<2>(self, scores, out),
                    3 => avx512::run::<3>(self, scores, out),
                    _ => avx512::run::<4>(self, scores, out),
                }
            }
            return;
        }
        self.portable(n, scores, out);
    }

    /// Key `j`'s element `d`.
    fn key(&self, j: usize, d: usize) -> f32 {
        self.cache.keys_t[(self.kvh * self.shape.head_dim + d) * self.cache.stride + j]
    }

    fn value_row(&self, j: usize) -> &[f32] {
        let hd = self.shape.head_dim;
        &self.cache.values[j * self.shape.kv_dim() + self.kvh * hd..][..hd]
    }

    fn portable(&self, n: usize, scores: &mut [f32], out: &mut [f32]) {
        let (hd, len) = (self.shape.head_dim, self.len);
        for g in 0..n {
            let q = &self.q[g * hd..(g + 1) * hd];
            let s = &mut scores[g * len..(g + 1) * len];
            for (j, s) in s.iter_mut().enumerate() {
                let mut dot = 0.0f32;
                for (d, &qd) in q.iter().enumerate() {
                    dot += qd * self.key(j, d);
                }
                *s = dot * self.shape.scale;
            }
            let total = exp_in_place(s);
            let o = &mut out[g * hd..(g + 1) * hd];
            o.fill(0.0);
            for (j, &e) in s.iter().enumerate() {
                let w = e / total;
                for (o, &v) in o.iter_mut().zip(self.value_row(j)) {
                    *o += w * v;
                }
            }
        }
    }
}

/// `s_j ← exp(s_j − max)` (the C library's `expf`); returns their sum, taken in order.
#[inline(always)]
fn exp_in_place(s: &mut [f32]) -> f32 {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f32;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // indexed loops over register arrays read best here
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512 F; `head_dim % 16 == 0`; slices as `attend_row` checks them; `scores` holds
    /// `G × len`, `out` `G × head_dim`.
    #[target_feature(enable = "avx512f,avx512vl")]
    pub(super) unsafe fn run<const G: usize>(r: &Run, scores: &mut [f32], out: &mut [f32]) {
        let (hd, kv_dim, len) = (r.shape.head_dim, r.shape.kv_dim(), r.len);
        let stride = r.cache.stride;
        let kt = r.cache.keys_t.as_ptr().add(r.kvh * hd * stride);
        let qp = r.q.as_ptr();
        let sp = scores.as_mut_ptr();
        let scale = _mm512_set1_ps(r.shape.scale);
        // Scores of 16 positions at a time, each lane summing q_d·k_d over d in order.
        let mut j = 0;
        while j < len {
            let mask: __mmask16 = if len - j >= 16 {
                0xffff
            } else {
                (1u16 << (len - j)) - 1
            };
            let mut acc = [_mm512_setzero_ps(); G];
            for d in 0..hd {
                let k = _mm512_maskz_loadu_ps(mask, kt.add(d * stride + j));
                for g in 0..G {
                    let qd = _mm512_set1_ps(*qp.add(g * hd + d));
                    acc[g] = _mm512_add_ps(acc[g], _mm512_mul_ps(qd, k));
                }
            }
            for g in 0..G {
                _mm512_mask_storeu_ps(sp.add(g * len + j), mask, _mm512_mul_ps(acc[g], scale));
            }
            j += 16;
        }
        let mut total = [0.0f32; G];
        for g in 0..G {
            total[g] = exp_in_place(&mut scores[g * len..(g + 1) * len]);
        }
        let vp = r.cache.values.as_ptr().add(r.kvh * hd);
        let sp = scores.as_ptr();
        let op = out.as_mut_ptr();
        // Four 16-lane columns of every head at a time: 4·G accumulators, summed over j in
        // order.
        let chunks = hd / 16;
        let mut c0 = 0;
        while c0 < chunks {
            let nc = (chunks - c0).min(4);
            let mut acc = [[_mm512_setzero_ps(); 4]; G];
            for j in 0..len {
                let v = vp.add(j * kv_dim + c0 * 16);
                let mut vv = [_mm512_setzero_ps(); 4];
                for c in 0..nc {
                    vv[c] = _mm512_loadu_ps(v.add(c * 16));
                }
                for g in 0..G {
                    let w = _mm512_set1_ps(*sp.add(g * len + j) / total[g]);
                    for c in 0..nc {
                        acc[g][c] = _mm512_add_ps(acc[g][c], _mm512_mul_ps(w, vv[c]));
                    }
                }
            }
            for g in 0..G {
                for c in 0..nc {
                    _mm512_storeu_ps(op.add(g * hd + (c0 + c) * 16), acc[g][c]);
                }
            }
            c0 += nc;
        }
    }
}

/// The plain loop the kernel reproduces, on the usual `[position][kv_dim]` key layout (the
/// numerics every path must give exactly).
pub fn attend_row_plain(
    shape: &Shape,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    len: usize,
) -> Vec<f32> {
    let (hd, kv_dim, group) = (shape.head_dim, shape.kv_dim(), shape.group());
    let mut out = vec![0.0f32; shape.heads * hd];
    for h in 0..shape.heads {
        let off = (h / group) * hd;
        let qh = &q[h * hd..(h + 1) * hd];
        let mut s: Vec<f32> = (0..len)
            .map(|j| {
                let k = &keys[j * kv_dim + off..][..hd];
                qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * shape.scale
            })
            .collect();
        let total = exp_in_place(&mut s);
        let o = &mut out[h * hd..(h + 1) * hd];
        for (j, e) in s.iter().enumerate() {
            let w = e / total;
            for (o, v) in o.iter_mut().zip(&values[j * kv_dim + off..][..hd]) {
                *o += w * v;
            }
        }
    }
    out
}

/// `keys` (`[position][kv_heads × d]`, `len` positions) transposed into the kernel's layout
/// with room for `stride` positions.
pub fn transpose_keys(shape: &Shape, keys: &[f32], len: usize, stride: usize) -> Vec<f32> {
    let kv_dim = shape.kv_dim();
    let mut t = vec![0.0f32; kv_dim * stride];
    for j in 0..len {
        for (e, &k) in keys[j * kv_dim..(j + 1) * kv_dim].iter().enumerate() {
            t[e * stride + j] = k;
        }
    }
    t
}

/// The reference: each head in f64.
pub fn attend_row_reference(
    shape: &Shape,
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    len: usize,
) -> Vec<f32> {
    let (hd, kv_dim, group) = (shape.head_dim, shape.kv_dim(), shape.group());
    let mut out = vec![0.0f32; shape.heads * hd];
    for h in 0..shape.heads {
        let off = (h / group) * hd;
        let s: Vec<f64> = (0..len)
            .map(|j| {
                let k = &keys[j * kv_dim + off..][..hd];
                (0..hd)
                    .map(|d| q[h * hd + d] as f64 * k[d] as f64)
                    .sum::<f64>()
                    * shape.scale as f64
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for d in 0..hd {
            out[h * hd + d] = (0..len)
                .map(|j| e[j] / sum * values[j * kv_dim + off + d] as f64)
                .sum::<f64>() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    fn check(heads: usize, kv_heads: usize, hd: usize, len: usize, split: usize) {
        let shape = Shape {
            heads,
            kv_heads,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
        };
        let kv_dim = kv_heads * hd;
        let seed = (heads * 1000 + hd * 10 + len) as u64;
        let q = test_values(heads * hd, seed, 2.0);
        let keys = test_values(len * kv_dim, seed + 1, 2.0);
        let values = test_values(len * kv_dim + 7, seed + 2, 1.0);
        let stride = len + 5;
        let keys_t = transpose_keys(&shape, &keys, len, stride);
        let cache = Cache {
            keys_t: &keys_t,
            stride,
            values: &values,
        };
        let plain = attend_row_plain(&shape, &q, &keys, &values, len);
        let want = attend_row_reference(&shape, &q, &keys, &values, len);
        let mut out = vec![f32::NAN; heads * hd];
        let mut scores = Vec::new();
        // Heads in two ranges split at `split`, as two threads would take them.
        let split = split.min(heads);
        let (a, b) = out.split_at_mut(split * hd);
        attend_row(&shape, &q, cache, len, 0..split, &mut scores, a);
        attend_row(&shape, &q, cache, len, split..heads, &mut scores, b);
        for (i, ((&o, &p), &w)) in out.iter().zip(&plain).zip(&want).enumerate() {
            let at = format!("heads {heads}/{kv_heads} d {hd} len {len} at {i}");
            assert_eq!(
                o.to_bits(),
                p.to_bits(),
                "{at}: {o} vs the plain loop's {p}"
            );
            assert!((o - w).abs() <= 2e-5, "{at}: {o} vs {w}");
        }
    }

    #[test]
    fn matches_the_plain_loop_exactly_and_the_reference_closely() {
        check(1, 1, 16, 1, 1);
        check(9, 3, 64, 1, 5);
        check(9, 3, 64, 131, 5);
        check(9, 3, 64, 131, 0);
        check(9, 3, 64, 16, 4);
        check(8, 1, 32, 67, 3); // groups of 8 heads: runs of 4
        check(4, 4, 48, 200, 2);
        check(6, 2, 7, 19, 4); // d not a multiple of 16: portable path
        check(4, 1, 320, 9, 0);
    }

    #[test]
    fn one_position_returns_its_value() {
        let shape = Shape {
            heads: 2,
            kv_heads: 1,
            head_dim: 16,
            scale: 0.25,
        };
        let q = test_values(32, 1, 3.0);
        let keys = test_values(16, 2, 3.0);
        let values = test_values(16, 3, 3.0);
        let keys_t = transpose_keys(&shape, &keys, 1, 1);
        let cache = Cache {
            keys_t: &keys_t,
            stride: 1,
            values: &values,
        };
        let mut out = vec![0.0; 32];
        attend_row(&shape, &q, cache, 1, 0..2, &mut Vec::new(), &mut out);
        assert_eq!(&out[..16], &values[..]);
        assert_eq!(&out[16..], &values[..]);
    }
}
