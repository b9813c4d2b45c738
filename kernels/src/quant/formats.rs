//! The GGUF weight formats the kernels read, as ggml defines them, and the one way every
//! path sees a 32-weight block of any of them: unsigned codes, a zero point, a scale per 16
//! weights and a min, `w_i = scale[i / 16] · (code_i − zero) + min`.
//!
//! Every format is split into 32-weight blocks of that shape so that a single kernel body
//! serves them all: the codes of two blocks fill one 64-byte vector, the zero point becomes a
//! correction added to the integer dot product, and the scales and mins are applied per
//! block (per 16 weights for Q6_K) in f32, where `d · sub-scale` is exact.

use super::half_at;

/// Weights per block as the kernels see them (the K-quants' 256-weight super-blocks hold 8).
pub const BLOCK: usize = 32;

/// K-quant super-block size.
const SUPER: usize = 256;

/// The weight formats supported, byte for byte as ggml lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)] // ggml's names
pub enum QuantKind {
    /// 18 bytes per 32 weights: f16 `d`, 16 bytes of nibbles; weight `j` (0..16) is
    /// `((qs[j] & 15) − 8)·d`, weight `j + 16` the high nibble's.
    Q4_0,
    /// 20 bytes per 32 weights: f16 `d`, f16 `m`, 16 bytes of nibbles; weight `j` (0..16) is
    /// `(qs[j] & 15)·d + m`, weight `j + 16` is `(qs[j] >> 4)·d + m`.
    Q4_1,
    /// 22 bytes per 32 weights: f16 `d`, 32 high bits `qh` (little-endian), 16 bytes of
    /// nibbles; weight `j` (0..16) is `((qs[j] & 15) | bit j of qh << 4) − 16` times `d`,
    /// weight `j + 16` the high nibble with bit `j + 16`.
    Q5_0,
    /// 24 bytes per 32 weights: f16 `d`, f16 `m`, `qh`, nibbles as Q5_0; weight = `q·d + m`.
    Q5_1,
    /// 34 bytes per 32 weights: f16 `d`, 32 signed bytes; weight `j` is `qs[j]·d`.
    Q8_0,
    /// 144 bytes per 256 weights: f16 `d`, f16 `dmin`, 12 bytes packing eight 6-bit scales
    /// and eight 6-bit mins, 128 bytes of nibbles. Each 64 weights share 32 bytes: the low
    /// nibbles are weights 0..32 (sub-block `2i`), the high ones 32..64 (sub-block `2i + 1`);
    /// weight = `d·scale_s · q − dmin·min_s`.
    Q4_K,
    /// 176 bytes per 256 weights: Q4_K's `d`, `dmin` and scales, then 32 bytes `qh` whose bit
    /// `s` of byte `l` is the fifth bit of weight `l` of sub-block `s`, then Q4_K's nibbles.
    Q5_K,
    /// 210 bytes per 256 weights: 128 bytes of low nibbles `ql`, 64 bytes of 2-bit high parts
    /// `qh`, 16 signed scales (one per 16 weights), f16 `d`; weight = `d·scale · (q − 32)`.
    /// In each 128-weight half, weights 0..32 and 64..96 take the low and high nibbles of
    /// `ql[0..32]`, weights 32..64 and 96..128 those of `ql[32..64]`, and the four 32-weight
    /// quarters take bits 0-1, 2-3, 4-5 and 6-7 of `qh[0..32]`.
    Q6_K,
}

impl QuantKind {
    /// Every kind, in declaration order (`ALL[kind as usize] == kind`).
    pub const ALL: [QuantKind; 8] = [
        QuantKind::Q4_0,
        QuantKind::Q4_1,
        QuantKind::Q5_0,
        QuantKind::Q5_1,
        QuantKind::Q8_0,
        QuantKind::Q4_K,
        QuantKind::Q5_K,
        QuantKind::Q6_K,
    ];

