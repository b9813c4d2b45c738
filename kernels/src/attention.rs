//! Self-attention over packed sequences (no padding, no mask): each sequence attends only to
//! its own tokens. Reads Q, K and V in place from the fused QKV rows
//! `(tokens, 3 * heads * d)` as the projection wrote them (gemm takes strides, so nothing is
//! gathered or transposed) and writes each head's context straight into its columns of
//! `(tokens, heads * d)`. Work is split over (sequence, head) pairs on rayon's pool; each is
//! two small single-threaded products around a row softmax.

use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// `qkv`: `tokens x 3*heads*d` (all Q heads, then all K, then all V); `seq_lens` sum to
/// `tokens`; `out`: `tokens x heads*d`.
pub fn packed_attention(
    qkv: &[f32],
    seq_lens: &[usize],
    heads: usize,
    d: usize,
    scale: f32,
    out: &mut [f32],
) {
    let hidden = heads * d;
    let tokens: usize = seq_lens.iter().sum();
    assert!(qkv.len() == tokens * 3 * hidden && out.len() == tokens * hidden);
    let mut starts = Vec::with_capacity(seq_lens.len());
    let mut start = 0;
    for &len in seq_lens {
        starts.push(start);
        start += len;
    }
    let out_ptr = crate::DisjointWrites(out.as_mut_ptr());
    let tasks: Vec<(usize, usize)> = (0..seq_lens.len())
        .flat_map(|s| (0..heads).map(move |h| (s, h)))
        .collect();
    let run = |&(s, h): &(usize, usize)| {
        let task = Task {
            qkv,
            start: starts[s],
            len: seq_lens[s],
            h,
            d,
            hidden,
            scale,
        };
        // SAFETY: each (sequence, head) task writes the `d` columns of head `h` in the rows
        // of sequence `s` only; tasks are distinct pairs, so writes never overlap, and `out`
        // outlives the loop.
        unsafe { task.run(out_ptr.get()) }
    };
    let total_work: usize = seq_lens.iter().map(|l| l * l).sum::<usize>() * heads * d;
    if total_work < 1 << 16 || rayon::current_num_threads() == 1 {
        tasks.iter().for_each(run);
    } else {
        tasks.par_iter().for_each(run);
    }
}

/// The (sequence, head) pairs `pairs` of [`packed_attention`] (pair `p` is sequence
/// `p / heads`, head `p % heads`), run one after another on this thread.
///
/// # Safety
/// `out` points to the `tokens x heads*d` output, of which no other thread writes the rows
/// and head columns of these pairs meanwhile.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn attend_pairs(
    qkv: &[f32],
    seq_lens: &[usize],
    heads: usize,
    d: usize,
    scale: f32,
    pairs: std::ops::Range<usize>,
    out: *mut f32,
) {
    let mut start = 0;
    for (s, &len) in seq_lens.iter().enumerate() {
        for h in 0..heads {
            if pairs.contains(&(s * heads + h)) {
                let task = Task {
                    qkv,
                    start,
                    len,
                    h,
                    d,
                    hidden: heads * d,
                    scale,
                };
                task.run(out);
            }
        }
        start += len;
    }
}

/// One head of one sequence.
struct Task<'a> {
    qkv: &'a [f32],
    start: usize,
    len: usize,
    h: usize,
    d: usize,
    hidden: usize,
    scale: f32,
}

