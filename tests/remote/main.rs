//! End-to-end runs against the fault-injecting loopback server (`tests/support/
//! fault_server.rs`): retries, Retry-After, exactly-once outcomes, cache modes, both wire
//! formats, timings, logprobs, cancellation, and a whole batch checked for the key leaking
//! anywhere.

#[path = "../support/fault_server.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use support::{Fault, FaultServer, CHUNKS};
use taskbench::models::remote::{
    run_all, ApiClient, ApiError, ApiKey, Cache, CacheMode, ChatRequest, ClientOptions,
    ConfigError, Endpoint, ItemOutcome, ModelSpec, RateLimits, RetryPolicy, RunOptions, RunSummary,
};
use taskbench::models::Message;

const KEY: &str = "sk-test-SECRET123";

fn client(server: &FaultServer, spec: &str, stream: bool, timeout: Duration) -> Arc<ApiClient> {
    let spec = ModelSpec::parse(spec).unwrap();
    let url = match spec.provider {
        taskbench::models::remote::Provider::OpenAi => server.openai_url(),
        taskbench::models::remote::Provider::Anthropic => server.anthropic_url(),
    };
    let ep = Endpoint::new(spec, Some(&url), Some(ApiKey::new(KEY))).unwrap();
    let opts = ClientOptions {
        stream,
        timeout,
        ..ClientOptions::default()
    };
    Arc::new(ApiClient::new(ep, opts).unwrap())
}

fn requests(n: usize) -> Vec<ChatRequest> {
    (0..n)
        .map(|i| {
            ChatRequest::new(
                vec![
                    Message::system("Answer briefly."),
                    Message::user(format!("q{i}")),
                ],
                8,
            )
        })
        .collect()
}

fn options(concurrency: usize, max_attempts: u32) -> RunOptions {
    RunOptions {
        limits: RateLimits {
            concurrency,
            ..RateLimits::default()
        },
        retry: RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
        ..RunOptions::default()
    }
}

async fn run(
    client: &Arc<ApiClient>,
    cache: Option<&Arc<Cache>>,
    reqs: Vec<ChatRequest>,
    opts: &RunOptions,
) -> (Vec<ItemOutcome>, RunSummary) {
    let mut outcomes = Vec::new();
    let summary = run_all(Arc::clone(client), cache.cloned(), reqs, opts, |o| {
        outcomes.push(o)
    })
    .await;
    (outcomes, summary)
}

/// Outcomes by index, asserting each index appears exactly once.
fn by_index(outcomes: Vec<ItemOutcome>, n: usize) -> Vec<ItemOutcome> {
    let mut slots: Vec<Option<ItemOutcome>> = (0..n).map(|_| None).collect();
    for o in outcomes {
        let i = o.index;
        assert!(slots[i].is_none(), "item {i} reported twice");
        slots[i] = Some(o);
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.unwrap_or_else(|| panic!("item {i} never reported")))
        .collect()
}

