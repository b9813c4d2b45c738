//! f32 products of a few rows (a single-stream query: 16-256 tokens) with weights packed
//! once at load into panels of [`PANEL`] columns, each panel's `k x 16` block contiguous.
//!
//! Why not gemm here: at 16 rows a product reads each weight once, so its speed is how
//! fast the weights stream in from L3. gemm reads them in place, `[in, out]` row-major: 64
//! floats per input row, then a jump of the full row width (4.6 KB for MiniLM's QKV), which
//! defeats the hardware prefetchers; packed panels stream sequentially. The kernel keeps up
//! to 12 rows x 32 columns (two panels) of outputs in registers, so each weight vector is
//! loaded once per 12 rows and each input value, broadcast once, feeds two FMAs. The input
//! rows are read in place (a copy laid out side by side cost more than the strided
//! broadcasts it saved: 1.85 vs 1.65 ms per MiniLM pass at 16 tokens).
//!
//! AVX-512 only: other CPUs keep gemm on the unpacked weights ([`available`]).

use std::ops::Range;

/// Output columns per packed panel (one AVX-512 vector).
pub const PANEL: usize = 16;
/// Up to this many rows the packed kernel beats gemm; past it gemm's blocking wins. Measured
/// on MiniLM's 24 products, one thread, quiet machine (`single-stream-products` in the
/// kernels bench): 16 rows 2.45 vs 3.47 ms, 32 rows 4.42 vs 5.63, 64 rows 8.42 vs 9.69,
/// 128 rows 17.3 vs 16.8.
pub const MAX_ROWS: usize = 96;
/// Rows computed together: one accumulator register per row.
const ROW_TILE: usize = 16;

/// `w` (`k x n` row-major) and its bias, packed for [`linear_panels`].
#[derive(Clone, Debug)]
pub struct PackedLinear {
    k: usize,
    n: usize,
    panels: usize,
    /// `panels x k x PANEL`, the last panel padded with zeros.
    data: Vec<f32>,
    /// `panels x PANEL`, padded with zeros.
    bias: Vec<f32>,
}

impl PackedLinear {
    /// Packs `w` (`k x n` row-major, `[in, out]`) and `bias` (`n`).
    pub fn pack(w: &[f32], k: usize, n: usize, bias: &[f32]) -> Self {
        assert!(w.len() == k * n && bias.len() == n, "w is k x n and bias n");
        let panels = n.div_ceil(PANEL);
        let mut data = vec![0.0f32; panels * k * PANEL];
        for (i, row) in w.chunks_exact(n.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                data[((c / PANEL) * k + i) * PANEL + c % PANEL] = v;
            }
        }
        let mut padded = vec![0.0f32; panels * PANEL];
        padded[..n].copy_from_slice(bias);
        Self {
            k,
            n,
            panels,
            data,
            bias: padded,
        }
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs per row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Panels of [`PANEL`] output columns.
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.data.len() + self.bias.len())
    }
}

/// Whether this CPU runs [`linear_panels`].
pub fn available() -> bool {
    crate::has_avx512()
}

