//! `taskbench bench`: the load scenarios end to end on a local classifier (the tiny BERT
//! fixture) and on an OpenAI-compatible endpoint (`taskbench serve` on loopback), the
//! settings recorded in bench.json, and the refusals. No timing is asserted: only counts,
//! flags and that figures are present and positive.

use crate::common::*;
use crate::remote::Server;

const QUERIES: &str = "text,label\n\
my card was charged twice,billing\n\
where is my parcel,shipping\n\
the app crashes on start,Technical Support\n\
I want my money back,refund\n\
the invoice total is wrong,billing\n\
tracking number does not work,shipping\n";

fn bench(data: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.arg("bench").arg("--data").arg(data).args([
        "--threads",
        "2",
        "--min-duration",
        "0",
        "--warmup",
        "2",
    ]);
    cmd
}

#[test]
fn single_stream_on_a_classifier_runs_enough_queries_for_p90_and_reports_the_roof() {
    let s = Scratch::new();
    let data = s.write("q.csv", QUERIES);
    let out = s.path("bench");
    let (stdout, _) = succeeds(
        bench(&data)
            .arg("--model")
            .arg(tiny_bert())
            .arg("--out")
            .arg(&out),
    );
    assert!(stdout.contains("Judged       p90"), "{stdout}");
    let b = read_json(&out.join("bench.json"));
    assert_eq!(b["schema_version"], 1);
    assert_eq!(b["scenario"], "single-stream", "{b:#}");
    let r = &b["result"];
    // 6 rows, cycled up to LoadGen's minimum for p90.
    assert_eq!(r["completed"], 64, "{b:#}");
    assert_eq!(r["cycled_queries"], true);
    assert_eq!(r["reliable"], true);
    assert_eq!(r["errors"], 0);
    assert!(
        b["compute"]["achieved_gflops"].as_f64().unwrap() > 0.0,
        "{b:#}"
    );
    assert!(b["compute"]["peak"]["f32_fma_gflops"].as_f64().unwrap() > 0.0);
    assert_eq!(b["compute"]["roof"], "f32 FMA");
    assert_eq!(r["settings"]["percentile"], 0.9);
}

#[test]
fn offline_and_server_on_a_classifier_record_their_settings() {
    let s = Scratch::new();
    let data = s.write("q.csv", QUERIES);
    let out = s.path("offline");
    succeeds(
        bench(&data)
            .arg("--model")
            .arg(tiny_bert())
            .args(["--scenario", "offline", "--max-batch", "4", "--out"])
            .arg(&out),
    );
    let b = read_json(&out.join("bench.json"));
    assert_eq!(b["result"]["completed"], 6, "{b:#}");
    assert_eq!(b["result"]["settings"]["max_batch"], 4, "{b:#}");
    assert!(b["result"]["batches"].as_u64().unwrap() >= 2, "{b:#}");

    let out = s.path("server");
    succeeds(
        bench(&data)
            .arg("--model")
            .arg(tiny_bert())
            .args([
                "--scenario",
                "server",
                "--qps",
                "200",
                "--slo-ms",
                "60000",
                "--percentile",
                "0.5",
                "--min-queries",
                "30",
                "--seed",
                "7",
                "--max-lag-ms",
                "5000",
                "--out",
            ])
            .arg(&out),
    );
    let b = read_json(&out.join("bench.json"));
    let r = &b["result"];
    // Generous objective and lag tolerance: whether it passes must not depend on how busy
    // the test machine is.
    assert_eq!(r["passed"], true, "{b:#}");
    assert_eq!(r["settings"]["qps"], 200.0);
    assert_eq!(r["settings"]["lag_tolerance_ms"], 5000.0);
    assert_eq!(r["settings"]["seed"], 7);
    assert!(r["completed"].as_u64().unwrap() >= 30, "{b:#}");
}

#[test]
fn an_endpoint_is_measured_under_the_same_scenarios() {
    let server = Server::start();
    let s = Scratch::new();
    let data = s.write("q.csv", QUERIES);
    let out = s.path("api");
    succeeds(
        bench(&data)
            .args(["--model", "openai:tiny", "--base-url", &server.base_url])
            .args([
                "--scenario",
                "server",
                "--qps",
                "20",
                "--slo-ms",
                "60000",
                "--percentile",
                "0.5",
                "--min-queries",
                "12",
                "--workers",
                "3",
                "--max-tokens",
                "2",
                "--max-lag-ms",
                "5000",
                "--out",
            ])
            .arg(&out),
    );
    let b = read_json(&out.join("bench.json"));
    let r = &b["result"];
    assert_eq!(r["errors"], 0, "{b:#}");
    assert!(r["completed"].as_u64().unwrap() >= 12, "{b:#}");
    assert_eq!(r["settings"]["workers"], 3);
    assert!(b["compute"].is_null(), "no FLOP count for a remote model");
}

#[test]
fn bench_refuses_what_it_cannot_measure_honestly() {
    let s = Scratch::new();
    let data = s.write("q.csv", QUERIES);
    fails(
        bench(&data)
            .arg("--model")
            .arg(tiny_bert())
            .args(["--scenario", "server", "--qps", "5"]),
        &["--slo-ms"],
    );
    fails(
        bench(&data).arg("--model").arg(tiny_bert()).args([
            "--scenario",
            "server",
            "--slo-ms",
            "5",
        ]),
        &["--qps", "--find-max-qps"],
    );
    fails(
        bench(&data)
            .env("OPENAI_API_KEY", "sk-test")
            .env_remove("OPENAI_BASE_URL")
            .args(["--model", "openai:gpt-4o-mini"]),
        &["paid API", "--allow-paid"],
    );
    fails(
        bench(&data)
            .arg("--model")
            .arg(root().join("tests/fixtures/tiny-llama")),
        &["taskbench serve"],
    );
}
