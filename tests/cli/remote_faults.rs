//! The `taskbench` binary against the fault-injecting server (`tests/support/
//! fault_server.rs`): what `tests/remote` checks of the client library, checked here through
//! the command line, its files, its summary and its exit code.
//!
//! The prompt template is `{{ text }}` alone, so each request's last message is the item's
//! text and the server's fault script can be keyed by it. The server answers "answer to
//! <text>", and each text names its label, so answered items parse to a label.

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::common::*;
use crate::fault_server::{Fault, FaultServer};
use crate::remote::KEY;

/// Every kind of trouble once, with three attempts allowed: those that clear within three
/// are answered, `water 5`, `theft 6` and `fire 9` fail (the first two keep failing, a 401
/// is not worth retrying).
fn script(server: &FaultServer) {
    let status = |code: u16, retry_after: Option<&str>| Fault::Status {
        code,
        retry_after: retry_after.map(String::from),
    };
    server.script("fire 1", vec![status(429, Some("1"))]);
    server.script("water 2", vec![status(500, None), status(503, None)]);
    server.script("theft 3", vec![Fault::DropMidStream]);
    server.script("fire 4", vec![Fault::Malformed]);
    server.script("water 5", vec![status(500, None); 3]);
    server.script("theft 6", vec![Fault::Malformed; 3]);
    server.script("fire 9", vec![Fault::EchoKey]);
}

/// Items, and the requests each must have cost on the first run.
const HITS: [(&str, usize); 9] = [
    ("fire 1", 2),
    ("water 2", 3),
    ("theft 3", 2),
    ("fire 4", 2),
    ("water 5", 3),
    ("theft 6", 3),
    ("fire 7", 1),
    ("water 8", 1),
    ("fire 9", 1),
];
const FAILED: [&str; 3] = ["water 5", "theft 6", "fire 9"];

fn data(s: &Scratch) -> std::path::PathBuf {
    let rows: String = HITS
        .iter()
        .map(|(text, _)| format!("{text},{}\n", text.split(' ').next().unwrap()))
        .collect();
    s.write("claims.csv", format!("text,label\n{rows}"))
}

fn eval(server: &FaultServer, s: &Scratch, out: &Path) -> Output {
    let template = s.write("bare.toml", "user = \"{{ text }}\"\n");
    taskbench()
        .env("OPENAI_API_KEY", KEY)
        .args(["eval", "--model", "openai:faulty", "--max-attempts", "3"])
        .args(["--concurrency", "4", "--timeout", "10", "--base-url"])
        .arg(server.openai_url())
        .arg("--prompt-template")
        .arg(&template)
        .arg("--data")
        .arg(data(s))
        .arg("--cache")
        .arg(s.path("responses.sqlite"))
        .arg("--out")
        .arg(out)
        .output()
        .expect("run taskbench")
}

/// Each item once, keyed by id: answered (output, no error) or failed (error, no output).
fn outcomes(out: &Path) -> Vec<serde_json::Value> {
    let predictions = read_jsonl(&out.join("predictions.jsonl"));
    let ids: HashSet<&str> = predictions
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), HITS.len(), "each item once: {predictions:#?}");
    assert_eq!(predictions.len(), HITS.len(), "{predictions:#?}");
    predictions
}

/// stdout, stderr, and every file the run left (results, predictions, the cache and its
/// write-ahead log) are free of the key, though the server echoed it in a 401.
fn assert_no_key_anywhere(s: &Scratch, runs: &[&Output]) {
    for run in runs {
        for text in [stdout_of(run), stderr_of(run)] {
            assert!(!text.contains(KEY), "output shows the key:\n{text}");
        }
    }
    let mut files = vec![s.path("")];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(KEY),
                "{} holds the key",
                path.display()
            );
        }
    }
}

#[test]
fn faults_end_each_item_once_and_a_rerun_asks_only_for_the_failed_ones() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime.block_on(FaultServer::start(Duration::ZERO, false));
    script(&server);
    let s = Scratch::new();

    // (a) Every item ends answered or failed with its error, none twice.
    let first = s.path("first");
    let run = eval(&server, &s, &first);
    let report = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        run.status.code(),
        stdout_of(&run),
        stderr_of(&run)
    );
    assert_clean(&report, &run);
    assert_eq!(run.status.code(), Some(1), "failed items: exit 1\n{report}");
    assert!(
        stderr_of(&run).contains("3 of 9 items failed after every retry"),
        "{report}"
    );
    assert!(
        stdout_of(&run).contains("6 answered (0 from the cache), 3 failed"),
        "{report}"
    );
    for (text, hits) in HITS {
        assert_eq!(server.hits(text), hits, "{text}: requests sent\n{report}");
    }
    let results = read_json(&first.join("results.json"));
    let api = &results["api"];
    assert_eq!(
        (api["answered"].as_u64(), api["failed"].as_u64()),
        (Some(6), Some(3))
    );
    let sent: usize = HITS.iter().map(|(_, n)| n).sum();
    assert_eq!(api["requests_sent"].as_u64(), Some(sent as u64), "{api:#}");
    assert_eq!(server.total_hits(), sent as u64);
    for p in outcomes(&first) {
        let text = p["text"].as_str().unwrap();
        if FAILED.contains(&text) {
            assert!(p["output"].is_null(), "{p}");
            let error = p["error"]
                .as_str()
                .unwrap_or_else(|| panic!("no error: {p}"));
            assert!(error.contains("attempt"), "{p}");
        } else {
            assert!(p["error"].is_null(), "{p}");
            assert_eq!(p["output"], format!("answer to {text}"), "{p}");
            assert_eq!(p["predicted"], p["gold"], "{p}");
        }
    }
    let water_5 = read_jsonl(&first.join("predictions.jsonl"))
        .into_iter()
        .find(|p| p["text"] == "water 5")
        .unwrap();
    assert!(
        water_5["error"].as_str().unwrap().contains("3 attempt(s)")
            && water_5["error"].as_str().unwrap().contains("HTTP 500"),
        "{water_5}"
    );

    // (b) A rerun answers the six from the cache and sends only the three that failed.
    server.reset_counts();
    let second = s.path("second");
    let rerun = eval(&server, &s, &second);
    let report = format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        rerun.status.code(),
        stdout_of(&rerun),
        stderr_of(&rerun)
    );
    assert_eq!(rerun.status.code(), Some(0), "{report}");
    assert!(
        stdout_of(&rerun).contains("9 answered (6 from the cache), 0 failed, 3 requests sent"),
        "{report}"
    );
    for (text, _) in HITS {
        let expected = usize::from(FAILED.contains(&text));
        assert_eq!(server.hits(text), expected, "{text}: requests on the rerun");
    }
    assert_eq!(server.total_hits(), 3);
    let again = read_json(&second.join("results.json"));
    assert_eq!(again["api"]["from_cache"], 6, "{again:#}");
    assert!(outcomes(&second).iter().all(|p| p["error"].is_null()));

    // (c) The fake key is nowhere.
    assert_no_key_anywhere(&s, &[&run, &rerun]);
    drop(runtime);
}
