//! `out = x · w + bias` with the bias written first and the product accumulated onto it by
//! gemm, so the bias costs no separate pass over the output; an activation, when given, runs
//! in place on the rows while they are still in cache.

use gemm::{gemm, Parallelism};

/// Products smaller than this many multiply-adds run on one thread: splitting them costs
/// more in synchronisation than it saves (measured on MiniLM at batch 1).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// `x`: `rows x k` row-major; `w`: `k x n` row-major (the transpose of PyTorch's `[n, k]`);
/// `bias`: `n`; `out`: `rows x n`.
#[allow(clippy::too_many_arguments)]
pub fn linear_bias(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
    threads: usize,
    out: &mut [f32],
) {
    assert!(x.len() == rows * k && w.len() == k * n && bias.len() == n && out.len() == rows * n);
    if rows == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    accumulate(x, rows, w, k, n, threads, out);
}

/// Columns `cols` of [`linear_bias`]'s output, on this thread: `out[:, cols] = x · w[:, cols]
/// + bias[cols]`.
///
/// # Safety
/// `out` points to the `rows x n` output, of which no other thread touches columns `cols`
/// meanwhile; `x`, `w` and `bias` are `rows x k`, `k x n` and `n` (checked).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn linear_bias_cols(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
    cols: std::ops::Range<usize>,
    out: *mut f32,
) {
    assert!(x.len() == rows * k && w.len() == k * n && bias.len() == n && cols.end <= n);
    if rows == 0 || cols.is_empty() {
        return;
    }
    for r in 0..rows {
        let row = std::slice::from_raw_parts_mut(out.add(r * n + cols.start), cols.len());
        row.copy_from_slice(&bias[cols.clone()]);
    }
    gemm_cols(
        x,
        rows,
        w,
        k,
        n,
        cols.start,
        cols.len(),
        out,
        Parallelism::None,
    );
}

/// `out += x · w`. Small products run on one thread; products with too few rows for gemm's
/// own split (which divides rows) have their output columns split between two threads;
/// large ones use gemm's rayon split.
fn accumulate(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    threads: usize,
    out: &mut [f32],
) {
    let out_ptr = crate::DisjointWrites(out.as_mut_ptr());
    let large = threads >= 2 && rows * k * n >= PARALLEL_MIN_MACS;
    if large && rows < 256 && n >= 64 {
        let half = (n / 2).next_multiple_of(16).min(n);
        // SAFETY: the two calls write disjoint column ranges of `out`, which outlives them.
        let run = |col: usize, cols: usize| unsafe {
            gemm_cols(
                x,
                rows,
                w,
                k,
                n,
                col,
                cols,
                out_ptr.get(),
                Parallelism::None,
            )
        };
        rayon::join(|| run(0, half), || run(half, n - half));
        return;
    }
    let parallelism = if large {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: `out` is the whole `rows x n` output, written by this call alone.
    unsafe { gemm_cols(x, rows, w, k, n, 0, n, out_ptr.get(), parallelism) }
}

/// `out[:, col..col+cols] += x · w[:, col..col+cols]`.
///
/// # Safety
/// `out` must point to a `rows x n` row-major buffer that nothing else writes in those
/// columns meanwhile; `x` and `w` are `rows x k` and `k x n` (checked by `linear_bias`).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_cols(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    col: usize,
    cols: usize,
    out: *mut f32,
    parallelism: Parallelism,
) {
    gemm(
        rows,
        cols,
        k,
        out.add(col),
        1,
        n as isize,
        true,
        x.as_ptr(),
        1,
        k as isize,
        w.as_ptr().add(col),
        1,
        n as isize,
        1.0,
        1.0,
        false,
        false,
        false,
        parallelism,
    );
}

