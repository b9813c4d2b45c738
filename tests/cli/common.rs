//! Shared helpers: the binary with a clean environment, data files in a temporary folder,
//! copies of the fixture models, and the checks every failing command must pass.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

/// The repository root (fixture and model paths are relative to it).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tiny_bert() -> PathBuf {
    root().join("tests/fixtures/tiny-bert")
}

pub fn minilm() -> PathBuf {
    root().join("models/all-MiniLM-L6-v2")
}

/// The labels of tests/fixtures/tiny-bert, in id2label order.
pub const TINY_BERT_LABELS: [&str; 4] = ["billing", "refund", "Technical Support", "shipping"];

/// `taskbench` with backtraces on (so a panic would show), no terminal, no Hub access and
/// an empty Hub cache, run from the repository root.
pub fn taskbench() -> Command {
    let mut cmd = Command::cargo_bin("taskbench").expect("the taskbench binary");
    cmd.current_dir(root())
        .env("RUST_BACKTRACE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HUB_CACHE",
            root().join("target/tmp/cli-tests-empty-hub-cache"),
        )
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("TRANSFORMERS_OFFLINE")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env("RAYON_NUM_THREADS", "2")
        .timeout(std::time::Duration::from_secs(600));
    cmd
}

#[path = "../support/scratch.rs"]
mod scratch;
pub use scratch::Scratch;

impl Scratch {
    /// Copies the model folder `from` to `name`, leaving out the files in `skip`.
    pub fn copy_model(&self, from: &Path, name: &str, skip: &[&str]) -> PathBuf {
        let to = self.path(name);
        copy_dir(from, &to, skip);
        to
    }
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Reads `dir/config.json`, lets `edit` change it, and writes it back.
pub fn edit_config(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// A CSV for tiny-bert: `id,text,label`, two rows per model label (8 rows).
pub const SUPPORT_CSV: &str = "\
id,text,label
1,my card was charged twice,billing
2,I want my money back,refund
3,the app crashes when I log in,Technical Support
4,where is my parcel,shipping
5,the invoice amount is wrong,billing
6,please return the payment,refund
7,error message on the settings page,Technical Support
8,the courier never arrived,shipping
";

pub const SUPPORT_ROWS: usize = 8;

pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exact command line, for messages.
pub fn describe(cmd: &Command) -> String {
    format!("{cmd:?}")
}

/// Neither output has an ANSI escape, a panic or a backtrace.
pub fn assert_clean(what: &str, out: &Output) {
    let (stdout, stderr) = (stdout_of(out), stderr_of(out));
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
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

/// Runs a command that must fail on bad input: exit code 2, exactly one line on stderr,
/// starting with `taskbench: ` and containing every one of `needles`; no panic, no
/// backtrace, no ANSI escape. Returns the stderr line.
#[track_caller]
pub fn fails(cmd: &mut Command, needles: &[&str]) -> String {
    let what = describe(cmd);
    let out = cmd.output().expect("run taskbench");
    let stderr = stderr_of(&out);
    let report = format!(
        "{what}\nexit: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        out.status.code(),
        stdout_of(&out)
    );
    assert_clean(&report, &out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit code 2:\n{report}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one line on stderr:\n{report}"
    );
    let line = lines[0];
    assert!(
        line.starts_with("taskbench: "),
        "stderr must start with `taskbench: `:\n{report}"
    );
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

/// Runs a command that must succeed; returns (stdout, stderr). Fails on a panic, a
/// backtrace or an ANSI escape too.
#[track_caller]
pub fn succeeds(cmd: &mut Command) -> (String, String) {
    let what = describe(cmd);
    let out = cmd.output().expect("run taskbench");
    let (stdout, stderr) = (stdout_of(&out), stderr_of(&out));
    let report = format!(
        "{what}\nexit: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    assert!(out.status.success(), "expected success:\n{report}");
    assert_clean(&report, &out);
    (stdout, stderr)
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of a JSONL file, parsed.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// `eval` of tiny-bert on `data` with quick settings (no warm-up, one thread).
pub fn eval_tiny(data: &Path) -> Command {
    let mut cmd = taskbench();
    cmd.arg("eval")
        .arg("--model")
        .arg(tiny_bert())
        .arg("--data")
        .arg(data)
        .args(["--threads", "2", "--warmup", "0"]);
    cmd
}
