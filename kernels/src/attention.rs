//! Self-attention over packed sequences (no padding, no mask): each sequence attends only to
//! its own tokens. Reads the fused QKV rows `(tokens, 3 * heads * d)` as the projection wrote
//! them and writes the context `(tokens, heads * d)`, so there are no transposes or copies
//! around it. Work is split over (sequence, head) pairs on rayon's pool.

use rayon::prelude::*;

/// `qkv`: `tokens x 3*heads*d` (all Q heads, then all K, then all V); `seq_lens` sum to
/// `tokens`; `out`: `tokens x heads*d`.
pub fn packed_attention(qkv: &[f32], seq_lens: &[usize], heads: usize, d: usize, scale: f32, out: &mut [f32]) {
    let hidden = heads * d;
    let tokens: usize = seq_lens.iter().sum();
    assert!(qkv.len() == tokens * 3 * hidden && out.len() == tokens * hidden);
    let mut starts = Vec::with_capacity(seq_lens.len());
    let mut start = 0;
    for &len in seq_lens {
        starts.push(start);
        start += len;
    }
    let out_ptr = SharedOut(out.as_mut_ptr());
    let tasks: Vec<(usize, usize)> = (0..seq_lens.len()).flat_map(|s| (0..heads).map(move |h| (s, h))).collect();
    let run = |&(s, h): &(usize, usize)| {
        let (start, len) = (starts[s], seq_lens[s]);
        let mut context = vec![0.0f32; len * d];
        head_attention(qkv, start, len, h, heads, d, scale, &mut context);
        for (i, row) in context.chunks_exact(d).enumerate() {
            let at = (start + i) * hidden + h * d;
            // SAFETY: each (sequence, head) task writes the `d` columns of head `h` in the
            // rows of sequence `s` only; tasks are distinct pairs, so writes never overlap,
            // and `out` outlives the parallel loop.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out_ptr.get().add(at), d) };
        }
    };
    let total_work: usize = seq_lens.iter().map(|l| l * l).sum::<usize>() * heads * d;
    if total_work < 1 << 16 || rayon::current_num_threads() == 1 {
        tasks.iter().for_each(run);
    } else {
        tasks.par_iter().for_each(run);
    }
}

#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: used only for the disjoint writes described in `packed_attention`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

crate::multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn head_attention(qkv: &[f32], start: usize, len: usize, h: usize, heads: usize, d: usize, scale: f32, context: &mut [f32]) => head_dispatch
}

/// Picks a version compiled for the head size, so that a query's context row and a block of
/// scores stay in registers; other sizes take the general loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn head_dispatch(qkv: &[f32], start: usize, len: usize, h: usize, heads: usize, d: usize, scale: f32, context: &mut [f32]) {
    let head = Head { qkv, start, len, h, hidden: heads * d, scale };
    match d {
        32 => head.run::<32>(context),
        64 => head.run::<64>(context),
        16 => head.run::<16>(context),
        _ => head.run_any(d, context),
    }
}

/// Keys are scored 16 at a time: one vector register of scores per block.
const BLOCK: usize = 16;

struct Head<'a> {
    qkv: &'a [f32],
    start: usize,
    len: usize,
    h: usize,
    hidden: usize,
    scale: f32,
}