    /// Weights per storage block: 32, or 256 for the K-quants' super-blocks. A row's length
    /// must be a multiple of it.
    pub const fn block_elems(self) -> usize {
        match self {
            QuantKind::Q4_K | QuantKind::Q5_K | QuantKind::Q6_K => SUPER,
            _ => BLOCK,
        }
    }

    /// Bytes per storage block of [`QuantKind::block_elems`] weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q4_0 => 18,
            QuantKind::Q4_1 => 20,
            QuantKind::Q5_0 => 22,
            QuantKind::Q5_1 => 24,
            QuantKind::Q8_0 => 34,
            QuantKind::Q4_K => 144,
            QuantKind::Q5_K => 176,
            QuantKind::Q6_K => 210,
        }
    }

    /// Bytes of one row of `k` weights (`k` a multiple of [`QuantKind::block_elems`]).
    pub const fn row_bytes(self, k: usize) -> usize {
        k / self.block_elems() * self.block_bytes()
    }

    /// The zero point subtracted from the unsigned codes (a power of two, or 0).
    pub const fn zero(self) -> i32 {
        match self {
            QuantKind::Q8_0 => 128,
            QuantKind::Q4_0 => 8,
            QuantKind::Q5_0 => 16,
            QuantKind::Q6_K => 32,
            QuantKind::Q4_1 | QuantKind::Q5_1 | QuantKind::Q4_K | QuantKind::Q5_K => 0,
        }
    }

    /// Whether blocks carry a min (an offset added to every weight).
    pub const fn has_min(self) -> bool {
        matches!(
            self,
            QuantKind::Q4_1 | QuantKind::Q5_1 | QuantKind::Q4_K | QuantKind::Q5_K
        )
    }

    /// Whether the scale changes every 16 weights rather than every 32.
    pub const fn has_half_scales(self) -> bool {
        matches!(self, QuantKind::Q6_K)
    }

    /// Bytes of one ggml block of activations quantized against weights of this kind, as
    /// llama.cpp's x86 code does for the 32-weight formats: Q8_1 (f16 `d`, f16 `s`, 32 × i8)
    /// for kinds with mins, Q8_0 (f16 `d`, 32 × i8) for the others. (llama.cpp quantizes
    /// activations for K-quants per 256 values, as Q8_K; here they use the same 32-value
    /// blocks as every other kind, which is finer.)
    pub const fn activation_block_bytes(self) -> usize {
        if self.has_min() {
            36
        } else {
            34
        }
    }
}

/// One 32-weight block decoded: `w_i = scales[i / 16] · (codes[i] − zero) + min`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block32 {
    pub codes: [u8; 32],
    pub scales: [f32; 2],
    pub min: f32,
}

impl Block32 {
    /// Weight `i`.
    pub fn weight(&self, kind: QuantKind, i: usize) -> f32 {
        self.scales[i / 16] * (self.codes[i] as i32 - kind.zero()) as f32 + self.min
    }
}

