//! Broken or unusable model folders: exit code 2 and one line naming what is wrong.

use serde_json::json;

use crate::common::*;

/// `eval --model MODEL` on a good data file.
fn eval_model(s: &Scratch, model: &std::path::Path) -> assert_cmd::Command {
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = taskbench();
    cmd.arg("eval")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data)
        .args(["--threads", "2", "--warmup", "0"]);
    cmd
}

#[test]
fn model_folder_that_does_not_exist() {
    let s = Scratch::new();
    let model = s.path("no-such-model");
    let line = fails(&mut eval_model(&s, &model), &["no-such-model"]);
    let lower = line.to_lowercase();
    assert!(
        lower.contains("no such")
            || lower.contains("does not exist")
            || lower.contains("not found"),
        "{line}"
    );
}

#[test]
fn model_folder_without_weights_names_the_missing_file() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &["model.safetensors"]);
    fails(
        &mut eval_model(&s, &model),
        &["tiny-bert", "missing", "model.safetensors"],
    );
}

#[test]
fn model_folder_without_tokenizer_names_the_missing_file() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &["tokenizer.json"]);
    fails(
        &mut eval_model(&s, &model),
        &["tiny-bert", "missing", "tokenizer.json"],
    );
}

#[test]
fn unsupported_architecture_is_named_with_the_supported_ones() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "gpt2ish", &[]);
    edit_config(&model, |c| {
        c["architectures"] = json!(["GPT2LMHeadModel"]);
        c["model_type"] = json!("gpt2");
    });
    fails(
        &mut eval_model(&s, &model),
        &[
            "config.json",
            "GPT2LMHeadModel",
            "not supported",
            "BertForSequenceClassification",
            "DistilBertForSequenceClassification",
            "RobertaForSequenceClassification",
        ],
    );
}

/// A damaged weights file: named once (not again as a quoted `path: "..."`), and said to
/// be damaged in words a user can act on (re-download or re-save it).
fn assert_damaged_weights_message(line: &str, weights: &std::path::Path) {
    let shown = weights.display().to_string();
    assert_eq!(
        line.matches(&shown).count(),
        1,
        "the file should be named once: {line}"
    );
    let lower = line.to_lowercase();
    assert!(
        lower.contains("truncated")
            || lower.contains("corrupt")
            || lower.contains("not a valid safetensors"),
        "the message should say the file is truncated or corrupt: {line}"
    );
}

#[test]
fn truncated_safetensors() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &[]);
    let weights = model.join("model.safetensors");
    let len = std::fs::metadata(&weights).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let line = fails(&mut eval_model(&s, &model), &["model.safetensors"]);
    assert_damaged_weights_message(&line, &weights);
}

#[test]
fn corrupt_safetensors_header() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &[]);
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes[..8].copy_from_slice(b"\xde\xad\xbe\xef\xff\xff\xff\x7f");
    std::fs::write(&weights, bytes).unwrap();
    let line = fails(&mut eval_model(&s, &model), &["model.safetensors"]);
    assert_damaged_weights_message(&line, &weights);
}

#[test]
fn tensor_shapes_that_disagree_with_config_name_the_tensor() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &[]);
    // The checkpoint's feed-forward layers are 37 wide.
    edit_config(&model, |c| c["intermediate_size"] = json!(48));
    let line = fails(
        &mut eval_model(&s, &model),
        &["model.safetensors", "intermediate.dense.weight"],
    );
    assert!(line.contains("shape"), "{line}");
}

#[test]
fn hidden_size_that_disagrees_with_the_weights_names_the_tensor() {
    let s = Scratch::new();
    let model = s.copy_model(&tiny_bert(), "tiny-bert", &[]);
    // 64 is still a multiple of the 4 heads; the checkpoint is 32 wide.
    edit_config(&model, |c| c["hidden_size"] = json!(64));
    let line = fails(&mut eval_model(&s, &model), &["model.safetensors", "shape"]);
    // Whichever tensor is read first, the message names it.
    assert!(
        line.split_whitespace()
            .any(|w| w.starts_with("bert.") && w.trim_end_matches(',').ends_with(".weight")),
        "{line}"
    );
}

#[test]
fn backbone_without_head_points_to_train() {
    let s = Scratch::new();
    fails(
        &mut eval_model(&s, &minilm()),
        &[
            "all-MiniLM-L6-v2",
            "no classification head",
            "taskbench train --head-only",
        ],
    );
}

#[test]
fn model_path_that_is_a_file_not_a_folder() {
    let s = Scratch::new();
    let model = s.write("model.bin", "not a folder");
    let line = fails(&mut eval_model(&s, &model), &["model.bin"]);
    assert!(
        !line.contains("no such"),
        "the path exists, it is a file: {line}"
    );
    assert!(
        line.contains("not a directory")
            || line.contains("not a folder")
            || line.contains("not a model folder"),
        "{line}"
    );
}
