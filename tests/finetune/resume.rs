//! Checkpoints: `--stop-after-steps` and Ctrl-C write one, `--resume` continues from it to the
//! same model an uninterrupted run gives, and refuses a checkpoint of other settings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn checkpoint_of(out: &Path) -> PathBuf {
    out.with_file_name(format!(
        "{}.checkpoint",
        out.file_name().unwrap().to_string_lossy()
    ))
}

/// Two epochs at lr 1e-3, scored on `heldout.csv` beside `data` after each (so the best
/// epoch's weights are part of the checkpoint too).
fn two_epochs(data: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = with_lr(data, out, "1e-3");
    cmd.arg("--eval").arg(data.with_file_name("heldout.csv"));
    cmd
}

fn with_lr(data: &Path, out: &Path, lr: &str) -> assert_cmd::Command {
    let mut cmd = finetune(&tiny_bert(), data, out);
    cmd.args(["--epochs", "2", "--batch-size", "8", "--lr", lr]);
    cmd
}

/// `epochs[]` of training.json without the timings, as the text of its lines (compared as
/// text: parsing could map two different decimal strings to one f64).
fn epoch_history(out: &Path) -> Vec<String> {
    let path = out.join("training.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text
        .find("\n  \"epochs\": [")
        .unwrap_or_else(|| panic!("no epochs[] in {text}"));
    let end = start
        + text[start..]
            .find("\n  ]")
            .unwrap_or_else(|| panic!("epochs[] not closed in {text}"));
    text[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| {
            [
                "\"epoch\":",
                "\"train_loss\":",
                "\"eval_accuracy\":",
                "\"eval_macro_f1\":",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(String::from)
        .collect()
}

#[test]
fn resume_after_a_stop_gives_the_uninterrupted_model() {
    let s = Scratch::new();
    // 40 rows, batch 8: 5 steps an epoch; the stop at step 7 is inside epoch 2.
    let data = s.write("train.csv", support_csv(40, 4));
    s.write("heldout.csv", support_csv(12, 4));
    let a = s.path("a");
    succeeds(&mut two_epochs(&data, &a));

    let b = s.path("b");
    let line = fails_after(
        two_epochs(&data, &b).args(["--stop-after-steps", "7"]),
        &["stopped after 7 steps", "--resume", "b.checkpoint"],
        true,
    );
    assert!(line.contains("epoch 2"), "{line}");
    let checkpoint = checkpoint_of(&b);
    let progress = read_json(&checkpoint.join("progress.json"));
    assert_eq!(progress["steps"], 7, "{progress:#}");
    assert_eq!(progress["epoch"], 1, "{progress:#}");
    assert_eq!(progress["batches_done"], 2, "{progress:#}");
    assert!(!b.exists(), "a stopped run wrote its model folder");

    // Other settings: refused, and the checkpoint is left as it was.
    let before = std::fs::read(checkpoint.join("weights.safetensors")).unwrap();
    fails(
        with_lr(&data, &b, "2e-3").arg("--resume"),
        &["--resume", "b.checkpoint", "other data, model or settings"],
    );
    assert_eq!(
        std::fs::read(checkpoint.join("weights.safetensors")).unwrap(),
        before,
        "a refused resume changed the checkpoint"
    );

    let (_, stderr) = succeeds(two_epochs(&data, &b).arg("--resume"));
    assert!(stderr.contains("resuming from"), "{stderr}");
    assert!(
        !checkpoint.exists(),
        "the checkpoint is still there after a finished run"
    );

    let (ta, tb) = (
        raw_tensors(&a.join("model.safetensors")),
        raw_tensors(&b.join("model.safetensors")),
    );
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    let differing: Vec<&String> = ta
        .iter()
        .filter(|(n, t)| tb[*n] != **t)
        .map(|(n, _)| n)
        .collect();
    assert!(
        differing.is_empty(),
        "resumed and uninterrupted runs differ in {differing:?}"
    );
    // And training did move the weights (a run that trained nothing would also agree).
    let base = raw_tensors(&tiny_bert().join("model.safetensors"));
    let moved = base
        .iter()
        .filter(|(n, t)| !n.starts_with("classifier.") && ta[*n] != **t)
        .count();
    assert_eq!(
        moved,
        base.len() - 2,
        "not every backbone tensor was trained"
    );

    let (ja, jb) = (
        read_json(&a.join("training.json")),
        read_json(&b.join("training.json")),
    );
    assert!(ja["best_epoch"].is_u64(), "{ja:#}");
    assert_eq!(ja["best_epoch"], jb["best_epoch"]);
    let (ha, hb) = (epoch_history(&a), epoch_history(&b));
    assert_eq!(ha.len(), 8, "two epochs of four fields: {ha:?}");
    assert_eq!(
        ha, hb,
        "training.json epochs differ between the uninterrupted and the resumed run"
    );
}

/// The same check for what training.json records: every epoch's `train_loss` (and eval
/// scores) of a resumed run equals the uninterrupted run's, to the bit. The checkpoint keeps
/// the running loss sum and the finished epochs' history in progress.json; serde_json
/// without its `float_roundtrip` feature parses about 1 in 10 f64 values 1 ulp off, so
/// these can come back changed. Stops at every step from the end of epoch 1 on.
#[test]
fn resume_records_the_same_losses_as_an_uninterrupted_run() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(40, 4));
    let a = s.path("a");
    succeeds(&mut with_lr(&data, &a, "2e-3"));
    let expected = epoch_history(&a);
    let mut differing = Vec::new();
    for stop in 5..=9 {
        let b = s.path(&format!("b{stop}"));
        fails_after(
            with_lr(&data, &b, "2e-3").args(["--stop-after-steps", &stop.to_string()]),
            &["--resume"],
            true,
        );
        succeeds(with_lr(&data, &b, "2e-3").arg("--resume"));
        let got = epoch_history(&b);
        if got != expected {
            differing.push(format!("stopped after step {stop}: {got:?}"));
        }
    }
    assert!(
        differing.is_empty(),
        "uninterrupted: {expected:?}\nresumed runs that differ:\n{}",
        differing.join("\n")
    );
}

#[test]
fn resume_without_a_checkpoint_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(16, 4));
    s.write("heldout.csv", support_csv(8, 4));
    let out = s.path("fresh");
    fails(
        two_epochs(&data, &out).arg("--resume"),
        &["--resume", "no checkpoint", "fresh.checkpoint"],
    );
    assert!(!out.exists());
}

