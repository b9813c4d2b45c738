//! Int8 linear layers: `y = act(x · w + b)` with `w` quantized once to signed 8 bits per output
//! column and `x` quantized per row, as it arrives, to unsigned 8 bits; the products are exact
//! integer dot products, dequantized once per output value.
//!
//! Quantization (the scheme is chosen for accuracy at no speed cost):
//! * weights, symmetric per output column: `w[i][c] ≈ sw[c] · qw[i][c]`, `qw` in [-127, 127],
//!   `sw[c] = max_i |w[i][c]| / 127` (one column of `[in, out]` is one output channel);
//! * activations, asymmetric per row (per token): `x[r][i] ≈ sx[r] · (qx[r][i] - zx[r])`, `qx` in
//!   [0, 255], the range `[min(x[r]), max(x[r])]` (widened to hold 0) mapped onto [0, 255]. A
//!   row uses all 256 codes whatever its sign balance (GELU outputs are nearly all positive),
//!   which halves the step of a symmetric `round(x/s) + 128` scheme on skewed rows;
//! * `y[r][c] = sx[r] · sw[c] · (Σ_i qx[r][i]·qw[i][c] - zx[r] · Σ_i qw[i][c]) + b[c]`: the
//!   column sums `Σ_i qw[i][c]` are computed at load, so the zero point costs one integer
//!   multiply-subtract per output value.
//!
//! The integer sum is exact (`|Σ| ≤ 255 · 127 · k < 2³¹` for `k ≤ 65536`), and the epilogue is
//! the same IEEE operations on every path, `f32(Σ - zx·Σqw) · (sx·sw) + b` with one fused
//! multiply-add, then the activation, so every path returns bit-identical outputs (tested).
//!
//! Layout: weights are packed once into panels of [`PANEL`] = 64 output columns; within a
//! panel, for each group of 4 inputs, the 4 codes of column 0, then of column 1, ...: 256 bytes
//! that are four AVX-512 registers, each lane holding the 4 codes that `vpdpbusd` multiplies
//! with 4 broadcast activation codes and adds into that lane's 32-bit sum. Inputs past `k`
//! and columns past `n` are zero codes.
//!
//! Paths, chosen at run time:
//! * AVX-512 VNNI: a 6-row × 64-column tile, 24 accumulator registers, per group of 4 inputs
//!   4 weight loads, 6 broadcasts and 24 `vpdpbusd`;
//! * AVX2: the same tiles one row at a time, `vpmaddubsw` on the activation codes split as
//!   `2·(q >> 1) + (q & 1)` so that its 16-bit pair sums cannot saturate (exact), then
//!   `vpmaddwd` to 32 bits;
//! * portable Rust.
//!
//! Threads: output panels are split between tasks (each task reads only its share of the
//! weights, which is what limits a batch of a few tokens); rows when there are too few panels.

// `is_multiple_of` is newer than the main crate's MSRV (1.85).
#![allow(clippy::manual_is_multiple_of)]

use std::ops::Range;

use rayon::prelude::*;

use crate::encoder::Activation;
use crate::DisjointWrites;

/// Output columns per packed panel (four 16-lane vectors).
pub const PANEL: usize = 64;

/// Activation rows per AVX-512 tile.
const TILE_ROWS: usize = 6;

/// Rows per block in which each panel is swept, so that the block's activation codes stay
/// in L2 while the panels stream past them.
const BLOCK_ROWS: usize = 192;

/// Products smaller than this many multiply-adds run on one thread (as in `linear`).
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// The largest `k` for which the 32-bit integer sums cannot overflow.
pub const MAX_K: usize = 65536;

/// A linear layer with int8 weights, packed for the kernels (see the module docs).
#[derive(Clone, Debug)]
pub struct Int8Linear {
    k: usize,
    n: usize,
    /// `k` rounded up to a multiple of 4, over 4.
    groups: usize,
    panels: usize,
    /// `panels × groups × PANEL × 4` codes, panel-major.
    codes: Vec<i8>,
    /// Per column (padded to `panels × PANEL` with zeros): scale, code sum, bias.
    scales: Vec<f32>,
    sums: Vec<i32>,
    bias: Vec<f32>,
}

impl Int8Linear {
    /// Quantizes `w` (`k × n` row-major, `[in, out]` as `linear::linear_bias` takes it) and
    /// keeps a copy of `bias` (`n`).
    pub fn quantize(w: &[f32], k: usize, n: usize, bias: &[f32]) -> Self {
        assert!(
            w.len() == k * n && bias.len() == n,
            "w is k × n and bias n ({k} × {n}; got {} and {})",
            w.len(),
            bias.len()
        );
        assert!(
            k <= MAX_K,
            "k = {k} > {MAX_K} could overflow the 32-bit sums"
        );
        let groups = k.div_ceil(4);
        let panels = n.div_ceil(PANEL);
        let width = panels * PANEL;
        let mut scales = vec![0.0f32; width];
        for row in w.chunks_exact(n.max(1)) {
            for (s, v) in scales.iter_mut().zip(row) {
                *s = s.max(v.abs());
            }
        }
        for (c, s) in scales.iter_mut().enumerate().take(n) {
            *s = clipped_scale(w.iter().skip(c).step_by(n), *s);
        }
        let mut codes = vec![0i8; panels * groups * PANEL * 4];
        let mut sums = vec![0i32; width];
        for i in 0..k {
            let (g, j) = (i / 4, i % 4);
            for c in 0..n {
                let s = scales[c];
                let q = if s > 0.0 {
                    (w[i * n + c] / s).round_ties_even().clamp(-127.0, 127.0) as i8
                } else {
                    0
                };
                let (p, col) = (c / PANEL, c % PANEL);
                codes[((p * groups + g) * PANEL + col) * 4 + j] = q;
                sums[c] += q as i32;
            }
        }
        let mut padded_bias = vec![0.0f32; width];
        padded_bias[..n].copy_from_slice(bias);
        Self {
            k,
            n,
            groups,
            panels,
            codes,
            scales,
            sums,
            bias: padded_bias,
        }
    }

