//! Practical peak arithmetic throughput of this CPU, so a benchmark can
//! report "achieved GFLOP/s = X % of peak".
//!
//! # What is measured
//!
//! * **f32 FMA** — each thread runs a loop of *independent*, register-resident
//!   fused multiply-adds (`acc = acc * a + b`). There are enough independent
//!   accumulators to cover FMA latency × issue width (4-5 cycles × 2 ports
//!   needs ≥ 8-10 in flight):
//!   * `"avx512f"`: 16 zmm accumulators, `_mm512_fmadd_ps`
//!     (one instruction = 16 lanes × 2 FLOP = **32 FLOP**);
//!   * `"avx2+fma"`: 12 ymm accumulators, `_mm256_fmadd_ps` (16 FLOP each);
//!     12 rather than 16 because only 16 ymm registers exist;
//!   * `"scalar"`: 8 independent `f32` chains of `acc * a + b` written in
//!     portable Rust (unfused multiply + add = 2 FLOP); the compiler may turn
//!     this into baseline SSE2 code, which is what portable code achieves.
//! * **int8 VNNI** (only where available) — 16 accumulators of
//!   `_mm512_dpbusd_epi32` (`"avx512vnni"`) or 12 of the 256-bit
//!   `_mm256_dpbusd_avx_epi32` (`"avxvnni"`). Ops are counted as for FLOPs:
//!   **one multiply-add = 2 ops**. One zmm `vpdpbusd` performs 16 i32 lanes ×
//!   4 (u8 × i8) products = 64 MACs = **128 ops**; one ymm form = 64 ops.
//!
//! # Method
//!
//! 1. Calibrate the iteration count on the calling thread (grow until one run
//!    takes ≥ 1 ms) — this also warms the core up to its vector frequency.
//! 2. Spawn `threads` OS threads (`std::thread::scope`). All threads start
//!    together at a barrier, then each runs the kernel for the same
//!    iteration count (about 1/8 of the budget, 2–50 ms) and times itself;
//!    they meet at a barrier again after every repetition. Repetitions
//!    continue until the budget is spent (at least [`MIN_REPS`], at most
//!    [`MAX_REPS`]).
//! 3. A repetition's throughput is the ops of all threads divided by the
//!    span from the first thread's start to the last thread's finish (equal
//!    to the sum of per-thread rates when the threads truly run at once, but
//!    never overcounting when the OS serialises them). The reported value is
//!    the **best repetition** (max), which rejects interference from a
//!    shared, noisy machine.
//!
//! The time budget (default [`DEFAULT_BUDGET`], 200 ms) is split evenly
//! between the f32 and the int8 measurement (f32 gets it all when there is no
//! VNNI); each phase may overrun its share by about one repetition. Threads are not pinned; with more threads than cores, the numbers
//! are whatever the OS scheduler delivers.
//!
//! Results are "practical peak": what a tight loop attains at the running
//! frequency, not the datasheet figure (cores × ports × lanes × max turbo).
//!
//! The FLOP-count helpers [`flops_per_token_encoder`] and
//! [`flops_per_token_decoder`] give the numerator for "% of peak".

use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Default total time budget for [`measure`].
pub const DEFAULT_BUDGET: Duration = Duration::from_millis(200);

/// Minimum timed repetitions per kernel (the best one is kept) ...
pub const MIN_REPS: usize = 3;
/// ... and maximum; in between, repetitions continue until the budget is spent.
pub const MAX_REPS: usize = 32;

/// Result of [`measure`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Peak {
    /// Number of threads run concurrently.
    pub threads: usize,
    /// Best f32 throughput of all threads together, GFLOP/s (FMA = 2 FLOP).
    pub f32_fma_gflops: f64,
    /// Best int8 dot-product throughput of all threads together, GOP/s
    /// (one u8×i8 multiply-add = 2 ops); `None` without VNNI.
    pub int8_vnni_gops: Option<f64>,
    /// f32 kernel used: `"avx512f"`, `"avx2+fma"` or `"scalar"`.
    pub isa: String,
    /// int8 kernel used: `"avx512vnni"`, `"avxvnni"`, or `None`.
    pub int8_isa: Option<String>,
    /// Wall-clock seconds the whole measurement took.
    pub seconds: f64,
}

