use super::*;
use crate::test_values;

const PATHS: [Path; 5] = [
    Path::Auto,
    Path::VnniDirect,
    Path::VnniTiled,
    Path::Avx2,
    Path::Portable,
];

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// One activation row gives bit for bit what the same row gives inside a batch: the
/// decode kernels (direct, and the row split a decode step uses) and the prefill's tiled
/// kernel sum in the same order. With quantized activations a last-bit difference flips
/// codes in the next product and grows layer by layer.
#[test]
fn one_row_equals_the_same_row_in_a_batch() {
    if !crate::has_avx512_vnni() {
        eprintln!("skipped: no AVX-512 VNNI here (neither kernel runs)");
        return;
    }
    for kind in QuantKind::ALL {
        for (rows, k) in fitting(kind, &[(96usize, 576usize), (37, 1536), (5, 32), (9, 768)]) {
            let w = test_weights(kind, rows, k, 5, 1.0);
            let x1 = test_values(k, 9, 1.0);
            let x7: Vec<f32> = (0..7).flat_map(|_| x1.iter().copied()).collect();
            let (a1, a7) = (QuantizedActs::new(&x1, k), QuantizedActs::new(&x7, k));
            let mut direct = vec![0.0; rows];
            let mut tiled = vec![0.0; 7 * rows];
            let mut split = vec![0.0; rows];
            qmatmul_path(Path::VnniDirect, kind, &w, rows, &a1, &mut direct);
            qmatmul_path(Path::VnniTiled, kind, &w, rows, &a7, &mut tiled);
            let mid = rows / 2;
            qmatvec_rows(kind, &w, &a1, 0..mid, &mut split[..mid]);
            qmatvec_rows(kind, &w, &a1, mid..rows, &mut split[mid..]);
            for (r, want) in direct.iter().enumerate() {
                for c in 0..7 {
                    assert_eq!(
                        tiled[c * rows + r].to_bits(),
                        want.to_bits(),
                        "{kind:?} {rows}x{k}"
                    );
                }
                assert_eq!(split[r].to_bits(), want.to_bits(), "{kind:?} {rows}x{k}");
            }
        }
    }
}

#[test]
fn kinds_are_listed_in_declaration_order() {
    // The kernels' per-kind dispatch relies on `ALL[kind as usize] == kind`.
    for (i, kind) in QuantKind::ALL.into_iter().enumerate() {
        assert_eq!(kind as usize, i, "{kind:?}");
    }
}

#[test]
fn f16_conversions_match_f16c() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("f16c") {
        #[target_feature(enable = "f16c")]
        unsafe fn hw_to_f32(h: u16) -> f32 {
            use std::arch::x86_64::*;
            _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
        }
        #[target_feature(enable = "f16c")]
        unsafe fn hw_to_f16(x: f32) -> u16 {
            use std::arch::x86_64::*;
            _mm_extract_epi16::<0>(_mm_cvtps_ph::<0>(_mm_set_ss(x))) as u16
        }
        for h in 0..=u16::MAX {
            // SAFETY: F16C is present.
            let want = unsafe { hw_to_f32(h) };
            let got = f16_to_f32(h);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#x}"
            );
        }
        let mut state = 12345u64;
        for i in 0..2_000_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Mostly the f16 range and its neighbourhood, plus every kind of bit pattern.
            let bits = if i % 2 == 0 {
                (state as u32 & 0x8fff_ffff) | 0x3000_0000
            } else {
                state as u32
            };
            let x = f32::from_bits(bits);
            // SAFETY: F16C is present.
            let want = unsafe { hw_to_f16(x) };
            let got = f32_to_f16(x);
            assert!(
                got == want || (x.is_nan() && got & 0x7e00 == 0x7e00),
                "{x:e}: {got:#x} vs {want:#x}"
            );
        }
        return;
    }
    // Without F16C: the exactly representable values round-trip.
    for h in 0..=u16::MAX {
        let x = f16_to_f32(h);
        if !x.is_nan() {
            assert_eq!(f32_to_f16(x), h);
        }
    }
}

#[test]
fn dequantizes_hand_built_blocks() {
    // Q4_1: d = 0.5, m = -2; nibbles j: low = j, high = 15 - j.
    let mut q4 = Vec::new();
    q4.extend_from_slice(&f32_to_f16(0.5).to_le_bytes());
    q4.extend_from_slice(&f32_to_f16(-2.0).to_le_bytes());
    q4.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    // Second block: d = 0.25, m = 1, all nibbles 0x1 / 0xf.
    q4.extend_from_slice(&f32_to_f16(0.25).to_le_bytes());
    q4.extend_from_slice(&f32_to_f16(1.0).to_le_bytes());
    q4.extend([0xf1u8; 16]);
    let mut out = vec![0.0; 64];
    dequantize_row(QuantKind::Q4_1, &q4, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], j as f32 * 0.5 - 2.0);
        assert_eq!(out[16 + j], (15 - j) as f32 * 0.5 - 2.0);
        assert_eq!(out[32 + j], 1.25);
        assert_eq!(out[48 + j], 15.0 * 0.25 + 1.0);
    }
    // Q8_0: d = 0.125, codes -16..16.
    let mut q8 = Vec::new();
    q8.extend_from_slice(&f32_to_f16(0.125).to_le_bytes());
    q8.extend((0..32i32).map(|j| (j - 16) as i8 as u8));
    let mut out = vec![0.0; 32];
    dequantize_row(QuantKind::Q8_0, &q8, &mut out);
    for (j, &v) in out.iter().enumerate() {
        assert_eq!(v, (j as f32 - 16.0) * 0.125);
    }
}