    /// Output panels of [`PANEL`] columns (the last padded with zeros).
    pub fn panels(&self) -> usize {
        self.panels
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs per row.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The weight code of input `i`, output `c`.
    pub fn code(&self, i: usize, c: usize) -> i8 {
        let (p, col) = (c / PANEL, c % PANEL);
        self.codes[((p * self.groups + i / 4) * PANEL + col) * 4 + i % 4]
    }

    /// The scale of output column `c`.
    pub fn scale(&self, c: usize) -> f32 {
        self.scales[c]
    }

    /// The bias of output column `c`.
    pub fn bias(&self, c: usize) -> f32 {
        self.bias[c]
    }

    /// The weights as the kernels see them, `k × n` row-major f32.
    pub fn dequantized(&self) -> Vec<f32> {
        let mut w = vec![0.0f32; self.k * self.n];
        for i in 0..self.k {
            for c in 0..self.n {
                w[i * self.n + c] = self.code(i, c) as f32 * self.scales[c];
            }
        }
        w
    }

    /// Bytes held (codes and per-column values).
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.scales.len() + self.sums.len() + self.bias.len())
    }
}

/// The scale of one weight column: `amax / 127` shrunk to whichever of a few clipping ratios
/// gives the smallest squared rounding error over the column (a column with a few large
/// weights gets a finer step for the many small ones; the large ones are clipped).
fn clipped_scale<'a>(column: impl Iterator<Item = &'a f32> + Clone, amax: f32) -> f32 {
    if amax <= 0.0 {
        return 0.0;
    }
    let error = |scale: f32| -> f64 {
        column
            .clone()
            .map(|&v| {
                let q = (v / scale).round_ties_even().clamp(-127.0, 127.0);
                ((v - q * scale) as f64).powi(2)
            })
            .sum()
    };
    let mut best = (error(amax / 127.0), amax / 127.0);
    for step in 1..=CLIP_STEPS {
        let scale = amax * (1.0 - step as f32 * 0.02) / 127.0;
        let e = error(scale);
        if e < best.0 {
            best = (e, scale);
        }
    }
    best.1
}

/// Clipping ratios tried per weight column: 1, 0.98, ..., 0.6.
const CLIP_STEPS: usize = 20;

/// Activation rows quantized to unsigned 8 bits with a scale and zero point per row (see the
/// module docs); the buffers are reused from call to call.
#[derive(Clone, Debug, Default)]
pub struct QuantizedRows {
    rows: usize,
    k: usize,
    /// Codes per row in `codes`: `k` rounded up to a multiple of 4, padded with zeros.
    stride: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
    zeros: Vec<i32>,
}

impl QuantizedRows {
    /// Quantizes `x` (`rows × k` row-major).
    pub fn new(x: &[f32], k: usize) -> Self {
        let mut q = Self::default();
        q.quantize(x, k, 1);
        q
    }

