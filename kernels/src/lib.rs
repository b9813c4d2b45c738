//! CPU kernels for the hot loops of taskbench's models.
//!
//! Each kernel works on plain `f32` slices so that it can be tested against its scalar
//! reference on random inputs and benchmarked without a model. The model code in the main
//! crate wraps them as candle custom ops; nothing here knows about tensors.
//!
//! Vectorised paths: each kernel's loop is an `#[inline(always)]` function compiled three
//! times by [`multiversion!`] (AVX-512, AVX2 + FMA, portable) and chosen at run time, so
//! one binary runs on any x86-64 and uses what the CPU has.

pub mod attention;
pub mod decode_attention;
pub mod encoder;
pub mod exp;
pub mod gelu;
pub mod int8;
pub mod lanes;
pub mod layernorm;
pub mod linear;
pub mod packed;
pub mod quant;
pub mod team;

/// Defines `fn $name($args) -> $ret` (with the given visibility) that calls `$body` (an `#[inline(always)]` function
/// with the same arguments) compiled for AVX-512, AVX2 + FMA or the baseline, whichever the
/// CPU supports.
#[macro_export]
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::has_avx512() {
                    // SAFETY: the features `wide` is compiled for are present.
                    return unsafe { wide($($arg),*) };
                }
                if $crate::has_avx2_fma() {
                    // SAFETY: as above, for `narrow`.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// AVX-512 F + VL and FMA, detected once.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static YES: OnceLock<bool> = OnceLock::new();
        *YES.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("fma")
                && std::env::var_os("TASKBENCH_NO_AVX512").is_none()
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX-512 F, BW, VL and VNNI plus F16C and FMA (the quantized kernels' fast path), detected
/// once; off, like [`has_avx512`], when `TASKBENCH_NO_AVX512` is set.
pub fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static YES: OnceLock<bool> = OnceLock::new();
        *YES.get_or_init(|| {
            has_avx512()
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
                && std::arch::is_x86_feature_detected!("f16c")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// AVX2 and FMA, detected once.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static YES: OnceLock<bool> = OnceLock::new();
        *YES.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A raw pointer to an output buffer shared by parallel tasks that each write a disjoint part
/// of it (distinct columns or rows); the task code states which part, where it writes.
#[derive(Clone, Copy)]
pub(crate) struct DisjointWrites(pub(crate) *mut f32);

// SAFETY: only ever used for writes to disjoint regions, as each use site documents.
unsafe impl Send for DisjointWrites {}
unsafe impl Sync for DisjointWrites {}

impl DisjointWrites {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// Deterministic pseudo-random values in [-scale, scale] for tests and benches.
pub fn test_values(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}
