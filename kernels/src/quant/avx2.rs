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
                        let w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), low);
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