    /// As [`QuantizedRows::new`], reusing this value's buffers; rows are split between
    /// `threads` tasks when there are many.
    pub fn quantize(&mut self, x: &[f32], k: usize, threads: usize) {
        assert!(
            k > 0 && x.len() % k == 0,
            "x is rows × k (k = {k}, {} values)",
            x.len()
        );
        let rows = x.len() / k;
        let stride = self.set_shape(rows, k);
        let (codes, scales, zeros) = (
            &mut self.codes[..rows * stride],
            &mut self.scales[..rows],
            &mut self.zeros[..rows],
        );
        // ~10 ns per row of 384 on one core: below a few hundred rows a second thread costs
        // more to wake than it saves.
        if threads >= 2 && rows * k >= 1 << 17 {
            let chunk = rows.div_ceil(threads);
            x.par_chunks(chunk * k)
                .zip(codes.par_chunks_mut(chunk * stride))
                .zip(scales.par_chunks_mut(chunk))
                .zip(zeros.par_chunks_mut(chunk))
                .for_each(|(((x, c), s), z)| quantize_rows(x, k, stride, c, s, z));
        } else {
            quantize_rows(x, k, stride, codes, scales, zeros);
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The `k` codes of row `r`.
    pub fn codes(&self, r: usize) -> &[u8] {
        &self.codes[r * self.stride..r * self.stride + self.k]
    }

    /// Scale of row `r`.
    pub fn scale(&self, r: usize) -> f32 {
        self.scales[r]
    }

    /// Zero point of row `r`.
    pub fn zero(&self, r: usize) -> i32 {
        self.zeros[r]
    }

    /// The rows as the kernels see them, `rows × k` row-major f32.
    pub fn dequantized(&self) -> Vec<f32> {
        (0..self.rows)
            .flat_map(|r| {
                let (s, z) = (self.scales[r], self.zeros[r]);
                self.codes(r)
                    .iter()
                    .map(move |&q| (q as i32 - z) as f32 * s)
            })
            .collect()
    }
}

/// Raw access to a [`QuantizedRows`] sized for `rows × k` ([`QuantizedRows::share`]), so that
/// the threads of a region can quantize disjoint rows of one input between two barriers
/// instead of each quantizing all of it.
#[derive(Clone, Copy)]
pub(crate) struct SharedRows {
    codes: *mut u8,
    scales: *mut f32,
    zeros: *mut i32,
    rows: usize,
    k: usize,
    stride: usize,
}

// SAFETY: `quantize` is unsafe; its callers write disjoint rows between barriers.
unsafe impl Send for SharedRows {}
unsafe impl Sync for SharedRows {}

impl QuantizedRows {
    /// Sets the shape to `rows × k` and grows the buffers to hold it; returns the stride.
    fn set_shape(&mut self, rows: usize, k: usize) -> usize {
        let stride = k.next_multiple_of(4);
        self.rows = rows;
        self.k = k;
        self.stride = stride;
        resize(&mut self.codes, rows * stride, 0);
        resize(&mut self.scales, rows, 0.0);
        resize(&mut self.zeros, rows, 0);
        stride
    }

    /// Sizes this value for `rows × k` (contents unset until quantized) and shares it.
    pub(crate) fn share(&mut self, rows: usize, k: usize) -> SharedRows {
        let stride = self.set_shape(rows, k);
        SharedRows {
            codes: self.codes.as_mut_ptr(),
            scales: self.scales.as_mut_ptr(),
            zeros: self.zeros.as_mut_ptr(),
            rows,
            k,
            stride,
        }
    }
}

impl SharedRows {
    /// Quantizes rows `range` of `x` (`rows × k`) as [`QuantizedRows::quantize`] does.
    ///
    /// # Safety
    /// The value shared is alive and not moved or resized; no other thread writes or reads
    /// these rows until the next barrier.
    pub(crate) unsafe fn quantize(&self, x: &[f32], range: Range<usize>) {
        assert!(range.end <= self.rows && x.len() == self.rows * self.k);
        let n = range.len();
        quantize_rows(
            &x[range.start * self.k..range.end * self.k],
            self.k,
            self.stride,
            std::slice::from_raw_parts_mut(
                self.codes.add(range.start * self.stride),
                n * self.stride,
            ),
            std::slice::from_raw_parts_mut(self.scales.add(range.start), n),
            std::slice::from_raw_parts_mut(self.zeros.add(range.start), n),
        );
    }
}

/// Grows `v` to at least `len` (never shrinks, so buffers settle at the largest batch).
fn resize<T: Copy>(v: &mut Vec<T>, len: usize, fill: T) {
    if v.len() < len {
        v.resize(len, fill);
    }
}

/// Per row: range (holding 0), scale, zero point and codes; the same IEEE operations on
/// every path, so the codes are identical whichever runs.
fn quantize_rows(
    x: &[f32],
    k: usize,
    stride: usize,
    codes: &mut [u8],
    scales: &mut [f32],
    zeros: &mut [i32],
) {
    for (((xr, cr), s), z) in x
        .chunks_exact(k)
        .zip(codes.chunks_exact_mut(stride))
        .zip(scales.iter_mut())
        .zip(zeros.iter_mut())
    {
        let (lo, hi) = min_max(xr);
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let range = hi - lo;
        // An all-zero row (or a non-finite one, which has no useful codes) gets scale 1.
        let (scale, inv) = if range > 0.0 && range.is_finite() {
            (range / 255.0, 255.0 / range)
        } else {
            (1.0, 1.0)
        };
        let zero = (-lo * inv).round_ties_even().clamp(0.0, 255.0);
        encode(xr, inv, zero, &mut cr[..k]);
        cr[k..].fill(0);
        *s = scale;
        *z = zero as i32;
    }
}

crate::multiversion! {
    fn min_max(xs: &[f32]) -> (f32, f32) => min_max_body
}

#[inline(always)]
fn min_max_body(xs: &[f32]) -> (f32, f32) {
    (crate::lanes::min(xs), crate::lanes::max(xs))
}

/// `codes[i] = clamp(round_even(x[i]·inv) + zero, 0, 255)` (NaN → 0).
fn encode(x: &[f32], inv: f32, zero: f32, codes: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx512() {
        // SAFETY: AVX-512 F is present.
        return unsafe { encode_avx512(x, inv, zero, codes) };
    }
    encode_scalar(x, inv, zero, codes)
}

fn encode_scalar(x: &[f32], inv: f32, zero: f32, codes: &mut [u8]) {
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = ((v * inv).round_ties_even() + zero).clamp(0.0, 255.0) as u8;
    }
}

/// [`encode_scalar`] 16 values at a time: the same operations (`vmaxps` with 0 second turns
/// NaN into 0, as `as u8` does).
///
/// # Safety
/// Needs AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn encode_avx512(x: &[f32], inv: f32, zero: f32, codes: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = x.len().min(codes.len());
    let (vinv, vzero) = (_mm512_set1_ps(inv), _mm512_set1_ps(zero));
    let (lo, hi) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    let mut i = 0;
    while i < n {
        let left = n - i;
        let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(v, vinv),
        );
        let q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, vzero), lo), hi);
        _mm512_mask_cvtepi32_storeu_epi8(
            codes.as_mut_ptr().add(i) as *mut i8,
            mask,
            _mm512_cvtps_epi32(q),
        );
        i += 16;
    }
}

