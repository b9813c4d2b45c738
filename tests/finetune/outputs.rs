//! What a full fine-tune writes: the HF classifier or sentence-transformers folder, a
//! training.json that describes the run, and a model `eval` loads; early stopping and class
//! weights.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Sorted labels of `support_csv(.., n)`.
fn sorted_labels(n: usize) -> Vec<String> {
    let mut labels: Vec<String> = ["billing", "refund", "Technical Support", "shipping"][..n]
        .iter()
        .map(|s| s.to_string())
        .collect();
    labels.sort();
    labels
}

fn training_json(out: &Path) -> Value {
    read_json(&out.join("training.json"))
}

fn assert_epochs(training: &Value, count: usize) {
    assert_eq!(training["recipe"], "full", "{training:#}");
    let epochs = training["epochs"]
        .as_array()
        .unwrap_or_else(|| panic!("no epochs[]: {training:#}"));
    assert_eq!(epochs.len(), count, "{training:#}");
    for (i, epoch) in epochs.iter().enumerate() {
        assert_eq!(epoch["epoch"], i + 1, "{training:#}");
        let loss = epoch["train_loss"]
            .as_f64()
            .unwrap_or_else(|| panic!("no train_loss: {training:#}"));
        assert!(loss.is_finite() && loss > 0.0, "{training:#}");
    }
}

/// Every backbone tensor of the base is in the saved model under the same name, and trained.
fn assert_backbone_trained(base: &Path, saved: &Path, prefix: &str) {
    let base_tensors = raw_tensors(&base.join("model.safetensors"));
    let saved_tensors = raw_tensors(&saved.join("model.safetensors"));
    let mut unchanged = Vec::new();
    for (name, tensor) in &base_tensors {
        if !name.starts_with(&format!("{prefix}.")) || name.contains("pooler") {
            continue;
        }
        let saved_tensor = saved_tensors
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from {}", saved.display()));
        assert_eq!(
            (&saved_tensor.dtype, &saved_tensor.shape),
            (&tensor.dtype, &tensor.shape),
            "{name}"
        );
        if saved_tensor == tensor {
            unchanged.push(name.clone());
        }
    }
    assert!(
        unchanged.is_empty(),
        "full fine-tuning left these unchanged: {unchanged:?}"
    );
}

fn cls_classifier(base: &Path, prefix: &str, architecture: &str) {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(24, 3));
    let out = s.path("clf");
    let (stdout, _) = succeeds(finetune(base, &data, &out).args([
        "--pooling",
        "cls",
        "--epochs",
        "2",
        "--batch-size",
        "8",
    ]));
    assert!(
        stdout.contains("fine-tuned") && stdout.contains("3 labels"),
        "{stdout}"
    );
    let config = read_json(&out.join("config.json"));
    assert_eq!(
        config["architectures"],
        serde_json::json!([architecture]),
        "{config:#}"
    );
    assert_eq!(id2label(&config), sorted_labels(3), "{config:#}");
    assert!(!out.join("modules.json").exists());
    let training = training_json(&out);
    assert_epochs(&training, 2);
    assert_eq!(training["pooling"], "cls", "{training:#}");
    assert_eq!(
        training["output_layout"], "hf-sequence-classification",
        "{training:#}"
    );
    assert_eq!(
        training["best_epoch"],
        Value::Null,
        "best_epoch without --eval: {training:#}"
    );
    assert_backbone_trained(base, &out, prefix);

    let (stdout, _) = succeeds(&mut eval_cmd(&out, &data));
    assert!(stdout.contains("Accuracy"), "{stdout}");
}

#[test]
fn distilbert_fine_tune_saves_a_distilbert_classifier_that_eval_loads() {
    cls_classifier(
        &tiny_distilbert(),
        "distilbert",
        "DistilBertForSequenceClassification",
    );
}

#[test]
fn roberta_fine_tune_saves_a_roberta_classifier_that_eval_loads() {
    cls_classifier(
        &tiny_roberta(),
        "roberta",
        "RobertaForSequenceClassification",
    );
}

