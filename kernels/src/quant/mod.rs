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
mod avx2;
#[cfg(target_arch = "x86_64")]
mod vnni;

/// Scalar references, for tests here and in the main crate.
pub mod reference;

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
mod tests;
