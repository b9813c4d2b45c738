#![allow(clippy::needless_range_loop)] // indexed loops over register arrays read best here

use super::*;
use std::arch::x86_64::*;

/// Runs `$body` with `$K` a constant naming `$kind` (its discriminant, its index in
/// [`QuantKind::ALL`]), so that the kernels below are compiled once per kind with the other
/// formats' branches folded away (one body serving all kinds at run time cost decode a
/// quarter of its speed).
macro_rules! with_kind {
    ($kind:expr, $K:ident => $body:expr) => {
        with_kind!(@arms $kind, $K, $body, Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K)
    };
    (@arms $kind:expr, $K:ident, $body:expr, $($variant:ident)*) => {
        match $kind {
            $(QuantKind::$variant => {
                const $K: usize = QuantKind::$variant as usize;
                $body
            })*
        }
    };
}

/// The kind a [`with_kind`] constant names.
const fn kind_of(k: usize) -> QuantKind {
    QuantKind::ALL[k]
}

/// [`super::quantize_blocks`] with each block's codes, scale and sums from two vectors:
/// the same arithmetic (max of |x|, `x · 127/amax` rounded half to even), so the same
/// bytes, at a fraction of the scalar loop's cost (a sixth of a prefill's time).
///
/// # Safety
/// AVX-512 F is present.
#[target_feature(enable = "avx512f,avx512vl,fma")]
pub(super) unsafe fn quantize_blocks(
    x: &[f32],
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    sum4: &mut [i32],
) {
    super::blocks_with(x, qs, d, s, sum4, |xb, qb, lanes| {
        quantize_block(xb, qb, lanes)
    });
}

/// One block: [`super::quantize_block`]'s arithmetic on two vectors.
#[target_feature(enable = "avx512f,avx512vl,fma")]
fn quantize_block(xb: &[f32], qb: &mut [i8], neg_sum4: &mut [i32]) -> (f32, f32, i32) {
    assert!(xb.len() == BLOCK && qb.len() == BLOCK && neg_sum4.len() == 8);
    // SAFETY: 32 values in, 32 codes and 8 sums out (checked above).
    unsafe {
        let lo = _mm512_loadu_ps(xb.as_ptr());
        let hi = _mm512_loadu_ps(xb.as_ptr().add(16));
        let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
        let d_exact = amax / 127.0;
        let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let code =
            |v: __m512| _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(v, id)));
        let (qlo, qhi) = (code(lo), code(hi));
        let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
        let out = qb.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(out, _mm512_cvtepi32_epi8(qlo));
        _mm_storeu_si128(out.add(1), _mm512_cvtepi32_epi8(qhi));
        // Sums of 4: pairs, then pairs of pairs, land in lane 0 of each 128-bit group.
        let fours = |q: __m512i| {
            let t = _mm512_add_epi32(q, _mm512_shuffle_epi32::<0b1011_0001>(q));
            _mm512_add_epi32(t, _mm512_shuffle_epi32::<0b0100_1110>(t))
        };
        let firsts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0);
        let sums = _mm512_permutex2var_epi32(fours(qlo), firsts, fours(qhi));
        let neg = _mm512_sub_epi32(_mm512_setzero_si512(), sums);
        _mm256_storeu_si256(
            neg_sum4.as_mut_ptr() as *mut __m256i,
            _mm512_castsi512_si256(neg),
        );
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