impl Peak {
    /// `achieved_gflops` as a percentage of [`Peak::f32_fma_gflops`].
    pub fn f32_percent(&self, achieved_gflops: f64) -> f64 {
        100.0 * achieved_gflops / self.f32_fma_gflops
    }

    /// `achieved_gops` as a percentage of [`Peak::int8_vnni_gops`].
    pub fn int8_percent(&self, achieved_gops: f64) -> Option<f64> {
        self.int8_vnni_gops.map(|p| 100.0 * achieved_gops / p)
    }
}

/// f32 kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum F32Isa {
    Scalar,
    Avx2Fma,
    Avx512f,
}

impl F32Isa {
    /// Best kernel this CPU supports (runtime detection).
    pub fn detect() -> F32Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return F32Isa::Avx512f;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return F32Isa::Avx2Fma;
            }
        }
        F32Isa::Scalar
    }

    /// Name stored in [`Peak::isa`].
    pub fn as_str(self) -> &'static str {
        match self {
            F32Isa::Avx512f => "avx512f",
            F32Isa::Avx2Fma => "avx2+fma",
            F32Isa::Scalar => "scalar",
        }
    }

    /// FLOP performed by one iteration of the kernel's loop.
    pub fn flop_per_iter(self) -> f64 {
        match self {
            F32Isa::Avx512f => (F32_ACC_512 * 16 * 2) as f64,
            F32Isa::Avx2Fma => (F32_ACC_256 * 8 * 2) as f64,
            F32Isa::Scalar => (F32_ACC_SCALAR * 2) as f64,
        }
    }
}

/// int8 kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Isa {
    AvxVnni,
    Avx512Vnni,
}

impl Int8Isa {
    /// Best int8 dot-product kernel this CPU supports, if any.
    pub fn detect() -> Option<Int8Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                return Some(Int8Isa::Avx512Vnni);
            }
            if is_x86_feature_detected!("avxvnni") {
                return Some(Int8Isa::AvxVnni);
            }
        }
        None
    }

    /// Name stored in [`Peak::int8_isa`].
    pub fn as_str(self) -> &'static str {
        match self {
            Int8Isa::Avx512Vnni => "avx512vnni",
            Int8Isa::AvxVnni => "avxvnni",
        }
    }

    /// Ops (multiply-add = 2) performed by one iteration of the kernel's loop.
    pub fn ops_per_iter(self) -> f64 {
        match self {
            Int8Isa::Avx512Vnni => (I8_ACC_512 * 64 * 2) as f64,
            Int8Isa::AvxVnni => (I8_ACC_256 * 32 * 2) as f64,
        }
    }
}

/// Name of the f32 kernel [`measure`] will use on this CPU.
pub fn detect_isa() -> &'static str {
    F32Isa::detect().as_str()
}

/// Name of the int8 kernel [`measure`] will use on this CPU, if any.
pub fn detect_int8_isa() -> Option<&'static str> {
    Int8Isa::detect().map(Int8Isa::as_str)
}

/// Measure practical peak throughput on `threads` concurrent threads
/// (`0` = all available CPUs) within roughly `budget` of wall time,
/// using the best kernels this CPU supports.
pub fn measure(threads: usize, budget: Duration) -> Peak {
    measure_with(threads, budget, F32Isa::detect(), true)
}