#[test]
fn vector_and_scalar_activation_quantizers_agree() {
    // The AVX-512 quantizer (taken where available) against the loop other CPUs run.
    let k = 32 * 7;
    let mut x = test_values(9 * k, 12, 4.0);
    x[..32].fill(0.0);
    let got = QuantizedActs::new(&x, k);
    let blocks = x.len() / BLOCK;
    let (mut qs, mut d, mut s) = (vec![0i8; x.len()], vec![0.0; blocks], vec![0.0; blocks]);
    let mut sum4 = vec![0i32; blocks * 8];
    quantize_blocks(&x, &mut qs, &mut d, &mut s, &mut sum4);
    assert_eq!((got.qs, got.d, got.s, got.neg_sum4), (qs, d, s, sum4));
}

#[test]
fn quantized_activations_match_reference_bytes() {
    let k = 96;
    let mut x = test_values(5 * k, 11, 3.0);
    x[32..64].fill(0.0); // an all-zero block: d = 0, codes 0
    for (j, v) in x[64..96].iter_mut().enumerate() {
        *v = (j as f32 - 16.0) * 0.5; // amax 8: ties at x·127/8 = n + 0.5 exist?
    }
    x[100] = 127.0; // a block whose codes are the values
    for kind in QuantKind::ALL {
        let want = reference::quantize_activations(kind, &x, k);
        let mut got = Vec::new();
        quantize_activations(kind, &x, k, &mut got);
        assert_eq!(got, want, "{kind:?}");
        assert_eq!(got.len(), x.len() / 32 * kind.activation_block_bytes());
    }
    // Round half to even, as `vroundps` with mode 0: 0.5·(127/127) → 0, 1.5 → 2, 2.5 → 2.
    let mut x = vec![0.0f32; 32];
    x[0] = 127.0;
    x[1] = 0.5;
    x[2] = 1.5;
    x[3] = 2.5;
    x[4] = -0.5;
    let (qs, d, s) = reference::quantize_block(&x);
    assert_eq!(&qs[..5], &[127, 0, 2, 2, 0]);
    assert_eq!(f16_to_f32(d), 1.0);
    assert_eq!(f16_to_f32(s), 131.0);
}

fn check(kind: QuantKind, rows: usize, k: usize, m: usize, seed: u64) {
    let w = test_weights(kind, rows, k, seed, 0.5);
    let x = test_values(m * k, seed + 1, 2.0);
    let (want, mag) = reference::qmatmul(kind, &w, rows, k, &x, m);
    let acts = QuantizedActs::new(&x, k);
    for threads in [1, 2] {
        for path in PATHS.into_iter().filter(|p| p.available()) {
            let mut y = vec![f32::NAN; m * rows];
            pool(threads).install(|| qmatmul_path(path, kind, &w, rows, &acts, &mut y));
            for (i, ((&g, &e), &s)) in y.iter().zip(&want).zip(&mag).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-5 * s + 1e-30,
                    "{kind:?} {path:?} {threads}t rows {rows} k {k} m {m} at {i}: {g} vs {e} (scale {s})"
                );
            }
        }
    }
}

/// The shapes whose rows hold whole blocks of `kind`.
fn fitting(kind: QuantKind, shapes: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let fits = |&&(_, k): &&(usize, usize)| k % kind.block_elems() == 0;
    shapes.iter().filter(fits).copied().collect()
}

/// Shapes for the product tests: odd row counts, one block, a partial group of 16 blocks
/// (576 = 18 blocks, 768 = 3 super-blocks), SmolLM2's sizes.
const SHAPES: [(usize, usize); 9] = [
    (1, 32),
    (7, 96),
    (576, 576),
    (1000, 160),
    (33, 1536),
    (1, 256),
    (70, 768),
    (9, 512),
    (130, 256),
];

#[test]
fn qmatmul_matches_reference_on_odd_shapes() {
    for kind in QuantKind::ALL {
        for (rows, k) in fitting(kind, &SHAPES) {
            for m in [1usize, 3, 17] {
                check(kind, rows, k, m, (rows * 31 + k + m) as u64);
            }
        }
        for (rows, k, m, seed) in [
            (70, 576, 130, 9),
            (5, 64, 4, 10),
            (9, 544, 5, 12),
            (11, 768, 70, 13),
        ] {
            if k % kind.block_elems() == 0 {
                check(kind, rows, k, m, seed);
            }
        }
    }
}

