//! Block-quantized weights (ggml's Q4_1 and Q8_0) times f32 activations.
//!
//! Weights are the raw bytes of a GGUF tensor: row-major `[rows][k]`, each row a sequence of
//! 32-element blocks in ggml's layout (see [`QuantKind`]). Activations are quantized per row
//! to 8 bits the way llama.cpp does on x86 (Q8_1 against Q4_1 weights, Q8_0 against Q8_0
//! weights), and the product is computed block by block as llama.cpp does:
//!
//! * Q4_1 · Q8_1: `Σ_b d_w·d_x·isum_b + Σ_b m_w·s_x`, where `isum_b` is the exact integer
//!   dot product of the 4-bit codes and the 8-bit activation codes of block `b`;
//! * Q8_0 · Q8_0: `Σ_b d_w·d_x·isum_b`.
//!
//! The integer parts are exact; only the order of the float accumulation differs from
//! llama.cpp's (it accumulates 8 lanes per block and adds the `m·s` terms last; the fast
//! paths here accumulate 16 lanes per pair of blocks, then add the `m·s` terms).
//!
//! Paths, chosen at run time:
//! * AVX-512 VNNI (`vpdpbusd`): a direct kernel reading the GGUF bytes for few activation
//!   rows (decode), and for many rows (prefill) a tiled kernel that first unpacks four weight
//!   rows into a buffer and reuses each unpacked block against every activation row, 4 × 4
//!   dot products at a time;
//! * AVX2 + FMA (`vpmaddubsw` + `vpmaddwd`), one dot product at a time;
//! * portable Rust.
//!
//! All paths split the output rows between rayon's threads.

// `is_multiple_of` is newer than the main crate's MSRV (1.85).
#![allow(clippy::manual_is_multiple_of)]

use crate::DisjointWrites;
use rayon::prelude::*;

/// Elements per block, for every kind here.
pub const BLOCK: usize = 32;

/// The weight formats supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantKind {
    /// 20 bytes per block: f16 `d`, f16 `m`, 16 bytes of nibbles; weight `j` (0..16) is
    /// `(qs[j] & 15)·d + m`, weight `j + 16` is `(qs[j] >> 4)·d + m`.
    Q4_1,
    /// 34 bytes per block: f16 `d`, 32 signed bytes; weight `j` is `qs[j]·d`.
    Q8_0,
}

impl QuantKind {
    /// Bytes per block of [`BLOCK`] weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_1 => 20,
            QuantKind::Q8_0 => 34,
        }
    }

    /// Elements per block ([`BLOCK`]).
    pub const fn block_elems(self) -> usize {
        BLOCK
    }

    /// Bytes of one row of `k` weights (`k` a multiple of [`BLOCK`]).
    pub const fn row_bytes(self, k: usize) -> usize {
        k / BLOCK * self.block_bytes()
    }

    /// Bytes of one ggml block of activations quantized against weights of this kind
    /// (Q8_1: f16 `d`, f16 `s`, 32 × i8; Q8_0: f16 `d`, 32 × i8).
    pub const fn activation_block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_1 => 36,
            QuantKind::Q8_0 => 34,
        }
    }
}

/// IEEE half (as bits) to f32, exactly.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = if exp == 0 {
        if man == 0 {
            sign
        } else {
            // Subnormal: man · 2^-24, exact in f32.
            let v = man as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
    } else if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// f32 to IEEE half bits, rounding to nearest even (as F16C's `vcvtps2ph` with mode 0, which
/// ggml uses on x86).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign
            | 0x7c00
            | if man != 0 {
                0x200 | (man >> 13) as u16
            } else {
                0
            };
    }
    let e = exp - 112;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rem = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rem > half || (rem == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rem = man & 0x1fff;
    if rem > 0x1000 || (rem == 0x1000 && r & 1 == 1) {
        r += 1; // a carry into the exponent is still correct (up to infinity)
    }
    sign | r as u16
}

fn half_at(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// Dequantizes one row: `bytes` holds `out.len() / 32` blocks of `kind`.
pub fn dequantize_row(kind: QuantKind, bytes: &[u8], out: &mut [f32]) {
    assert!(out.len() % BLOCK == 0 && bytes.len() == kind.row_bytes(out.len()));
    for (block, out) in bytes
        .chunks_exact(kind.block_bytes())
        .zip(out.chunks_exact_mut(BLOCK))
    {
        let d = half_at(block, 0);
        match kind {
            QuantKind::Q4_1 => {
                let m = half_at(block, 2);
                let (lo, hi) = out.split_at_mut(16);
                for j in 0..16 {
                    let q = block[4 + j];
                    lo[j] = (q & 0x0f) as f32 * d + m;
                    hi[j] = (q >> 4) as f32 * d + m;
                }
            }
            QuantKind::Q8_0 => {
                for (o, &q) in out.iter_mut().zip(&block[2..]) {
                    *o = q as i8 as f32 * d;
                }
            }
        }
    }
}

/// Activation rows quantized to 8 bits per block of 32, in the form the kernels read
/// (structure of arrays; [`QuantizedActs::to_ggml_bytes`] gives ggml's block layout).
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    kind: Option<QuantKind>,
    m: usize,
    k: usize,
    /// `m × k` codes, in element order.
    qs: Vec<i8>,
    /// `m × k/32` block scales, each already rounded to f16 (as ggml stores them).
    d: Vec<f32>,
    /// Q8_1 only: `m × k/32` values `d·Σqs`, rounded to f16.
    s: Vec<f32>,
    /// Q8_0 only: `m × k/32 × 8` lanes, `-128 × Σ` of each group of 4 codes; it lets the
    /// kernels use an unsigned-times-signed product with the weights offset by 128.
    corr: Vec<i32>,
}

impl QuantizedActs {
    /// Quantizes `x` (`m × k` row-major, `k` a multiple of 32) for a product with weights
    /// of `kind`.
    pub fn new(kind: QuantKind, x: &[f32], k: usize) -> Self {
        let mut q = Self::default();
        q.quantize(kind, x, k);
        q
    }