/// Like [`measure`], but with the f32 kernel capped at `max_isa` (useful to
/// measure the scalar or AVX2 fallback on a bigger CPU) and the int8
/// measurement optional. The kernel actually used is
/// `min(max_isa, F32Isa::detect())`.
pub fn measure_with(threads: usize, budget: Duration, max_isa: F32Isa, int8: bool) -> Peak {
    let start = Instant::now();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let isa = max_isa.min(F32Isa::detect());
    let int8_isa = if int8 { Int8Isa::detect() } else { None };
    let f32_budget = if int8_isa.is_some() {
        budget / 2
    } else {
        budget
    };

    let (a, b) = (black_box(FMA_A), black_box(FMA_B));
    let flop_per_iter = isa.flop_per_iter();
    let f32_rate = match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa <= detect()`, so the CPU supports AVX-512F.
        F32Isa::Avx512f => best_rate(
            &|n| unsafe { x86::fma_f32_avx512(n, a, b) },
            flop_per_iter,
            threads,
            f32_budget,
        ),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa <= detect()`, so the CPU supports AVX2 and FMA.
        F32Isa::Avx2Fma => best_rate(
            &|n| unsafe { x86::fma_f32_avx2(n, a, b) },
            flop_per_iter,
            threads,
            f32_budget,
        ),
        _ => best_rate(
            &|n| fma_f32_scalar(n, a, b),
            flop_per_iter,
            threads,
            f32_budget,
        ),
    };

    let int8_rate = int8_isa.map(|i8isa| {
        let remaining = budget - f32_budget;
        let (ua, ib) = (black_box(I8_A), black_box(I8_B));
        let ops = i8isa.ops_per_iter();
        match i8isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detected AVX-512F + AVX512-VNNI above.
            Int8Isa::Avx512Vnni => best_rate(
                &|n| unsafe { x86::dpbusd_avx512(n, ua, ib) } as f64,
                ops,
                threads,
                remaining,
            ),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detected AVX-VNNI above.
            Int8Isa::AvxVnni => best_rate(
                &|n| unsafe { x86::dpbusd_avxvnni(n, ua, ib) } as f64,
                ops,
                threads,
                remaining,
            ),
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("int8 kernels exist only on x86_64"),
        }
    });

    Peak {
        threads,
        f32_fma_gflops: f32_rate / 1e9,
        int8_vnni_gops: int8_rate.map(|r| r / 1e9),
        isa: isa.as_str().to_string(),
        int8_isa: int8_isa.map(|i| i.as_str().to_string()),
        seconds: start.elapsed().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------
// Timing harness
// ---------------------------------------------------------------------------

/// Calibrate, then run `kernel(iters)` on `threads` threads in
/// barrier-synchronised repetitions until `budget` is spent (at least
/// [`MIN_REPS`], at most [`MAX_REPS`]); return the best repetition's summed
/// throughput in ops/s (`ops_per_iter` ops per loop iteration).
fn best_rate<F>(kernel: &F, ops_per_iter: f64, threads: usize, budget: Duration) -> f64
where
    F: Fn(u64) -> f64 + Sync,
{
    let threads = threads.max(1);
    let start = Instant::now();

    // Calibration: grow n until one run takes >= 1 ms (also warms up the
    // vector units / frequency licence).
    let mut n: u64 = 1 << 10;
    let secs_per_iter = loop {
        let t = Instant::now();
        black_box(kernel(black_box(n)));
        let e = t.elapsed();
        if e >= Duration::from_millis(1) || n >= 1 << 40 {
            break e.as_secs_f64().max(1e-9) / n as f64;
        }
        n *= 4;
    };

    // Repetition length: ~1/8 of the budget, within [2 ms, 50 ms]. If threads
    // exceed CPUs they time-share, so shrink the per-thread work accordingly.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let share = (cpus as f64 / threads as f64).min(1.0);
    let rep_secs = (budget.as_secs_f64() / 8.0).clamp(2e-3, 50e-3);
    let n_rep = ((rep_secs * share / secs_per_iter) as u64).max(1);

    // stop[r] is written (by any thread) only while repetition r runs and is
    // read only after the barrier that closes it, so all threads agree.
    let stop: Vec<AtomicBool> = (0..MAX_REPS).map(|_| AtomicBool::new(false)).collect();
    let barrier = Barrier::new(threads);
    let times: Vec<Vec<(Instant, Instant)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut v = Vec::with_capacity(MAX_REPS);
                    barrier.wait();
                    for (r, stop_r) in stop.iter().enumerate() {
                        let t0 = Instant::now();
                        black_box(kernel(black_box(n_rep)));
                        v.push((t0, Instant::now()));
                        if r + 1 >= MIN_REPS && start.elapsed() >= budget {
                            stop_r.store(true, Ordering::Relaxed);
                        }
                        barrier.wait();
                        if stop_r.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                    v
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("peak worker thread panicked"))
            .collect()
    });

    // Rate of repetition r: all threads' ops over the span from the first
    // start to the last finish. When the threads overlap (as they should)
    // this equals the sum of per-thread rates; unlike that sum, it cannot
    // overcount when the OS runs the threads one after another.
    let ops = (n_rep as f64) * ops_per_iter * (threads as f64);
    (0..times[0].len())
        .map(|r| {
            let first = times.iter().map(|t| t[r].0).min().expect("threads >= 1");
            let last = times.iter().map(|t| t[r].1).max().expect("threads >= 1");
            ops / (last - first).as_secs_f64().max(1e-9)
        })
        .fold(0.0, f64::max)
}