impl Task<'_> {
    /// Pointer to row `t`'s part (0 = Q, 1 = K, 2 = V) for this head.
    fn part(&self, part: usize) -> *const f32 {
        let at = self.start * 3 * self.hidden + part * self.hidden + self.h * self.d;
        self.qkv[at..].as_ptr()
    }

    /// # Safety
    /// `out` must point to a `tokens x hidden` buffer that no other thread writes in this
    /// task's rows and columns.
    unsafe fn run(&self, out: *mut f32) {
        let (len, d, row_stride) = (self.len, self.d, 3 * self.hidden as isize);
        if len == 0 {
            return;
        }
        let mut scores = vec![0.0f32; len * len];
        // scores = scale * Q K^T: K^T[j][t] is K[t][j], so its column stride is the row stride.
        gemm(
            len,
            len,
            d,
            scores.as_mut_ptr(),
            1,
            len as isize,
            false,
            self.part(0),
            1,
            row_stride,
            self.part(1),
            row_stride,
            1,
            0.0,
            self.scale,
            false,
            false,
            false,
            Parallelism::None,
        );
        softmax_rows(&mut scores, len);
        // context = P V, written into this head's columns of the output rows.
        let dst = out.add(self.start * self.hidden + self.h * d);
        gemm(
            len,
            d,
            len,
            dst,
            1,
            self.hidden as isize,
            false,
            scores.as_ptr(),
            1,
            len as isize,
            self.part(2),
            1,
            row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

crate::multiversion! {
    /// Each row of `scores` (`rows x width`) replaced by its softmax.
    pub fn softmax_rows(scores: &mut [f32], width: usize) => softmax_body
}

#[inline(always)]
fn softmax_body(scores: &mut [f32], width: usize) {
    for row in scores.chunks_exact_mut(width) {
        let max = crate::lanes::max(row);
        for s in row.iter_mut() {
            *s = crate::exp::exp_f32(*s - max);
        }
        let inv = 1.0 / crate::lanes::sum_by(row, |s| s);
        for s in row.iter_mut() {
            *s *= inv;
        }
    }
}

/// Gradient of `y = softmax(scale * s)` over rows of `width`, from `y` and the output's
/// gradient `g`: `ds = scale * y * (g - Σ g y)`.
pub fn softmax_backward_rows(y: &[f32], g: &[f32], width: usize, scale: f32) -> Vec<f32> {
    assert!(width > 0 && y.len() == g.len() && y.len().is_multiple_of(width));
    let mut ds = vec![0.0f32; y.len()];
    softmax_backward_into(y, g, width, scale, &mut ds);
    ds
}

crate::multiversion! {
    fn softmax_backward_into(y: &[f32], g: &[f32], width: usize, scale: f32, ds: &mut [f32]) => softmax_backward_body
}

#[inline(always)]
fn softmax_backward_body(y: &[f32], g: &[f32], width: usize, scale: f32, ds: &mut [f32]) {
    for ((yr, gr), dr) in y
        .chunks_exact(width)
        .zip(g.chunks_exact(width))
        .zip(ds.chunks_exact_mut(width))
    {
        let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
        for ((d, &yv), &gv) in dr.iter_mut().zip(yr).zip(gr) {
            *d = scale * yv * (gv - dot);
        }
    }
}

/// The reference: the textbook computation in f64, one head of one sequence at a time.
pub fn packed_attention_reference(
    qkv: &[f32],
    seq_lens: &[usize],
    heads: usize,
    d: usize,
    scale: f32,
) -> Vec<f32> {
    let hidden = heads * d;
    let tokens: usize = seq_lens.iter().sum();
    let mut out = vec![0.0f32; tokens * hidden];
    let mut start = 0;
    for &len in seq_lens {
        for h in 0..heads {
            let get = |t: usize, part: usize, j: usize| {
                qkv[(start + t) * 3 * hidden + part * hidden + h * d + j] as f64
            };
            for i in 0..len {
                let scores: Vec<f64> = (0..len)
                    .map(|t| {
                        (0..d).map(|j| get(i, 0, j) * get(t, 1, j)).sum::<f64>() * scale as f64
                    })
                    .collect();
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
    fn softmax_backward_matches_finite_differences() {
        // d/ds_j of Σ_i g_i softmax(scale * s)_i, by central differences in f64.
        for width in [1usize, 5, 64, 161] {
            let s = test_values(width, 21, 2.0);
            let g = test_values(width, 22, 1.0);
            let scale = 0.125f32;
            let softmax = |s: &[f64]| {
                let max = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - max).exp()).collect();
                let total: f64 = e.iter().sum();
                e.into_iter().map(|v| v / total).collect::<Vec<_>>()
            };
            let scaled: Vec<f64> = s.iter().map(|&v| v as f64 * scale as f64).collect();
            let y64 = softmax(&scaled);
            let y: Vec<f32> = y64.iter().map(|&v| v as f32).collect();
            let ds = softmax_backward_rows(&y, &g, width, scale);
            let objective =
                |s: &[f64]| -> f64 { softmax(s).iter().zip(&g).map(|(a, b)| a * *b as f64).sum() };
            for j in 0..width {
                let h = 1e-4;
                let (mut up, mut down) = (scaled.clone(), scaled.clone());
                up[j] += h;
                down[j] -= h;
                let want = scale as f64 * (objective(&up) - objective(&down)) / (2.0 * h);
                assert!((ds[j] as f64 - want).abs() <= 1e-5, "{} vs {want}", ds[j]);
            }
        }
    }

    #[test]
    fn matches_reference_on_ragged_batches() {
        for (lens, heads, d) in [
            (vec![1usize], 1usize, 1usize),
            (vec![3, 1, 7], 2, 5),
            (vec![64, 17, 2, 40], 12, 32),
        ] {
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