impl Head<'_> {
    #[inline(always)]
    fn row(&self, t: usize, part: usize, d: usize) -> &[f32] {
        let at = (self.start + t) * 3 * self.hidden + part * self.hidden + self.h * d;
        &self.qkv[at..at + d]
    }

    /// K transposed to `d x padded_len` (padding keys are zero and never read back), and V
    /// gathered to `len x d`, so every access below is contiguous.
    #[inline(always)]
    fn gather(&self, d: usize) -> (Vec<f32>, Vec<f32>, usize) {
        let padded = self.len.div_ceil(BLOCK) * BLOCK;
        let mut keys_t = vec![0.0f32; d * padded];
        let mut values = Vec::with_capacity(self.len * d);
        for t in 0..self.len {
            for (j, k) in self.row(t, 1, d).iter().enumerate() {
                keys_t[j * padded + t] = *k;
            }
            values.extend_from_slice(self.row(t, 2, d));
        }
        (keys_t, values, padded)
    }

    /// Scores of one query against all keys, `scale` applied, into `scores[..padded]`.
    /// Four blocks of keys are scored together: four independent multiply-add chains keep
    /// the FMA units busy where one chain would wait on each result.
    #[inline(always)]
    fn score(&self, q: &[f32], keys_t: &[f32], padded: usize, scores: &mut [f32]) {
        let mut block = 0;
        while block + 4 * BLOCK <= padded {
            let mut acc = [[0.0f32; BLOCK]; 4];
            for (j, qj) in q.iter().enumerate() {
                let keys = &keys_t[j * padded + block..j * padded + block + 4 * BLOCK];
                for (b, acc) in acc.iter_mut().enumerate() {
                    for (a, k) in acc.iter_mut().zip(&keys[b * BLOCK..(b + 1) * BLOCK]) {
                        *a = qj.mul_add(*k, *a);
                    }
                }
            }
            for (b, acc) in acc.iter().enumerate() {
                for (s, a) in scores[block + b * BLOCK..block + (b + 1) * BLOCK].iter_mut().zip(acc) {
                    *s = a * self.scale;
                }
            }
            block += 4 * BLOCK;
        }
        while block < padded {
            let mut acc = [0.0f32; BLOCK];
            for (j, qj) in q.iter().enumerate() {
                let keys = &keys_t[j * padded + block..j * padded + block + BLOCK];
                for (a, k) in acc.iter_mut().zip(keys) {
                    *a = qj.mul_add(*k, *a);
                }
            }
            for (s, a) in scores[block..block + BLOCK].iter_mut().zip(acc) {
                *s = a * self.scale;
            }
            block += BLOCK;
        }
    }

    #[inline(always)]
    fn run<const D: usize>(&self, context: &mut [f32]) {
        let (keys_t, values, padded) = self.gather(D);
        let mut scores = vec![0.0f32; padded];
        for (i, ctx) in context.chunks_exact_mut(D).enumerate() {
            self.score(self.row(i, 0, D), &keys_t, padded, &mut scores);
            let inv = softmax_in_place(&mut scores[..self.len]);
            // Even and odd keys in separate accumulators: two chains per output register.
            let mut even = [0.0f32; D];
            let mut odd = [0.0f32; D];
            let mut pairs = scores[..self.len].chunks_exact(2).zip(values.chunks_exact(2 * D));
            for (p, v) in &mut pairs {
                for ((e, o), (x0, x1)) in even.iter_mut().zip(odd.iter_mut()).zip(v[..D].iter().zip(&v[D..])) {
                    *e = p[0].mul_add(*x0, *e);
                    *o = p[1].mul_add(*x1, *o);
                }
            }
            if self.len % 2 == 1 {
                let last = self.len - 1;
                for (e, x) in even.iter_mut().zip(&values[last * D..]) {
                    *e = scores[last].mul_add(*x, *e);
                }
            }
            for ((c, e), o) in ctx.iter_mut().zip(even).zip(odd) {
                *c = (e + o) * inv;
            }
        }
    }

    #[inline(always)]
    fn run_any(&self, d: usize, context: &mut [f32]) {
        let (keys_t, values, padded) = self.gather(d);
        let mut scores = vec![0.0f32; padded];
        for (i, ctx) in context.chunks_exact_mut(d).enumerate() {
            self.score(self.row(i, 0, d), &keys_t, padded, &mut scores);
            let inv = softmax_in_place(&mut scores[..self.len]);
            ctx.fill(0.0);
            for (p, v) in scores[..self.len].iter().zip(values.chunks_exact(d)) {
                for (c, x) in ctx.iter_mut().zip(v) {
                    *c = p.mul_add(*x, *c);
                }
            }
            for c in ctx.iter_mut() {
                *c *= inv;
            }
        }
    }
}

/// Replaces scores by `exp(score - max)` and returns `1 / sum`, the normalisation the caller
/// applies once to the weighted sum instead of to every weight.
#[inline(always)]
fn softmax_in_place(scores: &mut [f32]) -> f32 {
    let max = crate::lanes::max(scores);
    for s in scores.iter_mut() {
        *s = crate::exp::exp_f32(*s - max);
    }
    1.0 / crate::lanes::sum_by(scores, |s| s)
}

/// The reference: the textbook computation in f64, one head of one sequence at a time.
pub fn packed_attention_reference(qkv: &[f32], seq_lens: &[usize], heads: usize, d: usize, scale: f32) -> Vec<f32> {
    let hidden = heads * d;
    let tokens: usize = seq_lens.iter().sum();
    let mut out = vec![0.0f32; tokens * hidden];
    let mut start = 0;
    for &len in seq_lens {
        for h in 0..heads {
            let get = |t: usize, part: usize, j: usize| qkv[(start + t) * 3 * hidden + part * hidden + h * d + j] as f64;
            for i in 0..len {
                let scores: Vec<f64> = (0..len).map(|t| (0..d).map(|j| get(i, 0, j) * get(t, 1, j)).sum::<f64>() * scale as f64).collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                for j in 0..d {
                    let v: f64 = (0..len).map(|t| exps[t] / sum * get(t, 2, j)).sum();
                    out[(start + i) * hidden + h * d + j] = v as f32;
                }
            }
        }
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    #[test]
    fn matches_reference_on_ragged_batches() {
        for (lens, heads, d) in [(vec![1usize], 1usize, 1usize), (vec![3, 1, 7], 2, 5), (vec![64, 17, 2, 40], 12, 32)] {
            let tokens: usize = lens.iter().sum();
            let qkv = test_values(tokens * 3 * heads * d, 9, 2.0);
            let scale = 1.0 / (d as f32).sqrt();
            let mut out = vec![f32::NAN; tokens * heads * d];
            packed_attention(&qkv, &lens, heads, d, scale, &mut out);
            let want = packed_attention_reference(&qkv, &lens, heads, d, scale);
            for (o, w) in out.iter().zip(&want) {
                assert!((o - w).abs() < 1e-5, "{o} vs {w} for lens {lens:?}");
            }
        }
    }
}
