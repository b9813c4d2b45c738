//! `eval --model openai:NAME` against `taskbench serve` on loopback: the hosted-API path end
//! to end (prompts, streaming, answer parsing, the response cache, --max-cost, --dry-run),
//! with a fake API key that must never appear in any output.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command as StdCommand, Stdio};

use crate::common::*;

pub(crate) const KEY: &str = "sk-test-NEVERPRINTME";

pub(crate) const CLAIMS: &str = "text,label\n\
The kitchen caught fire last night,fire\n\
Water came through the ceiling,water\n\
Someone broke into the shed,theft\n\
Smoke damaged the living room,fire\n\
A pipe burst under the sink,water\n\
My bike was stolen from the garage,theft\n";

/// `taskbench serve` of a generative model on a free port; stopped when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base_url: String,
}

impl Server {
    /// The tiny Llama fixture, served as `tiny`.
    pub(crate) fn start() -> Server {
        Server::start_model(&root().join("tests/fixtures/tiny-llama"), "tiny")
    }

    pub(crate) fn start_model(model: &std::path::Path, name: &str) -> Server {
        let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("taskbench"))
            .current_dir(root())
            .args([
                "serve",
                "--name",
                name,
                "--port",
                "0",
                "--threads",
                "1",
                "--model",
            ])
            .arg(model)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start taskbench serve");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("serve said: {line}"))
            .to_string();
        Server {
            child,
            base_url: format!("{url}/v1"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn eval_api(
    server: &Server,
    data: &std::path::Path,
    cache: &std::path::Path,
) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.env("OPENAI_API_KEY", KEY)
        .args([
            "eval",
            "--model",
            "openai:tiny",
            "--max-tokens",
            "4",
            "--concurrency",
            "3",
        ])
        .arg("--base-url")
        .arg(&server.base_url)
        .arg("--data")
        .arg(data)
        .arg("--cache")
        .arg(cache);
    cmd
}

fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains("NEVERPRINTME"),
        "{what} shows the API key:\n{text}"
    );
}