// ---------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------

const F32_ACC_512: usize = 16;
const F32_ACC_256: usize = 12;
const F32_ACC_SCALAR: usize = 8;
const I8_ACC_512: usize = 16;
const I8_ACC_256: usize = 12;

/// `acc = acc * FMA_A + FMA_B` has fixed point `FMA_B / (1 - FMA_A) = 1`, so
/// values stay normal (no overflow, no denormal slow paths).
const FMA_A: f32 = 0.999;
const FMA_B: f32 = 0.001;
const I8_A: u8 = 3;
const I8_B: i8 = -2;

/// Starting value of f32 lane `k` (accumulator-major, lane-minor).
fn f32_init(k: usize) -> f32 {
    0.25 + 0.001 * k as f32
}

/// Starting value of i32 lane `k` (accumulator-major, lane-minor).
fn i32_init(k: usize) -> i32 {
    k as i32 * 7 - 100
}

/// Checksum shared by all f32 kernels: sum of the final lane values, in
/// lane order, accumulated in f64.
fn checksum_f32(lanes: &[f32]) -> f64 {
    lanes.iter().map(|&x| x as f64).sum()
}

/// Checksum shared by all int8 kernels: wrapping sum of the final i32 lanes.
fn checksum_i32(lanes: &[i32]) -> i64 {
    lanes.iter().map(|&x| x as i64).sum()
}