/// Which implementation [`linear_path`] runs (for tests and benches; [`Path::Auto`] is what
/// [`linear`] uses).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The fastest the CPU supports.
    Auto,
    /// AVX-512 F/BW/VL + VNNI.
    Vnni,
    /// AVX2 + FMA.
    Avx2,
    /// Plain Rust.
    Portable,
}

impl Path {
    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Path::Auto | Path::Portable => true,
            Path::Vnni => crate::has_avx512_vnni(),
            Path::Avx2 => crate::has_avx2_fma(),
        }
    }

    fn resolve(self) -> Path {
        match self {
            Path::Auto if Path::Vnni.available() => Path::Vnni,
            Path::Auto if Path::Avx2.available() => Path::Avx2,
            Path::Auto => Path::Portable,
            p => p,
        }
    }
}

/// `out = act(x · w + b)`: `x` quantized rows (`rows × k`), `out` `rows × n` row-major.
/// `act` runs on each tile of outputs while it is in cache.
pub fn linear(
    x: &QuantizedRows,
    w: &Int8Linear,
    act: Option<Activation>,
    threads: usize,
    out: &mut [f32],
) {
    linear_path(Path::Auto, x, w, act, threads, out)
}

/// Quantizes `x` (`rows × k` f32) into `scratch`, then [`linear`].
pub fn linear_f32(
    x: &[f32],
    w: &Int8Linear,
    act: Option<Activation>,
    threads: usize,
    scratch: &mut QuantizedRows,
    out: &mut [f32],
) {
    scratch.quantize(x, w.k, threads);
    linear(scratch, w, act, threads, out)
}

/// [`linear`] on a chosen path; panics if the CPU lacks it.
#[doc(hidden)]
pub fn linear_path(
    path: Path,
    x: &QuantizedRows,
    w: &Int8Linear,
    act: Option<Activation>,
    threads: usize,
    out: &mut [f32],
) {
    assert!(
        path.available(),
        "{path:?} needs CPU features this machine lacks"
    );
    assert_eq!(x.k, w.k, "x has {} values per row, w takes {}", x.k, w.k);
    assert_eq!(out.len(), x.rows * w.n, "out is rows × n");
    let rows = x.rows;
    if rows == 0 || w.n == 0 {
        return;
    }
    let path = path.resolve();
    let out_ptr = DisjointWrites(out.as_mut_ptr());
    let run = |rows: Range<usize>, panels: Range<usize>| {
        // SAFETY: each call writes only rows `rows` × the columns of panels `panels` of
        // `out` (a `rows × n` buffer that outlives the call), and the ranges handed to
        // concurrent calls below are disjoint; the path's CPU features were checked above.
        unsafe { run_block(path, x, w, act, rows, panels, out_ptr) }
    };
    let tasks = if rows * w.k * w.n >= PARALLEL_MIN_MACS {
        threads.max(1)
    } else {
        1
    };
    if tasks == 1 {
        return run(0..rows, 0..w.panels);
    }
    // Panels when they share out evenly (each task then streams only its share of the
    // weights), or when there are too few rows to share; rows otherwise.
    let rows_split = w.panels % tasks != 0 && rows >= tasks * TILE_ROWS * 4;
    if rows_split {
        let chunk = rows.div_ceil(tasks).next_multiple_of(TILE_ROWS);
        (0..rows.div_ceil(chunk)).into_par_iter().for_each(|t| {
            run(t * chunk..((t + 1) * chunk).min(rows), 0..w.panels);
        });
    } else {
        let tasks = tasks.min(w.panels);
        (0..tasks).into_par_iter().for_each(|t| {
            run(0..rows, t * w.panels / tasks..(t + 1) * w.panels / tasks);
        });
    }
}

/// Output panels `panels` (columns `PANEL * panels`, cut at `n`) of [`linear`], all rows,
/// on this thread.
///
/// # Safety
/// `out` points to the `x.rows × w.n` output, of which no other thread touches these
/// panels' columns meanwhile.
pub(crate) unsafe fn linear_panels(
    x: &QuantizedRows,
    w: &Int8Linear,
    act: Option<Activation>,
    panels: Range<usize>,
    out: *mut f32,
) {
    assert_eq!(x.k, w.k, "x has {} values per row, w takes {}", x.k, w.k);
    assert!(panels.end <= w.panels);
    if x.rows == 0 || panels.is_empty() {
        return;
    }
    run_block(
        Path::Auto.resolve(),
        x,
        w,
        act,
        0..x.rows,
        panels,
        DisjointWrites(out),
    );
}

