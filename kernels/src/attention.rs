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
    fn head_attention(qkv: &[f32], start: usize, len: usize, h: usize, heads: usize, d: usize, scale: f32, context: &mut [f32]) => head_body
}

/// softmax(q k^T * scale) v for one head of one sequence.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn head_body(qkv: &[f32], start: usize, len: usize, h: usize, heads: usize, d: usize, scale: f32, context: &mut [f32]) {
    let hidden = heads * d;
    let row = |t: usize, part: usize| {
        let at = (start + t) * 3 * hidden + part * hidden + h * d;
        &qkv[at..at + d]
    };
    // Gather K and V of this head contiguously once: every query row reads all of them.
    let mut keys = Vec::with_capacity(len * d);
    let mut values = Vec::with_capacity(len * d);
    for t in 0..len {
        keys.extend_from_slice(row(t, 1));
        values.extend_from_slice(row(t, 2));
    }
    let mut scores = vec![0.0f32; len];
    for (i, ctx) in context.chunks_exact_mut(d).enumerate() {
        let q = row(i, 0);
        let mut max = f32::NEG_INFINITY;
        for (score, k) in scores.iter_mut().zip(keys.chunks_exact(d)) {
            let mut dot = 0.0f32;
            for (a, b) in q.iter().zip(k) {
                dot += a * b;
            }
            *score = dot * scale;
            max = max.max(*score);
        }
        let mut sum = 0.0f32;
        for score in scores.iter_mut() {
            *score = (*score - max).exp();
            sum += *score;
        }
        let inv = 1.0 / sum;
        ctx.fill(0.0);
        for (p, v) in scores.iter().zip(values.chunks_exact(d)) {
            let w = p * inv;
            for (c, x) in ctx.iter_mut().zip(v) {
                *c += w * x;
            }
        }
    }
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
