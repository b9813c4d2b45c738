#![allow(clippy::needless_range_loop)] // indexed loops over register arrays read best here

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
        let code =
            |v: __m512| _mm512_cvtps_epi32(_mm512_roundscale_ps::<NEAREST>(_mm512_mul_ps(v, id)));
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
                acc[t][c] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(sw[t], sx), acc[t][c]);
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
