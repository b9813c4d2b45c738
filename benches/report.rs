//! What the suite report's statistics cost: the paired test (McNemar + a 2,000-resample paired
//! bootstrap of macro-F1) that `taskbench report` runs for every model against the most
//! accurate one. Goal: well under a second for a 10,000-item test set, so a report over many
//! models rebuilds in seconds.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use taskbench::metrics::stats::compare_paired;

fn paired(c: &mut Criterion) {
    let mut group = c.benchmark_group("compare_paired_2000_resamples");
    group.sample_size(10);
    for items in [500usize, 10_000] {
        let gold: Vec<usize> = (0..items).map(|i| i % 7).collect();
        let a: Vec<Option<usize>> = gold.iter().map(|&g| Some((g * 3) % 7)).collect();
        let b: Vec<Option<usize>> = gold.iter().map(|&g| Some(g)).collect();
        group.bench_with_input(BenchmarkId::from_parameter(items), &items, |bench, _| {
            bench.iter(|| compare_paired(&gold, &a, &b, 7, 2000, 3, 0.05).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, paired);
criterion_main!(benches);
