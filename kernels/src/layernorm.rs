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

/// Gradients of `y = LayerNorm(x) * gamma + beta` (rows of `gamma.len()`) from the output's
/// gradient `g`, recomputing the normalised values from `x` so training keeps only `x`:
/// `dx = rstd * (g·gamma - mean(g·gamma) - x̂ * mean(g·gamma * x̂))`, `dgamma = Σ g x̂`,
/// `dbeta = Σ g`. Returns `(dx, dgamma, dbeta)`.
pub fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = gamma.len();
    assert!(width > 0 && x.len() == g.len() && x.len().is_multiple_of(width));
    let mut dx = vec![0.0f32; x.len()];
    let mut d_gamma = vec![0.0f32; width];
    let mut d_beta = vec![0.0f32; width];
    backward_rows(x, gamma, g, eps, &mut dx, &mut d_gamma, &mut d_beta);
    (dx, d_gamma, d_beta)
}

crate::multiversion! {
    fn backward_rows(x: &[f32], gamma: &[f32], g: &[f32], eps: f32, dx: &mut [f32], d_gamma: &mut [f32], d_beta: &mut [f32]) => backward_body
}

#[inline(always)]
fn backward_body(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    eps: f32,
    dx: &mut [f32],
    d_gamma: &mut [f32],
    d_beta: &mut [f32],
) {
    let width = gamma.len();
    let n = width as f32;
    for ((xr, gr), dr) in x
        .chunks_exact(width)
        .zip(g.chunks_exact(width))
        .zip(dx.chunks_exact_mut(width))
    {
        let mean = crate::lanes::sum_by(xr, |v| v) / n;
        let var = crate::lanes::sum_by(xr, |v| (v - mean) * (v - mean)) / n;
        let rstd = 1.0 / (var + eps).sqrt();
        let (mut sum_gg, mut sum_gg_xhat) = (0.0f32, 0.0f32);
        for i in 0..width {
            let x_hat = (xr[i] - mean) * rstd;
            let gg = gr[i] * gamma[i];
            sum_gg += gg;
            sum_gg_xhat += gg * x_hat;
            d_gamma[i] += gr[i] * x_hat;
            d_beta[i] += gr[i];
        }
        let (mean_gg, mean_gg_xhat) = (sum_gg / n, sum_gg_xhat / n);
        for i in 0..width {
            let x_hat = (xr[i] - mean) * rstd;
            dr[i] = (gr[i] * gamma[i] - mean_gg - x_hat * mean_gg_xhat) * rstd;
        }
    }
}

/// [`layer_norm_backward`] in f64, term by term.
pub fn layer_norm_backward_reference(
    x: &[f32],
    gamma: &[f32],
    g: &[f32],
    eps: f32,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let width = gamma.len();
    let n = width as f64;
    let mut dx = Vec::with_capacity(x.len());
    let (mut d_gamma, mut d_beta) = (vec![0.0f64; width], vec![0.0f64; width]);
    for (xr, gr) in x.chunks_exact(width).zip(g.chunks_exact(width)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let x_hat: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * rstd).collect();
        let gg: Vec<f64> = gr
            .iter()
            .zip(gamma)
            .map(|(&a, &b)| a as f64 * b as f64)
            .collect();
        let mean_gg = gg.iter().sum::<f64>() / n;
        let mean_gg_xhat = gg.iter().zip(&x_hat).map(|(a, b)| a * b).sum::<f64>() / n;
        for i in 0..width {
            d_gamma[i] += gr[i] as f64 * x_hat[i];
            d_beta[i] += gr[i] as f64;
            dx.push((gg[i] - mean_gg - x_hat[i] * mean_gg_xhat) * rstd);
        }
    }
    (dx, d_gamma, d_beta)
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
    fn backward_matches_the_f64_reference_on_odd_widths() {
        for (rows, width) in [(1usize, 1usize), (3, 7), (5, 384), (40, 1001)] {
            let x = test_values(rows * width, 11, 3.0);
            let gamma = test_values(width, 12, 1.5);
            let g = test_values(rows * width, 13, 1.0);
            let (dx, dg, db) = layer_norm_backward(&x, &gamma, &g, 1e-12);
            let (want_dx, want_dg, want_db) = layer_norm_backward_reference(&x, &gamma, &g, 1e-12);
            let close = |a: &[f32], b: &[f64], tol: f64| {
                for (a, b) in a.iter().zip(b) {
                    assert!((*a as f64 - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
                }
            };
            close(&dx, &want_dx, 1e-4);
            close(&dg, &want_dg, 1e-4);
            close(&db, &want_db, 1e-4);
        }
    }

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
