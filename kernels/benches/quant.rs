//! Quantized products at SmolLM2-135M's shapes (hidden 576, 3 KV heads × 64, FFN 1536,
//! vocabulary 49152; Q4_1 layers, Q8_0 output head, and the other formats' products in its
//! Q4_0, Q4_K_M and Q5_K_M re-quantizations), at 1 activation row (decode) and 128
//! (prefill), on a 2-thread pool; then whole-model passes: a decode step (30 layers of 7
//! products on distinct weights, 96 MB, plus the head) and a 128-token prefill (the layers at
//! m = 128, the head for the last token only). Run with `cargo bench --bench quant`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use taskbench_kernels::quant::{self, qmatmul, qmatmul_path, Path, QuantKind, QuantizedActs};
use taskbench_kernels::test_values;

const HIDDEN: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;
const VOCAB: usize = 49152;
const LAYERS: usize = 30;

fn pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool")
}

fn shapes(c: &mut Criterion) {
    let mut group = c.benchmark_group("qmatmul");
    group
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    let pool = pool();
    for (kind, rows, k) in [
        (QuantKind::Q4_1, HIDDEN, HIDDEN),
        (QuantKind::Q4_1, KV, HIDDEN),
        (QuantKind::Q4_1, FFN, HIDDEN),
        (QuantKind::Q4_1, HIDDEN, FFN),
        (QuantKind::Q8_0, VOCAB, HIDDEN),
        // The types of a Q4_K_M SmolLM2: Q5_0 where rows are 576 wide, K-quants for the
        // down projection.
        (QuantKind::Q5_0, HIDDEN, HIDDEN),
        (QuantKind::Q5_0, FFN, HIDDEN),
        (QuantKind::Q4_K, HIDDEN, FFN),
        (QuantKind::Q6_K, HIDDEN, FFN),
        // And of its Q4_0 and Q5_K_M ones.
        (QuantKind::Q4_0, FFN, HIDDEN),
        (QuantKind::Q5_1, FFN, HIDDEN),
        (QuantKind::Q5_K, HIDDEN, FFN),
    ] {
        let w = quant::test_weights(kind, rows, k, 1, 0.05);
        for m in [1usize, 128] {
            let x = test_values(m * k, 2, 1.0);
            let mut y = vec![0.0f32; m * rows];
            group.throughput(Throughput::Elements((2 * m * rows * k) as u64));
            let name = format!("{kind:?}/{rows}x{k}");
            group.bench_function(BenchmarkId::new(name.clone(), format!("m{m}")), |b| {
                pool.install(|| b.iter(|| qmatmul(kind, &w, rows, k, &x, m, &mut y)))
            });
            if m > 1 {
                let acts = QuantizedActs::new(&x, k);
                group.bench_function(BenchmarkId::new(name, format!("m{m}-direct")), |b| {
                    pool.install(|| {
                        b.iter(|| qmatmul_path(Path::VnniDirect, kind, &w, rows, &acts, &mut y))
                    })
                });
            }
        }
    }
    group.finish();
}

struct Layer {
    q: Vec<u8>,
    k: Vec<u8>,
    v: Vec<u8>,
    o: Vec<u8>,
    gate: Vec<u8>,
    up: Vec<u8>,
    down: Vec<u8>,
}

/// The products of one forward pass over `m` tokens (attention and norms left out); the
/// head runs on the last token only, as in generation.
fn forward(layers: &[Layer], head: &[u8], m: usize, x: &[f32], bufs: &mut [Vec<f32>; 3]) {
    let q4 = QuantKind::Q4_1;
    let [a, b, c] = bufs;
    for l in layers {
        qmatmul(q4, &l.q, HIDDEN, HIDDEN, x, m, &mut a[..m * HIDDEN]);
        qmatmul(q4, &l.k, KV, HIDDEN, x, m, &mut b[..m * KV]);
        qmatmul(q4, &l.v, KV, HIDDEN, x, m, &mut b[..m * KV]);
        qmatmul(
            q4,
            &l.o,
            HIDDEN,
            HIDDEN,
            &a[..m * HIDDEN],
            m,
            &mut c[..m * HIDDEN],
        );
        qmatmul(q4, &l.gate, FFN, HIDDEN, x, m, &mut a[..m * FFN]);
        qmatmul(q4, &l.up, FFN, HIDDEN, x, m, &mut b[..m * FFN]);
        qmatmul(
            q4,
            &l.down,
            HIDDEN,
            FFN,
            &b[..m * FFN],
            m,
            &mut c[..m * HIDDEN],
        );
    }
    let last = &x[(m - 1) * HIDDEN..m * HIDDEN];
    qmatmul(
        QuantKind::Q8_0,
        head,
        VOCAB,
        HIDDEN,
        last,
        1,
        &mut a[..VOCAB],
    );
}

fn model(c: &mut Criterion) {
    let q4 = QuantKind::Q4_1;
    let w = |rows, k, seed| quant::test_weights(q4, rows, k, seed, 0.05);
    let layers: Vec<Layer> = (0..LAYERS as u64)
        .map(|i| Layer {
            q: w(HIDDEN, HIDDEN, 10 * i),
            k: w(KV, HIDDEN, 10 * i + 1),
            v: w(KV, HIDDEN, 10 * i + 2),
            o: w(HIDDEN, HIDDEN, 10 * i + 3),
            gate: w(FFN, HIDDEN, 10 * i + 4),
            up: w(FFN, HIDDEN, 10 * i + 5),
            down: w(HIDDEN, FFN, 10 * i + 6),
        })
        .collect();
    let head = quant::test_weights(QuantKind::Q8_0, VOCAB, HIDDEN, 99, 0.05);
    let mut group = c.benchmark_group("smollm2");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    let pool = pool();
    for m in [1usize, 128] {
        let x = test_values(m * HIDDEN, 3, 1.0);
        let mut bufs = [
            vec![0.0; VOCAB.max(m * FFN)],
            vec![0.0; m * FFN],
            vec![0.0; m * HIDDEN],
        ];
        let name = if m == 1 { "decode_step" } else { "prefill_128" };
        group.bench_function(name, |b| {
            pool.install(|| b.iter(|| forward(&layers, &head, m, &x, &mut bufs)))
        });
    }
    group.finish();
}

criterion_group!(benches, shapes, model);
criterion_main!(benches);
