use super::*;
use std::arch::x86_64::*;

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
    let rb = kind.row_bytes(k);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_set1_epi32(kind.zero());
    for r in r0..r1 {
        let wrow = &weights[r * rb..(r + 1) * rb];
        for c in 0..acts.m {
            let codes = acts.codes(c);
            let mut acc = _mm256_setzero_ps();
            let mut summs = 0.0f32;
            for b in 0..nb {
                // SAFETY: `codes` has k ≥ 32(b+1) codes.
                let x = _mm256_loadu_si256(codes.as_ptr().add(b * BLOCK) as *const __m256i);
                let isum = if kind == QuantKind::Q8_0 {
                    // Signed × signed through the sign trick: |w| · (x · sign(w)).
                    let at = b * kind.block_bytes() + 2;
                    let w = _mm256_loadu_si256(wrow[at..at + 32].as_ptr() as *const __m256i);
                    let dot16 =
                        _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
                    _mm256_madd_epi16(dot16, ones)
                } else {
                    // Codes below 64: unsigned × signed pairs stay inside i16.
                    let dot16 = _mm256_maddubs_epi16(block_codes(kind, wrow, b), x);
                    let sum4 = _mm256_loadu_si256(
                        acts.neg_sum4[(c * nb + b) * 8..][..8].as_ptr() as *const __m256i
                    );
                    _mm256_add_epi32(
                        _mm256_madd_epi16(dot16, ones),
                        _mm256_mullo_epi32(sum4, zero),
                    )
                };
                let ([s0, s1], min) = scales(kind, wrow, b);
                let dx = acts.d[c * nb + b];
                let scale = _mm256_setr_ps(
                    s0 * dx,
                    s0 * dx,
                    s0 * dx,
                    s0 * dx,
                    s1 * dx,
                    s1 * dx,
                    s1 * dx,
                    s1 * dx,
                );
                acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(isum), acc);
                summs += min * acts.s[c * nb + b];
            }
            let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
            // SAFETY: as in `portable_rows`.
            *out.get().add(c * rows + r) = _mm_cvtss_f32(h) + summs;
        }
    }
}

/// Block `b`'s scales and min ([`block_scales`]), the f16 fields converted with F16C.
#[inline(always)]
unsafe fn scales(kind: QuantKind, row: &[u8], b: usize) -> ([f32; 2], f32) {
    block_scales_with(kind, row, b, |bytes, at| {
        let bits = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    })
}

/// The 32 unsigned codes of block `b` of a row of `kind` (not Q8_0), in element order.
#[inline(always)]
unsafe fn block_codes(kind: QuantKind, row: &[u8], b: usize) -> __m256i {
    let low = _mm256_set1_epi8(0x0f);
    let load32 = |at: usize| _mm256_loadu_si256(row[at..at + 32].as_ptr() as *const __m256i);
    let nibbles = |at: usize| {
        let q = _mm_loadu_si128(row[at..at + 16].as_ptr() as *const __m128i);
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low)
    };
    let shift = |v: __m256i, n: usize| _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32));
    match kind {
        QuantKind::Q4_0 => nibbles(b * 18 + 2),
        QuantKind::Q4_1 => nibbles(b * 20 + 4),
        QuantKind::Q5_0 | QuantKind::Q5_1 => {
            let at = b * kind.block_bytes() + if kind == QuantKind::Q5_0 { 2 } else { 4 };
            let qh = u32::from_le_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]]);
            // Byte i holds byte i/8 of qh; keep bit i%8 and turn it into 0x10.
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(qh as i32),
                _mm256_setr_epi64x(
                    0,
                    0x0101_0101_0101_0101,
                    0x0202_0202_0202_0202,
                    0x0303_0303_0303_0303,
                ),
            );
            let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
            _mm256_or_si256(
                nibbles(at + 4),
                _mm256_and_si256(set, _mm256_set1_epi8(0x10)),
            )
        }
        QuantKind::Q4_K | QuantKind::Q5_K => {
            let (sb, j) = (b / 8 * kind.block_bytes(), b % 8);
            let qs_at = if kind == QuantKind::Q4_K { 16 } else { 48 };
            let q = _mm256_and_si256(shift(load32(sb + qs_at + 32 * (j / 2)), 4 * (j % 2)), low);
            if kind == QuantKind::Q4_K {
                return q;
            }
            let qh = _mm256_and_si256(shift(load32(sb + 16), j), _mm256_set1_epi8(1));
            _mm256_or_si256(q, _mm256_slli_epi16(qh, 4))
        }
        QuantKind::Q6_K => {
            let sb = b / 8 * 210;
            let (half, quarter) = ((b % 8) / 4, b % 4);
            let ql = load32(sb + 64 * half + 32 * (quarter % 2));
            let qh = load32(sb + 128 + 32 * half);
            let lo = _mm256_and_si256(shift(ql, 4 * (quarter / 2)), low);
            let hi = _mm256_and_si256(shift(qh, 2 * quarter), _mm256_set1_epi8(3));
            _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4))
        }
        QuantKind::Q8_0 => unreachable!("Q8_0 codes are signed bytes, read as they are"),
    }
}
