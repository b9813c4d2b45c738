//! Reductions in 16 independent lanes. A single running sum or max is a serial dependency
//! chain that the compiler may not reorder (floating-point adds are not associative), so it
//! runs one element per cycle; sixteen lanes become one vector operation per 16 elements.

pub const LANES: usize = 16;

/// Sum of `f(x)` over `xs`.
#[inline(always)]
pub fn sum_by(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            *a += f(*x);
        }
    }
    chunks.remainder().iter().map(|x| f(*x)).sum::<f32>() + acc.iter().sum::<f32>()
}

/// Largest value (`-inf` for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            // Not `f32::max`: its NaN handling keeps LLVM from using a vector max.
            *a = if *x > *a { *x } else { *a };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(acc.iter())
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Smallest value (`inf` for an empty slice).
#[inline(always)]
pub fn min(xs: &[f32]) -> f32 {
    let mut acc = [f32::INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk) {
            // As in `max`: a plain comparison vectorises, `f32::min` does not.
            *a = if *x < *a { *x } else { *a };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(acc.iter())
        .copied()
        .fold(f32::INFINITY, f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_plain_loops_on_odd_lengths() {
        for len in [0usize, 1, 15, 16, 17, 100] {
            let xs = crate::test_values(len, len as u64, 5.0);
            let plain_sum: f32 = xs.iter().map(|x| x * x).sum();
            assert!((sum_by(&xs, |x| x * x) - plain_sum).abs() <= 1e-4 * plain_sum.max(1.0));
            assert_eq!(
                max(&xs),
                xs.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            );
            assert_eq!(min(&xs), xs.iter().copied().fold(f32::INFINITY, f32::min));
        }
    }
}