/// `out[:, cols] = x · w[:, cols] + bias[cols]` for the columns of panels `panels` (cut at
/// `n`), `x` being `rows x k` and `out` `rows x n`, both row-major.
///
/// # Safety
/// [`available`] is true; `out` points to a `rows x n` buffer whose columns in these panels
/// no other thread touches meanwhile.
pub unsafe fn linear_panels(
    x: &[f32],
    rows: usize,
    w: &PackedLinear,
    panels: Range<usize>,
    out: *mut f32,
) {
    assert!(available(), "the packed kernel needs AVX-512");
    assert!(x.len() == rows * w.k && panels.end <= w.panels);
    let k = w.k;
    #[cfg(target_arch = "x86_64")]
    {
        let panel = |p: usize| &w.data[p * k * PANEL..][..k * PANEL];
        let mut p = panels.start;
        while p < panels.end {
            // Two panels at a time (half as many input broadcasts per multiply-add) with at
            // most 12 rows in registers; a last odd panel alone, up to 16 rows.
            let two = p + 2 <= panels.end;
            let (count, max_rows) = if two { (2, 12) } else { (1, ROW_TILE) };
            let cols = (w.n - (p + count - 1) * PANEL).min(PANEL);
            let bias = &w.bias[p * PANEL..][..count * PANEL];
            for (start, len) in row_tiles(rows, max_rows) {
                let xt = &x[start * k..(start + len) * k];
                let out = out.add(start * w.n + p * PANEL);
                if two {
                    avx512::tile(len, xt, k, [panel(p), panel(p + 1)], bias, out, w.n, cols);
                } else {
                    avx512::tile(len, xt, k, [panel(p)], bias, out, w.n, cols);
                }
            }
            p += count;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (panels, out);
}

/// Row tiles `(start, len)` of at most `max_rows` rows covering `0..rows`: full tiles of
/// `max_rows` while more than two tiles' worth remain (the fewest passes over the weights),
/// then the rest in one or two even tiles (no tile of a few rows, whose few accumulators
/// cannot hide the multiply-add latency).
fn row_tiles(rows: usize, max_rows: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = rows - start;
        let len = match left {
            0 => return None,
            _ if left > 2 * max_rows => max_rows,
            _ if left > max_rows => left.div_ceil(2),
            _ => left,
        };
        start += len;
        Some((start - len, len))
    })
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Dispatches a tile of `rows` (1..=16) rows against `P` adjacent panels to the kernel
    /// compiled for that many.
    ///
    /// # Safety
    /// AVX-512 is present; `x` holds `rows x k` row-major, each panel `k x 16`, `bias`
    /// `16 P`, and `out` has room for `rows` rows of stride `ldo` from which `16 (P - 1) +
    /// cols` (`cols` <= 16) are written.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const P: usize>(
        rows: usize,
        x: &[f32],
        k: usize,
        panels: [&[f32]; P],
        bias: &[f32],
        out: *mut f32,
        ldo: usize,
        cols: usize,
    ) {
        assert!(x.len() >= rows * k && bias.len() >= 16 * P);
        assert!(panels.iter().all(|p| p.len() >= k * 16));
        let panels = panels.map(<[f32]>::as_ptr);
        macro_rules! by_rows {
            ($($n:literal)*) => {
                match rows {
                    $($n => kernel::<$n, P>(x.as_ptr(), k, panels, bias.as_ptr(), out, ldo, cols),)*
                    _ => unreachable!("a tile has 1 to 16 rows"),
                }
            };
        }
        by_rows!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
    }

    /// How far ahead (in panel rows of 64 bytes) the weights are prefetched.
    const PREFETCH_ROWS: usize = 16;

    /// `R` rows against `P` panels, all `R x P` sums in registers.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const P: usize>(
        x: *const f32,
        k: usize,
        panels: [*const f32; P],
        bias: *const f32,
        out: *mut f32,
        ldo: usize,
        cols: usize,
    ) {
        let mut acc = [std::array::from_fn::<_, P, _>(|j| _mm512_loadu_ps(bias.add(16 * j))); R];
        for i in 0..k {
            let b: [__m512; P] = std::array::from_fn(|j| {
                let ahead = panels[j].wrapping_add((i + PREFETCH_ROWS) * 16);
                _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                _mm512_loadu_ps(panels[j].add(i * 16))
            });
            for (r, row) in acc.iter_mut().enumerate() {
                let v = _mm512_set1_ps(*x.add(r * k + i));
                for (a, b) in row.iter_mut().zip(&b) {
                    *a = _mm512_fmadd_ps(v, *b, *a);
                }
            }
        }
        let mask: __mmask16 = if cols >= 16 {
            0xffff
        } else {
            (1u16 << cols) - 1
        };
        for (r, row) in acc.iter().enumerate() {
            for (j, a) in row.iter().enumerate() {
                let m = if j + 1 == P { mask } else { 0xffff };
                _mm512_mask_storeu_ps(out.add(r * ldo + 16 * j), m, *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::linear_bias_reference;
    use crate::test_values;

    #[test]
    fn row_tiles_cover_the_rows_in_order_within_the_limit() {
        for max_rows in [12usize, 16] {
            for rows in 0..200 {
                let tiles: Vec<_> = row_tiles(rows, max_rows).collect();
                let mut next = 0;
                for &(start, len) in &tiles {
                    assert_eq!(start, next, "{rows} rows");
                    assert!(len >= 1 && len <= max_rows, "{rows} rows: {tiles:?}");
                    // Only a short product has a short tile.
                    assert!(len >= max_rows / 2 || rows < max_rows, "{rows}: {tiles:?}");
                    next += len;
                }
                assert_eq!(next, rows);
            }
        }
        assert_eq!(
            row_tiles(64, 12).collect::<Vec<_>>(),
            [(0, 12), (12, 12), (24, 12), (36, 12), (48, 8), (56, 8)]
        );
    }

    #[test]
    fn matches_reference_on_odd_shapes_and_panel_ranges() {
        if !available() {
            eprintln!("skipped: no AVX-512 here (the packed kernel is not used either)");
            return;
        }
        for (rows, k, n) in [
            (1usize, 1usize, 1usize),
            (3, 5, 7),
            (16, 384, 1152),
            (17, 33, 65),
            (40, 100, 31),
            (255, 64, 48),
        ] {
            let x = test_values(rows * k, 1, 1.0);
            let w = test_values(k * n, 2, 1.0);
            let b = test_values(n, 3, 1.0);
            let want = linear_bias_reference(&x, rows, &w, k, n, &b);
            let packed = PackedLinear::pack(&w, k, n, &b);
            let mut out = vec![f32::NAN; rows * n];
            let mid = packed.panels() / 2;
            // In two calls, as two threads would.
            unsafe {
                linear_panels(&x, rows, &packed, 0..mid, out.as_mut_ptr());
                linear_panels(&x, rows, &packed, mid..packed.panels(), out.as_mut_ptr());
            }
            for (o, e) in out.iter().zip(&want) {
                assert!(
                    (o - e).abs() <= 1e-4 * (k as f32).sqrt(),
                    "{o} vs {e} ({rows}x{k}x{n})"
                );
            }
        }
    }
}