/// # Safety
/// `path` is available; `out` points to the `x.rows × w.n` output, of which nothing else
/// writes rows `rows` × panels `panels` meanwhile.
unsafe fn run_block(
    path: Path,
    x: &QuantizedRows,
    w: &Int8Linear,
    act: Option<Activation>,
    rows: Range<usize>,
    panels: Range<usize>,
    out: DisjointWrites,
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Path::Vnni => vnni::block(x, w, act, rows, panels, out),
        #[cfg(target_arch = "x86_64")]
        Path::Avx2 => avx2::block(x, w, act, rows, panels, out),
        _ => portable_block(x, w, act, rows, panels, out),
    }
}

/// The epilogue every path applies to one exact integer sum.
#[inline(always)]
fn dequantize(sum: i32, zero: i32, wsum: i32, sx: f32, sw: f32, bias: f32) -> f32 {
    (sum.wrapping_sub(zero.wrapping_mul(wsum)) as f32).mul_add(sx * sw, bias)
}

/// The activation, in place, identical on every path.
#[inline(always)]
fn activate(act: Activation, ys: &mut [f32]) {
    match act {
        Activation::GeluErf => crate::gelu::gelu_erf_body(ys),
        Activation::GeluTanh => crate::gelu::gelu_tanh_body(ys),
        Activation::Relu => ys.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// Rows `rows` × panels `panels` in plain Rust.
///
/// # Safety
/// As [`run_block`].
unsafe fn portable_block(
    x: &QuantizedRows,
    w: &Int8Linear,
    act: Option<Activation>,
    rows: Range<usize>,
    panels: Range<usize>,
    out: DisjointWrites,
) {
    let n = w.n;
    for p in panels {
        let panel = &w.codes[p * w.groups * PANEL * 4..(p + 1) * w.groups * PANEL * 4];
        let cols = (n - p * PANEL).min(PANEL);
        for r in rows.clone() {
            let a = &x.codes[r * x.stride..(r + 1) * x.stride];
            let mut acc = [0i32; PANEL];
            for (a4, b) in a.chunks_exact(4).zip(panel.chunks_exact(PANEL * 4)) {
                for (s, b4) in acc.iter_mut().zip(b.chunks_exact(4)) {
                    for (&q, &v) in a4.iter().zip(b4) {
                        *s += q as i32 * v as i32;
                    }
                }
            }
            // SAFETY: row `r`, columns of panel `p` only (the caller's contract).
            let ys = std::slice::from_raw_parts_mut(out.get().add(r * n + p * PANEL), cols);
            for (j, y) in ys.iter_mut().enumerate() {
                let c = p * PANEL + j;
                *y = dequantize(
                    acc[j],
                    x.zeros[r],
                    w.sums[c],
                    x.scales[r],
                    w.scales[c],
                    w.bias[c],
                );
            }
            if let Some(act) = act {
                activate(act, ys);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // indexed loops over register arrays read best here
mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512 F/BW/VL/VNNI and FMA are present; `out` as for [`run_block`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
    pub(super) unsafe fn block(
        x: &QuantizedRows,
        w: &Int8Linear,
        act: Option<Activation>,
        rows: Range<usize>,
        panels: Range<usize>,
        out: DisjointWrites,
    ) {
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + BLOCK_ROWS).min(rows.end);
            for p in panels.clone() {
                let mut r = r0;
                while r < r1 {
                    let nr = (r1 - r).min(TILE_ROWS);
                    match nr {
                        6 => tile::<6>(x, w, act, r, p, out),
                        5 => tile::<5>(x, w, act, r, p, out),
                        4 => tile::<4>(x, w, act, r, p, out),
                        3 => tile::<3>(x, w, act, r, p, out),
                        2 => tile::<2>(x, w, act, r, p, out),
                        _ => tile::<1>(x, w, act, r, p, out),
                    }
                    r += nr;
                }
            }
            r0 = r1;
        }
    }

    /// Rows `r..r + R` × the 64 columns of panel `p`.
    ///
    /// # Safety
    /// As [`block`]; `r + R ≤ x.rows`.
    #[inline(always)]
    unsafe fn tile<const R: usize>(
        x: &QuantizedRows,
        w: &Int8Linear,
        act: Option<Activation>,
        r: usize,
        p: usize,
        out: DisjointWrites,
    ) {
        let stride = x.stride;
        let a = x.codes.as_ptr().add(r * stride);
        let b = w.codes.as_ptr().add(p * w.groups * PANEL * 4);
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        for g in 0..w.groups {
            let bg = b.add(g * PANEL * 4);
            let wv = [
                _mm512_loadu_si512(bg as *const __m512i),
                _mm512_loadu_si512(bg.add(64) as *const __m512i),
                _mm512_loadu_si512(bg.add(128) as *const __m512i),
                _mm512_loadu_si512(bg.add(192) as *const __m512i),
            ];
            for i in 0..R {
                // SAFETY: row `r + i` has `stride = 4 · groups` codes.
                let a4 = (a.add(i * stride + g * 4) as *const i32).read_unaligned();
                let av = _mm512_set1_epi32(a4);
                for j in 0..4 {
                    acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], av, wv[j]);
                }
            }
        }
        let n = w.n;
        let c0 = p * PANEL;
        let cols = (n - c0).min(PANEL);
        for i in 0..R {
            let row = r + i;
            let sx = _mm512_set1_ps(x.scales[row]);
            let zero = _mm512_set1_epi32(x.zeros[row]);
            let dst = out.get().add(row * n + c0);
            for j in 0..4 {
                let c = c0 + j * 16;
                if j * 16 >= cols {
                    break;
                }
                let wsum = _mm512_loadu_si512(w.sums.as_ptr().add(c) as *const __m512i);
                let sw = _mm512_loadu_ps(w.scales.as_ptr().add(c));
                let bias = _mm512_loadu_ps(w.bias.as_ptr().add(c));
                let v = _mm512_sub_epi32(acc[i][j], _mm512_mullo_epi32(zero, wsum));
                let y = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(sx, sw), bias);
                let left = cols - j * 16;
                let mask: __mmask16 = if left >= 16 { 0xffff } else { (1 << left) - 1 };
                _mm512_mask_storeu_ps(dst.add(j * 16), mask, y);
            }
            if let Some(act) = act {
                activate(act, std::slice::from_raw_parts_mut(dst, cols));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2 and FMA are present; `out` as for [`run_block`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block(
        x: &QuantizedRows,
        w: &Int8Linear,
        act: Option<Activation>,
        rows: Range<usize>,
        panels: Range<usize>,
        out: DisjointWrites,
    ) {
        let mut r0 = rows.start;
        while r0 < rows.end {
            let r1 = (r0 + BLOCK_ROWS).min(rows.end);
            for p in panels.clone() {
                for r in r0..r1 {
                    row_panel(x, w, act, r, p, out);
                }
            }
            r0 = r1;
        }
    }

    /// Row `r` × the 64 columns of panel `p`.
    ///
    /// # Safety
    /// As [`block`].
    #[inline(always)]
    unsafe fn row_panel(
        x: &QuantizedRows,
        w: &Int8Linear,
        act: Option<Activation>,
        r: usize,
        p: usize,
        out: DisjointWrites,
    ) {
        let a = x.codes.as_ptr().add(r * x.stride);
        let b = w.codes.as_ptr().add(p * w.groups * PANEL * 4);
        let ones = _mm256_set1_epi16(1);
        let twos = _mm256_set1_epi16(2);
        let mut acc = [_mm256_setzero_si256(); 8];
        for g in 0..w.groups {
            let a4 = (a.add(g * 4) as *const u32).read_unaligned();
            // q = 2·(q >> 1) + (q & 1): each half times a code in [-127, 127], summed in
            // pairs, fits in 16 bits.
            let hi = _mm256_set1_epi32(((a4 >> 1) & 0x7f7f_7f7f) as i32);
            let lo = _mm256_set1_epi32((a4 & 0x0101_0101) as i32);
            let bg = b.add(g * PANEL * 4);
            for j in 0..8 {
                let wv = _mm256_loadu_si256(bg.add(j * 32) as *const __m256i);
                let h = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, wv), twos);
                let l = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, wv), ones);
                acc[j] = _mm256_add_epi32(acc[j], _mm256_add_epi32(h, l));
            }
        }
        let n = w.n;
        let c0 = p * PANEL;
        let cols = (n - c0).min(PANEL);
        let sx = _mm256_set1_ps(x.scales[r]);
        let zero = _mm256_set1_epi32(x.zeros[r]);
        let dst = out.get().add(r * n + c0);
        for j in 0..8 {
            if j * 8 >= cols {
                break;
            }
            let c = c0 + j * 8;
            let wsum = _mm256_loadu_si256(w.sums.as_ptr().add(c) as *const __m256i);
            let sw = _mm256_loadu_ps(w.scales.as_ptr().add(c));
            let bias = _mm256_loadu_ps(w.bias.as_ptr().add(c));
            let v = _mm256_sub_epi32(acc[j], _mm256_mullo_epi32(zero, wsum));
            let y = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(sx, sw), bias);
            let left = cols - j * 8;
            if left >= 8 {
                _mm256_storeu_ps(dst.add(j * 8), y);
            } else {
                let mut tmp = [0.0f32; 8];
                _mm256_storeu_ps(tmp.as_mut_ptr(), y);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), dst.add(j * 8), left);
            }
        }
        if let Some(act) = act {
            activate(act, std::slice::from_raw_parts_mut(dst, cols));
        }
    }
}