/// Lane mask of the first `n ≤ 16` lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// The per-block scales and mins of blocks `g..g + n` (`n ≤ 16`) of a row (lanes past `n`
/// are zero). Q6_K has none per block: its scales change every 16 weights and come from
/// [`q6k_half_scales`].
///
/// # Safety
/// VNNI features; `row` points to a whole row holding those blocks.
#[inline(always)]
unsafe fn block_scales(kind: QuantKind, row: *const u8, g: usize, n: usize) -> (__m512, __m512) {
    let mask = lanes(n);
    let idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let gathered = |stride: i32, at: *const u8| {
        _mm512_mask_i32gather_epi32::<1>(
            _mm512_setzero_si512(),
            mask,
            _mm512_mullo_epi32(idx, _mm512_set1_epi32(stride)),
            at as *const i32,
        )
    };
    let halves = |g: __m512i| {
        (
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)),
            _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(g))),
        )
    };
    let bb = kind.block_bytes() as i32;
    match kind {
        // 4 bytes `d, m` at the start of each block.
        QuantKind::Q4_1 | QuantKind::Q5_1 => halves(gathered(bb, row.add(g * bb as usize))),
        // `d` then 2 bytes of codes or high bits.
        QuantKind::Q4_0 | QuantKind::Q5_0 | QuantKind::Q8_0 => {
            let (d, _) = halves(gathered(bb, row.add(g * bb as usize)));
            (d, _mm512_setzero_ps())
        }
        QuantKind::Q4_K | QuantKind::Q5_K => {
            let sb = bb as usize;
            let first = q4k_super_scales(row.add(g / 8 * sb));
            let second = if n > 8 {
                q4k_super_scales(row.add((g / 8 + 1) * sb))
            } else {
                (_mm256_setzero_ps(), _mm256_setzero_ps())
            };
            let join = |lo: __m256, hi: __m256| {
                _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                    _mm512_castps_pd(_mm512_castps256_ps512(lo)),
                    _mm256_castps_pd(hi),
                ))
            };
            (join(first.0, second.0), join(first.1, second.1))
        }
        // Scaled per 16 weights: see `q6k_half_scales`.
        QuantKind::Q6_K => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    }
}

/// A Q4_K or Q5_K super-block's eight scales `d·sc` and mins `−dmin·m`, unpacking the 12 bytes of
/// 6-bit values with whole-word masks (the layout [`super::formats::q4k_scale_min`] reads
/// one at a time).
#[inline(always)]
unsafe fn q4k_super_scales(sb: *const u8) -> (__m256, __m256) {
    let word = |i: usize| (sb.add(4 + 4 * i) as *const u32).read_unaligned();
    let (w0, w1, w2) = (word(0), word(1), word(2));
    let (six, four, two) = (0x3f3f_3f3fu32, 0x0f0f_0f0fu32, 0x0303_0303u32);
    let scales = (w0 & six) as u64 | (((w2 & four) | (((w0 >> 6) & two) << 4)) as u64) << 32;
    let mins = (w1 & six) as u64 | ((((w2 >> 4) & four) | (((w1 >> 6) & two) << 4)) as u64) << 32;
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((sb as *const i32).read_unaligned()));
    let widen = |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
    let d = _mm256_broadcastss_ps(dm);
    let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dm));
    (
        _mm256_mul_ps(d, widen(scales)),
        _mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(dmin, widen(mins))),
    )
}

/// Q6_K's scales `d·sc` for the 16-weight halves of blocks `g..g + n`: halves `0..16` (the
/// first super-block) and `16..32` (the second, zero when `n ≤ 8`).
#[inline(always)]
unsafe fn q6k_half_scales(row: *const u8, g: usize, n: usize) -> (__m512, __m512) {
    let one = |sb: *const u8| {
        let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(sb.add(192) as *const __m128i));
        let d = _mm_cvtph_ps(_mm_cvtsi32_si128(
            (sb.add(208) as *const u16).read_unaligned() as i32,
        ));
        _mm512_mul_ps(_mm512_broadcastss_ps(d), _mm512_cvtepi32_ps(sc))
    };
    let first = one(row.add(g / 8 * 210));
    let second = if n > 8 {
        one(row.add((g / 8 + 1) * 210))
    } else {
        _mm512_setzero_ps()
    };
    (first, second)
}

