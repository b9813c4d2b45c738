//! Block-quantized weights (ggml's Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K) times f32
//! activations.
//!
//! Weights are the raw bytes of a GGUF tensor: row-major `[rows][k]`, each row a sequence of
//! blocks in ggml's layout (see [`QuantKind`]), which every path reads as 32-weight blocks
//! `w_i = scale_i · (code_i − zero) + min` ([`formats`]). Activations are quantized per row
//! and per 32 values to 8 bits the way llama.cpp does on x86 (`d = amax/127`, codes rounded
//! half to even), and the product is computed block by block as llama.cpp does:
//!
//! `Σ_b d_w·d_x·isum_b + Σ_b m_w·s_x`, where `isum_b` is the exact integer dot product of the
//! weight codes (less the zero point) and the activation codes of block `b`, and `s_x` is
//! `f16(d_x · Σ codes)` as in a Q8_1 block. For the 32-weight formats (Q4_1 · Q8_1, Q8_0 · Q8_0,
//! Q4_0 / Q5_0 · Q8_0, Q5_1 · Q8_1) these are exactly llama.cpp's integer parts; the K-quants differ from llama.cpp in quantizing
//! activations per 32 values instead of per 256 (finer, so not bit-comparable).
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

mod formats;
pub use formats::{block32, block_scales, block_scales_with, Block32, QuantKind, BLOCK};

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

/// Dequantizes one row: `bytes` holds `out.len()` weights of `kind`.
pub fn dequantize_row(kind: QuantKind, bytes: &[u8], out: &mut [f32]) {
    assert!(
        out.len() % kind.block_elems() == 0 && bytes.len() == kind.row_bytes(out.len()),
        "{} bytes of {kind:?} do not hold {} weights",
        bytes.len(),
        out.len()
    );
    for (b, out) in out.chunks_exact_mut(BLOCK).enumerate() {
        let block = block32(kind, bytes, b);
        for (i, o) in out.iter_mut().enumerate() {
            *o = block.weight(kind, i);
        }
    }
}

/// Activation rows quantized to 8 bits per block of 32, in the form the kernels read
/// (structure of arrays; [`QuantizedActs::to_ggml_bytes`] gives ggml's block layout). The
/// same quantization serves every weight kind, so one input quantized once feeds all the
/// products that read it.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    m: usize,
    k: usize,
    /// `m × k` codes, in element order.
    qs: Vec<i8>,
    /// `m × k/32` block scales, each already rounded to f16 (as ggml stores them).
    d: Vec<f32>,
    /// `m × k/32` values `d·Σqs`, rounded to f16 (a Q8_1 block's `s`), for the mins.
    s: Vec<f32>,
    /// `m × k/32 × 8` lanes, `−Σ` of each group of 4 codes: times a kind's zero point, the
    /// correction that lets the kernels multiply unsigned codes by signed activations.
    neg_sum4: Vec<i32>,
}

impl QuantizedActs {
    /// Quantizes `x` (`m × k` row-major, `k` a multiple of 32).
    pub fn new(x: &[f32], k: usize) -> Self {
        let mut q = Self::default();
        q.quantize(x, k);
        q
    }

    /// As [`QuantizedActs::new`], reusing this value's buffers.
    pub fn quantize(&mut self, x: &[f32], k: usize) {
        assert!(
            k > 0 && k % BLOCK == 0 && x.len() % k == 0,
            "x is m × k, k a multiple of 32"
        );
        let m = x.len() / k;
        let nb = k / BLOCK;
        self.m = m;
        self.k = k;
        self.qs.resize(m * k, 0);
        self.d.resize(m * nb, 0.0);
        self.s.resize(m * nb, 0.0);
        self.neg_sum4.resize(m * nb * 8, 0);
        let (qs, d, s, sum4) = (&mut self.qs, &mut self.d, &mut self.s, &mut self.neg_sum4);
        let threads = rayon::current_num_threads();
        if threads == 1 || m * k < PARALLEL_QUANTIZE_MIN {
            return quantize_rows(x, qs, d, s, sum4);
        }
        // A prefill's input (128 × 576 and up): rows in chunks between the threads, which
        // would otherwise wait for one to quantize it all.
        let rows = m.div_ceil(threads * 2);
        x.par_chunks(rows * k)
            .zip(qs.par_chunks_mut(rows * k))
            .zip(d.par_chunks_mut(rows * nb))
            .zip(s.par_chunks_mut(rows * nb))
            .zip(sum4.par_chunks_mut(rows * nb * 8))
            .for_each(|((((x, qs), d), s), sum4)| quantize_rows(x, qs, d, s, sum4));
    }