/// Portable fallback: 8 independent chains of unfused `acc * a + b`.
fn fma_f32_scalar(iters: u64, a: f32, b: f32) -> f64 {
    let mut acc: [f32; F32_ACC_SCALAR] = std::array::from_fn(f32_init);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * a + b;
        }
    }
    checksum_f32(&acc)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// 16 zmm accumulators × `vfmadd` per iteration (512 FLOP / iteration).
    #[target_feature(enable = "avx512f")]
    pub(super) fn fma_f32_avx512(iters: u64, a: f32, b: f32) -> f64 {
        const L: usize = 16;
        let init: [f32; F32_ACC_512 * L] = std::array::from_fn(f32_init);
        let va = _mm512_set1_ps(a);
        let vb = _mm512_set1_ps(b);
        // SAFETY: each load reads 16 in-bounds f32 of `init`.
        let mut acc: [__m512; F32_ACC_512] =
            std::array::from_fn(|j| unsafe { _mm512_loadu_ps(init.as_ptr().add(j * L)) });
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, va, vb);
            }
        }
        let mut out = [0f32; F32_ACC_512 * L];
        for (j, x) in acc.iter().enumerate() {
            // SAFETY: each store writes 16 in-bounds f32 of `out`.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(j * L), *x) };
        }
        checksum_f32(&out)
    }

    /// 12 ymm accumulators × `vfmadd` per iteration (192 FLOP / iteration).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn fma_f32_avx2(iters: u64, a: f32, b: f32) -> f64 {
        const L: usize = 8;
        let init: [f32; F32_ACC_256 * L] = std::array::from_fn(f32_init);
        let va = _mm256_set1_ps(a);
        let vb = _mm256_set1_ps(b);
        // SAFETY: each load reads 8 in-bounds f32 of `init`.
        let mut acc: [__m256; F32_ACC_256] =
            std::array::from_fn(|j| unsafe { _mm256_loadu_ps(init.as_ptr().add(j * L)) });
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, va, vb);
            }
        }
        let mut out = [0f32; F32_ACC_256 * L];
        for (j, x) in acc.iter().enumerate() {
            // SAFETY: each store writes 8 in-bounds f32 of `out`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j * L), *x) };
        }
        checksum_f32(&out)
    }

    /// 16 zmm accumulators × `vpdpbusd` per iteration (2048 ops / iteration).
    /// Every lane gains `4 * ua * ib` per iteration (wrapping i32).
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) fn dpbusd_avx512(iters: u64, ua: u8, ib: i8) -> i64 {
        const L: usize = 16;
        let init: [i32; I8_ACC_512 * L] = std::array::from_fn(i32_init);
        let va = _mm512_set1_epi8(ua as i8);
        let vb = _mm512_set1_epi8(ib);
        // SAFETY: each load reads 64 in-bounds bytes of `init`.
        let mut acc: [__m512i; I8_ACC_512] = std::array::from_fn(|j| unsafe {
            _mm512_loadu_si512(init.as_ptr().add(j * L) as *const _)
        });
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm512_dpbusd_epi32(*x, va, vb);
            }
        }
        let mut out = [0i32; I8_ACC_512 * L];
        for (j, x) in acc.iter().enumerate() {
            // SAFETY: each store writes 64 in-bounds bytes of `out`.
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(j * L) as *mut _, *x) };
        }
        checksum_i32(&out)
    }

    /// 12 ymm accumulators × VEX `vpdpbusd` per iteration (768 ops / iter).
    #[target_feature(enable = "avxvnni")]
    pub(super) fn dpbusd_avxvnni(iters: u64, ua: u8, ib: i8) -> i64 {
        const L: usize = 8;
        let init: [i32; I8_ACC_256 * L] = std::array::from_fn(i32_init);
        let va = _mm256_set1_epi8(ua as i8);
        let vb = _mm256_set1_epi8(ib);
        // SAFETY: each load reads 32 in-bounds bytes of `init`.
        let mut acc: [__m256i; I8_ACC_256] = std::array::from_fn(|j| unsafe {
            _mm256_loadu_si256(init.as_ptr().add(j * L) as *const __m256i)
        });
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_dpbusd_avx_epi32(*x, va, vb);
            }
        }
        let mut out = [0i32; I8_ACC_256 * L];
        for (j, x) in acc.iter().enumerate() {
            // SAFETY: each store writes 32 in-bounds bytes of `out`.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(j * L) as *mut __m256i, *x) };
        }
        checksum_i32(&out)
    }
}

// ---------------------------------------------------------------------------
// FLOP counting helpers
// ---------------------------------------------------------------------------