    /// As [`QuantizedActs::new`], reusing this value's buffers.
    pub fn quantize(&mut self, kind: QuantKind, x: &[f32], k: usize) {
        assert!(
            k > 0 && k % BLOCK == 0 && x.len() % k == 0,
            "x is m × k, k a multiple of 32"
        );
        let m = x.len() / k;
        let nb = k / BLOCK;
        self.kind = Some(kind);
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        if kind == QuantKind::Q4_1 {
            self.s.resize(m * nb, 0.0);
            self.corr.clear();
        } else {
            self.s.clear();
            self.corr.resize(m * nb * 8, 0);
        }
        let (qs, d, s, corr) = (&mut self.qs, &mut self.d, &mut self.s, &mut self.corr);
        #[cfg(target_arch = "x86_64")]
        if crate::has_avx512() {
            // SAFETY: AVX-512 F is present.
            return unsafe { vnni::quantize_blocks(kind, x, qs, d, s, corr) };
        }
        quantize_blocks(kind, x, qs, d, s, corr);
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Elements per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The weight kind these activations were quantized for.
    pub fn kind(&self) -> Option<QuantKind> {
        self.kind
    }

    /// A copy of rows `c0..c1`.
    fn rows(&self, c0: usize, c1: usize) -> Self {
        let nb = self.k / BLOCK;
        Self {
            kind: self.kind,
            m: c1 - c0,
            k: self.k,
            qs: self.qs[c0 * self.k..c1 * self.k].to_vec(),
            d: self.d[c0 * nb..c1 * nb].to_vec(),
            s: if self.s.is_empty() {
                Vec::new()
            } else {
                self.s[c0 * nb..c1 * nb].to_vec()
            },
            corr: if self.corr.is_empty() {
                Vec::new()
            } else {
                self.corr[c0 * nb * 8..c1 * nb * 8].to_vec()
            },
        }
    }

    /// Codes of row `row`.
    pub fn codes(&self, row: usize) -> &[i8] {
        &self.qs[row * self.k..(row + 1) * self.k]
    }

    /// Block scales of row `row` (f16-rounded values).
    pub fn scales(&self, row: usize) -> &[f32] {
        let nb = self.k / BLOCK;
        &self.d[row * nb..(row + 1) * nb]
    }

    /// ggml's block layout of all rows (`block_q8_1` or `block_q8_0`), appended to `out`
    /// after clearing it.
    pub fn to_ggml_bytes(&self, out: &mut Vec<u8>) {
        out.clear();
        let Some(kind) = self.kind else { return };
        for (b, codes) in self.qs.chunks_exact(BLOCK).enumerate() {
            out.extend_from_slice(&f32_to_f16(self.d[b]).to_le_bytes());
            if kind == QuantKind::Q4_1 {
                out.extend_from_slice(&f32_to_f16(self.s[b]).to_le_bytes());
            }
            out.extend(codes.iter().map(|&q| q as u8));
        }
    }
}

/// Quantizes `x` (`m × k` row-major) against weights of `kind` into ggml's block layout:
/// Q8_1 blocks (36 bytes) for Q4_1 weights, Q8_0 blocks (34 bytes) for Q8_0 weights.
pub fn quantize_activations(kind: QuantKind, x: &[f32], k: usize, out: &mut Vec<u8>) {
    QuantizedActs::new(kind, x, k).to_ggml_bytes(out);
}

/// One block as llama.cpp's x86 `quantize_row_q8_1` / `quantize_row_q8_0` do it:
/// `d = amax/127`, codes `round_half_even(x · 127/amax)`, `s = f16(d · Σcodes)`.
#[inline(always)]
fn quantize_block(x: &[f32], qs: &mut [i8]) -> (f32, f32, i32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        sum += r;
        *q = r as i8;
    }
    (d, f16_to_f32(f32_to_f16(d)), sum)
}

#[inline(always)]
fn quantize_blocks_body(
    kind: QuantKind,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    corr: &mut [i32],
) {
    blocks_with(kind, x, qs, d, s, corr, quantize_block);
}

/// Every block of `x` quantized by `block` (returning `(d, f16(d), Σcodes)`, as
/// [`quantize_block`] does), with its scale and `s` or correction lanes filled in.
#[inline(always)]
fn blocks_with(
    kind: QuantKind,
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    corr: &mut [i32],
    mut block: impl FnMut(&[f32], &mut [i8]) -> (f32, f32, i32),
) {
    for (b, (xb, qb)) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let scales = block(xb, qb);
        block_extras(kind, b, qb, scales, d, s, corr);
    }
}

/// A quantized block's `d`, and its `s` (Q8_1) or correction lanes (Q8_0), from its codes
/// and [`quantize_block`]'s `(d, f16(d), Σcodes)`.
#[inline(always)]
fn block_extras(
    kind: QuantKind,
    b: usize,
    qb: &[i8],
    (d_exact, d_half, sum): (f32, f32, i32),
    d: &mut [f32],
    s: &mut [f32],
    corr: &mut [i32],
) {
    d[b] = d_half;
    match kind {
        QuantKind::Q4_1 => s[b] = f16_to_f32(f32_to_f16(d_exact * sum as f32)),
        QuantKind::Q8_0 => {
            for (lane, q4) in corr[b * 8..b * 8 + 8].iter_mut().zip(qb.chunks_exact(4)) {
                *lane = -128 * q4.iter().map(|&q| q as i32).sum::<i32>();
            }
        }
    }
}

crate::multiversion!(fn quantize_blocks(kind: QuantKind, x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], corr: &mut [i32]) => quantize_blocks_body);

/// `y = x · Wᵀ`: `weights` holds `rows` rows of `k` weights of `kind` (GGUF layout), `x` is
/// `m × k` row-major f32, `y` is `m × rows` row-major. The activations are quantized first
/// (see the module docs); use [`qmatmul_quantized`] to quantize once for several products.
#[allow(clippy::too_many_arguments)]
pub fn qmatmul(
    kind: QuantKind,
    weights: &[u8],
    rows: usize,
    k: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) {
    assert_eq!(x.len(), m * k, "x is m × k");
    let acts = QuantizedActs::new(kind, x, k);
    qmatmul_quantized(kind, weights, rows, &acts, y);
}

/// `y = x · Wᵀ` with `x` already quantized for `kind` (see [`qmatmul`]).
pub fn qmatmul_quantized(
    kind: QuantKind,
    weights: &[u8],
    rows: usize,
    acts: &QuantizedActs,
    y: &mut [f32],
) {
    qmatmul_path(Path::Auto, kind, weights, rows, acts, y);
}

/// Which implementation [`qmatmul_path`] runs (for tests and benches; [`Path::Auto`] is what
/// [`qmatmul`] uses).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The fastest the CPU supports, direct or tiled by the number of activation rows.
    Auto,
    /// AVX-512 VNNI, reading the GGUF bytes directly (any `m`, 4 activation rows at a time).
    VnniDirect,
    /// AVX-512 VNNI, unpacked 4-row weight tiles × 4 activation rows.
    VnniTiled,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// Plain Rust.
    Portable,
}

impl Path {
    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Path::Auto | Path::Portable => true,
            Path::VnniDirect | Path::VnniTiled => crate::has_avx512_vnni(),
            #[cfg(target_arch = "x86_64")]
            Path::Avx2 => crate::has_avx2_fma() && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(not(target_arch = "x86_64"))]
            Path::Avx2 => false,
        }
    }
}

/// [`qmatmul_quantized`] on a chosen path; panics if the CPU lacks it.
#[doc(hidden)]
pub fn qmatmul_path(
    path: Path,
    kind: QuantKind,
    weights: &[u8],
    rows: usize,
    acts: &QuantizedActs,
    y: &mut [f32],
) {
    let (m, k) = (acts.m, acts.k);
    assert!(
        path.available(),
        "{path:?} needs CPU features this machine lacks"
    );
    assert_eq!(
        acts.kind,
        Some(kind),
        "activations quantized for another weight kind"
    );
    assert_eq!(
        weights.len(),
        rows * kind.row_bytes(k),
        "weights are rows × k"
    );
    assert_eq!(y.len(), m * rows, "y is m × rows");
    if m == 0 || rows == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        match path {
            Path::VnniDirect => {
                for c0 in (0..m).step_by(DIRECT_MAX_M) {
                    let c1 = (c0 + DIRECT_MAX_M).min(m);
                    let sub = acts.rows(c0, c1);
                    vnni::direct(kind, weights, rows, &sub, &mut y[c0 * rows..c1 * rows]);
                }
                return;
            }
            Path::VnniTiled => return vnni::tiled(kind, weights, rows, acts, y),
            Path::Avx2 => {
                return by_rows(rows, k, m, y, |r0, r1, out| {
                    // SAFETY: AVX2, FMA and F16C are present (`available`).
                    unsafe { avx2::rows(kind, weights, r0, r1, rows, acts, out) }
                });
            }
            Path::Portable => {}
            Path::Auto => {}
        }
    }
    #[cfg(target_arch = "x86_64")]
    if path == Path::Auto {
        if crate::has_avx512_vnni() {
            if m <= DIRECT_MAX_M {
                vnni::direct(kind, weights, rows, acts, y);
            } else {
                vnni::tiled(kind, weights, rows, acts, y);
            }
            return;
        }
        if Path::Avx2.available() {
            return qmatmul_path(Path::Avx2, kind, weights, rows, acts, y);
        }
    }
    by_rows(rows, k, m, y, |r0, r1, out| {
        portable_rows(kind, weights, r0, r1, rows, acts, out)
    });
}

