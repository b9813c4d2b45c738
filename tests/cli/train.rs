//! `train --head-only`: refusals before any work, and heads that `eval` can load.

use std::path::Path;

use crate::common::*;

/// 12 rows, 3 labels, 4 rows each.
const TRAIN_CSV: &str = "\
text,label
my card was charged twice,billing
the invoice amount is wrong,billing
why was I billed for a subscription I cancelled,billing
please fix the double payment on my credit card,billing
where is my parcel,shipping
the courier never delivered the package,shipping
how long does delivery to Canada take,shipping
my order has been stuck in transit for a week,shipping
the app crashes when I open it,tech
I cannot log in after the update,tech
the website shows an error on the settings page,tech
the password reset email never arrives,tech
";

const TRAIN_LABELS: [&str; 3] = ["billing", "shipping", "tech"];

fn train(model: &Path, data: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.args(["train", "--head-only", "--threads", "2", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    cmd
}

fn eval_on(model: &Path, data: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.args(["eval", "--threads", "2", "--warmup", "0", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    cmd
}

fn id2label(config: &serde_json::Value) -> Vec<String> {
    let map = config["id2label"]
        .as_object()
        .unwrap_or_else(|| panic!("no id2label in {config:#}"));
    (0..map.len())
        .map(|i| map[&i.to_string()].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn existing_out_without_overwrite_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let out = s.path("model-out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    fails(
        &mut train(&tiny_bert(), &data, &out),
        &["model-out", "already exists", "--overwrite"],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn training_data_with_a_single_label_is_refused() {
    let s = Scratch::new();
    let data = s.write(
        "one.csv",
        "text,label\nmy card was charged twice,billing\nthe invoice is wrong,billing\n",
    );
    let out = s.path("out");
    let line = fails(
        &mut train(&tiny_bert(), &data, &out),
        &["one.csv", "billing", "two labels"],
    );
    assert!(!out.exists(), "{line}");
}

#[test]
fn eval_split_with_labels_missing_from_train_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let eval = s.write(
        "heldout.csv",
        "text,label\nmy card was charged twice,billing\nI want my money back,refund\n",
    );
    let out = s.path("out");
    let mut cmd = train(&tiny_bert(), &data, &out);
    cmd.arg("--eval").arg(&eval);
    fails(
        &mut cmd,
        &["heldout.csv", "refund", "not in the training data"],
    );
    assert!(!out.exists());
}

#[test]
fn empty_training_file_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", "");
    let out = s.path("out");
    fails(
        &mut train(&tiny_bert(), &data, &out),
        &["train.csv", "empty"],
    );
    assert!(!out.exists());
}

#[test]
fn header_only_training_file_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", "text,label\n");
    let out = s.path("out");
    fails(
        &mut train(&tiny_bert(), &data, &out),
        &["train.csv", "no rows"],
    );
    assert!(!out.exists());
}

#[test]
fn head_on_minilm_saves_a_sentence_transformers_folder_that_eval_loads() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let out = s.path("clf");
    let (stdout, _) = succeeds(&mut train(&minilm(), &data, &out));
    assert!(
        stdout.contains("trained a linear head (3 labels"),
        "{stdout}"
    );

    for file in [
        "modules.json",
        "3_Dense/model.safetensors",
        "3_Dense/config.json",
        "config.json",
        "training.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        assert!(
            out.join(file).is_file(),
            "{file} missing from {}",
            out.display()
        );
    }
    let config = read_json(&out.join("config.json"));
    assert_eq!(id2label(&config), TRAIN_LABELS);
    let training = read_json(&out.join("training.json"));
    assert_eq!(training["recipe"], "head-only", "{training:#}");
    assert_eq!(training["pooling"], "mean", "{training:#}");
    assert_eq!(training["data"]["rows"], 12, "{training:#}");
    assert_eq!(
        training["labels"],
        serde_json::json!(TRAIN_LABELS),
        "{training:#}"
    );

    let results_dir = s.path("eval");
    let (stdout, _) = succeeds(&mut eval_on(&out, &data, &results_dir));
    assert!(stdout.contains("Accuracy"), "{stdout}");
    let results = read_json(&results_dir.join("results.json"));
    assert_eq!(results["metrics"]["n"], 12, "{results:#}");
    assert_eq!(results["model"]["num_labels"], 3, "{results:#}");
    // 12 points in 384 dimensions: the head fits its own training data.
    let accuracy = results["metrics"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy >= 0.9,
        "accuracy on the training data {accuracy}: {results:#}"
    );
}

#[test]
fn head_on_minilm_with_cls_pooling_saves_a_bert_classifier() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let out = s.path("clf-cls");
    succeeds(train(&minilm(), &data, &out).args(["--pooling", "cls"]));
    let config = read_json(&out.join("config.json"));
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"]),
        "{config:#}"
    );
    assert_eq!(id2label(&config), TRAIN_LABELS);
    assert!(out.join("training.json").is_file());

    let results_dir = s.path("eval");
    succeeds(&mut eval_on(&out, &data, &results_dir));
    let results = read_json(&results_dir.join("results.json"));
    assert_eq!(results["metrics"]["n"], 12, "{results:#}");
    assert_eq!(
        results["model"]["architecture"], "BertForSequenceClassification",
        "{results:#}"
    );
}

#[test]
fn overwrite_replaces_an_existing_out() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let out = s.path("clf");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.txt"), "old").unwrap();
    succeeds(train(&minilm(), &data, &out).arg("--overwrite"));
    assert!(!out.join("stale.txt").exists());
    assert!(out.join("training.json").is_file());
}

#[test]
fn zero_max_steps_is_refused_naming_the_flag() {
    let s = Scratch::new();
    let data = s.write("train.csv", TRAIN_CSV);
    let out = s.path("out");
    let mut cmd = train(&tiny_bert(), &data, &out);
    cmd.args(["--max-steps", "0"]);
    let what = describe(&cmd);
    let output = cmd.output().unwrap();
    let stderr = stderr_of(&output);
    assert_clean(&what, &output);
    assert_eq!(output.status.code(), Some(2), "{what}\n{stderr}");
    // Zero steps is a bad setting, not a diverging fit.
    assert!(stderr.contains("--max-steps"), "{what}\n{stderr}");
    assert!(!stderr.contains("diverged"), "{what}\n{stderr}");
    assert!(!out.exists());
}
