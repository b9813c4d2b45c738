//! Shared helpers: the binary with a clean environment, generated data files in a temporary
//! folder, the checks every failing command must pass, and safetensors comparisons.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// The repository root (fixture and model paths are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

pub fn tiny_bert() -> PathBuf {
    fixture("tiny-bert")
}

pub fn tiny_distilbert() -> PathBuf {
    fixture("tiny-distilbert")
}

pub fn tiny_roberta() -> PathBuf {
    fixture("tiny-roberta")
}

pub fn minilm() -> PathBuf {
    root().join("models/all-MiniLM-L6-v2")
}

/// The labels of tests/fixtures/tiny-bert, in id2label order.
pub const TINY_BERT_LABELS: [&str; 4] = ["billing", "refund", "Technical Support", "shipping"];

/// Applies the environment every run of the binary gets: backtraces on (so a panic would
/// show), no Hub access, an empty Hub cache, two threads, no CI/terminal surprises.
pub fn clean_env(cmd: &mut std::process::Command) {
    cmd.current_dir(root())
        .env("RUST_BACKTRACE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HUB_CACHE",
            root().join("target/tmp/finetune-tests-empty-hub-cache"),
        )
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("TRANSFORMERS_OFFLINE")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("RAYON_NUM_THREADS", "2");
}

/// The binary cargo built for this test target.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_taskbench"))
}

/// `taskbench` with [`clean_env`] and a 10-minute timeout.
pub fn taskbench() -> Command {
    let mut std_cmd = std::process::Command::new(bin());
    clean_env(&mut std_cmd);
    let mut cmd = Command::from_std(std_cmd);
    cmd.timeout(std::time::Duration::from_secs(600));
    cmd
}

/// `taskbench train` (full fine-tuning) with quick settings: two threads, no progress bars,
/// short inputs.
pub fn finetune(model: &Path, data: &Path, out: &Path) -> Command {
    let mut cmd = taskbench();
    cmd.args([
        "train",
        "--threads",
        "2",
        "--quiet",
        "--max-len",
        "16",
        "--model",
    ])
    .arg(model)
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    cmd
}

/// `taskbench eval` with quick settings.
pub fn eval_cmd(model: &Path, data: &Path) -> Command {
    let mut cmd = taskbench();
    cmd.args([
        "eval",
        "--threads",
        "2",
        "--warmup",
        "0",
        "--no-single-stream",
        "--quiet",
        "--model",
    ])
    .arg(model)
    .arg("--data")
    .arg(data);
    cmd
}

#[path = "../support/scratch.rs"]
mod scratch;
pub use scratch::Scratch;

/// Four support topics with a few words each; a text is built from its topic's words.
const TOPICS: [(&str, &[&str]); 4] = [
    (
        "billing",
        &[
            "card", "charged", "invoice", "payment", "twice", "bill", "price", "fee",
        ],
    ),
    (
        "refund",
        &[
            "money", "back", "return", "refund", "cancel", "order", "want", "please",
        ],
    ),
    (
        "Technical Support",
        &[
            "app", "crashes", "error", "login", "update", "screen", "password", "bug",
        ],
    ),
    (
        "shipping",
        &[
            "parcel", "courier", "delivery", "package", "tracking", "late", "address", "box",
        ],
    ),
];

/// `text,label` CSV of `rows` rows cycling through the first `labels` topics, the texts of
/// 3 to 8 of the topic's words chosen by a small deterministic generator.
pub fn support_csv(rows: usize, labels: usize) -> String {
    let mut csv = String::from("text,label\n");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..rows {
        let (label, words) = TOPICS[i % labels];
        let n = 3 + (next() % 6) as usize;
        let text: Vec<&str> = (0..n)
            .map(|_| words[(next() % words.len() as u64) as usize])
            .collect();
        csv.push_str(&format!("{} {i},{label}\n", text.join(" ")));
    }
    csv
}

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Neither output has an ANSI escape, a panic or a backtrace.
pub fn assert_clean(what: &str, out: &Output) {
    for (name, text) in [("stdout", stdout_of(out)), ("stderr", stderr_of(out))] {
        assert!(
            !text.contains('\u{1b}'),
            "{what}: ANSI escape in {name}:\n{text:?}"
        );
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("panicked") && !lower.contains("backtrace"),
            "{what}: panic in {name}:\n{text}"
        );
    }
}

fn report(cmd: &Command, out: &Output) -> String {
    format!(
        "{cmd:?}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout_of(out),
        stderr_of(out)
    )
}

/// Runs a command that must fail: exit code 2, no panic/backtrace/ANSI escape, a last
/// stderr line starting with `taskbench: ` that contains every one of `needles`, and no
/// other stderr line unless `allow_progress_lines` (fine-tuning prints a line per finished
/// epoch before it can fail). Returns the `taskbench: ` line.
#[track_caller]
pub fn fails_after(cmd: &mut Command, needles: &[&str], allow_progress_lines: bool) -> String {
    let out = cmd.output().expect("run taskbench");
    let report = report(cmd, &out);
    assert_clean(&report, &out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2:\n{report}"
    );
    let stderr = stderr_of(&out);
    let lines: Vec<&str> = stderr.lines().collect();
    let errors: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("taskbench: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "expected exactly one `taskbench: ` line on stderr:\n{report}"
    );
    let line = lines.last().copied().unwrap_or_default();
    assert!(
        line.starts_with("taskbench: "),
        "the last stderr line must be the error:\n{report}"
    );
    if !allow_progress_lines {
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr:\n{report}"
        );
    }
    for needle in needles {
        assert!(
            line.contains(needle),
            "stderr should contain {needle:?}:\n{report}"
        );
    }
    // A cause is said once: `x: no such folder: no such folder` repeats its source.
    let parts: Vec<&str> = line.split(": ").collect();
    for pair in parts.windows(2) {
        assert!(
            pair[0] != pair[1],
            "stderr repeats {:?}:\n{report}",
            pair[0]
        );
    }
    eprintln!("{line}");
    line.to_string()
}

/// [`fails_after`] for a refusal before any work: exactly one stderr line.
#[track_caller]
pub fn fails(cmd: &mut Command, needles: &[&str]) -> String {
    fails_after(cmd, needles, false)
}

/// Runs a command that must succeed; returns (stdout, stderr).
#[track_caller]
pub fn succeeds(cmd: &mut Command) -> (String, String) {
    let out = cmd.output().expect("run taskbench");
    let report = report(cmd, &out);
    assert!(out.status.success(), "expected success:\n{report}");
    assert_clean(&report, &out);
    (stdout_of(&out), stderr_of(&out))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `id2label` of a config.json, in id order.
pub fn id2label(config: &Value) -> Vec<String> {
    let map = config["id2label"]
        .as_object()
        .unwrap_or_else(|| panic!("no id2label in {config:#}"));
    (0..map.len())
        .map(|i| map[&i.to_string()].as_str().unwrap().to_string())
        .collect()
}

/// A tensor of a safetensors file as stored: dtype, shape and raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Every tensor of a safetensors file, by name, exactly as stored.
pub fn raw_tensors(path: &Path) -> BTreeMap<String, RawTensor> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                RawTensor {
                    dtype: format!("{:?}", view.dtype()),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                },
            )
        })
        .collect()
}

/// The name without the family prefix (`bert.`, `distilbert.`, `roberta.`), if it has one.
pub fn strip_prefix<'a>(name: &'a str, prefix: &str) -> &'a str {
    name.strip_prefix(prefix)
        .and_then(|n| n.strip_prefix('.'))
        .unwrap_or(name)
}