/// `out = x · wᵀ + bias` with `w` as PyTorch stores it, `n x k` row-major: training reads
/// its weights where they live instead of keeping an `[in, out]` copy in step with them.
#[allow(clippy::too_many_arguments)]
pub fn linear_bias_nt(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
    threads: usize,
    out: &mut [f32],
) {
    assert!(x.len() == rows * k && w.len() == n * k && bias.len() == n && out.len() == rows * n);
    if rows == 0 {
        return;
    }
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let parallelism = if threads >= 2 && rows * k * n >= PARALLEL_MIN_MACS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: sizes checked above; `out` is written by this call alone. Column `c` of `wᵀ`
    // is row `c` of `w`: column stride `k`, row stride 1.
    unsafe {
        gemm(
            rows,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// The bias gradient of a linear layer: the column sums of `g` (`rows x width`), summed row
/// after row so each row is read once, in order.
pub fn sum_rows(g: &[f32], width: usize) -> Vec<f32> {
    assert!(width > 0 && g.len().is_multiple_of(width));
    let mut sums = vec![0.0f32; width];
    sum_rows_into(g, &mut sums);
    sums
}

crate::multiversion! {
    fn sum_rows_into(g: &[f32], sums: &mut [f32]) => sum_rows_body
}

#[inline(always)]
fn sum_rows_body(g: &[f32], sums: &mut [f32]) {
    for row in g.chunks_exact(sums.len()) {
        for (s, v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
}

/// The reference: triple loop in f64.
pub fn linear_bias_reference(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    bias: &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * n];
    for r in 0..rows {
        for c in 0..n {
            let mut acc = bias[c] as f64;
            for i in 0..k {
                acc += x[r * k + i] as f64 * w[i * n + c] as f64;
            }
            out[r * n + c] = acc as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    #[test]
    fn pytorch_layout_matches_the_reference_on_odd_shapes() {
        for (rows, k, n) in [
            (1usize, 1usize, 1usize),
            (3, 5, 7),
            (17, 33, 65),
            (70, 384, 1536),
        ] {
            let x = test_values(rows * k, 4, 1.0);
            let w_nk = test_values(n * k, 5, 1.0);
            let b = test_values(n, 6, 1.0);
            let w_kn: Vec<f32> = (0..k * n).map(|i| w_nk[(i % n) * k + i / n]).collect();
            let want = linear_bias_reference(&x, rows, &w_kn, k, n, &b);
            for threads in [1, 2] {
                let mut out = vec![f32::NAN; rows * n];
                linear_bias_nt(&x, rows, &w_nk, k, n, &b, threads, &mut out);
                for (o, e) in out.iter().zip(&want) {
                    assert!(
                        (o - e).abs() <= 1e-4 * (k as f32).sqrt(),
                        "{o} vs {e} ({rows}x{k}x{n}, {threads} threads)"
                    );
                }
            }
        }
    }

    #[test]
    fn row_sums_match_f64_sums() {
        for (rows, width) in [(1usize, 1usize), (7, 3), (1000, 17), (64, 1536)] {
            let g = test_values(rows * width, 7, 2.0);
            let sums = sum_rows(&g, width);
            for (c, s) in sums.iter().enumerate() {
                let want: f64 = (0..rows).map(|r| g[r * width + c] as f64).sum();
                assert!(
                    (*s as f64 - want).abs() <= 1e-5 * rows as f64,
                    "{s} vs {want}"
                );
            }
        }
    }

    #[test]
    fn matches_reference_on_odd_shapes_single_and_multi_threaded() {
        for (rows, k, n) in [
            (1usize, 1usize, 1usize),
            (3, 5, 7),
            (17, 33, 65),
            (64, 384, 1536),
        ] {
            let x = test_values(rows * k, 1, 1.0);
            let w = test_values(k * n, 2, 1.0);
            let b = test_values(n, 3, 1.0);
            let want = linear_bias_reference(&x, rows, &w, k, n, &b);
            for threads in [1, 2] {
                let mut out = vec![f32::NAN; rows * n];
                linear_bias(&x, rows, &w, k, n, &b, threads, &mut out);
                for (o, e) in out.iter().zip(&want) {
                    assert!(
                        (o - e).abs() <= 1e-4 * (k as f32).sqrt(),
                        "{o} vs {e} ({rows}x{k}x{n}, {threads} threads)"
                    );
                }
            }
        }
    }
}