/// Rows `range` of `y = x · Wᵀ` for one activation row, on the calling thread (for callers
/// that split the rows between their own threads, as a decode step does): `weights` holds
/// all the matrix's rows of `acts.k()` weights, `y` gets `range.len()` values. Same values
/// as [`qmatmul_quantized`] gives for those rows.
pub fn qmatvec_rows(
    kind: QuantKind,
    weights: &[u8],
    acts: &QuantizedActs,
    range: std::ops::Range<usize>,
    y: &mut [f32],
) {
    let k = acts.k;
    let rb = kind.row_bytes(k);
    assert_eq!(acts.m, 1, "one activation row");
    assert_eq!(
        acts.kind,
        Some(kind),
        "activations quantized for another weight kind"
    );
    assert!(range.end * rb <= weights.len(), "rows past the matrix");
    assert_eq!(y.len(), range.len(), "y holds the rows asked for");
    let n = range.len();
    if n == 0 {
        return;
    }
    let w = &weights[range.start * rb..range.end * rb];
    let out = DisjointWrites(y.as_mut_ptr());
    #[cfg(target_arch = "x86_64")]
    {
        if crate::has_avx512_vnni() {
            // SAFETY: the VNNI features are present; `out` is `y`, `n` values, written here only.
            unsafe { vnni::direct_rows::<1>(kind, w, 0, n, n, acts, out) };
            return;
        }
        if Path::Avx2.available() {
            // SAFETY: AVX2, FMA and F16C are present; `out` as above.
            unsafe { avx2::rows(kind, w, 0, n, n, acts, out) };
            return;
        }
    }
    portable_rows(kind, w, 0, n, n, acts, out);
}

/// Activation rows up to which the direct (decode) kernel runs; above, the tiled one.
const DIRECT_MAX_M: usize = 4;

/// Splits the output rows into chunks for rayon; `f(r0, r1, y)` computes rows `r0..r1` of
/// every activation row and writes them through the pointer it gets (row stride `rows`).
fn by_rows(
    rows: usize,
    k: usize,
    m: usize,
    y: &mut [f32],
    f: impl Fn(usize, usize, DisjointWrites) + Sync,
) {
    let out = DisjointWrites(y.as_mut_ptr());
    let threads = rayon::current_num_threads().max(1);
    // Work per output row, in multiply-adds; small products stay on one thread.
    let work = rows * k * m;
    if threads == 1 || work < 1 << 17 {
        f(0, rows, out);
        return;
    }
    let chunk = rows.div_ceil(threads * 4).next_multiple_of(4).max(16);
    (0..rows.div_ceil(chunk)).into_par_iter().for_each(|i| {
        let r0 = i * chunk;
        f(r0, (r0 + chunk).min(rows), out);
    });
}

/// One output value of block-wise `Σ d_w d_x isum + Σ m_w s_x` from row `r` of the weights
/// and row `c` of the activations (portable).
fn portable_dot(kind: QuantKind, wrow: &[u8], acts: &QuantizedActs, c: usize) -> f32 {
    let codes = acts.codes(c);
    let nb = acts.k / BLOCK;
    let mut sum = 0.0f32;
    let mut summs = 0.0f32;
    for b in 0..nb {
        let blk = &wrow[b * kind.block_bytes()..(b + 1) * kind.block_bytes()];
        let xq = &codes[b * BLOCK..(b + 1) * BLOCK];
        let dx = acts.d[c * nb + b];
        let isum: i32 = match kind {
            QuantKind::Q4_1 => {
                summs += half_at(blk, 2) * acts.s[c * nb + b];
                (0..16)
                    .map(|j| {
                        let q = blk[4 + j];
                        (q & 0x0f) as i32 * xq[j] as i32 + (q >> 4) as i32 * xq[j + 16] as i32
                    })
                    .sum()
            }
            QuantKind::Q8_0 => blk[2..]
                .iter()
                .zip(xq)
                .map(|(&w, &x)| w as i8 as i32 * x as i32)
                .sum(),
        };
        sum += half_at(blk, 0) * dx * isum as f32;
    }
    sum + summs
}

fn portable_rows(
    kind: QuantKind,
    weights: &[u8],
    r0: usize,
    r1: usize,
    rows: usize,
    acts: &QuantizedActs,
    out: DisjointWrites,
) {
    let rb = kind.row_bytes(acts.k);
    for r in r0..r1 {
        let wrow = &weights[r * rb..(r + 1) * rb];
        for c in 0..acts.m {
            let v = portable_dot(kind, wrow, acts, c);
            // SAFETY: `out` is the caller's `m × rows` output; this task alone writes rows
            // r0..r1 of it (by_rows hands out disjoint ranges).
            unsafe { *out.get().add(c * rows + r) = v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// F16C conversion of the little-endian half `[lo, hi]`.
    #[inline(always)]
    unsafe fn half(lo: u8, hi: u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            u16::from_le_bytes([lo, hi]) as i32,
        )))
    }

    /// Rows `r0..r1` of `y = x · Wᵀ`, one dot product at a time, as llama.cpp's AVX2 code:
    /// 8 lanes per block, `vpmaddubsw` + `vpmaddwd` for the integer part.
    ///
    /// # Safety
    /// Needs AVX2, FMA and F16C; `out` as for `portable_rows`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows(
        kind: QuantKind,
        weights: &[u8],
        r0: usize,
        r1: usize,
        rows: usize,
        acts: &QuantizedActs,
        out: DisjointWrites,
    ) {
        let k = acts.k;
        let nb = k / BLOCK;
        let bb = kind.block_bytes();
        let rb = kind.row_bytes(k);
        let low = _mm256_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        for r in r0..r1 {
            let wrow = &weights[r * rb..(r + 1) * rb];
            for c in 0..acts.m {
                let codes = acts.codes(c);
                let mut acc = _mm256_setzero_ps();
                let mut summs = 0.0f32;
                for b in 0..nb {
                    let blk = &wrow[b * bb..(b + 1) * bb];
                    // SAFETY: `blk` has `bb` bytes and `codes` k ≥ 32(b+1) codes, so every
                    // load below stays inside them.
                    let x = _mm256_loadu_si256(codes.as_ptr().add(b * BLOCK) as *const __m256i);
                    let dw = half(blk[0], blk[1]);
                    let dot16 = match kind {
                        QuantKind::Q4_1 => {
                            summs += half(blk[2], blk[3]) * acts.s[c * nb + b];
                            let q = _mm_loadu_si128(blk.as_ptr().add(4) as *const __m128i);
                            let w =
                                _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low);
                            _mm256_maddubs_epi16(w, x)
                        }
                        QuantKind::Q8_0 => {
                            let w = _mm256_loadu_si256(blk.as_ptr().add(2) as *const __m256i);
                            _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
                        }
                    };
                    let isum = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, ones));
                    let scale = _mm256_set1_ps(dw * acts.d[c * nb + b]);
                    acc = _mm256_fmadd_ps(scale, isum, acc);
                }
                let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_add_ss(h, _mm_movehdup_ps(h));
                // SAFETY: as in `portable_rows`.
                *out.get().add(c * rows + r) = _mm_cvtss_f32(h) + summs;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // indexed loops over register arrays read best here
mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// [`super::quantize_blocks`] with each block's codes, scale and sum from two vectors:
    /// the same arithmetic (max of |x|, `x · 127/amax` rounded half to even), so the same
    /// bytes, at a fraction of the scalar loop's cost (a sixth of a prefill's time).
    ///
    /// # Safety
    /// AVX-512 F is present.
    #[target_feature(enable = "avx512f,avx512vl,fma")]
    pub(super) unsafe fn quantize_blocks(
        kind: QuantKind,
        x: &[f32],
        qs: &mut [i8],
        d: &mut [f32],
        s: &mut [f32],
        corr: &mut [i32],
    ) {
        super::blocks_with(kind, x, qs, d, s, corr, |xb, qb| quantize_block(xb, qb));
    }

    /// One block: [`super::quantize_block`]'s arithmetic on two vectors.
    #[target_feature(enable = "avx512f,avx512vl,fma")]
    fn quantize_block(xb: &[f32], qb: &mut [i8]) -> (f32, f32, i32) {
        assert!(xb.len() == BLOCK && qb.len() == BLOCK);
        // SAFETY: 32 values in, 32 codes out (checked above).
        unsafe {
            let lo = _mm512_loadu_ps(xb.as_ptr());
            let hi = _mm512_loadu_ps(xb.as_ptr().add(16));
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
            let d_exact = amax / 127.0;
            let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let code = |v: __m512| {
                _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(v, id)))
            };
            let (qlo, qhi) = (code(lo), code(hi));
            let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
            let out = qb.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(out, _mm512_cvtepi32_epi8(qlo));
            _mm_storeu_si128(out.add(1), _mm512_cvtepi32_epi8(qhi));
            (d_exact, f16_to_f32(f32_to_f16(d_exact)), sum)
        }
    }

    /// How many rows ahead the direct kernel prefetches.
    const PREFETCH_ROWS: usize = 8;
    /// Rows of the weight tile the tiled kernel unpacks at a time.
    const TR: usize = 4;
    /// Activation rows per micro-kernel call.
    const TC: usize = 4;

    /// Few activation rows (decode): every weight block is read from the GGUF bytes,
    /// unpacked once and used against all `m ≤ 4` activation rows.
    pub(super) fn direct(
        kind: QuantKind,
        weights: &[u8],
        rows: usize,
        acts: &QuantizedActs,
        y: &mut [f32],
    ) {
        let m = acts.m;
        by_rows(rows, acts.k, m, y, |r0, r1, out| {
            // SAFETY: the VNNI features are present (checked by the caller); `out` is the
            // `m × rows` output of which this task alone writes rows r0..r1.
            unsafe {
                match m {
                    1 => direct_rows::<1>(kind, weights, r0, r1, rows, acts, out),
                    2 => direct_rows::<2>(kind, weights, r0, r1, rows, acts, out),
                    3 => direct_rows::<3>(kind, weights, r0, r1, rows, acts, out),
                    _ => direct_rows::<4>(kind, weights, r0, r1, rows, acts, out),
                }
            }
        });
    }

    /// The 16 block scales (`d`, and `m` for Q4_1) of blocks `b0..b0+n` of a row, from the
    /// f16 fields of the GGUF blocks (one gather; lanes past `n` are zero).
    ///
    /// # Safety
    /// VNNI features; `row` points to a whole row holding blocks `b0..b0+n`.
    #[inline(always)]
    unsafe fn block_scales(kind: QuantKind, row: *const u8, n: usize) -> (__m512, __m512) {
        let mask: __mmask16 = if n >= 16 { 0xffff } else { (1u16 << n) - 1 };
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let g = match kind {
            // 4 bytes `d, m` at 20·i.
            QuantKind::Q4_1 => _mm512_mask_i32gather_epi32::<4>(
                _mm512_setzero_si512(),
                mask,
                _mm512_mullo_epi32(lanes, _mm512_set1_epi32(5)),
                row as *const i32,
            ),
            // 4 bytes `d, qs[0..2]` at 34·i.
            QuantKind::Q8_0 => _mm512_mask_i32gather_epi32::<2>(
                _mm512_setzero_si512(),
                mask,
                _mm512_mullo_epi32(lanes, _mm512_set1_epi32(17)),
                row as *const i32,
            ),
        };
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        let m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(g)));
        (d, m)
    }

    /// Blocks `b` and `b + 1` (only `b` when `!two`) of a weight row as 64 unsigned bytes in
    /// element order: Q4_1 nibbles, or Q8_0 codes offset by 128.
    ///
    /// # Safety
    /// VNNI features; `row` points to a whole row holding the blocks read.
    #[inline(always)]
    unsafe fn unpack_pair(kind: QuantKind, row: *const u8, b: usize, two: bool) -> __m512i {
        match kind {
            QuantKind::Q4_1 => {
                let p0 = row.add(b * 20 + 4) as *const __m128i;
                let lo = _mm512_maskz_broadcast_i32x4(0x00ff, _mm_loadu_si128(p0));
                let both = if two {
                    let p1 = row.add(b * 20 + 24) as *const __m128i;
                    _mm512_mask_broadcast_i32x4(lo, 0xff00, _mm_loadu_si128(p1))
                } else {
                    lo
                };
                let shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
                _mm512_and_si512(_mm512_srlv_epi64(both, shifts), _mm512_set1_epi8(0x0f))
            }
            QuantKind::Q8_0 => {
                let p0 = row.add(b * 34 + 2) as *const __m256i;
                let lo = _mm512_castsi256_si512(_mm256_loadu_si256(p0));
                let both = if two {
                    let p1 = row.add(b * 34 + 36) as *const __m256i;
                    _mm512_inserti64x4::<1>(lo, _mm256_loadu_si256(p1))
                } else {
                    _mm512_zextsi256_si512(_mm512_castsi512_si256(lo))
                };
                let off = if two {
                    _mm512_set1_epi8(-128)
                } else {
                    _mm512_maskz_set1_epi8(0xffff_ffff, -128)
                };
                _mm512_xor_si512(both, off)
            }
        }
    }

    /// # Safety
    /// Needs AVX-512 F/BW/VL/VNNI and F16C; `out` as for `portable_rows`; `acts.m == C`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    pub(super) unsafe fn direct_rows<const C: usize>(
        kind: QuantKind,
        weights: &[u8],
        r0: usize,
        r1: usize,
        rows: usize,
        acts: &QuantizedActs,
        out: DisjointWrites,
    ) {
        let k = acts.k;
        let nb = k / BLOCK;
        let rb = kind.row_bytes(k);
        let signed = kind == QuantKind::Q8_0;
        let pair_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
        for r in r0..r1 {
            let row = weights.as_ptr().add(r * rb);
            // Decode streams the weights once: ask for a row a few ahead, line by line.
            if r + PREFETCH_ROWS < r1 {
                let ahead = row.add(PREFETCH_ROWS * rb);
                for line in (0..rb).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.add(line) as *const i8);
                }
            }
            let mut acc = [_mm512_setzero_ps(); C];
            let mut g = 0;
            while g < nb {
                let n = (nb - g).min(16);
                let mask: __mmask16 = if n >= 16 { 0xffff } else { (1u16 << n) - 1 };
                let (dw, _) = block_scales(kind, row.add(g * kind.block_bytes()), n);
                let mut sd = [_mm512_setzero_ps(); C];
                for c in 0..C {
                    let dx = _mm512_maskz_loadu_ps(mask, acts.d.as_ptr().add(c * nb + g));
                    sd[c] = _mm512_mul_ps(dw, dx);
                }
                let mut p = 0;
                while p < n {
                    let b = g + p;
                    let two = p + 1 < n;
                    let w = unpack_pair(kind, row, b, two);
                    let idx = _mm512_add_epi32(pair_lanes, _mm512_set1_epi32(p as i32));
                    for c in 0..C {
                        let xp = acts.qs.as_ptr().add(c * k + b * BLOCK);
                        let xmask: __mmask64 = if two { u64::MAX } else { 0xffff_ffff };
                        let x = _mm512_maskz_loadu_epi8(xmask, xp);
                        let init = if signed {
                            let cp = acts.corr.as_ptr().add((c * nb + b) * 8);
                            _mm512_maskz_loadu_epi32(if two { 0xffff } else { 0x00ff }, cp)
                        } else {
                            _mm512_setzero_si512()
                        };
                        let dot = _mm512_dpbusd_epi32(init, w, x);
                        let scale = _mm512_permutexvar_ps(idx, sd[c]);
                        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[c]);
                    }
                    p += 2;
                }
                g += n;
            }
            // Q4_1's min terms after every dot product, into the same lanes, 16 blocks at a
            // time: the order the tiled kernel adds them in, so a decode step's logits equal
            // the prefill's bit for bit (with activations quantized, a last-bit difference
            // flips codes downstream: 0.5 logits apart on SmolLM2 before this).
            if !signed {
                let mut g = 0;
                while g < nb {
                    let n = (nb - g).min(16);
                    let mask: __mmask16 = if n >= 16 { 0xffff } else { (1u16 << n) - 1 };
                    let (_, mw) = block_scales(kind, row.add(g * kind.block_bytes()), n);
                    for c in 0..C {
                        let sx = _mm512_maskz_loadu_ps(mask, acts.s.as_ptr().add(c * nb + g));
                        acc[c] = _mm512_fmadd_ps(mw, sx, acc[c]);
                    }
                    g += n;
                }
            }
            for c in 0..C {
                // SAFETY: as in `portable_rows`.
                *out.get().add(c * rows + r) = _mm512_reduce_add_ps(acc[c]);
            }
        }
    }

    /// Activations padded and laid out for the tiled kernel: per row, `nbp` (even) blocks of
    /// codes, scales repeated over the 8 lanes each block's dot product occupies, the `s`
    /// values padded to a multiple of 16, and (Q8_0) the correction lanes.
    struct Packed {
        nbp: usize,
        nbs: usize,
        qs: Vec<i8>,
        d8: Vec<f32>,
        s: Vec<f32>,
        corr: Vec<i32>,
    }

    fn pack_acts(kind: QuantKind, acts: &QuantizedActs) -> Packed {
        let (m, k) = (acts.m, acts.k);
        let nb = k / BLOCK;
        let nbp = nb.next_multiple_of(2);
        let nbs = nb.next_multiple_of(16);
        let mut p = Packed {
            nbp,
            nbs,
            qs: vec![0; m * nbp * BLOCK],
            d8: vec![0.0; m * nbp * 8],
            s: vec![0.0; m * nbs],
            corr: vec![
                0;
                if kind == QuantKind::Q8_0 {
                    m * nbp * 8
                } else {
                    0
                }
            ],
        };
        for c in 0..m {
            p.qs[c * nbp * BLOCK..c * nbp * BLOCK + k].copy_from_slice(acts.codes(c));
            for b in 0..nb {
                p.d8[(c * nbp + b) * 8..(c * nbp + b + 1) * 8].fill(acts.d[c * nb + b]);
            }
            if kind == QuantKind::Q4_1 {
                p.s[c * nbs..c * nbs + nb].copy_from_slice(&acts.s[c * nb..(c + 1) * nb]);
            } else {
                p.corr[c * nbp * 8..c * nbp * 8 + nb * 8]
                    .copy_from_slice(&acts.corr[c * nb * 8..(c + 1) * nb * 8]);
            }
        }
        p
    }

    /// Many activation rows (prefill): each task unpacks 4 weight rows at a time into a
    /// buffer (codes, scales repeated over 8 lanes, mins) and runs them against all
    /// activation rows, 4 at a time.
    pub(super) fn tiled(
        kind: QuantKind,
        weights: &[u8],
        rows: usize,
        acts: &QuantizedActs,
        y: &mut [f32],
    ) {
        let packed = pack_acts(kind, acts);
        by_rows(rows, acts.k, acts.m, y, |r0, r1, out| {
            // SAFETY: the VNNI features are present (checked by the caller); `out` is the
            // `m × rows` output of which this task alone writes rows r0..r1.
            unsafe { tiled_rows(kind, weights, r0, r1, rows, acts, &packed, out) }
        });
    }

    /// # Safety
    /// Needs AVX-512 F/BW/VL/VNNI and F16C; `out` as for `portable_rows`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
    unsafe fn tiled_rows(
        kind: QuantKind,
        weights: &[u8],
        r0: usize,
        r1: usize,
        rows: usize,
        acts: &QuantizedActs,
        packed: &Packed,
        out: DisjointWrites,
    ) {
        let (m, k) = (acts.m, acts.k);
        let nb = k / BLOCK;
        let (nbp, nbs) = (packed.nbp, packed.nbs);
        let rb = kind.row_bytes(k);
        let mut wq = vec![0u8; TR * nbp * BLOCK];
        let mut wd8 = vec![0.0f32; TR * nbp * 8];
        let mut wm = vec![0.0f32; TR * nbs];
        let mut r = r0;
        while r < r1 {
            let nr = (r1 - r).min(TR);
            // Unpack rows r..r+nr; the rest of the tile stays zero (or stale: never written out).
            for t in 0..nr {
                let row = weights.as_ptr().add((r + t) * rb);
                let mut g = 0;
                while g < nb {
                    let n = (nb - g).min(16);
                    let (dw, mw) = block_scales(kind, row.add(g * kind.block_bytes()), n);
                    let mut ds = [0.0f32; 16];
                    _mm512_storeu_ps(ds.as_mut_ptr(), dw);
                    for (i, &d) in ds.iter().take(n).enumerate() {
                        let at = (t * nbp + g + i) * 8;
                        _mm256_storeu_ps(wd8.as_mut_ptr().add(at), _mm256_set1_ps(d));
                    }
                    if kind == QuantKind::Q4_1 {
                        _mm512_storeu_ps(wm.as_mut_ptr().add(t * nbs + g), mw);
                    }
                    g += 16;
                }
                let mut b = 0;
                while b < nb {
                    let two = b + 1 < nb;
                    let w = unpack_pair(kind, row, b, two);
                    _mm512_storeu_si512(
                        wq.as_mut_ptr().add((t * nbp + b) * BLOCK) as *mut __m512i,
                        w,
                    );
                    b += 2;
                }
            }
            let mut c = 0;
            while c < m {
                let nc = (m - c).min(TC);
                let mut res = [[0.0f32; TC]; TR];
                match nc {
                    1 => micro::<1>(kind, &wq, &wd8, &wm, packed, c, &mut res),
                    2 => micro::<2>(kind, &wq, &wd8, &wm, packed, c, &mut res),
                    3 => micro::<3>(kind, &wq, &wd8, &wm, packed, c, &mut res),
                    _ => micro::<4>(kind, &wq, &wd8, &wm, packed, c, &mut res),
                }
                for (t, res) in res.iter().enumerate().take(nr) {
                    for (j, &v) in res.iter().enumerate().take(nc) {
                        // SAFETY: as in `portable_rows`.
                        *out.get().add((c + j) * rows + r + t) = v;
                    }
                }
                c += nc;
            }
            r += nr;
        }
    }

    /// `TR × C` dot products of the unpacked weight tile with activation rows `c0..c0+C`.
    ///
    /// # Safety
    /// VNNI features; the buffers are laid out as `tiled_rows` and `pack_acts` make them.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro<const C: usize>(
        kind: QuantKind,
        wq: &[u8],
        wd8: &[f32],
        wm: &[f32],
        packed: &Packed,
        c0: usize,
        res: &mut [[f32; TC]; TR],
    ) {
        let (nbp, nbs) = (packed.nbp, packed.nbs);
        let signed = kind == QuantKind::Q8_0;
        let mut acc = [[_mm512_setzero_ps(); C]; TR];
        let wq = wq.as_ptr();
        let wd8 = wd8.as_ptr();
        let xq = packed.qs.as_ptr().add(c0 * nbp * BLOCK);
        let xd8 = packed.d8.as_ptr().add(c0 * nbp * 8);
        let xcorr = packed
            .corr
            .as_ptr()
            .add(if signed { c0 * nbp * 8 } else { 0 });
        let mut b = 0;
        while b < nbp {
            let mut w = [_mm512_setzero_si512(); TR];
            let mut sw = [_mm512_setzero_ps(); TR];
            for t in 0..TR {
                w[t] = _mm512_loadu_si512(wq.add((t * nbp + b) * BLOCK) as *const __m512i);
                sw[t] = _mm512_loadu_ps(wd8.add((t * nbp + b) * 8));
            }
            for c in 0..C {
                let x = _mm512_loadu_si512(xq.add((c * nbp + b) * BLOCK) as *const __m512i);
                let sx = _mm512_loadu_ps(xd8.add((c * nbp + b) * 8));
                let init = if signed {
                    _mm512_loadu_si512(xcorr.add((c * nbp + b) * 8) as *const __m512i)
                } else {
                    _mm512_setzero_si512()
                };
                for t in 0..TR {
                    let dot = _mm512_dpbusd_epi32(init, w[t], x);
                    acc[t][c] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(dot),
                        _mm512_mul_ps(sw[t], sx),
                        acc[t][c],
                    );
                }
            }
            b += 2;
        }
        if !signed {
            let mut g = 0;
            while g < nbs {
                for c in 0..C {
                    let sx = _mm512_loadu_ps(packed.s.as_ptr().add((c0 + c) * nbs + g));
                    for t in 0..TR {
                        let mw = _mm512_loadu_ps(wm.as_ptr().add(t * nbs + g));
                        acc[t][c] = _mm512_fmadd_ps(mw, sx, acc[t][c]);
                    }
                }
                g += 16;
            }
        }
        for t in 0..TR {
            for c in 0..C {
                res[t][c] = _mm512_reduce_add_ps(acc[t][c]);
            }
        }
    }
}

