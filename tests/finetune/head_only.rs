//! `train --head-only` must leave the backbone exactly as it was: every backbone tensor of the
//! saved folder is bit-identical to the base's.

use std::path::Path;

use crate::common::*;

fn head_only(model: &Path, data: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.args([
        "train",
        "--head-only",
        "--threads",
        "2",
        "--quiet",
        "--max-steps",
        "50",
        "--model",
    ])
    .arg(model)
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out);
    cmd
}

/// Compares every backbone tensor of `base` (the family prefix stripped on both sides) with
/// the same tensor in `saved`; returns the saved tensors that are not backbone tensors.
fn assert_backbone_untouched(
    base: &Path,
    saved: &Path,
    prefix: &str,
    is_head: impl Fn(&str) -> bool,
) -> Vec<String> {
    let base_tensors = raw_tensors(base);
    let saved_tensors = raw_tensors(saved);
    let saved_by_bare: std::collections::BTreeMap<&str, &RawTensor> = saved_tensors
        .iter()
        .map(|(n, t)| (strip_prefix(n, prefix), t))
        .collect();
    let mut compared = 0;
    let mut differing = Vec::new();
    for (name, tensor) in &base_tensors {
        if is_head(name) {
            continue;
        }
        let bare = strip_prefix(name, prefix);
        let Some(saved_tensor) = saved_by_bare.get(bare) else {
            panic!(
                "{}: backbone tensor {name} is missing (saved: {:?})",
                saved.display(),
                saved_tensors.keys().collect::<Vec<_>>()
            );
        };
        if *saved_tensor != tensor {
            differing.push(format!(
                "{name} ({} {:?} vs {} {:?})",
                tensor.dtype, tensor.shape, saved_tensor.dtype, saved_tensor.shape
            ));
        }
        compared += 1;
    }
    assert!(compared > 30, "only {compared} backbone tensors compared");
    assert!(
        differing.is_empty(),
        "{}: head-only training changed backbone tensors: {differing:#?}",
        saved.display()
    );
    let base_bare: std::collections::BTreeSet<&str> = base_tensors
        .keys()
        .map(|n| strip_prefix(n, prefix))
        .collect();
    saved_tensors
        .keys()
        .filter(|n| !base_bare.contains(strip_prefix(n, prefix)) || is_head(n))
        .cloned()
        .collect()
}

#[test]
fn head_only_on_tiny_bert_keeps_every_backbone_tensor() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(16, 4));
    let out = s.path("clf");
    succeeds(head_only(&tiny_bert(), &data, &out).args(["--pooling", "cls"]));
    let config = read_json(&out.join("config.json"));
    assert_eq!(
        config["architectures"],
        serde_json::json!(["BertForSequenceClassification"]),
        "{config:#}"
    );
    let extra = assert_backbone_untouched(
        &tiny_bert().join("model.safetensors"),
        &out.join("model.safetensors"),
        "bert",
        |n| n.starts_with("classifier."),
    );
    assert_eq!(
        extra,
        ["classifier.bias", "classifier.weight"],
        "tensors beyond the backbone"
    );
}

#[test]
fn head_only_on_minilm_keeps_every_backbone_tensor() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(8, 4));
    let out = s.path("clf");
    succeeds(&mut head_only(&minilm(), &data, &out));
    let modules = read_json(&out.join("modules.json"));
    assert_eq!(
        modules.as_array().unwrap().last().unwrap()["path"],
        "3_Dense",
        "{modules:#}"
    );
    let extra = assert_backbone_untouched(
        &minilm().join("model.safetensors"),
        &out.join("model.safetensors"),
        "bert",
        |_| false,
    );
    assert!(extra.is_empty(), "tensors beyond the backbone: {extra:?}");
    let dense = raw_tensors(&out.join("3_Dense/model.safetensors"));
    assert_eq!(dense["linear.weight"].shape, [4, 384]);
}
