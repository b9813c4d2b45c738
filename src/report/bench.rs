//! `bench.json` (what `taskbench bench` measured, every setting included) and its terminal
//! summary.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::environment::Environment;
use crate::runtime::load::{MaxQpsResult, Scenario, ScenarioResult};
use crate::runtime::peak::Peak;

/// Version of `bench.json`'s layout.
pub const BENCH_SCHEMA_VERSION: u32 = 1;
pub const BENCH_FILE: &str = "bench.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct BenchResults {
    pub schema_version: u32,
    /// `bench`.
    pub kind: String,
    pub created_at: String,
    pub model: String,
    pub data: String,
    pub data_sha256: String,
    /// Distinct queries (rows); a run needing more cycles through them.
    pub queries: usize,
    pub scenario: Scenario,
    /// The run, or the best passing run of `--find-max-qps`.
    pub result: Option<ScenarioResult>,
    pub search: Option<MaxQpsResult>,
    /// Local classifiers: achieved GFLOP/s against the machine's measured peak.
    pub compute: Option<ComputeReport>,
    pub environment: Environment,
}

/// How close to the machine's roof the model ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ComputeReport {
    /// Matrix-multiply FLOPs of one average query (2 per multiply-add).
    pub flops_per_query: f64,
    /// Giga-operations per second achieved (FLOP for fp32, integer multiply-add ops x 2 for
    /// int8).
    pub achieved_gflops: f64,
    /// Measured at start-up by an FMA / VNNI loop on the same threads.
    pub peak: Peak,
    /// The roof compared with: `f32 FMA` or `int8 VNNI`, as the model's precision.
    pub roof: String,
    pub percent_of_peak: f64,
}

/// Writes `DIR/bench.json` atomically; returns its path.
pub fn write_bench(dir: &Path, results: &BenchResults) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create the output folder: {e}", dir.display()))?;
    let path = dir.join(BENCH_FILE);
    super::write_json(&path, results)?;
    Ok(path)
}

/// The terminal summary: the scenario's verdict, its latency and rate, the search, the roof.
pub fn render_bench(b: &BenchResults) -> String {
    let mut out = format!(
        "{} on {} ({} distinct queries), {:?}\n",
        b.model, b.data, b.queries, b.scenario
    );
    if let Some(search) = &b.search {
        out += &render_search(search);
    }
    match &b.result {
        Some(r) => out += &render_result(r),
        None => out += "no run passed\n",
    }
    if let Some(c) = &b.compute {
        let _ = writeln!(
            out,
            "Compute      {:.1} G op/s achieved = {:.1}% of this machine's measured {} peak ({} threads)",
            c.achieved_gflops, c.percent_of_peak, c.roof, c.peak.threads
        );
    }
    out
}

fn render_result(r: &ScenarioResult) -> String {
    let mut out = String::new();
    if r.scenario != Scenario::Offline {
        let _ = writeln!(out, "Verdict      {}", r.verdict);
    }
    let _ = writeln!(
        out,
        "Queries      {} completed of {} issued in {:.2} s ({:.1}/s), {} errors{}",
        r.completed,
        r.issued,
        r.duration_s,
        r.items_per_s,
        r.errors,
        if r.cycled_queries {
            ", query set cycled"
        } else {
            ""
        }
    );
    if r.scenario == Scenario::Offline {
        // Every query arrives at once, so per-query latency is queueing: throughput is the
        // figure.
        let _ = writeln!(out, "Throughput   {:.1} items/s", r.items_per_s);
        return out;
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            out,
            "Latency ms   p50 {:.2}  p90 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
            l.p50_ms, l.p90_ms, l.p95_ms, l.p99_ms, l.max_ms
        );
    }
    let _ = writeln!(
        out,
        "Judged       p{} = {} (needs >= {} queries: {})",
        r.percentile * 100.0,
        r.percentile_ms
            .map_or("-".into(), |ms| format!("{ms:.2} ms")),
        r.min_queries_for_percentile,
        if r.reliable { "met" } else { "NOT met" }
    );
    if let Some(first) = &r.first_error {
        let _ = writeln!(out, "First error  {first}");
    }
    out
}

fn render_search(s: &MaxQpsResult) -> String {
    let mut out = String::from("Search       ");
    let tried: Vec<String> = s
        .tried
        .iter()
        .map(|t| {
            format!(
                "{:.1} qps {}",
                t.qps,
                if t.passed { "pass" } else { "fail" }
            )
        })
        .collect();
    out += &tried.join(", ");
    out += if s.converged {
        " (converged)\n"
    } else {
        " (not converged)\n"
    };
    if let Some(best) = &s.best {
        let _ = writeln!(
            out,
            "Max QPS      {:.1} meets the objective",
            best.settings.qps.unwrap_or(0.0)
        );
    }
    out
}