/// Scalar references, for tests here and in the main crate.
pub mod reference {
    use super::*;

    /// One block of activations quantized as llama.cpp's x86 code does; returns the codes,
    /// the f16 bits of `d` and (Q8_1) of `s = d·Σcodes`.
    pub fn quantize_block(x: &[f32]) -> ([i8; 32], u16, u16) {
        assert_eq!(x.len(), BLOCK);
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut qs = [0i8; 32];
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(x) {
            let r = (v * id).round_ties_even() as i32;
            sum += r;
            *q = r as i8;
        }
        (qs, f32_to_f16(d), f32_to_f16(d * sum as f32))
    }

    /// ggml's block layout of `x` (`m × k`) quantized against weights of `kind`.
    pub fn quantize_activations(kind: QuantKind, x: &[f32], k: usize) -> Vec<u8> {
        assert!(k % BLOCK == 0 && x.len() % k == 0);
        let mut out = Vec::new();
        for xb in x.chunks_exact(BLOCK) {
            let (qs, d, s) = quantize_block(xb);
            out.extend_from_slice(&d.to_le_bytes());
            if kind == QuantKind::Q4_1 {
                out.extend_from_slice(&s.to_le_bytes());
            }
            out.extend(qs.iter().map(|&q| q as u8));
        }
        out
    }

