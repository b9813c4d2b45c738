//! Each kernel at the shapes MiniLM-L6 (hidden 384, 12 heads, FFN 1536) gives it at batch 1
//! x 16 tokens and batch 32 x 64 tokens, single- and two-threaded where that applies.
//! Run with `cargo bench -p taskbench-kernels`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use taskbench_kernels::{attention, gelu, layernorm, linear, packed, test_values};

const HIDDEN: usize = 384;
const HEADS: usize = 12;
const FFN: usize = 1536;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn linear_products(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear");
    for tokens in [16usize, 2048] {
        for (k, n) in [(HIDDEN, 3 * HIDDEN), (HIDDEN, FFN), (FFN, HIDDEN)] {
            let x = test_values(tokens * k, 1, 1.0);
            let w = test_values(k * n, 2, 0.1);
            let b = test_values(n, 3, 0.1);
            let mut out = vec![0.0f32; tokens * n];
            group.throughput(Throughput::Elements((2 * tokens * k * n) as u64));
            for threads in [1usize, 2] {
                let pool = pool(threads);
                group.bench_function(
                    BenchmarkId::new(format!("{tokens}x{k}x{n}"), format!("{threads}t")),
                    |bench| {
                        pool.install(|| {
                            bench.iter(|| {
                                linear::linear_bias(&x, tokens, &w, k, n, &b, threads, &mut out)
                            })
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

/// The four products of all six MiniLM blocks on one thread at the row counts of
/// single-stream queries, as a query meets them: 42 MB of weights, so they stream from L3
/// as in the model, not from L2 as when one product is timed alone. gemm on `[in, out]`
/// weights against the packed kernel.
fn single_stream_products(c: &mut Criterion) {
    let shapes = [
        (HIDDEN, 3 * HIDDEN),
        (HIDDEN, HIDDEN),
        (HIDDEN, FFN),
        (FFN, HIDDEN),
    ];
    let layers: Vec<(usize, usize, Vec<f32>, Vec<f32>)> = (0..6)
        .flat_map(|l| {
            shapes
                .iter()
                .map(move |&(k, n)| (k, n, test_values(k * n, 2 + l, 0.1), test_values(n, 3, 0.1)))
        })
        .collect();
    let packed: Vec<packed::PackedLinear> = layers
        .iter()
        .map(|(k, n, w, b)| packed::PackedLinear::pack(w, *k, *n, b))
        .collect();
    let mut group = c.benchmark_group("single-stream-products");
    for tokens in [16usize, 32, 64, 128] {
        let x = test_values(tokens * FFN, 1, 1.0);
        let mut out = vec![0.0f32; tokens * FFN];
        let macs: usize = shapes.iter().map(|(k, n)| k * n).sum::<usize>() * 6 * tokens;
        group.throughput(Throughput::Elements(2 * macs as u64));
        group.bench_function(BenchmarkId::new("gemm", tokens), |bench| {
            bench.iter(|| {
                for (k, n, w, b) in &layers {
                    let (k, n) = (*k, *n);
                    let (x, out) = (&x[..tokens * k], &mut out[..tokens * n]);
                    linear::linear_bias(x, tokens, w, k, n, b, 1, out);
                }
            })
        });
        if packed::available() {
            group.bench_function(BenchmarkId::new("packed", tokens), |bench| {
                bench.iter(|| {
                    for w in &packed {
                        let x = &x[..tokens * w.k()];
                        // SAFETY: AVX-512 checked above; `out` holds tokens x n.
                        unsafe {
                            packed::linear_panels(x, tokens, w, 0..w.panels(), out.as_mut_ptr())
                        }
                    }
                })
            });
        }
    }
    group.finish();
}

fn packed_attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    for (batch, len) in [(1usize, 16usize), (32, 64)] {
        let lens = vec![len; batch];
        let tokens = batch * len;
        let qkv = test_values(tokens * 3 * HIDDEN, 4, 1.0);
        let mut out = vec![0.0f32; tokens * HIDDEN];
        group.throughput(Throughput::Elements(
            (4 * batch * len * len * HIDDEN) as u64,
        ));
        let pool = pool(2);
        group.bench_function(format!("b{batch}xs{len}"), |bench| {
            pool.install(|| {
                bench.iter(|| {
                    attention::packed_attention(&qkv, &lens, HEADS, HIDDEN / HEADS, 0.17, &mut out)
                })
            })
        });
    }
    group.finish();
}

fn elementwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    let tokens = 2048;
    let mut ffn = test_values(tokens * FFN, 5, 3.0);
    group.throughput(Throughput::Elements(ffn.len() as u64));
    group.bench_function("gelu_erf", |bench| {
        bench.iter(|| gelu::gelu_erf_inplace(&mut ffn))
    });
    let mut x = test_values(tokens * HIDDEN, 6, 1.0);
    let delta = test_values(tokens * HIDDEN, 7, 1.0);
    let gamma = test_values(HIDDEN, 8, 1.0);
    let beta = test_values(HIDDEN, 9, 1.0);
    group.throughput(Throughput::Elements(x.len() as u64));
    group.bench_function("add_layer_norm", |bench| {
        bench.iter(|| layernorm::add_layer_norm_inplace(&mut x, &delta, &gamma, &beta, 1e-12))
    });
    group.finish();
}

/// The kernels under fine-tuning's fused ops, at one training pass of a 32 x 64 MiniLM
/// batch (2,048 tokens): the forward product on PyTorch-layout weights, the bias gradient,
/// LayerNorm's backward and the attention softmax's backward.
fn training(c: &mut Criterion) {
    let mut group = c.benchmark_group("training");
    let tokens = 2048;
    let x = test_values(tokens * HIDDEN, 10, 1.0);
    let w = test_values(FFN * HIDDEN, 11, 0.1);
    let b = test_values(FFN, 12, 0.1);
    let mut out = vec![0.0f32; tokens * FFN];
    group.throughput(Throughput::Elements((2 * tokens * HIDDEN * FFN) as u64));
    let pool = pool(2);
    group.bench_function("linear_nt_2048x384x1536", |bench| {
        pool.install(|| {
            bench.iter(|| linear::linear_bias_nt(&x, tokens, &w, HIDDEN, FFN, &b, 2, &mut out))
        })
    });
    group.throughput(Throughput::Elements(out.len() as u64));
    group.bench_function("sum_rows_2048x1536", |bench| {
        bench.iter(|| linear::sum_rows(&out, FFN))
    });
    let g = test_values(tokens * HIDDEN, 13, 1.0);
    let gamma = test_values(HIDDEN, 14, 1.0);
    group.throughput(Throughput::Elements(x.len() as u64));
    group.bench_function("layer_norm_backward_2048x384", |bench| {
        bench.iter(|| layernorm::layer_norm_backward(&x, &gamma, &g, 1e-12))
    });
    let (rows, keys) = (32 * HEADS * 64, 64);
    let mut y = test_values(rows * keys, 15, 1.0);
    attention::softmax_rows(&mut y, keys);
    let gy = test_values(rows * keys, 16, 1.0);
    group.throughput(Throughput::Elements(y.len() as u64));
    group.bench_function("softmax_backward_32x12x64x64", |bench| {
        bench.iter(|| attention::softmax_backward_rows(&y, &gy, keys, 0.125))
    });
    group.finish();
}

criterion_group!(
    benches,
    linear_products,
    single_stream_products,
    packed_attention,
    elementwise,
    training
);
criterion_main!(benches);