    /// Rows.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Elements per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// A copy of rows `c0..c1`.
    fn rows(&self, c0: usize, c1: usize) -> Self {
        let nb = self.k / BLOCK;
        Self {
            m: c1 - c0,
            k: self.k,
            qs: self.qs[c0 * self.k..c1 * self.k].to_vec(),
            d: self.d[c0 * nb..c1 * nb].to_vec(),
            s: self.s[c0 * nb..c1 * nb].to_vec(),
            neg_sum4: self.neg_sum4[c0 * nb * 8..c1 * nb * 8].to_vec(),
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

    /// ggml's block layout of all rows as llama.cpp would quantize them for weights of
    /// `kind` (`block_q8_1` for kinds with mins, else `block_q8_0`), appended to `out` after
    /// clearing it.
    pub fn to_ggml_bytes(&self, kind: QuantKind, out: &mut Vec<u8>) {
        out.clear();
        for (b, codes) in self.qs.chunks_exact(BLOCK).enumerate() {
            out.extend_from_slice(&f32_to_f16(self.d[b]).to_le_bytes());
            if kind.has_min() {
                out.extend_from_slice(&f32_to_f16(self.s[b]).to_le_bytes());
            }
            out.extend(codes.iter().map(|&q| q as u8));
        }
    }
}

/// Values from which [`QuantizedActs::quantize`] splits the rows between threads.
const PARALLEL_QUANTIZE_MIN: usize = 1 << 14;

/// Quantizes whole blocks of `x` on this thread, vectorised where the CPU allows.
fn quantize_rows(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], sum4: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx512() {
        // SAFETY: AVX-512 F is present.
        return unsafe { vnni::quantize_blocks(x, qs, d, s, sum4) };
    }
    quantize_blocks(x, qs, d, s, sum4);
}

/// Quantizes `x` (`m × k` row-major) against weights of `kind` into ggml's block layout:
/// Q8_1 blocks (36 bytes) for kinds with mins, Q8_0 blocks (34 bytes) for the others.
pub fn quantize_activations(kind: QuantKind, x: &[f32], k: usize, out: &mut Vec<u8>) {
    QuantizedActs::new(x, k).to_ggml_bytes(kind, out);
}

/// One block as llama.cpp's x86 `quantize_row_q8_1` / `quantize_row_q8_0` do it:
/// `d = amax/127`, codes `round_half_even(x · 127/amax)`; also the negated sums of each 4
/// codes. Returns `(d, f16(d), Σcodes)`.
#[inline(always)]
fn quantize_block(x: &[f32], qs: &mut [i8], neg_sum4: &mut [i32]) -> (f32, f32, i32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = (v * id).round_ties_even() as i8;
    }
    for (lane, q4) in neg_sum4.iter_mut().zip(qs.chunks_exact(4)) {
        *lane = -q4.iter().map(|&q| q as i32).sum::<i32>();
    }
    let sum = -neg_sum4.iter().sum::<i32>();
    (d, f16_to_f32(f32_to_f16(d)), sum)
}

#[inline(always)]
fn quantize_blocks_body(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], sum4: &mut [i32]) {
    blocks_with(x, qs, d, s, sum4, quantize_block);
}

/// Every block of `x` quantized by `block` (filling the codes and 8 correction lanes and
/// returning `(d, f16(d), Σcodes)`, as [`quantize_block`] does), with its scale and `s`.
#[inline(always)]
fn blocks_with(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    sum4: &mut [i32],
    mut block: impl FnMut(&[f32], &mut [i8], &mut [i32]) -> (f32, f32, i32),
) {
    for (b, ((xb, qb), lanes)) in x
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(sum4.chunks_exact_mut(8))
        .enumerate()
    {
        let (d_exact, d_half, sum) = block(xb, qb, lanes);
        d[b] = d_half;
        s[b] = f16_to_f32(f32_to_f16(d_exact * sum as f32));
    }
}