    /// The exact integer dot product of weight block `w` (GGUF bytes of `kind`) with 32
    /// activation codes.
    pub fn block_isum(kind: QuantKind, w: &[u8], x: &[i8]) -> i32 {
        match kind {
            QuantKind::Q4_1 => (0..16)
                .map(|j| {
                    (w[4 + j] & 15) as i32 * x[j] as i32 + (w[4 + j] >> 4) as i32 * x[j + 16] as i32
                })
                .sum(),
            QuantKind::Q8_0 => (0..32).map(|j| w[2 + j] as i8 as i32 * x[j] as i32).sum(),
        }
    }

    /// `y = x · Wᵀ` as llama.cpp defines it on quantized activations, accumulated in f64:
    /// `Σ_b d_w d_x isum_b (+ Σ_b m_w s_x for Q4_1)`. Also returns, per output, the sum of
    /// the absolute values of those terms (the scale for a tolerance on float reordering).
    pub fn qmatmul(
        kind: QuantKind,
        weights: &[u8],
        rows: usize,
        k: usize,
        x: &[f32],
        m: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let nb = k / BLOCK;
        let bb = kind.block_bytes();
        let ab = kind.activation_block_bytes();
        let xq = quantize_activations(kind, x, k);
        let mut y = vec![0.0f32; m * rows];
        let mut mag = vec![0.0f32; m * rows];
        for c in 0..m {
            for r in 0..rows {
                let (mut acc, mut abs) = (0.0f64, 0.0f64);
                for b in 0..nb {
                    let w = &weights[(r * nb + b) * bb..(r * nb + b + 1) * bb];
                    let a = &xq[(c * nb + b) * ab..(c * nb + b + 1) * ab];
                    let codes: Vec<i8> = a[ab - 32..].iter().map(|&q| q as i8).collect();
                    let isum = block_isum(kind, w, &codes) as f64;
                    let t = half_at(w, 0) as f64 * half_at(a, 0) as f64 * isum;
                    acc += t;
                    abs += t.abs();
                    if kind == QuantKind::Q4_1 {
                        let t = half_at(w, 2) as f64 * half_at(a, 2) as f64;
                        acc += t;
                        abs += t.abs();
                    }
                }
                y[c * rows + r] = acc as f32;
                mag[c * rows + r] = abs as f32;
            }
        }
        (y, mag)
    }

