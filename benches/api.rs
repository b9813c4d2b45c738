//! Loopback throughput and per-request client overhead (`cargo bench --bench api`).
//! The server (tests/remote/support) answers at once, so what is measured is the client, the
//! loopback stack and a minimal hyper server sharing this machine's cores. Numbers, not
//! assertions: the goal is >= 2,000 req/s at concurrency 64 and p99 overhead < 1 ms.

#[path = "../tests/support/fault_server.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::FaultServer;
use taskbench::models::remote::{
    run_all, ApiClient, ApiKey, Cache, CacheMode, ChatRequest, ClientOptions, Endpoint, ModelSpec,
    RateLimits, RunOptions,
};
use taskbench::models::Message;

fn requests(n: usize, tag: &str) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| {
            ChatRequest::new(
                vec![
                    Message::system("Label the sentiment: pos or neg."),
                    Message::user(format!("{tag}{i}")),
                ],
                4,
            )
        })
        .collect()
}

fn client(server: &FaultServer, stream: bool) -> Arc<ApiClient> {
    let ep = Endpoint::new(
        ModelSpec::parse("openai:bench").unwrap(),
        Some(&server.openai_url()),
        Some(ApiKey::new("sk-bench")),
    )
    .unwrap();
    let opts = ClientOptions {
        stream,
        ..ClientOptions::default()
    };
    Arc::new(ApiClient::new(ep, opts).unwrap())
}

fn options(concurrency: usize, mode: CacheMode) -> RunOptions {
    RunOptions {
        limits: RateLimits {
            concurrency,
            ..RateLimits::default()
        },
        cache_mode: mode,
        ..RunOptions::default()
    }
}

struct Stats {
    rps: f64,
    /// Client-measured request latency (for cached answers: the original run's).
    p50: Duration,
    p99: Duration,
    /// Time between consecutive outcomes: at c=1 the whole per-item cycle (body, hash,
    /// limiter, spawn, request, drain, channel, callback).
    cycle_p50: Duration,
    cycle_p99: Duration,
}

async fn measure(
    c: &Arc<ApiClient>,
    cache: Option<Arc<Cache>>,
    reqs: Vec<ChatRequest>,
    opts: &RunOptions,
) -> Stats {
    let n = reqs.len();
    let mut lat = Vec::with_capacity(n);
    let mut cycle = Vec::with_capacity(n);
    let start = Instant::now();
    let mut last = start;
    let s = run_all(Arc::clone(c), cache, reqs, opts, |o| {
        lat.push(o.result.expect("loopback answers").timing.latency);
        let now = Instant::now();
        cycle.push(now - last);
        last = now;
    })
    .await;
    let wall = start.elapsed();
    assert_eq!(s.answered, n);
    lat.sort();
    cycle.sort();
    Stats {
        rps: n as f64 / wall.as_secs_f64(),
        p50: lat[n / 2],
        p99: lat[n * 99 / 100],
        cycle_p50: cycle[n / 2],
        cycle_p99: cycle[n * 99 / 100],
    }
}

/// Plain reqwest, one at a time: the floor the client's own overhead sits on.
async fn raw_baseline(server: &FaultServer, n: usize) -> (Duration, Duration) {
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", server.openai_url());
    let body = br#"{"model":"bench","messages":[{"role":"user","content":"raw"}],"max_tokens":4,"stream":true}"#;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = http.post(&url).body(&body[..]).send().await.unwrap();
        r.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    lat.sort();
    (lat[n / 2], lat[n * 99 / 100])
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = FaultServer::start(Duration::ZERO, false).await;
        let stream = client(&server, true);
        let whole = client(&server, false);
        measure(&stream, None, requests(1000, "warm"), &options(64, CacheMode::Off)).await;

        let n = 20_000;
        println!("loopback, server answers at once, {n} requests per row");
        let row = |name: &str, s: &Stats| {
            println!(
                "{name:<38} {:>8.0} req/s   latency p50 {:>7.3} ms  p99 {:>7.3} ms   between outcomes p50 {:>7.3} ms  p99 {:>7.3} ms",
                s.rps,
                s.p50.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                s.cycle_p50.as_secs_f64() * 1e3,
                s.cycle_p99.as_secs_f64() * 1e3,
            )
        };
        let s = measure(&stream, None, requests(n, "s"), &options(64, CacheMode::Off)).await;
        row("stream, c=64, no cache", &s);
        let s = measure(&whole, None, requests(n, "w"), &options(64, CacheMode::Off)).await;
        row("non-stream, c=64, no cache", &s);

        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(Cache::open(&dir.path().join("bench.sqlite")).unwrap());
        let s = measure(&stream, Some(Arc::clone(&cache)), requests(n, "c"), &options(64, CacheMode::Use)).await;
        row("stream, c=64, cache writes (SQLite)", &s);
        let before = server.total_hits();
        let s = measure(&stream, Some(Arc::clone(&cache)), requests(n, "c"), &options(64, CacheMode::Use)).await;
        row("rerun from cache (latency = stored)", &s);
        assert_eq!(server.total_hits(), before, "the cached rerun sent requests");

        let m = 3000;
        let s = measure(&stream, None, requests(m, "seq"), &options(1, CacheMode::Off)).await;
        row("stream, c=1 (sequential)", &s);
        let (p50, p99) = raw_baseline(&server, m).await;
        println!(
            "{:<38} {:>8}         latency p50 {:>7.3} ms  p99 {:>7.3} ms   (whole body read; no run_all)",
            "plain reqwest, c=1 (floor)",
            "",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        );
    });
}