/// Matrix-multiply FLOPs per token of one forward pass through a BERT-style
/// encoder (every token attends to all `seq_len` tokens). One multiply-add =
/// 2 FLOP; embeddings, layer norms, softmax, activations, biases and any
/// pooler/classifier head are ignored.
///
/// Per layer, multiply-adds per token (`h = hidden`, `i = intermediate`):
///
/// | part                 | MACs          |
/// |----------------------|---------------|
/// | Q, K, V projections  | `3·h·h`       |
/// | scores `Q·Kᵀ`        | `seq·h`       |
/// | context `P·V`        | `seq·h`       |
/// | output projection    | `h·h`         |
/// | FFN up + down        | `2·h·i`       |
///
/// `FLOP/token = 2 · layers · (4·h² + 2·seq·h + 2·h·i)`
pub fn flops_per_token_encoder(
    hidden: usize,
    intermediate: usize,
    layers: usize,
    seq_len: usize,
) -> f64 {
    let (h, i, l, s) = (
        hidden as f64,
        intermediate as f64,
        layers as f64,
        seq_len as f64,
    );
    let macs_per_layer = 4.0 * h * h + 2.0 * s * h + 2.0 * h * i;
    2.0 * l * macs_per_layer
}

/// Matrix-multiply FLOPs per token of a llama-style decoder (pre-norm,
/// grouped-query attention, SwiGLU MLP, final LM head over the vocabulary).
/// One multiply-add = 2 FLOP; embeddings lookup, norms, RoPE, softmax and the
/// SiLU/gating elementwise work are ignored.
///
/// With `h = hidden`, `i = intermediate`, `head_dim = h / n_heads`,
/// `kv = n_kv_heads · head_dim`, and `ctx = context_len` (number of key
/// positions this token attends to, itself included), per layer MACs:
///
/// | part                 | MACs            |
/// |----------------------|-----------------|
/// | Q projection         | `h·h`           |
/// | K, V projections     | `2·h·kv`        |
/// | scores + context     | `2·ctx·h` (GQA shares K/V but not the FLOPs) |
/// | O projection         | `h·h`           |
/// | gate, up, down       | `3·h·i`         |
///
/// plus, once per token, the LM head `vocab·h`:
///
/// `FLOP/token = 2 · (layers · (2·h² + 2·h·kv + 3·h·i + 2·ctx·h) + vocab·h)`
///
/// For the average token of a causal prefill of `S` tokens use
/// `context_len = (S + 1) / 2`; for decoding at position `p` (0-based) use
/// `p + 1`; `0` gives the attention-free (weights-only) count, which equals
/// `2 × non-embedding params + 2 × LM-head params`.
pub fn flops_per_token_decoder(
    hidden: usize,
    intermediate: usize,
    layers: usize,
    n_heads: usize,
    n_kv_heads: usize,
    vocab: usize,
    context_len: usize,
) -> f64 {
    assert!(
        n_heads > 0 && hidden.is_multiple_of(n_heads),
        "hidden must divide into n_heads"
    );
    let head_dim = (hidden / n_heads) as f64;
    let (h, i, l) = (hidden as f64, intermediate as f64, layers as f64);
    let kv = n_kv_heads as f64 * head_dim;
    let ctx = context_len as f64;
    let macs_per_layer = 2.0 * h * h + 2.0 * h * kv + 3.0 * h * i + 2.0 * ctx * h;
    2.0 * (l * macs_per_layer + vocab as f64 * h)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference for the f32 checksum semantics: `lanes` independent chains
    /// started at `f32_init(k)`, each doing `iters` steps of `x*a + b`
    /// (fused like the SIMD kernels, or unfused like the scalar one).
    fn reference_f32(iters: u64, lanes: usize, fused: bool) -> f64 {
        let v: Vec<f32> = (0..lanes)
            .map(|k| {
                let mut x = f32_init(k);
                for _ in 0..iters {
                    x = if fused {
                        x.mul_add(FMA_A, FMA_B)
                    } else {
                        x * FMA_A + FMA_B
                    };
                }
                x
            })
            .collect();
        checksum_f32(&v)
    }

    /// Reference for the int8 checksum: each lane gains 4·a·b per iteration.
    fn reference_i32(iters: u64, lanes: usize) -> i64 {
        let step = 4 * I8_A as i32 * I8_B as i32;
        let v: Vec<i32> = (0..lanes)
            .map(|k| i32_init(k).wrapping_add(step.wrapping_mul(iters as i32)))
            .collect();
        checksum_i32(&v)
    }

    #[test]
    fn scalar_checksum_semantics() {
        for iters in [0, 1, 7, 1000] {
            let got = fma_f32_scalar(iters, FMA_A, FMA_B);
            assert_eq!(got, reference_f32(iters, F32_ACC_SCALAR, false));
            // unfused vs fused: the map contracts by 0.999 per step, so the
            // rounding differences stay below ~1/(1-0.999) ulp ≈ 1e-4 relative
            let fused = reference_f32(iters, F32_ACC_SCALAR, true);
            assert!(
                (got - fused).abs() <= 2e-4 * fused.abs(),
                "{got} vs {fused}"
            );
        }
        // converges to the fixed point 1.0 per lane
        let c = fma_f32_scalar(100_000, FMA_A, FMA_B);
        assert!((c - F32_ACC_SCALAR as f64).abs() < 1e-3, "{c}");
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_checksums_match_reference() {
        for iters in [0, 1, 7, 1000] {
            if is_x86_feature_detected!("avx512f") {
                let got = unsafe { x86::fma_f32_avx512(iters, FMA_A, FMA_B) };
                assert_eq!(got, reference_f32(iters, F32_ACC_512 * 16, true));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                let got = unsafe { x86::fma_f32_avx2(iters, FMA_A, FMA_B) };
                assert_eq!(got, reference_f32(iters, F32_ACC_256 * 8, true));
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                let got = unsafe { x86::dpbusd_avx512(iters, I8_A, I8_B) };
                assert_eq!(got, reference_i32(iters, I8_ACC_512 * 16));
            }
            if is_x86_feature_detected!("avxvnni") {
                let got = unsafe { x86::dpbusd_avxvnni(iters, I8_A, I8_B) };
                assert_eq!(got, reference_i32(iters, I8_ACC_256 * 8));
            }
        }
    }

    #[test]
    fn isa_matches_detection() {
        #[cfg(target_arch = "x86_64")]
        {
            let expect = if is_x86_feature_detected!("avx512f") {
                "avx512f"
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                "avx2+fma"
            } else {
                "scalar"
            };
            assert_eq!(detect_isa(), expect);
            let expect8 =
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni") {
                    Some("avx512vnni")
                } else if is_x86_feature_detected!("avxvnni") {
                    Some("avxvnni")
                } else {
                    None
                };
            assert_eq!(detect_int8_isa(), expect8);
        }
        let p = measure(1, Duration::from_millis(20));
        assert_eq!(p.isa, detect_isa());
        assert_eq!(p.int8_isa.as_deref(), detect_int8_isa());
    }

    fn assert_sane(p: &Peak, threads: usize) {
        assert_eq!(p.threads, threads);
        assert!(
            p.f32_fma_gflops.is_finite() && p.f32_fma_gflops > 0.0,
            "{p:?}"
        );
        // physical plausibility: < 1 TFLOP/s per thread
        assert!(p.f32_fma_gflops / (threads as f64) < 1000.0, "{p:?}");
        assert_eq!(p.int8_vnni_gops.is_some(), p.int8_isa.is_some());
        if let Some(g) = p.int8_vnni_gops {
            assert!(
                g.is_finite() && g > 0.0 && g / (threads as f64) < 4000.0,
                "{p:?}"
            );
        }
        assert!(
            p.seconds.is_finite() && p.seconds > 0.0 && p.seconds < 30.0,
            "{p:?}"
        );
    }

    #[test]
    fn measure_is_sane_and_scaling_is_printed() {
        let p1 = measure(1, DEFAULT_BUDGET);
        assert_sane(&p1, 1);
        let p2 = measure(2, DEFAULT_BUDGET);
        assert_sane(&p2, 2);
        // Not asserted (shared, noisy machine) — informational only.
        println!("1 thread : {p1:?}");
        println!("2 threads: {p2:?}");
        println!(
            "f32 scaling 2/1 threads: {:.2}x",
            p2.f32_fma_gflops / p1.f32_fma_gflops
        );
    }

    #[test]
    fn forced_fallbacks_are_sane() {
        for isa in [F32Isa::Scalar, F32Isa::Avx2Fma] {
            let p = measure_with(1, Duration::from_millis(30), isa, false);
            assert_sane(&p, 1);
            assert_eq!(p.isa, isa.min(F32Isa::detect()).as_str());
            assert!(p.int8_isa.is_none());
            println!("{}: {:.1} GFLOP/s", p.isa, p.f32_fma_gflops);
        }
    }

    #[test]
    fn zero_threads_means_all_cpus_and_tiny_budget_works() {
        let p = measure(0, Duration::ZERO);
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_sane(&p, n);
    }

    #[test]
    fn serde_roundtrip() {
        let p = Peak {
            threads: 2,
            f32_fma_gflops: 123.5,
            int8_vnni_gops: Some(456.25),
            isa: "avx512f".into(),
            int8_isa: Some("avx512vnni".into()),
            seconds: 0.2,
        };
        let s = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Peak>(&s).unwrap(), p);
    }

    #[test]
    fn percent_helpers() {
        let p = Peak {
            threads: 1,
            f32_fma_gflops: 200.0,
            int8_vnni_gops: None,
            isa: "avx512f".into(),
            int8_isa: None,
            seconds: 0.1,
        };
        assert_eq!(p.f32_percent(50.0), 25.0);
        assert_eq!(p.int8_percent(1.0), None);
    }

    #[test]
    fn encoder_flops_minilm_l6() {
        // MiniLM-L6: h=384, i=1536, 6 layers.
        // per layer MACs: 4·384² = 589_824; 2·384·1536 = 1_179_648;
        //   seq=128: 2·128·384 = 98_304  → 1_867_776 MACs → ×2×6
        assert_eq!(flops_per_token_encoder(384, 1536, 6, 128), 22_413_312.0);
        // seq=0 (weights only): 1_769_472 MACs → 21_233_664 FLOP
        //   = 2 × 10.6M non-embedding weight params
        assert_eq!(flops_per_token_encoder(384, 1536, 6, 0), 21_233_664.0);
        // seq=512: attention 2·512·384 = 393_216 → 2_162_688 MACs
        assert_eq!(flops_per_token_encoder(384, 1536, 6, 512), 25_952_256.0);
    }

    #[test]
    fn decoder_flops_smollm2_135m() {
        // SmolLM2-135M-like: h=576, i=1536, 30 layers, 9 heads (head_dim 64),
        // 3 kv heads (kv = 192), vocab 49152.
        // per layer MACs: 2·576² = 663_552; 2·576·192 = 221_184;
        //   3·576·1536 = 2_654_208  → 3_538_944; ×30 = 106_168_320
        // LM head: 49152·576 = 28_311_552
        // ctx=0: 2 × 134_479_872 = 268_959_744
        assert_eq!(
            flops_per_token_decoder(576, 1536, 30, 9, 3, 49152, 0),
            268_959_744.0
        );
        // ctx=128: + 2 × 30 × 2·128·576 = 2 × 4_423_680 = 8_847_360
        assert_eq!(
            flops_per_token_decoder(576, 1536, 30, 9, 3, 49152, 128),
            277_807_104.0
        );
        // ctx=1024: + 2 × 30 × 2·1024·576 = 70_778_880
        assert_eq!(
            flops_per_token_decoder(576, 1536, 30, 9, 3, 49152, 1024),
            339_738_624.0
        );
        // MHA (kv heads = heads) costs more in K/V projections only:
        // + 2 × 30 × 2·576·(576-192) = 26_542_080
        assert_eq!(
            flops_per_token_decoder(576, 1536, 30, 9, 9, 49152, 0),
            295_501_824.0
        );
    }
}