#[test]
fn row_ranges_give_the_full_products_values() {
    for kind in QuantKind::ALL {
        for (rows, k) in fitting(kind, &SHAPES) {
            let seed = (rows + k) as u64;
            let w = test_weights(kind, rows, k, seed, 0.5);
            let x = test_values(k, seed + 1, 2.0);
            let acts = QuantizedActs::new(&x, k);
            let mut want = vec![f32::NAN; rows];
            qmatmul_quantized(kind, &w, rows, &acts, &mut want);
            let (ref_y, mag) = reference::qmatmul(kind, &w, rows, k, &x, 1);
            for parts in [1usize, 2, 3] {
                let mut y = vec![f32::NAN; rows];
                let mut at = 0;
                for p in 0..parts {
                    let end = rows * (p + 1) / parts;
                    qmatvec_rows(kind, &w, &acts, at..end, &mut y[at..end]);
                    at = end;
                }
                for (i, (&g, &e)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), e.to_bits(), "{kind:?} {rows}x{k} at {i}");
                    let tol = 1e-5 * mag[i] + 1e-30;
                    assert!((g - ref_y[i]).abs() <= tol, "{kind:?} {rows}x{k} at {i}");
                }
            }
        }
    }
}

/// Sets every scale of `w` (rows of `kind`) to 1 and every min to 0, keeping the codes.
fn unit_scales(kind: QuantKind, w: &mut [u8]) {
    let one = f32_to_f16(1.0).to_le_bytes();
    for blk in w.chunks_exact_mut(kind.block_bytes()) {
        match kind {
            QuantKind::Q4_1 | QuantKind::Q5_1 => {
                blk[..2].copy_from_slice(&one);
                blk[2..4].fill(0);
            }
            QuantKind::Q4_0 | QuantKind::Q5_0 | QuantKind::Q8_0 => blk[..2].copy_from_slice(&one),
            QuantKind::Q4_K | QuantKind::Q5_K => {
                blk[..2].copy_from_slice(&one);
                blk[2..4].fill(0);
                // Scales 0..4 = 1, mins 0..4 = 0, scales 4..8 = 1 (low nibbles), mins 4..8 = 0.
                blk[4..8].fill(1);
                blk[8..12].fill(0);
                blk[12..16].fill(1);
            }
            QuantKind::Q6_K => {
                blk[192..208].fill(1);
                blk[208..210].copy_from_slice(&one);
            }
        }
    }
}

#[test]
fn integer_part_is_exact() {
    // Weights with unit scales and no mins, activations with a ±127 in every block, so
    // that d_x = 1 and the codes are the values: every path must give the integer sums
    // exactly.
    for kind in QuantKind::ALL {
        for (rows, k) in fitting(kind, &[(37, 352), (13, 768)]) {
            integer_part_is_exact_for(kind, rows, k, 6);
        }
    }
}

fn integer_part_is_exact_for(kind: QuantKind, rows: usize, k: usize, m: usize) {
    let nb = k / 32;
    let xv = test_values(m * k, 3, 127.0);
    let mut x: Vec<f32> = xv.iter().map(|v| v.round()).collect();
    for b in 0..m * nb {
        x[b * 32 + b % 32] = if b % 2 == 0 { 127.0 } else { -127.0 };
    }
    let mut w = test_weights(kind, rows, k, 4, 1.0);
    unit_scales(kind, &mut w);
    let acts = QuantizedActs::new(&x, k);
    for c in 0..m {
        assert_eq!(
            acts.codes(c).iter().map(|&q| q as f32).collect::<Vec<_>>(),
            &x[c * k..(c + 1) * k]
        );
    }
    let rb = kind.row_bytes(k);
    for path in PATHS.into_iter().filter(|p| p.available()) {
        let mut y = vec![f32::NAN; m * rows];
        qmatmul_path(path, kind, &w, rows, &acts, &mut y);
        for c in 0..m {
            for r in 0..rows {
                let row = &w[r * rb..(r + 1) * rb];
                let want: i32 = (0..nb)
                    .map(|b| {
                        let codes = &acts.codes(c)[b * 32..b * 32 + 32];
                        reference::block_isums(kind, row, b, codes)
                            .iter()
                            .sum::<i32>()
                    })
                    .sum();
                assert_eq!(y[c * rows + r], want as f32, "{kind:?} {path:?} ({c}, {r})");
            }
        }
    }
}

#[test]
fn approximates_the_float_product() {
    for kind in QuantKind::ALL {
        let (rows, k, m) = (64, 768, 3);
        let w = test_weights(kind, rows, k, 21, 0.5);
        let x = test_values(m * k, 22, 1.0);
        let exact = reference::matmul_dequantized(kind, &w, rows, k, &x, m);
        let mut y = vec![0.0; m * rows];
        qmatmul(kind, &w, rows, k, &x, m, &mut y);
        let err = y
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            .sqrt();
        let norm = exact.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!(err <= 0.02 * norm, "{kind:?}: error {err} vs norm {norm}");
    }
}
