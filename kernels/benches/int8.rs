//! The int8 linear layer at MiniLM-L6's shapes (hidden 384, FFN 1536) for 16, 64 and 2048
//! rows (tokens), next to the f32 `linear_bias` on the same shapes and threads, plus the
//! per-row activation quantization on its own. Run with
//! `cargo bench -p taskbench-kernels --bench int8`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use taskbench_kernels::int8::{self, Int8Linear, QuantizedRows};
use taskbench_kernels::{linear, test_values};

const HIDDEN: usize = 384;
const FFN: usize = 1536;
const SHAPES: [(usize, usize); 4] = [
    (HIDDEN, 3 * HIDDEN),
    (HIDDEN, HIDDEN),
    (HIDDEN, FFN),
    (FFN, HIDDEN),
];

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn threads() -> Vec<usize> {
    match std::env::var("TASKBENCH_BENCH_THREADS") {
        Ok(t) => vec![t.parse().expect("TASKBENCH_BENCH_THREADS is a number")],
        Err(_) => vec![1, 2],
    }
}

fn products(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8-linear");
    for tokens in [16usize, 64, 2048] {
        for (k, n) in SHAPES {
            let x = test_values(tokens * k, 1, 1.0);
            let w = test_values(k * n, 2, 0.1);
            let b = test_values(n, 3, 0.1);
            let qw = Int8Linear::quantize(&w, k, n, &b);
            let mut qx = QuantizedRows::default();
            let mut out = vec![0.0f32; tokens * n];
            group.throughput(Throughput::Elements((2 * tokens * k * n) as u64));
            for threads in threads() {
                let pool = pool(threads);
                let shape = format!("{tokens}x{k}x{n}");
                group.bench_function(
                    BenchmarkId::new(&shape, format!("int8-{threads}t")),
                    |bench| {
                        pool.install(|| {
                            bench.iter(|| {
                                int8::linear_f32(&x, &qw, None, threads, &mut qx, &mut out)
                            })
                        })
                    },
                );
                group.bench_function(
                    BenchmarkId::new(&shape, format!("f32-{threads}t")),
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

fn quantize(c: &mut Criterion) {
    let mut group = c.benchmark_group("int8-quantize-rows");
    for (tokens, k) in [(16usize, HIDDEN), (2048, HIDDEN), (2048, FFN)] {
        let x = test_values(tokens * k, 4, 1.0);
        let mut q = QuantizedRows::default();
        group.throughput(Throughput::Elements((tokens * k) as u64));
        for threads in threads() {
            let pool = pool(threads);
            group.bench_function(
                BenchmarkId::new(format!("{tokens}x{k}"), format!("{threads}t")),
                |bench| pool.install(|| bench.iter(|| q.quantize(&x, k, threads))),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, products, quantize);
criterion_main!(benches);