#[test]
fn api_eval_answers_every_item_once_and_a_rerun_costs_nothing() {
    let server = Server::start();
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let cache = s.path("responses.sqlite");
    let first = s.path("first");
    let (stdout, stderr) = succeeds(eval_api(&server, &data, &cache).arg("--out").arg(&first));
    assert_no_key("stdout", &stdout);
    assert_no_key("stderr", &stderr);
    let results = read_json(&first.join("results.json"));
    let api = &results["api"];
    assert_eq!(api["answered"], 6, "{results:#}");
    assert_eq!(api["failed"], 0, "{results:#}");
    assert_eq!(api["requests_sent"], 6, "one request per item: {results:#}");
    assert_eq!(results["metrics"]["n"], 6, "{results:#}");
    assert!(
        results["generation"]["ttft"]["n"].as_u64() == Some(6),
        "{results:#}"
    );
    let predictions = read_jsonl(&first.join("predictions.jsonl"));
    assert_eq!(predictions.len(), 6);
    assert!(
        predictions.iter().all(|p| p["output"].is_string()),
        "{predictions:?}"
    );

    let second = s.path("second");
    succeeds(eval_api(&server, &data, &cache).arg("--out").arg(&second));
    let again = read_json(&second.join("results.json"));
    assert_eq!(again["api"]["requests_sent"], 0, "{again:#}");
    assert_eq!(again["api"]["from_cache"], 6, "{again:#}");
    assert!(
        again["latency"].is_null(),
        "cached answers are not latency samples: {again:#}"
    );
    let outputs = |dir: &std::path::Path| -> Vec<String> {
        read_jsonl(&dir.join("predictions.jsonl"))
            .iter()
            .map(|p| p["output"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(outputs(&first), outputs(&second));

    for file in [
        first.join("results.json"),
        first.join("predictions.jsonl"),
        cache.clone(),
    ] {
        let bytes = std::fs::read(&file).unwrap();
        assert_no_key(
            &file.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
    }
}

#[test]
fn max_cost_stops_before_the_budget_and_dry_run_sends_nothing() {
    let server = Server::start();
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let cache = s.path("responses.sqlite");
    let pricing = s.write(
        "pricing.toml",
        "[models.\"openai:tiny\"]\ninput_per_mtok = 1000.0\noutput_per_mtok = 1000.0\nas_of = \"2026-11-30\"\nsource = \"https://example.com/test-price\"\n",
    );
    let (stdout, _) = succeeds(
        eval_api(&server, &data, &cache)
            .arg("--pricing")
            .arg(&pricing)
            .arg("--dry-run"),
    );
    assert!(stdout.contains("ESTIMATE, nothing sent"), "{stdout}");
    let out = s.path("out");
    succeeds(
        eval_api(&server, &data, &cache)
            .arg("--pricing")
            .arg(&pricing)
            .args(["--max-cost", "0.2", "--out"])
            .arg(&out),
    );
    let results = read_json(&out.join("results.json"));
    let api = &results["api"];
    let sent = api["requests_sent"].as_u64().unwrap();
    let skipped = api["not_sent_max_cost"].as_u64().unwrap();
    assert!(
        sent > 0 && skipped > 0,
        "some sent, some held back: {results:#}"
    );
    assert_eq!(sent + skipped, 6, "{results:#}");
    // What was spent stays within the budget.
    let per_thousand = results["cost"]["usd_per_1000_queries"].as_f64().unwrap();
    assert!(
        per_thousand / 1000.0 * sent as f64 <= 0.2 + 1e-9,
        "{results:#}"
    );
    let unsent = read_jsonl(&out.join("predictions.jsonl"))
        .into_iter()
        .filter(|p| {
            p["error"]
                .as_str()
                .is_some_and(|e| e.contains("--max-cost"))
        })
        .count();
    assert_eq!(unsent as u64, skipped, "each unsent item says why");
}

use crate::fault_server as fault;

/// Ctrl-C in the middle of a hosted-API run: the process stops, the answers that came back
/// are in results.json and in the cache, the rest are recorded as not sent, and a rerun
/// sends only those.
#[test]
fn ctrl_c_keeps_what_was_answered_and_a_rerun_sends_only_the_rest() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // About 0.45 s per answer (three chunks 150 ms apart), one request at a time.
    let server = runtime.block_on(fault::FaultServer::start(
        std::time::Duration::from_millis(150),
        false,
    ));
    let s = Scratch::new();
    let rows: String = (0..12)
        .map(|i| {
            format!("claim number {i} about a fire,fire\nclaim number {i} about water,water\n")
        })
        .collect();
    let data = s.write("claims.csv", format!("text,label\n{rows}"));
    let cache = s.path("responses.sqlite");
    let eval_args = |out: &std::path::Path| -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = [
            "eval",
            "--model",
            "openai:slow",
            "--max-tokens",
            "4",
            "--concurrency",
            "1",
            "--base-url",
        ]
        .iter()
        .map(Into::into)
        .collect();
        args.push(server.openai_url().into());
        for (flag, value) in [
            ("--data", &data),
            ("--cache", &cache),
            ("--out", &out.to_path_buf()),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
        args
    };
    let first = s.path("first");
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("taskbench"))
        .current_dir(root())
        .env("OPENAI_API_KEY", KEY)
        .env("CI", "true")
        .args(eval_args(&first))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.total_hits() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "an interrupted run still writes its results: {status:?}"
    );
    let results = read_json(&first.join("results.json"));
    let api = &results["api"];
    let answered = api["answered"].as_u64().unwrap();
    let not_sent = api["not_sent_cancelled"].as_u64().unwrap();
    assert!(answered >= 2, "{results:#}");
    assert!(not_sent >= 1, "{results:#}");
    assert_eq!(
        answered + not_sent + api["failed"].as_u64().unwrap(),
        24,
        "{results:#}"
    );
    let predictions = read_jsonl(&first.join("predictions.jsonl"));
    assert_eq!(
        predictions.len(),
        24,
        "every item is in predictions, answered or not"
    );

    let second = s.path("second");
    succeeds(
        taskbench()
            .env("OPENAI_API_KEY", KEY)
            .args(eval_args(&second)),
    );
    let again = read_json(&second.join("results.json"));
    assert_eq!(again["api"]["answered"], 24, "{again:#}");
    assert_eq!(
        again["api"]["from_cache"].as_u64().unwrap(),
        answered,
        "{again:#}"
    );
    assert_eq!(
        again["api"]["requests_sent"].as_u64().unwrap(),
        24 - answered,
        "{again:#}"
    );
    drop(runtime);
}