/// Blocks `b` and `b + 1` (only `b` when `!two`) of a weight row as 64 unsigned bytes in
/// element order (the codes of [`super::block32`]).
///
/// # Safety
/// VNNI features; `row` points to a whole row holding the blocks read. For the K-quants `b`
/// is even and `two` holds (a row has whole super-blocks).
#[inline(always)]
unsafe fn unpack_pair(kind: QuantKind, row: *const u8, b: usize, two: bool) -> __m512i {
    let low4 = _mm512_set1_epi8(0x0f);
    match kind {
        QuantKind::Q4_0 => nibble_pair(row, b * 18 + 2, 18, two),
        QuantKind::Q4_1 => nibble_pair(row, b * 20 + 4, 20, two),
        QuantKind::Q5_0 | QuantKind::Q5_1 => {
            let bb = kind.block_bytes();
            let at = if kind == QuantKind::Q5_0 { 2 } else { 4 };
            let qh = |b: usize| (row.add(b * bb + at) as *const u32).read_unaligned() as u64;
            let bits = qh(b) | if two { qh(b + 1) << 32 } else { 0 };
            let high = _mm512_maskz_set1_epi8(bits, 0x10);
            _mm512_or_si512(nibble_pair(row, b * bb + at + 4, bb, two), high)
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
        QuantKind::Q4_K | QuantKind::Q5_K => {
            // 32 bytes: low nibbles are block b, high ones block b + 1.
            let sb = row.add(b / 8 * kind.block_bytes());
            let qs_at = if kind == QuantKind::Q4_K { 16 } else { 48 };
            let q = _mm256_loadu_si256(sb.add(qs_at + 16 * (b % 8)) as *const __m256i);
            let shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
            let codes =
                _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(q), shifts), low4);
            if kind == QuantKind::Q4_K {
                return codes;
            }
            // Q5_K: bit j of qh[l] is weight l's fifth bit in sub-block j (b, b + 1 here).
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(sb.add(16) as *const __m256i));
            let (h0, h1) = ((b % 8) as i64, (b % 8) as i64 + 1);
            let qh = _mm512_srlv_epi64(qh, _mm512_setr_epi64(h0, h0, h0, h0, h1, h1, h1, h1));
            let high = _mm512_slli_epi16::<4>(_mm512_and_si512(qh, _mm512_set1_epi8(1)));
            _mm512_or_si512(codes, high)
        }
        QuantKind::Q6_K => {
            // Blocks b, b + 1 are quarters (q, q + 1) of a 128-weight half: the same nibble of
            // ql[0..32] and ql[32..64], and bits 2q and 2q + 2 of qh[0..32].
            let sb = row.add(b / 8 * 210);
            let (half, quarter) = ((b % 8) / 4, (b % 4) as i64);
            let ql = _mm512_loadu_si512(sb.add(64 * half) as *const __m512i);
            let ql = _mm512_srl_epi16(ql, _mm_cvtsi64_si128(2 * quarter));
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                sb.add(128 + 32 * half) as *const __m256i
            ));
            let (h0, h1) = (2 * quarter, 2 * quarter + 2);
            let qh = _mm512_srlv_epi64(qh, _mm512_setr_epi64(h0, h0, h0, h0, h1, h1, h1, h1));
            let hi = _mm512_slli_epi16::<4>(_mm512_and_si512(qh, _mm512_set1_epi8(3)));
            _mm512_or_si512(_mm512_and_si512(ql, low4), hi)
        }
    }
}

/// The 16 bytes of nibbles at `at` (and, when `two`, at `at + stride`) as 32 (64) codes:
/// each block's low nibbles, then its high ones.
#[inline(always)]
unsafe fn nibble_pair(row: *const u8, at: usize, stride: usize, two: bool) -> __m512i {
    let lo = _mm512_maskz_broadcast_i32x4(0x00ff, _mm_loadu_si128(row.add(at) as *const __m128i));
    let both = if two {
        let hi = _mm_loadu_si128(row.add(at + stride) as *const __m128i);
        _mm512_mask_broadcast_i32x4(lo, 0xff00, hi)
    } else {
        lo
    };
    let shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    _mm512_and_si512(_mm512_srlv_epi64(both, shifts), _mm512_set1_epi8(0x0f))
}

/// The correction lanes of activation block `b` of row `c` (8, or 16 for a pair): the
/// negated sums of 4 codes times the kind's zero point.
#[inline(always)]
unsafe fn correction(
    kind: QuantKind,
    acts: &QuantizedActs,
    c: usize,
    b: usize,
    two: bool,
) -> __m512i {
    let nb = acts.k / BLOCK;
    let p = acts.neg_sum4.as_ptr().add((c * nb + b) * 8);
    let sums = _mm512_maskz_loadu_epi32(if two { 0xffff } else { 0x00ff }, p);
    _mm512_sll_epi32(sums, _mm_cvtsi32_si128(kind.zero().trailing_zeros() as i32))
}

