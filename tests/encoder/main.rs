//! The encoder against HF transformers: probabilities on the same weights must agree within
//! 1e-4 (max abs difference), token ids exactly, and a padded-free batch must give what each
//! item gives alone. References come from `scripts/make_reference.py` (see
//! `tests/fixtures/README.md`).

mod int8;
mod reference;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use reference::Reference;
use taskbench::models::encoder::Encoder;
use taskbench::models::{Classifier, TokenizedText};

/// Max abs difference allowed between taskbench's and transformers' probabilities.
const PROB_TOLERANCE: f32 = 1e-4;
/// Batched and one-by-one results may differ only by summation order.
const BATCH_TOLERANCE: f32 = 1e-5;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn minilm_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `make models` (scripts/fetch-models.sh) before the tests",
        dir.display()
    );
    dir
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Checks ids, single-item and batched probabilities of every reference case.
fn check_against_reference(model: &Encoder, reference: &Reference) {
    let texts: Vec<&str> = reference.cases.iter().map(|c| c.text.as_str()).collect();
    let tokenized = model.tokenize(&texts).unwrap();
    for (case, tok) in reference.cases.iter().zip(&tokenized) {
        assert_eq!(
            tok.ids,
            case.input_ids,
            "token ids differ for case {} ({:?})",
            case.index,
            preview(&case.text)
        );
        assert_eq!(
            tok.truncated_from.is_some(),
            case.truncated,
            "truncation flag for case {}",
            case.index
        );
    }
    let singles: Vec<Vec<f32>> = tokenized
        .iter()
        .map(|t| model.classify(&[t]).unwrap().remove(0))
        .collect();
    let batch_refs: Vec<&TokenizedText> = tokenized.iter().collect();
    let batched = model.classify(&batch_refs).unwrap();
    let mut worst = 0.0f32;
    for ((case, single), batch) in reference.cases.iter().zip(&singles).zip(&batched) {
        let diff = max_abs_diff(single, &case.probs_single);
        worst = worst.max(diff);
        assert!(diff <= PROB_TOLERANCE, "case {} ({:?}): max abs diff {diff:e} > {PROB_TOLERANCE:e}\n ours {single:?}\n  ref {:?}", case.index, preview(&case.text), case.probs_single);
        let diff_batch = max_abs_diff(batch, single);
        assert!(
            diff_batch <= BATCH_TOLERANCE,
            "case {}: batched differs from single by {diff_batch:e}",
            case.index
        );
    }
    eprintln!(
        "{}: {} cases, worst max abs diff {worst:e}",
        reference.fixture,
        reference.cases.len()
    );
}

fn preview(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Checks the fused CPU kernels and the device-generic candle ops (what CUDA and Metal run).
fn tiny(name: &str) {
    let dir = fixtures().join(name);
    let reference = Reference::load(&dir.join("reference.json"));
    let mut model = Encoder::load(&dir, name, &Device::Cpu).unwrap();
    assert_eq!(model.labels().len(), reference.num_labels);
    check_against_reference(&model, &reference);
    model.use_candle_ops();
    check_against_reference(&model, &reference);
}

#[test]
fn tiny_bert_matches_transformers() {
    tiny("tiny-bert");
}

#[test]
fn tiny_distilbert_matches_transformers() {
    tiny("tiny-distilbert");
}

#[test]
fn tiny_roberta_matches_transformers() {
    tiny("tiny-roberta");
}

#[test]
fn labels_come_from_id2label_in_id_order() {
    let model = Encoder::load(&fixtures().join("tiny-roberta"), "tiny", &Device::Cpu).unwrap();
    assert_eq!(
        model.labels(),
        [
            "billing",
            "refund",
            "Technical Support",
            "shipping",
            "other"
        ]
    );
}

/// Copies the backbone's tokenizer files and returns its tensors.
fn backbone_into(dir: &Path) -> HashMap<String, Tensor> {
    let src = minilm_dir();
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
    ] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap()
}

fn config_with_labels(architecture: &str, labels: &[String]) -> serde_json::Value {
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(minilm_dir().join("config.json")).unwrap())
            .unwrap();
    config["architectures"] = serde_json::json!([architecture]);
    config["id2label"] = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), serde_json::json!(l)))
        .collect();
    config
}

#[test]
fn minilm_with_a_bert_pooler_head_matches_transformers() {
    let reference = Reference::load(&fixtures().join("minilm-head/reference_pooler.json"));
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors: HashMap<String, Tensor> = backbone_into(tmp.path())
        .into_iter()
        .map(|(k, v)| (format!("bert.{k}"), v))
        .collect();
    tensors.extend(
        candle_core::safetensors::load(
            fixtures().join("minilm-head/pooler_classifier.safetensors"),
            &Device::Cpu,
        )
        .unwrap(),
    );
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    let config = config_with_labels("BertForSequenceClassification", &reference.labels());
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let mut model = Encoder::load(tmp.path(), "minilm-pooler", &Device::Cpu).unwrap();
    check_against_reference(&model, &reference);
    model.use_candle_ops();
    check_against_reference(&model, &reference);
}

#[test]
fn minilm_mean_pooled_dense_head_matches_sentence_transformers_pipeline() {
    let reference = Reference::load(&fixtures().join("minilm-head/reference_mean.json"));
    let tmp = tempfile::tempdir().unwrap();
    let tensors = backbone_into(tmp.path());
    candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors")).unwrap();
    let src = minilm_dir();
    std::fs::copy(
        src.join("sentence_bert_config.json"),
        tmp.path().join("sentence_bert_config.json"),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("1_Pooling")).unwrap();
    std::fs::copy(
        src.join("1_Pooling/config.json"),
        tmp.path().join("1_Pooling/config.json"),
    )
    .unwrap();
    std::fs::create_dir_all(tmp.path().join("3_Dense")).unwrap();
    std::fs::copy(
        fixtures().join("minilm-head/mean_dense.safetensors"),
        tmp.path().join("3_Dense/model.safetensors"),
    )
    .unwrap();
    let dense = serde_json::json!({"in_features": 384, "out_features": reference.num_labels, "bias": true, "activation_function": "torch.nn.modules.linear.Identity"});
    std::fs::write(tmp.path().join("3_Dense/config.json"), dense.to_string()).unwrap();
    let modules = serde_json::json!([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    ]);
    std::fs::write(tmp.path().join("modules.json"), modules.to_string()).unwrap();
    let config = config_with_labels("BertModel", &reference.labels());
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    let model = Encoder::load(tmp.path(), "minilm-mean", &Device::Cpu).unwrap();
    assert_eq!(
        model.max_tokens(),
        256,
        "sentence-transformers max_seq_length"
    );
    check_against_reference(&model, &reference);
}

#[test]
fn a_backbone_without_head_is_not_a_classifier() {
    let model = Encoder::load(&minilm_dir(), "minilm", &Device::Cpu).unwrap();
    let err = model.require_head().unwrap_err().to_string();
    assert!(
        err.contains("no classification head") && err.contains("taskbench train --head-only"),
        "{err}"
    );
}
