//! Residual add + LayerNorm in one pass over each row: `out = LN(x + residual) * gamma + beta`,
//! the step that closes each half of a post-LN transformer block. Fusing saves writing and
//! re-reading the sum, and the separate mean/variance passes candle makes.

/// `x`, `residual` and `out` hold `rows * width` values; `gamma` and `beta` hold `width`.
pub fn add_layer_norm(
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let width = gamma.len();
    assert!(
        width > 0
            && beta.len() == width
            && x.len() == residual.len()
            && x.len() == out.len()
            && x.len().is_multiple_of(width)
    );
    add_layer_norm_rows(x, residual, gamma, beta, eps, out);
}

crate::multiversion! {
    fn add_layer_norm_rows(x: &[f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) => rows_body
}

#[inline(always)]
fn rows_body(x: &[f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    let width = gamma.len();
    for ((xr, rr), or) in x
        .chunks_exact(width)
        .zip(residual.chunks_exact(width))
        .zip(out.chunks_exact_mut(width))
    {
        for ((o, a), b) in or.iter_mut().zip(xr).zip(rr) {
            *o = a + b;
        }
        normalize_row(or, gamma, beta, eps);
    }
}

/// In place: `x = LayerNorm(x + delta) * gamma + beta`, row by row.
pub fn add_layer_norm_inplace(x: &mut [f32], delta: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    assert!(
        width > 0 && beta.len() == width && x.len() == delta.len() && x.len().is_multiple_of(width)
    );
    inplace_rows(x, delta, gamma, beta, eps);
}

crate::multiversion! {
    fn inplace_rows(x: &mut [f32], delta: &[f32], gamma: &[f32], beta: &[f32], eps: f32) => inplace_body
}

#[inline(always)]
fn inplace_body(x: &mut [f32], delta: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = gamma.len();
    for (xr, dr) in x.chunks_exact_mut(width).zip(delta.chunks_exact(width)) {
        for (a, b) in xr.iter_mut().zip(dr) {
            *a += b;
        }
        normalize_row(xr, gamma, beta, eps);
    }
}

crate::multiversion! {
    /// In place, each row of `x` (`rows x gamma.len()`): `LayerNorm(x) * gamma + beta`.
    pub fn layer_norm_inplace(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) => layer_norm_body
}

#[inline(always)]
fn layer_norm_body(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        normalize_row(row, gamma, beta, eps);
    }
}

#[inline(always)]
fn normalize_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let width = row.len() as f32;
    let mean = crate::lanes::sum_by(row, |v| v) / width;
    let var = crate::lanes::sum_by(row, |v| (v - mean) * (v - mean)) / width;
    let inv = 1.0 / (var + eps).sqrt();
    for ((o, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *o = (*o - mean) * inv * g + b;
    }
}

/// The reference: the same arithmetic in f64.
pub fn add_layer_norm_reference(
    x: &[f32],
    residual: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> Vec<f32> {
    let width = gamma.len();
    let mut out = Vec::with_capacity(x.len());
    for (xr, rr) in x.chunks_exact(width).zip(residual.chunks_exact(width)) {
        let s: Vec<f64> = xr
            .iter()
            .zip(rr)
            .map(|(a, b)| *a as f64 + *b as f64)
            .collect();
        let mean = s.iter().sum::<f64>() / width as f64;
        let var = s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        out.extend(
            s.iter()
                .zip(gamma)
                .zip(beta)
                .map(|((v, g), b)| ((v - mean) * inv * *g as f64 + *b as f64) as f32),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_values;

    #[test]
    fn matches_the_f64_reference_on_odd_widths() {
        for (rows, width) in [(1usize, 1usize), (3, 7), (5, 384), (2, 1001)] {
            let x = test_values(rows * width, 1, 3.0);
            let r = test_values(rows * width, 2, 3.0);
            let g = test_values(width, 3, 1.5);
            let b = test_values(width, 4, 0.5);
            let mut out = vec![0.0; rows * width];
            add_layer_norm(&x, &r, &g, &b, 1e-12, &mut out);
            let want = add_layer_norm_reference(&x, &r, &g, &b, 1e-12);
            let mut inplace = x.clone();
            add_layer_norm_inplace(&mut inplace, &r, &g, &b, 1e-12);
            let mut plain: Vec<f32> = x.iter().zip(&r).map(|(a, c)| a + c).collect();
            layer_norm_inplace(&mut plain, &g, &b, 1e-12);
            for (p, w) in plain.iter().zip(&want) {
                assert!((p - w).abs() < 2e-5, "layer_norm_inplace: {p} vs {w}");
            }
            for ((o, i), w) in out.iter().zip(&inplace).zip(&want) {
                assert!(
                    (o - w).abs() < 2e-5,
                    "{o} vs {w} (rows {rows}, width {width})"
                );
                assert!(
                    (i - w).abs() < 2e-5,
                    "in place: {i} vs {w} (rows {rows}, width {width})"
                );
            }
        }
    }
}