/// Block `b` (weights `32b..32b + 32`) of a row of `kind` (the row's GGUF bytes).
pub fn block32(kind: QuantKind, row: &[u8], b: usize) -> Block32 {
    let mut codes = [0u8; 32];
    // A 32-weight format's block.
    let small = || &row[b * kind.block_bytes()..][..kind.block_bytes()];
    match kind {
        QuantKind::Q4_0 => nibbles_into(&small()[2..18], &mut codes),
        QuantKind::Q4_1 => nibbles_into(&small()[4..20], &mut codes),
        QuantKind::Q5_0 | QuantKind::Q5_1 => {
            let blk = small();
            let at = if kind == QuantKind::Q5_0 { 2 } else { 4 };
            nibbles_into(&blk[at + 4..at + 20], &mut codes);
            let qh = u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
            for (j, c) in codes.iter_mut().enumerate() {
                *c |= (((qh >> j) & 1) << 4) as u8;
            }
        }
        QuantKind::Q8_0 => {
            for (c, &q) in codes.iter_mut().zip(&small()[2..34]) {
                *c = q ^ 0x80;
            }
        }
        QuantKind::Q4_K | QuantKind::Q5_K => {
            let sb = super_block(kind, row, b);
            let j = b % 8;
            let (qs_at, qh) = if kind == QuantKind::Q4_K {
                (16, None)
            } else {
                (48, Some(&sb[16..48]))
            };
            let qs = &sb[qs_at + 32 * (j / 2)..][..32];
            for (l, (c, &q)) in codes.iter_mut().zip(qs).enumerate() {
                *c = if j % 2 == 0 { q & 15 } else { q >> 4 };
                if let Some(qh) = qh {
                    *c |= ((qh[l] >> j) & 1) << 4;
                }
            }
        }
        QuantKind::Q6_K => {
            let sb = super_block(kind, row, b);
            let (half, quarter) = ((b % 8) / 4, b % 4);
            let ql = &sb[64 * half + 32 * (quarter % 2)..][..32];
            let qh = &sb[128 + 32 * half..][..32];
            for ((c, &l), &h) in codes.iter_mut().zip(ql).zip(qh) {
                let low = if quarter < 2 { l & 15 } else { l >> 4 };
                *c = low | (((h >> (2 * quarter)) & 3) << 4);
            }
        }
    }
    let (scales, min) = block_scales(kind, row, b);
    Block32 { codes, scales, min }
}

/// Low nibbles of 16 bytes, then the high ones: 32 codes in element order.
fn nibbles_into(qs: &[u8], codes: &mut [u8; 32]) {
    for (j, &q) in qs.iter().enumerate() {
        codes[j] = q & 15;
        codes[j + 16] = q >> 4;
    }
}

/// The K-quant super-block holding 32-weight block `b` of `row`.
fn super_block(kind: QuantKind, row: &[u8], b: usize) -> &[u8] {
    let per = SUPER / BLOCK;
    &row[b / per * kind.block_bytes()..][..kind.block_bytes()]
}

/// Sub-block `j`'s scale `d·scale_j` and min `−dmin·min_j` of a Q4_K or Q5_K super-block (the
/// same first 16 bytes), unpacked from ggml's 12-byte layout: scales and mins 0..4 are the low
/// 6 bits of bytes 0..4 and 4..8; 4..8 take their low 4 bits from the nibbles of bytes 8..12
/// and their top 2 from the top bits of bytes 0..4 and 4..8. Both are exact in f32 (an f16
/// times a 6-bit integer).
fn q4k_scale_min(sb: &[u8], j: usize, half: impl Fn(&[u8], usize) -> f32) -> (f32, f32) {
    let q = &sb[4..16];
    let (sc, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (half(sb, 0) * sc as f32, -(half(sb, 2) * m as f32))
}

/// Block `b`'s scales (per 16 weights) and min, without its codes.
pub fn block_scales(kind: QuantKind, row: &[u8], b: usize) -> ([f32; 2], f32) {
    block_scales_with(kind, row, b, half_at)
}

/// [`block_scales`] with the f16 fields read by `half(bytes, at)` (a path's own conversion).
pub fn block_scales_with(
    kind: QuantKind,
    row: &[u8],
    b: usize,
    half: impl Fn(&[u8], usize) -> f32,
) -> ([f32; 2], f32) {
    let at = b * kind.block_bytes();
    match kind {
        QuantKind::Q4_1 | QuantKind::Q5_1 => ([half(row, at); 2], half(row, at + 2)),
        QuantKind::Q4_0 | QuantKind::Q5_0 | QuantKind::Q8_0 => ([half(row, at); 2], 0.0),
        QuantKind::Q4_K | QuantKind::Q5_K => {
            let (scale, min) = q4k_scale_min(super_block(kind, row, b), b % 8, half);
            ([scale; 2], min)
        }
        QuantKind::Q6_K => {
            let sb = super_block(kind, row, b);
            let (sub, d) = (2 * (b % 8), half(sb, 208));
            let scale = |i: usize| d * sb[192 + i] as i8 as f32;
            ([scale(sub), scale(sub + 1)], 0.0)
        }
    }
}
