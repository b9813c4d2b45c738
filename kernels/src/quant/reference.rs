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
        if kind.has_min() {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend(qs.iter().map(|&q| q as u8));
    }
    out
}

/// The exact integer dot products of weight block `b` of `row` (GGUF bytes of `kind`) with
/// 32 activation codes, for its first and second 16 weights (codes less the zero point).
pub fn block_isums(kind: QuantKind, row: &[u8], b: usize, x: &[i8]) -> [i32; 2] {
    let block = block32(kind, row, b);
    let half = |h: usize| -> i32 {
        (16 * h..16 * h + 16)
            .map(|j| (block.codes[j] as i32 - kind.zero()) * x[j] as i32)
            .sum()
    };
    [half(0), half(1)]
}

/// `y = x · Wᵀ` as llama.cpp defines it on quantized activations, accumulated in f64:
/// `Σ_b Σ_half scale·d_x·isum (+ Σ_b min·s_x)`. Also returns, per output, the sum of the
/// absolute values of those terms (the scale for a tolerance on float reordering).
pub fn qmatmul(
    kind: QuantKind,
    weights: &[u8],
    rows: usize,
    k: usize,
    x: &[f32],
    m: usize,
) -> (Vec<f32>, Vec<f32>) {
    let nb = k / BLOCK;
    let rb = kind.row_bytes(k);
    let ab = kind.activation_block_bytes();
    let xq = quantize_activations(kind, x, k);
    let mut y = vec![0.0f32; m * rows];
    let mut mag = vec![0.0f32; m * rows];
    for c in 0..m {
        for r in 0..rows {
            let row = &weights[r * rb..(r + 1) * rb];
            let (mut acc, mut abs) = (0.0f64, 0.0f64);
            for b in 0..nb {
                let a = &xq[(c * nb + b) * ab..(c * nb + b + 1) * ab];
                let codes: Vec<i8> = a[ab - 32..].iter().map(|&q| q as i8).collect();
                let isums = block_isums(kind, row, b, &codes);
                let (scales, min) = block_scales(kind, row, b);
                let dx = half_at(a, 0) as f64;
                for h in 0..2 {
                    let t = scales[h] as f64 * dx * isums[h] as f64;
                    acc += t;
                    abs += t.abs();
                }
                if kind.has_min() {
                    let t = min as f64 * half_at(a, 2) as f64;
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