fn status(code: u16) -> Fault {
    Fault::Status {
        code,
        retry_after: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_ends_once_and_retries_as_configured() {
    let server = FaultServer::start(Duration::ZERO, false).await;
    // (id, faults, expected hits, expected answered)
    let plan: Vec<(usize, Vec<Fault>, usize, bool)> = vec![
        (0, vec![status(500), status(502)], 3, true),
        (
            1,
            vec![Fault::Status {
                code: 429,
                retry_after: Some("0".into()),
            }],
            2,
            true,
        ),
        (2, vec![Fault::DropMidStream], 2, true),
        (3, vec![Fault::Malformed], 2, true),
        (4, vec![Fault::CutBeforeDone], 2, true),
        (5, vec![Fault::Slow(Duration::from_secs(2))], 2, true),
        (6, vec![status(500); 6], 4, false), // max_attempts = 4: gives up, reports the 500
        (7, vec![status(400)], 1, false),    // a bad request fails at once
        (8, vec![status(404)], 1, false),
        (9, vec![status(408), status(503)], 3, true),
        (
            10,
            vec![Fault::DropMidStream, Fault::CutBeforeDone, Fault::Malformed],
            4,
            true,
        ),
    ];
    for (id, faults, _, _) in &plan {
        server.script(&format!("q{id}"), faults.clone());
    }
    let n = 40;
    let c = client(
        &server,
        "openai:test-model",
        true,
        Duration::from_millis(500),
    );
    let (outcomes, summary) = run(&c, None, requests(n), &options(8, 4)).await;
    let outcomes = by_index(outcomes, n);
    for o in &outcomes {
        let id = format!("q{}", o.index);
        let (hits, ok) = plan
            .iter()
            .find(|p| p.0 == o.index)
            .map_or((1, true), |p| (p.2, p.3));
        assert_eq!(server.hits(&id), hits, "server hits for {id}");
        assert_eq!(o.attempts as usize, hits, "attempts for {id}");
        match (&o.result, ok) {
            (Ok(a), true) => {
                assert_eq!(a.text, format!("answer to {id}"));
                assert!(!a.from_cache);
            }
            (Err(e), false) => assert_eq!(e.index, o.index),
            (r, _) => panic!("{id}: unexpected {r:?}"),
        }
    }
    let err = |i: usize| outcomes[i].result.as_ref().unwrap_err();
    assert!(matches!(
        err(6).source,
        ApiError::Status { status: 500, .. }
    ));
    assert!(matches!(
        err(7).source,
        ApiError::Status { status: 400, .. }
    ));
    assert_eq!((summary.answered, summary.failed), (n - 3, 3));
    assert_eq!(summary.requests_sent, server.total_hits());
    assert!(summary.not_started.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_http_date() {
    let server = FaultServer::start(Duration::ZERO, false).await;
    server.script(
        "q0",
        vec![Fault::Status {
            code: 429,
            retry_after: Some("1".into()),
        }],
    );
    let c = client(&server, "openai:m", true, Duration::from_secs(5));
    let (outcomes, summary) = run(&c, None, requests(1), &options(4, 3)).await;
    assert!(outcomes[0].result.is_ok());
    let t = server.hit_times("q0");
    let gap = t[1] - t[0];
    assert!(
        gap >= Duration::from_secs(1) && gap < Duration::from_secs(10),
        "gap {gap:?}"
    );
    assert!(
        summary.final_rate_factor < 1.0,
        "a 429 lowers the allowed rate"
    );

    // HTTP-date form: whole seconds, so the wait is in (1 s, 2 s] plus slack.
    let when = SystemTime::now() + Duration::from_secs(2);
    server.script(
        "q1",
        vec![Fault::Status {
            code: 429,
            retry_after: Some(httpdate::fmt_http_date(when)),
        }],
    );
    let mut reqs = requests(2);
    reqs.remove(0);
    let (outcomes, _) = run(&c, None, reqs, &options(4, 3)).await;
    assert!(outcomes[0].result.is_ok());
    let t = server.hit_times("q1");
    let gap = t[1] - t[0];
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(10),
        "gap {gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_and_rpm_limits_hold() {
    let server = FaultServer::start(Duration::from_millis(20), false).await;
    let c = client(&server, "openai:m", true, Duration::from_secs(5));
    let (outcomes, _) = run(&c, None, requests(30), &options(3, 1)).await;
    assert_eq!(outcomes.len(), 30);
    assert!(
        server.max_in_flight() <= 3,
        "server saw {} at once",
        server.max_in_flight()
    );
    assert!(server.max_in_flight() >= 2, "concurrency was used");

    // 600 RPM = 10/s with a one-second burst: 20 requests take about a second.
    let mut opts = options(16, 1);
    opts.limits.requests_per_minute = Some(600.0);
    let start = Instant::now();
    let (outcomes, _) = run(&c, None, requests(20), &opts).await;
    assert_eq!(outcomes.len(), 20);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_rerun_costs_nothing_refresh_and_no_cache_do_not_read() {
    let server = FaultServer::start(Duration::ZERO, false).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(Cache::open(&dir.path().join("cache.sqlite")).unwrap());
    let c = client(&server, "openai:m", true, Duration::from_secs(5));
    let n = 20;
    let mut opts = options(8, 2);

    let (first, s) = run(&c, Some(&cache), requests(n), &opts).await;
    assert_eq!(
        (server.total_hits(), s.answered, cache.len().unwrap()),
        (n as u64, n, n)
    );
    let first = by_index(first, n);

    server.reset_counts();
    let (again, s) = run(&c, Some(&cache), requests(n), &opts).await;
    assert_eq!(server.total_hits(), 0, "a cached rerun reaches the server");
    assert_eq!((s.from_cache, s.requests_sent), (n, 0));
    for (a, b) in first.iter().zip(by_index(again, n)) {
        let (a, b) = (a.result.as_ref().unwrap(), b.result.as_ref().unwrap());
        assert!(b.from_cache);
        assert_eq!((&a.text, a.usage, &a.timing), (&b.text, b.usage, &b.timing));
    }

    opts.cache_mode = CacheMode::Refresh;
    let (fresh, _) = run(&c, Some(&cache), requests(n), &opts).await;
    assert_eq!(server.total_hits(), n as u64, "refresh asks again");
    assert!(fresh.iter().all(|o| !o.from_cache()));
    assert_eq!(cache.len().unwrap(), n, "refresh overwrites, adds no rows");

    server.reset_counts();
    opts.cache_mode = CacheMode::Off;
    let (off, _) = run(&c, Some(&cache), requests(n + 5), &opts).await;
    assert_eq!(
        server.total_hits(),
        (n + 5) as u64,
        "no_cache does not read"
    );
    assert!(off.iter().all(|o| !o.from_cache()));
    assert_eq!(cache.len().unwrap(), n, "no_cache does not write");

    // A different body (max_tokens) is a different key.
    server.reset_counts();
    opts.cache_mode = CacheMode::Use;
    let mut reqs = requests(1);
    reqs[0].max_tokens = 9;
    run(&c, Some(&cache), reqs, &opts).await;
    assert_eq!(server.total_hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_round_trips_streamed_and_whole() {
    for stream in [true, false] {
        let server = FaultServer::start(Duration::from_millis(2), true).await;
        let c = client(
            &server,
            "anthropic:claude-test",
            stream,
            Duration::from_secs(5),
        );
        let reqs = vec![ChatRequest::new(
            vec![
                Message::system("You label sentiment."),
                Message::user("great movie"),
                Message::assistant("pos"),
                Message::user("q0"),
            ],
            16,
        )];
        let (outcomes, _) = run(&c, None, reqs, &options(2, 1)).await;
        let a = outcomes[0]
            .result
            .as_ref()
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(a.text, "answer to q0");
        let usage = a.usage.unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens),
            (7, CHUNKS as u64)
        );
        assert_eq!(a.finish_reason.as_deref(), Some("end_turn"));
        let rec = &server.recorded()[0];
        assert_eq!(rec.path, "/v1/messages");
        assert_eq!(rec.headers["anthropic-version"], "2023-06-01");
        assert_eq!(rec.headers["x-api-key"], KEY);
        assert!(!rec.headers.contains_key("authorization"));
        assert_eq!(rec.body["system"], "You label sentiment.");
        let roles: Vec<_> = rec.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(rec.body["max_tokens"], 16);
        assert_eq!(rec.body.get("stream").is_some(), stream);
        assert_eq!(a.timing.ttft.is_some(), stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_timings_follow_chunks() {
    let delay = Duration::from_millis(15);
    let server = FaultServer::start(delay, true).await;
    for spec in ["openai:m", "anthropic:m"] {
        let c = client(&server, spec, true, Duration::from_secs(5));
        let (outcomes, _) = run(&c, None, requests(4), &options(4, 1)).await;
        for o in outcomes {
            let t = &o.result.unwrap().timing;
            let ttft = t.ttft.expect("streamed answers have a TTFT");
            assert!(
                ttft < t.latency,
                "{spec}: ttft {ttft:?} latency {:?}",
                t.latency
            );
            assert_eq!(
                t.itl.len(),
                CHUNKS - 1,
                "{spec}: one ITL between each pair of content chunks"
            );
            for itl in &t.itl {
                assert!(
                    *itl >= delay - Duration::from_millis(3),
                    "{spec}: itl {itl:?}"
                );
            }
            assert!(t.latency >= ttft + t.itl.iter().sum::<Duration>());
        }
    }
    let rec = server.recorded();
    let oa = rec
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    assert_eq!(oa.body["stream"], true);
    assert_eq!(oa.body["stream_options"]["include_usage"], true);
    assert_eq!(oa.headers["authorization"], format!("Bearer {KEY}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_whole_and_logprobs() {
    let server = FaultServer::start(Duration::ZERO, true).await;
    for stream in [true, false] {
        let c = client(&server, "openai:m", stream, Duration::from_secs(5));
        let mut reqs = requests(2);
        reqs[0].logprobs = Some(3);
        reqs[0].seed = Some(42);
        let (outcomes, _) = run(&c, None, reqs, &options(2, 1)).await;
        let outcomes = by_index(outcomes, 2);
        let a = outcomes[0].result.as_ref().unwrap();
        let lp = a.logprobs.as_ref().expect("logprobs requested");
        let tokens: Vec<_> = lp.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(
            tokens,
            ["answer", " to", " q0"],
            "every token, stream={stream}"
        );
        assert_eq!(tokens.concat(), a.text);
        let first: Vec<_> = lp[0]
            .top_logprobs
            .iter()
            .map(|t| t.token.as_str())
            .collect();
        assert_eq!(first, ["answer", "other", "third"], "stream={stream}");
        assert!(lp.iter().all(|t| t.top_logprobs.len() == 3), "{lp:?}");
        assert!(lp[0].top_logprobs[0].logprob > lp[0].top_logprobs[1].logprob);
        assert!((lp[2].logprob + 0.15).abs() < 1e-12, "{lp:?}");
        assert_eq!(a.usage.unwrap().output_tokens, CHUNKS as u64);
        assert_eq!(a.timing.ttft.is_some(), stream);
        assert!(outcomes[1].result.as_ref().unwrap().logprobs.is_none());
    }
    let rec = server.recorded();
    let with_lp = rec.iter().find(|r| r.body["logprobs"] == true).unwrap();
    assert_eq!(
        (
            with_lp.body["top_logprobs"].as_u64(),
            with_lp.body["seed"].as_u64()
        ),
        (Some(3), Some(42))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_dispatch_and_abort_ends_in_flight() {
    let server = FaultServer::start(Duration::from_millis(10), false).await;
    let c = client(&server, "openai:m", true, Duration::from_secs(5));
    let n = 50;
    let opts = options(2, 1);
    let cancel = opts.cancel.clone();
    let mut outcomes = Vec::new();
    let summary = run_all(Arc::clone(&c), None, requests(n), &opts, |o| {
        outcomes.push(o);
        if outcomes.len() == 5 {
            cancel.cancel();
        }
    })
    .await;
    assert!(
        outcomes.len() >= 5 && outcomes.len() <= 8,
        "{} finished",
        outcomes.len()
    );
    assert!(
        outcomes.iter().all(|o| o.result.is_ok()),
        "in-flight requests finish on cancel"
    );
    let mut seen: Vec<usize> = outcomes
        .iter()
        .map(|o| o.index)
        .chain(summary.not_started.iter().copied())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "each item reported or listed not started, once"
    );
    assert_eq!(server.total_hits() as usize, outcomes.len());

    // Abort: slow answers in flight are dropped and reported as cancelled.
    let server = FaultServer::start(Duration::ZERO, false).await;
    for i in 0..4 {
        server.script(&format!("q{i}"), vec![Fault::Slow(Duration::from_secs(3))]);
    }
    let c = client(&server, "openai:m", true, Duration::from_secs(10));
    let opts = options(2, 3);
    let token = opts.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.abort();
    });
    let start = Instant::now();
    let (outcomes, summary) = run(&c, None, requests(10), &opts).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "abort returns promptly"
    );
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        let e = o.result.as_ref().unwrap_err();
        assert!(matches!(e.source, ApiError::Cancelled));
    }
    assert_eq!(summary.not_started, (2..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_never_leaks() {
    let server = FaultServer::start(Duration::ZERO, true).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.sqlite");
    let cache = Arc::new(Cache::open(&db).unwrap());
    let mut texts = Vec::new();
    for spec in ["openai:m", "anthropic:m"] {
        server.script("q0", vec![Fault::EchoKey]);
        server.script("q1", vec![status(500); 3]);
        server.script("q2", vec![Fault::Slow(Duration::from_secs(1))]);
        server.script("q3", vec![Fault::DropMidStream; 3]);
        server.script("q4", vec![Fault::Malformed; 3]);
        let c = client(&server, spec, true, Duration::from_millis(300));
        texts.push(format!("{c:?} {:?}", c.endpoint()));
        let (outcomes, summary) = run(&c, Some(&cache), requests(12), &options(4, 3)).await;
        texts.push(format!("{summary:?}"));
        for o in &outcomes {
            texts.push(format!("{o:?}"));
            if let Err(e) = &o.result {
                let mut src: Option<&dyn std::error::Error> = Some(e);
                while let Some(s) = src {
                    texts.push(s.to_string());
                    src = s.source();
                }
            }
        }
        assert_eq!(
            summary.failed, 4,
            "{spec}: q0, q1, q3, q4 were scripted to fail"
        );
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Incorrect API key provided: ***")),
        "the echoed key was scrubbed, not dropped"
    );
    let recorded = server.recorded();
    assert!(
        recorded.iter().any(|r| r
            .headers
            .get("authorization")
            .is_some_and(|v| v.contains(KEY))),
        "the key was really sent"
    );
    let missing = ConfigError::MissingKey {
        provider: "openai",
        env: "OPENAI_API_KEY",
    };
    texts.push(missing.to_string());
    for t in &texts {
        assert!(!t.contains("SECRET123"), "key leaked in: {t}");
    }
    drop(cache);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(9).any(|w| w == b"SECRET123"),
            "key in the cache files"
        );
        assert!(!bytes.is_empty());
    }
}

#[test]
fn endpoints_need_a_key_only_for_official_apis() {
    let spec = ModelSpec::parse("openai:gpt-4o-mini").unwrap();
    let e = Endpoint::new(spec.clone(), None, None).unwrap_err();
    assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
    let ep = Endpoint::new(spec.clone(), Some("http://localhost:8000/v1/"), None).unwrap();
    assert_eq!(ep.base_url, "http://localhost:8000/v1");
    let e = Endpoint::new(spec.clone(), Some("localhost:8000"), None).unwrap_err();
    assert!(matches!(e, ConfigError::BadBaseUrl(_)));
    let ep = Endpoint::new(
        ModelSpec::parse("anthropic:claude").unwrap(),
        None,
        Some(ApiKey::new(KEY)),
    )
    .unwrap();
    assert_eq!(ep.base_url, "https://api.anthropic.com");
    assert!(!format!("{ep:?}").contains("SECRET"));
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("k");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let ep = Endpoint::resolve(spec, Some("https://api.openai.com/v1"), Some(&key_file)).unwrap();
    assert_eq!(ep.base_url, "https://api.openai.com/v1");
    let e = Endpoint::resolve(
        ModelSpec::parse("openai:x").unwrap(),
        None,
        Some(&dir.path().join("nope")),
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::KeyFile { .. }), "{e}");
}