crate::multiversion!(fn quantize_blocks(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], sum4: &mut [i32]) => quantize_blocks_body);

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
    let acts = QuantizedActs::new(x, k);
    qmatmul_quantized(kind, weights, rows, &acts, y);
}

/// `y = x · Wᵀ` with `x` already quantized (see [`qmatmul`]).
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
    assert_whole_blocks(kind, k);
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
    assert_whole_blocks(kind, k);
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

/// Panics unless rows of `k` weights of `kind` hold whole storage blocks.
fn assert_whole_blocks(kind: QuantKind, k: usize) {
    assert_eq!(
        k % kind.block_elems(),
        0,
        "rows of {kind:?} hold multiples of {} weights",
        kind.block_elems()
    );
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

/// One output value of block-wise `Σ d_w d_x isum + Σ m_w s_x` from a row of the weights
/// and row `c` of the activations (portable).
fn portable_dot(kind: QuantKind, wrow: &[u8], acts: &QuantizedActs, c: usize) -> f32 {
    let codes = acts.codes(c);
    let nb = acts.k / BLOCK;
    let mut sum = 0.0f32;
    let mut summs = 0.0f32;
    for b in 0..nb {
        let block = block32(kind, wrow, b);
        let xq = &codes[b * BLOCK..(b + 1) * BLOCK];
        let isum = |half: std::ops::Range<usize>| -> f32 {
            half.map(|j| (block.codes[j] as i32 - kind.zero()) * xq[j] as i32)
                .sum::<i32>() as f32
        };
        let dx = acts.d[c * nb + b];
        if kind.has_half_scales() {
            sum += block.scales[0] * dx * isum(0..16) + block.scales[1] * dx * isum(16..32);
        } else {
            sum += block.scales[0] * dx * isum(0..32);
        }
        summs += block.min * acts.s[c * nb + b];
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

/// Random GGUF-layout weights of `kind` (`rows × k`) for tests and benches, with weights of
/// magnitude about `scale`: block scales jittered around `scale` over the code range,
/// mins near `-scale` (so that codes spread either side of zero), seeded codes.
pub fn test_weights(kind: QuantKind, rows: usize, k: usize, seed: u64, scale: f32) -> Vec<u8> {
    let blocks = rows * k / kind.block_elems();
    let jitters = crate::test_values(blocks * 2, seed, 1.0);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    };
    let half = |v: f32| f32_to_f16(v).to_le_bytes();
    let mut out = Vec::with_capacity(blocks * kind.block_bytes());
    for b in 0..blocks {
        let jitter = 1.0 + 0.5 * jitters[2 * b];
        let min = -scale * (1.0 + 0.2 * jitters[2 * b + 1]);
        match kind {
            QuantKind::Q4_0 => {
                out.extend(half(scale / 8.0 * jitter));
                out.extend((0..16).map(|_| next()));
            }
            QuantKind::Q4_1 => {
                out.extend(half(scale / 8.0 * jitter));
                out.extend(half(min));
                out.extend((0..16).map(|_| next()));
            }
            QuantKind::Q5_0 => {
                out.extend(half(scale / 16.0 * jitter));
                out.extend((0..20).map(|_| next()));
            }
            QuantKind::Q5_1 => {
                out.extend(half(scale / 16.0 * jitter));
                out.extend(half(min));
                out.extend((0..20).map(|_| next()));
            }
            QuantKind::Q8_0 => {
                out.extend(half(scale / 127.0 * jitter));
                out.extend((0..32).map(|_| next()));
            }
            QuantKind::Q4_K | QuantKind::Q5_K => {
                // d·sc spans 0..63·d, dmin·m likewise: d = scale / (8 · 32) puts a typical
                // sub-block scale near scale / 8 (/ 16 with Q5_K's fifth bit).
                let bits = if kind == QuantKind::Q4_K { 8.0 } else { 16.0 };
                out.extend(half(scale / (bits * 32.0) * jitter));
                out.extend(half(-min / 32.0));
                out.extend((4..kind.block_bytes()).map(|_| next()));
            }
            QuantKind::Q6_K => {
                out.extend((0..192).map(|_| next()));
                // Signed 8-bit scales, kept within ±64 so that d stays meaningful.
                out.extend((0..16).map(|_| (next() as i8 / 2) as u8));
                out.extend(half(scale / (32.0 * 32.0) * jitter));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
