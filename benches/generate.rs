//! Generation speed of SmolLM2-135M-Instruct Q4_1 (CPU), at the shapes
//! `../shared/anchors/gguf.py` measures: prefill of a 128-token prompt, and greedy decoding of
//! 64 tokens after it.
//!
//! Run with `make bench` (needs `make models`). Threads follow `TASKBENCH_BENCH_THREADS`
//! (default 2, the anchors' setting); `TASKBENCH_BENCH_GGUF` names another GGUF file (a
//! re-quantization of the same model, say), benchmarked under its file name.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use taskbench::models::causal::llama::{KvCache, Logits};
use taskbench::models::causal::CausalLm;

const PROMPT_TOKENS: usize = 128;
const DECODE_TOKENS: usize = 64;

fn model() -> CausalLm {
    let threads = std::env::var("TASKBENCH_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    taskbench::runtime::configure_threads(Some(threads));
    CausalLm::load(&model_path(), None).expect("run `make models` first")
}

fn model_path() -> PathBuf {
    match std::env::var_os("TASKBENCH_BENCH_GGUF") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"),
    }
}

/// The benchmark group: `smollm2-q4_1` for the shipped model, else the file's name.
fn group_name() -> String {
    match std::env::var_os("TASKBENCH_BENCH_GGUF") {
        Some(_) => model_path()
            .file_stem()
            .map_or_else(|| "gguf".into(), |s| s.to_string_lossy().to_lowercase()),
        None => "smollm2-q4_1".into(),
    }
}

/// The anchor's synthetic prompt: ids 100 + 37·i mod 40000.
fn prompt() -> Vec<u32> {
    (0..PROMPT_TOKENS as u32)
        .map(|i| 100 + (i * 37) % 40000)
        .collect()
}

fn generation(c: &mut Criterion) {
    let lm = model();
    let llama = lm.model();
    let prompt = prompt();
    let mut group = c.benchmark_group(group_name());
    group.sample_size(10);
    group.throughput(Throughput::Elements(PROMPT_TOKENS as u64));
    group.bench_function("prefill-128", |b| {
        b.iter(|| {
            let mut cache = KvCache::new(&llama.config, PROMPT_TOKENS);
            llama.forward(&prompt, &mut cache, Logits::Last)
        })
    });
    group.throughput(Throughput::Elements(DECODE_TOKENS as u64));
    group.bench_function("decode-64", |b| {
        b.iter_batched(
            || {
                let mut cache = KvCache::new(&llama.config, PROMPT_TOKENS + DECODE_TOKENS);
                let logits = llama.forward(&prompt, &mut cache, Logits::Last);
                (cache, argmax(&logits))
            },
            |(mut cache, mut next)| {
                for _ in 0..DECODE_TOKENS {
                    next = argmax(&llama.forward(&[next], &mut cache, Logits::Last));
                }
                next
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

criterion_group!(benches, generation);
criterion_main!(benches);