#[test]
fn mean_pooled_fine_tune_saves_a_dense_module_and_records_the_best_epoch() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(24, 4));
    let heldout = s.write("heldout.csv", support_csv(12, 4));
    let out = s.path("clf");
    let (stdout, _) = succeeds(
        finetune(&tiny_bert(), &data, &out)
            .args(["--pooling", "mean", "--epochs", "2", "--batch-size", "8"])
            .arg("--eval")
            .arg(&heldout),
    );
    assert!(stdout.contains("macro-F1"), "{stdout}");
    let modules = read_json(&out.join("modules.json"));
    let last = modules
        .as_array()
        .and_then(|m| m.last())
        .unwrap_or_else(|| panic!("{modules:#}"));
    assert_eq!(
        last["type"], "sentence_transformers.models.Dense",
        "{modules:#}"
    );
    assert_eq!(last["path"], "2_Dense", "{modules:#}");
    let dense = raw_tensors(&out.join("2_Dense/model.safetensors"));
    assert_eq!(dense["linear.weight"].shape, [4, 32]);
    assert_eq!(
        id2label(&read_json(&out.join("config.json"))),
        sorted_labels(4)
    );

    let training = training_json(&out);
    assert_epochs(&training, 2);
    assert_eq!(training["pooling"], "mean", "{training:#}");
    assert_eq!(
        training["output_layout"], "sentence-transformers-dense",
        "{training:#}"
    );
    let best = training["best_epoch"]
        .as_u64()
        .unwrap_or_else(|| panic!("no best_epoch with --eval: {training:#}"));
    assert!((1..=2).contains(&best), "{training:#}");
    for epoch in training["epochs"].as_array().unwrap() {
        assert!(epoch["eval_macro_f1"].is_f64(), "{training:#}");
    }
    assert!(training["eval"]["accuracy"].is_f64(), "{training:#}");

    let (stdout, _) = succeeds(&mut eval_cmd(&out, &heldout));
    assert!(stdout.contains("Accuracy"), "{stdout}");
}

#[test]
fn patience_stops_when_the_eval_score_does_not_improve() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(16, 4));
    let heldout = s.write("heldout.csv", support_csv(8, 4));
    let out = s.path("clf");
    // lr 0: the weights never change, so epoch 2 scores exactly as epoch 1 and patience 1
    // stops there, out of 5.
    let (_, stderr) = succeeds(
        finetune(&tiny_bert(), &data, &out)
            .args([
                "--epochs",
                "5",
                "--batch-size",
                "8",
                "--lr",
                "0",
                "--patience",
                "1",
            ])
            .arg("--eval")
            .arg(&heldout),
    );
    assert!(stderr.contains("early stopping"), "{stderr}");
    let training = training_json(&out);
    assert_epochs(&training, 2);
    assert_eq!(training["best_epoch"], 1, "{training:#}");
}

#[test]
fn class_weights_change_the_loss_and_are_recorded() {
    let s = Scratch::new();
    // 28 billing, 2 refund.
    let mut csv = support_csv(28, 1);
    csv.push_str(
        &support_csv(4, 2)
            .lines()
            .skip(1)
            .filter(|l| l.ends_with(",refund"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let data = s.write("imbalanced.csv", csv);
    let run = |name: &str, weighted: bool| -> Value {
        let out = s.path(name);
        let mut cmd = finetune(&tiny_bert(), &data, &out);
        cmd.args(["--epochs", "1", "--batch-size", "8"]);
        if weighted {
            cmd.arg("--class-weights");
        }
        succeeds(&mut cmd);
        training_json(&out)
    };
    let weighted = run("weighted", true);
    let plain = run("plain", false);
    assert_eq!(
        weighted["hyperparameters"]["class_weights"], true,
        "{weighted:#}"
    );
    assert_eq!(
        plain["hyperparameters"]["class_weights"], false,
        "{plain:#}"
    );
    assert_eq!(weighted["data"]["rows"], 30, "{weighted:#}");
    let loss = |t: &Value| t["epochs"][0]["train_loss"].as_f64().unwrap();
    assert_ne!(
        loss(&weighted),
        loss(&plain),
        "--class-weights did not change the loss"
    );
}
