//! Encoder speed on all-MiniLM-L6-v2 (CPU): tokenization, forward passes at the shapes
//! `../shared/anchors/encoder.py` measures (batch 1 at 16 and 64 tokens, batch 32 at 64
//! tokens), the claims test split one text at a time (single-stream), and an offline pass
//! over it as `eval` runs it; all but tokenization in fp32 and in int8 (`Precision::Int8`,
//! to compare with ONNX Runtime int8).
//!
//! Run with `make bench` (needs `make models`). Threads follow `TASKBENCH_BENCH_THREADS`
//! (default 2, the anchors' setting), so ratios to the anchors compare like with like.

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use taskbench::data::{self, LoadOptions};
use taskbench::models::encoder::head::Pooling;
use taskbench::models::encoder::{Encoder, Precision};
use taskbench::models::TokenizedText;
use taskbench::runtime::batching::token_budget_batches;

fn encoder() -> Encoder {
    let threads = std::env::var("TASKBENCH_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    taskbench::runtime::configure_threads(Some(threads));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    Encoder::load(&dir, "all-MiniLM-L6-v2", &Device::Cpu).expect("run `make models` first")
}

/// Synthetic ids of exactly `len` tokens, as the anchor script feeds.
fn synthetic(batch: usize, len: usize) -> Vec<TokenizedText> {
    (0..batch)
        .map(|b| TokenizedText {
            ids: (0..len as u32)
                .map(|i| 1000 + (i * 31 + b as u32 * 7) % 20000)
                .collect(),
            type_ids: vec![0; len],
            truncated_from: None,
        })
        .collect()
}

fn claims_test() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/claims/test.csv");
    data::load(&path, &LoadOptions::default())
        .expect("claims test split")
        .examples
        .into_iter()
        .map(|e| e.text)
        .collect()
}

/// A bench's id: fp32 keeps the plain name (so earlier baselines still compare), int8 gets
/// an `int8-` prefix.
fn bench_id(precision: Precision, name: &str) -> String {
    match precision {
        Precision::Fp32 => name.to_string(),
        Precision::Int8 => format!("int8-{name}"),
    }
}

fn forward(c: &mut Criterion) {
    let mut model = encoder();
    let mut group = c.benchmark_group("forward");
    for precision in [Precision::Fp32, Precision::Int8] {
        model.set_precision(precision).unwrap();
        for (batch, len) in [(1usize, 16usize), (1, 64), (32, 64)] {
            let items = synthetic(batch, len);
            let refs: Vec<&TokenizedText> = items.iter().collect();
            group.throughput(Throughput::Elements(batch as u64));
            let id = bench_id(precision, &format!("b{batch}xs{len}"));
            group.bench_with_input(BenchmarkId::from_parameter(id), &refs, |b, refs| {
                b.iter(|| model.features_with(refs, Pooling::Mean, true).unwrap())
            });
        }
    }
    group.finish();
}

fn tokenization(c: &mut Criterion) {
    let model = encoder();
    let texts = claims_test();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("tokenize");
    group.throughput(Throughput::Elements(refs.len() as u64));
    group.bench_function("claims-test", |b| b.iter(|| model.encode(&refs).unwrap()));
    group.finish();
}

/// Single-stream over the claims test split: each text alone (batch of one), pre-tokenized,
/// in file order, as `../shared/anchors/encoder.py --texts FILE --batch 1` runs them; the
/// time per element is the mean latency of one query.
fn single_stream_pass(c: &mut Criterion) {
    let mut model = encoder();
    let texts = claims_test();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokenized = model.encode(&refs).unwrap();
    let mut group = c.benchmark_group("single-stream");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokenized.len() as u64));
    for precision in [Precision::Fp32, Precision::Int8] {
        model.set_precision(precision).unwrap();
        let id = bench_id(precision, "claims-test");
        group.bench_function(&id, |b| {
            b.iter(|| {
                for item in &tokenized {
                    model.features_with(&[item], Pooling::Mean, true).unwrap();
                }
            })
        });
    }
    group.finish();
}

fn offline_pass(c: &mut Criterion) {
    let mut model = encoder();
    let texts = claims_test();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("offline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(refs.len() as u64));
    for precision in [Precision::Fp32, Precision::Int8] {
        model.set_precision(precision).unwrap();
        let id = bench_id(precision, "claims-test");
        group.bench_function(&id, |b| {
            b.iter(|| {
                let tokenized = model.encode(&refs).unwrap();
                let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
                for batch in token_budget_batches(&lengths, 8192, 64) {
                    let items: Vec<&TokenizedText> =
                        batch.indices.iter().map(|&i| &tokenized[i]).collect();
                    model.features_with(&items, Pooling::Mean, true).unwrap();
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    forward,
    tokenization,
    single_stream_pass,
    offline_pass
);
criterion_main!(benches);
