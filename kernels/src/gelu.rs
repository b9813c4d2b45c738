//! GELU with the exact (erf) definition, `x * 0.5 * (1 + erf(x / sqrt(2)))`, as HF
//! transformers computes `"gelu"`.
//!
//! candle's own `gelu_erf` evaluates erf in f64 one value at a time; on MiniLM at batch 32 that
//! alone costs as much as a third of the matrix work. Here erf is a branch-free rational
//! approximation in f32 that the compiler vectorises; its absolute error is below 5e-7
//! over the whole real line (tested against the f64 reference below).

/// erf(x) in f32: a rational minimax approximation on [-4, 4] (odd degree-13 numerator, even
/// degree-8 denominator, the form Eigen and XLA use for f32), clamped outside, where erf is 1 to
/// within f32 precision.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    // Numerator: odd polynomial in x.
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_023_6e-6);
    p = p.mul_add(x2, -5.692_506_7e-5);
    p = p.mul_add(x2, -7.349_906_4e-4);
    p = p.mul_add(x2, -2.954_600_5e-3);
    p = p.mul_add(x2, -1.609_603_8e-2);
    p *= x;
    // Denominator: even polynomial in x.
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_5e-4);
    q = q.mul_add(x2, -1.682_827_6e-3);
    q = q.mul_add(x2, -7.373_329_3e-3);
    q = q.mul_add(x2, -1.426_474_7e-2);
    p / q
}

crate::multiversion! {
    /// In-place GELU (erf form) over a slice, through the widest vector unit this CPU has.
    pub fn gelu_erf_inplace(xs: &mut [f32]) => gelu_erf_body
}

#[inline(always)]
pub(crate) fn gelu_erf_body(xs: &mut [f32]) {
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    for x in xs.iter_mut() {
        let v = *x;
        *x = 0.5 * v * (1.0 + erf_f32(v * FRAC_1_SQRT_2));
    }
}

crate::multiversion! {
    /// In place, the derivative of the erf GELU: `Phi(x) + x * phi(x)` (what the backward
    /// pass multiplies the incoming gradient by).
    pub fn gelu_erf_derivative_inplace(xs: &mut [f32]) => gelu_erf_derivative_body
}

#[inline(always)]
fn gelu_erf_derivative_body(xs: &mut [f32]) {
    const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
    // 1 / sqrt(2 pi)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for x in xs.iter_mut() {
        let v = *x;
        let cdf = 0.5 * (1.0 + erf_f32(v * FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * crate::exp::exp_f32(-0.5 * v * v);
        *x = cdf + v * pdf;
    }
}

crate::multiversion! {
    /// In-place GELU with the tanh approximation (HF's `gelu_new`, `gelu_pytorch_tanh`).
    pub fn gelu_tanh_inplace(xs: &mut [f32]) => gelu_tanh_body
}

#[inline(always)]
pub(crate) fn gelu_tanh_body(xs: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for x in xs.iter_mut() {
        let v = *x;
        *x = 0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v)).tanh());
    }
}

/// The portable path, kept callable so tests cover it on machines with AVX-512.
pub fn gelu_erf_scalar(xs: &mut [f32]) {
    gelu_erf_body(xs)
}

/// The scalar reference the fast path is tested against: erf evaluated in f64.
pub fn gelu_erf_reference(x: f32) -> f32 {
    let v = x as f64;
    (0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2))) as f32
}

/// erf in f64 by its Taylor series near zero and the continued fraction for erfc beyond;
/// slow, accurate to about 1e-15, used only as a test reference.
pub fn erf_f64(x: f64) -> f64 {
    if x < 0.0 {
        return -erf_f64(-x);
    }
    if x < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum: f64 = 0.0;
        let mut term: f64 = x;
        let mut n: f64 = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...))))
        let mut f = x;
        for k in (1..80).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        1.0 - (-x * x).exp() / (std::f64::consts::PI.sqrt() * f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_f32_is_within_5e7_of_the_f64_reference() {
        let mut worst = 0.0f64;
        let mut x = -6.0f32;
        while x <= 6.0 {
            let err = (erf_f32(x) as f64 - erf_f64(x as f64)).abs();
            worst = worst.max(err);
            x += 1e-3;
        }
        assert!(worst < 5e-7, "worst abs error {worst}");
    }

    #[test]
    fn reference_erf_matches_known_values() {
        // Values from tables of the error function (Abramowitz and Stegun, table 7.1).
        assert!((erf_f64(0.5) - 0.520_499_877_813_046_5).abs() < 1e-14);
        assert!((erf_f64(1.0) - 0.842_700_792_949_714_9).abs() < 1e-14);
        assert!((erf_f64(3.0) - 0.999_977_909_503_001_4).abs() < 1e-14);
    }

    #[test]
    fn derivative_matches_central_differences_of_the_reference() {
        let mut xs: Vec<f32> = (0..801).map(|i| (i as f32 - 400.0) / 80.0).collect();
        let points = xs.clone();
        gelu_erf_derivative_inplace(&mut xs);
        for (x, d) in points.iter().zip(&xs) {
            let h = 1e-3f64;
            let f = |t: f64| 0.5 * t * (1.0 + erf_f64(t / std::f64::consts::SQRT_2));
            let numeric = (f(*x as f64 + h) - f(*x as f64 - h)) / (2.0 * h);
            assert!(
                (*d as f64 - numeric).abs() < 1e-5,
                "at {x}: {d} vs {numeric}"
            );
        }
    }

    #[test]
    fn gelu_matches_reference_on_odd_sized_inputs() {
        for len in [0usize, 1, 7, 33, 1537] {
            let mut xs: Vec<f32> = (0..len)
                .map(|i| ((i * 7919 % 2001) as f32 - 1000.0) / 97.0)
                .collect();
            let expected: Vec<f32> = xs.iter().map(|&x| gelu_erf_reference(x)).collect();
            let mut portable = xs.clone();
            gelu_erf_inplace(&mut xs);
            gelu_erf_scalar(&mut portable);
            for ((got, port), want) in xs.iter().zip(&portable).zip(&expected) {
                assert!(
                    (got - want).abs() <= 2e-6 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
                assert!(
                    (port - want).abs() <= 2e-6 * want.abs().max(1.0),
                    "{port} vs {want}"
                );
            }
        }
    }
}