/// # Safety
/// Needs AVX-512 F/BW/VL/VNNI and F16C; `out` as for `portable_rows`; `acts.m == C`.
pub(super) unsafe fn direct_rows<const C: usize>(
    kind: QuantKind,
    weights: &[u8],
    r0: usize,
    r1: usize,
    rows: usize,
    acts: &QuantizedActs,
    out: DisjointWrites,
) {
    with_kind!(kind, K => direct_rows_of::<C, K>(weights, r0, r1, rows, acts, out))
}

/// [`direct_rows`] for the kind `kind_of(K)`.
///
/// # Safety
/// As [`direct_rows`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn direct_rows_of<const C: usize, const K: usize>(
    weights: &[u8],
    r0: usize,
    r1: usize,
    rows: usize,
    acts: &QuantizedActs,
    out: DisjointWrites,
) {
    let kind = kind_of(K);
    let k = acts.k;
    let nb = k / BLOCK;
    let rb = kind.row_bytes(k);
    let offset = kind.zero() != 0;
    let pair_lanes = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let quarter_lanes = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
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
            let (dw, _) = block_scales(kind, row, g, n);
            let halves = if kind.has_half_scales() {
                q6k_half_scales(row, g, n)
            } else {
                (_mm512_setzero_ps(), _mm512_setzero_ps())
            };
            let mut dx = [_mm512_setzero_ps(); C];
            let mut sd = [_mm512_setzero_ps(); C];
            for c in 0..C {
                dx[c] = _mm512_maskz_loadu_ps(lanes(n), acts.d.as_ptr().add(c * nb + g));
                sd[c] = _mm512_mul_ps(dw, dx[c]);
            }
            let mut p = 0;
            while p < n {
                let b = g + p;
                let two = p + 1 < n;
                let w = unpack_pair(kind, row, b, two);
                let idx = _mm512_add_epi32(pair_lanes, _mm512_set1_epi32(p as i32));
                let half_idx = _mm512_add_epi32(quarter_lanes, _mm512_set1_epi32(2 * p as i32));
                for c in 0..C {
                    let xp = acts.qs.as_ptr().add(c * k + b * BLOCK);
                    let xmask: __mmask64 = if two { u64::MAX } else { 0xffff_ffff };
                    let x = _mm512_maskz_loadu_epi8(xmask, xp);
                    let init = if offset {
                        correction(kind, acts, c, b, two)
                    } else {
                        _mm512_setzero_si512()
                    };
                    let dot = _mm512_dpbusd_epi32(init, w, x);
                    // The same products per lane as the tiled kernel's `sw · sx`.
                    let scale = if kind.has_half_scales() {
                        let w = _mm512_permutex2var_ps(halves.0, half_idx, halves.1);
                        _mm512_mul_ps(w, _mm512_permutexvar_ps(idx, dx[c]))
                    } else {
                        _mm512_permutexvar_ps(idx, sd[c])
                    };
                    acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[c]);
                }
                p += 2;
            }
            g += n;
        }
        // The min terms after every dot product, into the same lanes, 16 blocks at a
        // time: the order the tiled kernel adds them in, so a decode step's logits equal
        // the prefill's bit for bit (with activations quantized, a last-bit difference
        // flips codes downstream: 0.5 logits apart on SmolLM2 before this).
        if kind.has_min() {
            let mut g = 0;
            while g < nb {
                let n = (nb - g).min(16);
                let (_, mw) = block_scales(kind, row, g, n);
                for c in 0..C {
                    let sx = _mm512_maskz_loadu_ps(lanes(n), acts.s.as_ptr().add(c * nb + g));
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
/// values padded to a multiple of 16 (kinds with mins), and the correction lanes (kinds
/// with a zero point).
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
    let shift = kind.zero().trailing_zeros();
    let mut p = Packed {
        nbp,
        nbs,
        qs: vec![0; m * nbp * BLOCK],
        d8: vec![0.0; m * nbp * 8],
        s: vec![0.0; if kind.has_min() { m * nbs } else { 0 }],
        corr: vec![0; if kind.zero() != 0 { m * nbp * 8 } else { 0 }],
    };
    for c in 0..m {
        p.qs[c * nbp * BLOCK..c * nbp * BLOCK + k].copy_from_slice(acts.codes(c));
        for b in 0..nb {
            p.d8[(c * nbp + b) * 8..(c * nbp + b + 1) * 8].fill(acts.d[c * nb + b]);
        }
        if kind.has_min() {
            p.s[c * nbs..c * nbs + nb].copy_from_slice(&acts.s[c * nb..(c + 1) * nb]);
        }
        if kind.zero() != 0 {
            let sums = &acts.neg_sum4[c * nb * 8..(c + 1) * nb * 8];
            for (lane, &v) in p.corr[c * nbp * 8..].iter_mut().zip(sums) {
                *lane = v << shift;
            }
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
        unsafe { with_kind!(kind, K => tiled_rows::<K>(weights, r0, r1, rows, acts, &packed, out)) }
    });
}

/// # Safety
/// Needs AVX-512 F/BW/VL/VNNI and F16C; `out` as for `portable_rows`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")]
unsafe fn tiled_rows<const K: usize>(
    weights: &[u8],
    r0: usize,
    r1: usize,
    rows: usize,
    acts: &QuantizedActs,
    packed: &Packed,
    out: DisjointWrites,
) {
    let kind = kind_of(K);
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
                let (dw, mw) = block_scales(kind, row, g, n);
                // A block's 8 lanes: 0-3 scale its first 16 weights, 4-7 its second 16
                // (the same value but for Q6_K).
                let mut halves = [0.0f32; 32];
                if kind.has_half_scales() {
                    let (first, second) = q6k_half_scales(row, g, n);
                    _mm512_storeu_ps(halves.as_mut_ptr(), first);
                    _mm512_storeu_ps(halves.as_mut_ptr().add(16), second);
                } else {
                    let mut ds = [0.0f32; 16];
                    _mm512_storeu_ps(ds.as_mut_ptr(), dw);
                    for (pair, &d) in halves.chunks_exact_mut(2).zip(&ds) {
                        pair.fill(d);
                    }
                }
                for i in 0..n {
                    let at = wd8.as_mut_ptr().add((t * nbp + g + i) * 8);
                    _mm_storeu_ps(at, _mm_set1_ps(halves[2 * i]));
                    _mm_storeu_ps(at.add(4), _mm_set1_ps(halves[2 * i + 1]));
                }
                if kind.has_min() {
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
                1 => micro::<1, K>(&wq, &wd8, &wm, packed, c, &mut res),
                2 => micro::<2, K>(&wq, &wd8, &wm, packed, c, &mut res),
                3 => micro::<3, K>(&wq, &wd8, &wm, packed, c, &mut res),
                _ => micro::<4, K>(&wq, &wd8, &wm, packed, c, &mut res),
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
unsafe fn micro<const C: usize, const K: usize>(
    wq: &[u8],
    wd8: &[f32],
    wm: &[f32],
    packed: &Packed,
    c0: usize,
    res: &mut [[f32; TC]; TR],
) {
    let kind = kind_of(K);
    let (nbp, nbs) = (packed.nbp, packed.nbs);
    let offset = kind.zero() != 0;
    let mut acc = [[_mm512_setzero_ps(); C]; TR];
    let wq = wq.as_ptr();
    let wd8 = wd8.as_ptr();
    let xq = packed.qs.as_ptr().add(c0 * nbp * BLOCK);
    let xd8 = packed.d8.as_ptr().add(c0 * nbp * 8);
    let xcorr = packed
        .corr
        .as_ptr()
        .add(if offset { c0 * nbp * 8 } else { 0 });
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
            let init = if offset {
                _mm512_loadu_si512(xcorr.add((c * nbp + b) * 8) as *const __m512i)
            } else {
                _mm512_setzero_si512()
            };
            for t in 0..TR {
                let dot = _mm512_dpbusd_epi32(init, w[t], x);
                acc[t][c] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sw[t], sx), acc[t][c]);
            }
        }
        b += 2;
    }
    if kind.has_min() {
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