    /// `y = x · Wᵀ` in f64 with the weights dequantized and `x` unquantized: the product the
    /// quantized one approximates.
    pub fn matmul_dequantized(
        kind: QuantKind,
        weights: &[u8],
        rows: usize,
        k: usize,
        x: &[f32],
        m: usize,
    ) -> Vec<f32> {
        let rb = kind.row_bytes(k);
        let mut w = vec![0.0f32; k];
        let mut y = vec![0.0f32; m * rows];
        for r in 0..rows {
            dequantize_row(kind, &weights[r * rb..(r + 1) * rb], &mut w);
            for c in 0..m {
                let xr = &x[c * k..(c + 1) * k];
                y[c * rows + r] = xr
                    .iter()
                    .zip(&w)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>() as f32;
            }
        }
        y
    }
}

/// Random GGUF-layout weights of `kind` (`rows × k`) for tests and benches: scales near
/// `scale / 8` (Q4_1) or `scale / 127` (Q8_0), Q4_1 mins near `-scale`, seeded codes.
pub fn test_weights(kind: QuantKind, rows: usize, k: usize, seed: u64, scale: f32) -> Vec<u8> {
    let nb = rows * k / BLOCK;
    let scales = crate::test_values(nb * 2, seed, 1.0);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let mut out = Vec::with_capacity(nb * kind.block_bytes());
    for b in 0..nb {
        let jitter = 1.0 + 0.5 * scales[2 * b];
        match kind {
            QuantKind::Q4_1 => {
                out.extend_from_slice(&f32_to_f16(scale / 8.0 * jitter).to_le_bytes());
                out.extend_from_slice(
                    &f32_to_f16(-scale * (1.0 + 0.2 * scales[2 * b + 1])).to_le_bytes(),
                );
                out.extend((0..16).map(|_| next()));
            }
            QuantKind::Q8_0 => {
                out.extend_from_slice(&f32_to_f16(scale / 127.0 * jitter).to_le_bytes());
                out.extend((0..32).map(|_| next()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    const PATHS: [Path; 5] = [
        Path::Auto,
        Path::VnniDirect,
        Path::VnniTiled,
        Path::Avx2,
        Path::Portable,
    ];

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// One activation row gives bit for bit what the same row gives inside a batch: the
    /// decode kernels (direct, and the row split a decode step uses) and the prefill's tiled
    /// kernel sum in the same order. With quantized activations a last-bit difference flips
    /// codes in the next product and grows layer by layer.
    #[test]
    fn one_row_equals_the_same_row_in_a_batch() {
        if !crate::has_avx512_vnni() {
            eprintln!("skipped: no AVX-512 VNNI here (neither kernel runs)");
            return;
        }
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            for (rows, k) in [(96usize, 576usize), (37, 1536), (5, 32)] {
                let w = test_weights(kind, rows, k, 5, 1.0);
                let x1 = test_values(k, 9, 1.0);
                let x7: Vec<f32> = (0..7).flat_map(|_| x1.iter().copied()).collect();
                let (a1, a7) = (
                    QuantizedActs::new(kind, &x1, k),
                    QuantizedActs::new(kind, &x7, k),
                );
                let mut direct = vec![0.0; rows];
                let mut tiled = vec![0.0; 7 * rows];
                let mut split = vec![0.0; rows];
                qmatmul_path(Path::VnniDirect, kind, &w, rows, &a1, &mut direct);
                qmatmul_path(Path::VnniTiled, kind, &w, rows, &a7, &mut tiled);
                let mid = rows / 2;
                qmatvec_rows(kind, &w, &a1, 0..mid, &mut split[..mid]);
                qmatvec_rows(kind, &w, &a1, mid..rows, &mut split[mid..]);
                for (r, want) in direct.iter().enumerate() {
                    for c in 0..7 {
                        assert_eq!(
                            tiled[c * rows + r].to_bits(),
                            want.to_bits(),
                            "{kind:?} {rows}x{k}"
                        );
                    }
                    assert_eq!(split[r].to_bits(), want.to_bits(), "{kind:?} {rows}x{k}");
                }
            }
        }
    }

    #[test]
    fn f16_conversions_match_f16c() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("f16c") {
            #[target_feature(enable = "f16c")]
            unsafe fn hw_to_f32(h: u16) -> f32 {
                use std::arch::x86_64::*;
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
            }
            #[target_feature(enable = "f16c")]
            unsafe fn hw_to_f16(x: f32) -> u16 {
                use std::arch::x86_64::*;
                _mm_extract_epi16::<0>(_mm_cvtps_ph::<0>(_mm_set_ss(x))) as u16
            }
            for h in 0..=u16::MAX {
                // SAFETY: F16C is present.
                let want = unsafe { hw_to_f32(h) };
                let got = f16_to_f32(h);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{h:#x}"
                );
            }
            let mut state = 12345u64;
            for i in 0..2_000_000u32 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Mostly the f16 range and its neighbourhood, plus every kind of bit pattern.
                let bits = if i % 2 == 0 {
                    (state as u32 & 0x8fff_ffff) | 0x3000_0000
                } else {
                    state as u32
                };
                let x = f32::from_bits(bits);
                // SAFETY: F16C is present.
                let want = unsafe { hw_to_f16(x) };
                let got = f32_to_f16(x);
                assert!(
                    got == want || (x.is_nan() && got & 0x7e00 == 0x7e00),
                    "{x:e}: {got:#x} vs {want:#x}"
                );
            }
            return;
        }
        // Without F16C: the exactly representable values round-trip.
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if !x.is_nan() {
                assert_eq!(f32_to_f16(x), h);
            }
        }
    }

    #[test]
    fn dequantizes_hand_built_blocks() {
        // Q4_1: d = 0.5, m = -2; nibbles j: low = j, high = 15 - j.
        let mut q4 = Vec::new();
        q4.extend_from_slice(&f32_to_f16(0.5).to_le_bytes());
        q4.extend_from_slice(&f32_to_f16(-2.0).to_le_bytes());
        q4.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        // Second block: d = 0.25, m = 1, all nibbles 0x1 / 0xf.
        q4.extend_from_slice(&f32_to_f16(0.25).to_le_bytes());
        q4.extend_from_slice(&f32_to_f16(1.0).to_le_bytes());
        q4.extend([0xf1u8; 16]);
        let mut out = vec![0.0; 64];
        dequantize_row(QuantKind::Q4_1, &q4, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], j as f32 * 0.5 - 2.0);
            assert_eq!(out[16 + j], (15 - j) as f32 * 0.5 - 2.0);
            assert_eq!(out[32 + j], 1.25);
            assert_eq!(out[48 + j], 15.0 * 0.25 + 1.0);
        }
        // Q8_0: d = 0.125, codes -16..16.
        let mut q8 = Vec::new();
        q8.extend_from_slice(&f32_to_f16(0.125).to_le_bytes());
        q8.extend((0..32i32).map(|j| (j - 16) as i8 as u8));
        let mut out = vec![0.0; 32];
        dequantize_row(QuantKind::Q8_0, &q8, &mut out);
        for (j, &v) in out.iter().enumerate() {
            assert_eq!(v, (j as f32 - 16.0) * 0.125);
        }
    }

    #[test]
    fn vector_and_scalar_activation_quantizers_agree() {
        // The AVX-512 quantizer (taken where available) against the loop other CPUs run.
        let k = 32 * 7;
        let mut x = test_values(9 * k, 12, 4.0);
        x[..32].fill(0.0);
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            let got = QuantizedActs::new(kind, &x, k);
            let blocks = x.len() / BLOCK;
            let (mut qs, mut d) = (vec![0i8; x.len()], vec![0.0f32; blocks]);
            let mut s = vec![0.0f32; if kind == QuantKind::Q4_1 { blocks } else { 0 }];
            let mut corr = vec![
                0i32;
                if kind == QuantKind::Q8_0 {
                    blocks * 8
                } else {
                    0
                }
            ];
            quantize_blocks(kind, &x, &mut qs, &mut d, &mut s, &mut corr);
            assert_eq!(
                (got.qs, got.d, got.s, got.corr),
                (qs, d, s, corr),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn quantized_activations_match_reference_bytes() {
        let k = 96;
        let mut x = test_values(5 * k, 11, 3.0);
        x[32..64].fill(0.0); // an all-zero block: d = 0, codes 0
        for (j, v) in x[64..96].iter_mut().enumerate() {
            *v = (j as f32 - 16.0) * 0.5; // amax 8: ties at x·127/8 = n + 0.5 exist?
        }
        x[100] = 127.0; // a block whose codes are the values
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            let want = reference::quantize_activations(kind, &x, k);
            let mut got = Vec::new();
            quantize_activations(kind, &x, k, &mut got);
            assert_eq!(got, want, "{kind:?}");
            assert_eq!(got.len(), x.len() / 32 * kind.activation_block_bytes());
        }
        // Round half to even, as `vroundps` with mode 0: 0.5·(127/127) → 0, 1.5 → 2, 2.5 → 2.
        let mut x = vec![0.0f32; 32];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = 1.5;
        x[3] = 2.5;
        x[4] = -0.5;
        let (qs, d, s) = reference::quantize_block(&x);
        assert_eq!(&qs[..5], &[127, 0, 2, 2, 0]);
        assert_eq!(f16_to_f32(d), 1.0);
        assert_eq!(f16_to_f32(s), 131.0);
    }

    fn check(kind: QuantKind, rows: usize, k: usize, m: usize, seed: u64) {
        let w = test_weights(kind, rows, k, seed, 0.5);
        let x = test_values(m * k, seed + 1, 2.0);
        let (want, mag) = reference::qmatmul(kind, &w, rows, k, &x, m);
        let acts = QuantizedActs::new(kind, &x, k);
        for threads in [1, 2] {
            for path in PATHS.into_iter().filter(|p| p.available()) {
                let mut y = vec![f32::NAN; m * rows];
                pool(threads).install(|| qmatmul_path(path, kind, &w, rows, &acts, &mut y));
                for (i, ((&g, &e), &s)) in y.iter().zip(&want).zip(&mag).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * s + 1e-30,
                        "{kind:?} {path:?} {threads}t rows {rows} k {k} m {m} at {i}: {g} vs {e} (scale {s})"
                    );
                }
            }
        }
    }

    #[test]
    fn qmatmul_matches_reference_on_odd_shapes() {
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            for &(rows, k) in &[
                (1usize, 32usize),
                (7, 96),
                (576, 576),
                (1000, 160),
                (33, 1536),
            ] {
                for m in [1usize, 3, 17] {
                    check(kind, rows, k, m, (rows * 31 + k + m) as u64);
                }
            }
            check(kind, 70, 576, 130, 9);
            check(kind, 5, 64, 4, 10);
            check(kind, 9, 544, 5, 12);
        }
    }

    #[test]
    fn row_ranges_give_the_full_products_values() {
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            for &(rows, k) in &[
                (1usize, 32usize),
                (7, 96),
                (70, 576),
                (33, 1536),
                (1000, 160),
            ] {
                let seed = (rows + k) as u64;
                let w = test_weights(kind, rows, k, seed, 0.5);
                let x = test_values(k, seed + 1, 2.0);
                let acts = QuantizedActs::new(kind, &x, k);
                let mut want = vec![f32::NAN; rows];
                qmatmul_quantized(kind, &w, rows, &acts, &mut want);
                let (ref_y, mag) = reference::qmatmul(kind, &w, rows, k, &x, 1);
                for parts in [1usize, 2, 3] {
                    let mut y = vec![f32::NAN; rows];
                    let mut at = 0;
                    for p in 0..parts {
                        let end = rows * (p + 1) / parts;
                        qmatvec_rows(kind, &w, &acts, at..end, &mut y[at..end]);
                        at = end;
                    }
                    for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                        assert_eq!(g.to_bits(), e.to_bits(), "{kind:?} {rows}x{k} at {i}");
                        let tol = 1e-5 * mag[i] + 1e-30;
                        assert!((g - ref_y[i]).abs() <= tol, "{kind:?} {rows}x{k} at {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn integer_part_is_exact() {
        // Weights with d = 1 (and m = 0), activations with a ±127 in every block, so that
        // d_x = 1 and the codes are the values: every path must give the integer sums exactly.
        let (rows, k, m) = (37, 352, 6);
        let nb = k / 32;
        let xv = test_values(m * k, 3, 127.0);
        let mut x: Vec<f32> = xv.iter().map(|v| v.round()).collect();
        for b in 0..m * nb {
            x[b * 32 + b % 32] = if b % 2 == 0 { 127.0 } else { -127.0 };
        }
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            let mut w = test_weights(kind, rows, k, 4, 1.0);
            for b in 0..rows * nb {
                let at = b * kind.block_bytes();
                w[at..at + 2].copy_from_slice(&f32_to_f16(1.0).to_le_bytes());
                if kind == QuantKind::Q4_1 {
                    w[at + 2..at + 4].copy_from_slice(&0u16.to_le_bytes());
                }
            }
            let acts = QuantizedActs::new(kind, &x, k);
            for c in 0..m {
                assert_eq!(
                    acts.codes(c).iter().map(|&q| q as f32).collect::<Vec<_>>(),
                    &x[c * k..(c + 1) * k]
                );
            }
            let rb = kind.row_bytes(k);
            for path in PATHS.into_iter().filter(|p| p.available()) {
                let mut y = vec![f32::NAN; m * rows];
                qmatmul_path(path, kind, &w, rows, &acts, &mut y);
                for c in 0..m {
                    for r in 0..rows {
                        let want: i32 = (0..nb)
                            .map(|b| {
                                let blk =
                                    &w[r * rb + b * kind.block_bytes()..][..kind.block_bytes()];
                                reference::block_isum(
                                    kind,
                                    blk,
                                    &acts.codes(c)[b * 32..b * 32 + 32],
                                )
                            })
                            .sum();
                        assert_eq!(y[c * rows + r], want as f32, "{kind:?} {path:?} ({c}, {r})");
                    }
                }
            }
        }
    }

    #[test]
    fn approximates_the_float_product() {
        for kind in [QuantKind::Q4_1, QuantKind::Q8_0] {
            let (rows, k, m) = (64, 576, 3);
            let w = test_weights(kind, rows, k, 21, 0.5);
            let x = test_values(m * k, 22, 1.0);
            let exact = reference::matmul_dequantized(kind, &w, rows, k, &x, m);
            let mut y = vec![0.0; m * rows];
            qmatmul(kind, &w, rows, k, &x, m, &mut y);
            let err = y
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt();
            let norm = exact.iter().map(|a| a * a).sum::<f32>().sqrt();
            assert!(err <= 0.02 * norm, "{kind:?}: error {err} vs norm {norm}");
        }
    }
}