#[test]
fn ctrl_c_writes_a_checkpoint_that_resume_finishes() {
    let s = Scratch::new();
    // 4000 rows in batches of 16: 250 steps an epoch, about a second each here.
    let data = s.write("train.csv", support_csv(4000, 4));
    let out = s.path("big");
    let checkpoint = checkpoint_of(&out);
    let mut args: Vec<std::ffi::OsString> = [
        "train",
        "--threads",
        "2",
        "--quiet",
        "--max-len",
        "16",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--model",
    ]
    .map(Into::into)
    .to_vec();
    args.extend([
        tiny_bert().into(),
        "--data".into(),
        data.clone().into(),
        "--out".into(),
        out.clone().into(),
    ]);
    let mut cmd = std::process::Command::new(bin());
    clean_env(&mut cmd);
    cmd.args(&args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn taskbench");

    // The first checkpoint is written when epoch 1 ends; interrupt during epoch 2.
    let start = Instant::now();
    while !checkpoint.join("progress.json").is_file() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "taskbench exited ({status}) before its first checkpoint:\n{}",
                stderr_of(&out)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint after 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the child we spawned and have not yet waited for.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "kill(SIGINT) failed");

    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("taskbench did not stop within 30 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_clean("interrupted run", &output);
    assert!(
        !output.status.success(),
        "an interrupted run exited successfully:\n{stderr}"
    );
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or_default()
            .starts_with("taskbench: stopped after"),
        "{stderr}"
    );
    let progress = read_json(&checkpoint.join("progress.json"));
    let steps = progress["steps"]
        .as_u64()
        .unwrap_or_else(|| panic!("{progress:#}"));
    assert!(
        steps > 250 && steps < 1000,
        "interrupted at step {steps}, expected within epochs 2-4: {progress:#}"
    );
    assert!(
        stderr.contains(&format!("stopped after {steps} steps")),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupt: finishing the current step"),
        "{stderr}"
    );
    assert!(!out.exists(), "an interrupted run wrote its model folder");

    let (_, stderr) = succeeds(taskbench().args(&args).arg("--resume"));
    assert!(stderr.contains("resuming from"), "{stderr}");
    assert!(out.join("model.safetensors").is_file());
    let training = read_json(&out.join("training.json"));
    assert_eq!(
        training["epochs"].as_array().map(Vec::len),
        Some(4),
        "{training:#}"
    );
    assert!(!checkpoint.exists());
}