/// The reference for the kernels: the same quantized operands, the integer sum in `i64` and
/// the dequantization in f64 (`rows × n`).
pub fn linear_reference(x: &QuantizedRows, w: &Int8Linear) -> Vec<f64> {
    let mut out = vec![0.0f64; x.rows * w.n];
    for r in 0..x.rows {
        let codes = x.codes(r);
        for c in 0..w.n {
            let sum: i64 = codes
                .iter()
                .enumerate()
                .map(|(i, &q)| (q as i64 - x.zeros[r] as i64) * w.code(i, c) as i64)
                .sum();
            out[r * w.n + c] =
                sum as f64 * x.scales[r] as f64 * w.scales[c] as f64 + w.bias[c] as f64;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    const SHAPES: [(usize, usize, usize); 9] = [
        (1, 1, 1),
        (1, 5, 7),
        (3, 37, 37),
        (17, 33, 65),
        (6, 64, 64),
        (7, 130, 129),
        (17, 384, 1152),
        (64, 384, 1536),
        (13, 1536, 384),
    ];

    fn paths() -> Vec<Path> {
        [Path::Vnni, Path::Avx2, Path::Portable]
            .into_iter()
            .filter(|p| p.available())
            .collect()
    }

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Activations with a per-row offset and a few large values, as LayerNorm and GELU
    /// outputs have.
    fn activations(rows: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut x = test_values(rows * k, seed, 1.0);
        for (r, row) in x.chunks_exact_mut(k).enumerate() {
            for (i, v) in row.iter_mut().enumerate() {
                *v += 0.3 * (r % 3) as f32;
                if (i * 7 + r) % 31 == 0 {
                    *v *= 6.0;
                }
            }
        }
        x
    }

    #[test]
    fn weight_round_trip_is_within_half_a_step_or_clipped() {
        let (k, n) = (37, 70);
        let mut w = test_values(k * n, 5, 0.2);
        // Columns with one large weight each.
        w[3 * n + 4] = 3.0;
        w[5 * n + 9] = -0.4;
        let b = test_values(n, 6, 0.1);
        let q = Int8Linear::quantize(&w, k, n, &b);
        let back = q.dequantized();
        for c in 0..n {
            let amax = (0..k).map(|i| w[i * n + c].abs()).fold(0.0f32, f32::max);
            let s = q.scale(c);
            assert!(s <= amax / 127.0 * (1.0 + 1e-6) && s >= 0.6 * amax / 127.0 * (1.0 - 1e-6));
            let mut sq = (0.0f64, 0.0f64);
            for i in 0..k {
                let v = w[i * n + c];
                let err = (back[i * n + c] - v).abs();
                let limit = if v.abs() <= 127.0 * s {
                    0.5 * s * (1.0 + 1e-5)
                } else {
                    v.abs() - 127.0 * s + 1e-6
                };
                assert!(err <= limit, "w[{i}][{c}] = {v}: error {err} > {limit}");
                // The squared error is no worse than with the unclipped scale.
                let s0 = amax / 127.0;
                sq.0 += (err as f64).powi(2);
                sq.1 += ((v / s0).round_ties_even() * s0 - v).powi(2) as f64;
            }
            assert!(
                sq.0 <= sq.1 * (1.0 + 1e-6),
                "column {c}: {} > {}",
                sq.0,
                sq.1
            );
            assert_eq!(q.bias(c), b[c]);
        }
    }

    #[test]
    fn zero_weight_column_and_zero_row_are_exact() {
        let (k, n) = (9, 3);
        let mut w = test_values(k * n, 7, 1.0);
        for i in 0..k {
            w[i * n + 1] = 0.0;
        }
        let q = Int8Linear::quantize(&w, k, n, &[0.5, -1.0, 2.0]);
        let x = vec![0.0f32; 2 * k];
        let qx = QuantizedRows::new(&x, k);
        assert_eq!(qx.dequantized(), x);
        for path in paths() {
            let mut out = vec![f32::NAN; 2 * n];
            linear_path(path, &qx, &q, None, 1, &mut out);
            assert_eq!(out, [0.5, -1.0, 2.0, 0.5, -1.0, 2.0], "{path:?}");
        }
    }

    #[test]
    fn activation_round_trip_is_within_half_a_step() {
        for (rows, k) in [(1usize, 1usize), (3, 5), (17, 37), (4, 384)] {
            let mut x = activations(rows, k, 11);
            if rows > 1 {
                // An all-positive row and an all-negative row.
                x[..k].iter_mut().for_each(|v| *v = v.abs() + 0.1);
                x[k..2 * k].iter_mut().for_each(|v| *v = -v.abs() - 0.1);
            }
            let q = QuantizedRows::new(&x, k);
            let back = q.dequantized();
            for r in 0..rows {
                let row = &x[r * k..(r + 1) * k];
                let lo = row.iter().copied().fold(0.0f32, f32::min);
                let hi = row.iter().copied().fold(0.0f32, f32::max);
                let step = (hi - lo) / 255.0;
                assert!((q.scale(r) - step).abs() <= 1e-6 * step.max(1e-30));
                assert!((0..=255).contains(&q.zero(r)));
                for i in 0..k {
                    let err = (back[r * k + i] - row[i]).abs();
                    // Half a step, plus the zero point's rounding (at most half a step) when
                    // it is not at an end of the range.
                    assert!(
                        err <= step * (1.0 + 1e-4),
                        "x[{r}][{i}] = {}: error {err} > step {step}",
                        row[i]
                    );
                }
            }
        }
    }

    #[test]
    fn kernels_match_the_integer_reference_and_each_other() {
        for (i, &(rows, k, n)) in SHAPES.iter().enumerate() {
            let seed = 100 + i as u64 * 7;
            let x = activations(rows, k, seed);
            let w = test_values(k * n, seed + 1, 1.0 / (k as f32).sqrt());
            let b = test_values(n, seed + 2, 0.5);
            let qw = Int8Linear::quantize(&w, k, n, &b);
            let qx = QuantizedRows::new(&x, k);
            let want = linear_reference(&qx, &qw);
            for act in [None, Some(Activation::GeluErf)] {
                let mut first: Option<Vec<f32>> = None;
                for path in paths() {
                    for threads in [1usize, 2] {
                        let mut out = vec![f32::NAN; rows * n];
                        pool(threads)
                            .install(|| linear_path(path, &qx, &qw, act, threads, &mut out));
                        if act.is_none() {
                            for (j, (o, e)) in out.iter().zip(&want).enumerate() {
                                // f32 rounding of the sum, the scale product and the fma.
                                let tol = 1e-6 * (e.abs() + 1.0) * 4.0;
                                assert!(
                                    (*o as f64 - e).abs() <= tol,
                                    "{path:?} {rows}x{k}x{n} {threads}t [{j}]: {o} vs {e}"
                                );
                            }
                        }
                        match &first {
                            None => first = Some(out),
                            Some(f) => assert!(
                                f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{path:?} {threads}t differs from the first path at {rows}x{k}x{n} ({act:?})"
                            ),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fused_activation_is_the_activation_of_the_plain_output() {
        let (rows, k, n) = (5, 40, 70);
        let x = activations(rows, k, 3);
        let w = test_values(k * n, 4, 0.3);
        let b = test_values(n, 5, 0.3);
        let qw = Int8Linear::quantize(&w, k, n, &b);
        let qx = QuantizedRows::new(&x, k);
        let mut plain = vec![0.0f32; rows * n];
        linear(&qx, &qw, None, 1, &mut plain);
        for act in [Activation::GeluErf, Activation::GeluTanh, Activation::Relu] {
            let mut want = plain.clone();
            activate(act, &mut want);
            let mut fused = vec![0.0f32; rows * n];
            linear(&qx, &qw, Some(act), 1, &mut fused);
            assert_eq!(fused, want, "{act:?}");
        }
    }

    #[test]
    fn approximates_the_float_product_within_the_quantization_bound() {
        for &(rows, k, n) in &SHAPES {
            let x = activations(rows, k, 21);
            let w = test_values(k * n, 22, 1.0 / (k as f32).sqrt());
            let b = test_values(n, 23, 0.5);
            let qw = Int8Linear::quantize(&w, k, n, &b);
            let mut qx = QuantizedRows::default();
            let mut out = vec![0.0f32; rows * n];
            linear_f32(&x, &qw, None, 2, &mut qx, &mut out);
            let exact = crate::linear::linear_bias_reference(&x, rows, &w, k, n, &b);
            let (xd, wd) = (qx.dequantized(), qw.dequantized());
            let mut rel_sq = (0.0f64, 0.0f64);
            for r in 0..rows {
                for c in 0..n {
                    // |Σ x w - Σ x̂ ŵ| ≤ Σ |x||w - ŵ| + |x - x̂||ŵ|, each term bounded by the
                    // actual rounding errors.
                    let bound: f64 = (0..k)
                        .map(|i| {
                            let (xv, wv) = (x[r * k + i] as f64, w[i * n + c] as f64);
                            let (xq, wq) = (xd[r * k + i] as f64, wd[i * n + c] as f64);
                            xv.abs() * (wv - wq).abs() + (xv - xq).abs() * wq.abs()
                        })
                        .sum();
                    let (o, e) = (out[r * n + c] as f64, exact[r * n + c] as f64);
                    assert!(
                        (o - e).abs() <= bound + 1e-5 * (1.0 + e.abs()),
                        "{rows}x{k}x{n} [{r}][{c}]: {o} vs {e}, bound {bound}"
                    );
                    rel_sq.0 += (o - e) * (o - e);
                    rel_sq.1 += e * e;
                }
            }
            // And on these inputs the error is small overall: below 2% RMS.
            let rel = (rel_sq.0 / rel_sq.1).sqrt();
            assert!(rel < 0.02, "{rows}x{k}x{n}: relative RMS error {rel}");
        }
    }

    #[test]
    fn encode_paths_agree_on_ties_extremes_and_nan() {
        let mut x = activations(3, 100, 9);
        x.extend([
            0.5,
            1.5,
            2.5,
            -0.5,
            -1.5,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            1e30,
        ]);
        for (inv, zero) in [(1.0f32, 0.0f32), (37.3, 128.0), (255.0 / 7.0, 3.0)] {
            let mut fast = vec![0u8; x.len()];
            let mut slow = vec![1u8; x.len()];
            encode(&x, inv, zero, &mut fast);
            encode_scalar(&x, inv, zero, &mut slow);
            assert_eq!(fast, slow, "inv {inv}, zero {zero}");
        }
    }

    #[test]
    fn buffers_are_reused_across_shapes() {
        let mut q = QuantizedRows::default();
        let x = activations(17, 65, 1);
        q.quantize(&x, 65, 2);
        let big = q.dequantized();
        let y = activations(2, 7, 2);
        q.quantize(&y, 7, 1);
        assert_eq!((q.rows(), q.k()), (2, 7));
        assert_eq!(q.dequantized(), QuantizedRows::new(&y, 7).dequantized());
        q.quantize(&x, 65, 2);
        assert_eq!(q.dequantized(), big);
    }
}
