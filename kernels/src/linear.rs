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

/// `out += x · w`, with the output columns split between two threads when the product is
/// large enough to pay for it but has too few rows for gemm's own split (which divides rows).
fn accumulate(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    threads: usize,
    out: &mut [f32],
) {
    if threads >= 2 && rows < 256 && rows * k * n >= PARALLEL_MIN_MACS && n >= 64 {
        let half = (n / 2).next_multiple_of(16).min(n);
        let out_ptr = crate::DisjointWrites(out.as_mut_ptr());
        let run = |col: usize, cols: usize| {
            // SAFETY: the two calls write disjoint column ranges of `out`.
            unsafe { gemm_cols(x, rows, w, k, n, col, cols, out_ptr.get()) }
        };
        rayon::join(|| run(0, half), || run(half, n - half));
        return;
    }
    accumulate_gemm(x, rows, w, k, n, threads, out)
}

/// `out[:, col..col+cols] += x · w[:, col..col+cols]`, single-threaded.
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
        Parallelism::None,
    );
}

/// `out += x · w` (shapes as in [`linear_bias`]).
fn accumulate_gemm(
    x: &[f32],
    rows: usize,
    w: &[f32],
    k: usize,
    n: usize,
    threads: usize,
    out: &mut [f32],
) {
    let parallelism = if threads > 1 && rows * k * n >= PARALLEL_MIN_MACS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the pointers cover `rows x k`, `k x n` and `rows x n` row-major matrices as
    // asserted above; `out` does not alias the inputs (it is a distinct `&mut`).
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
