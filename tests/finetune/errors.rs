//! Bad input to full fine-tuning: exit code 2 with one clear `taskbench: ` line, and no
//! model folder written.

use crate::common::*;

#[test]
fn training_data_with_a_single_label_is_refused() {
    let s = Scratch::new();
    let data = s.write(
        "one.csv",
        "text,label\nmy card was charged twice,billing\nthe invoice is wrong,billing\n",
    );
    let out = s.path("out");
    fails(
        &mut finetune(&tiny_bert(), &data, &out),
        &["one.csv", "billing", "two labels"],
    );
    assert!(!out.exists());
}

#[test]
fn labels_only_in_the_eval_split_are_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(8, 2));
    let eval = s.write("heldout.csv", support_csv(8, 4));
    let out = s.path("out");
    let line = fails(
        finetune(&tiny_bert(), &data, &out).arg("--eval").arg(&eval),
        &["heldout.csv", "not in the training data", "shipping"],
    );
    assert!(line.contains("Technical Support"), "{line}");
    assert!(!out.exists());
}

#[test]
fn header_only_splits_are_refused() {
    let s = Scratch::new();
    let good = s.write("good.csv", support_csv(8, 4));
    let empty = s.write("empty.csv", "text,label\n");
    let out = s.path("out");
    fails(
        &mut finetune(&tiny_bert(), &empty, &out),
        &["empty.csv", "no rows"],
    );
    fails(
        finetune(&tiny_bert(), &good, &out)
            .arg("--eval")
            .arg(&empty),
        &["empty.csv", "no rows"],
    );
    assert!(!out.exists());
}

#[test]
fn a_gpt2_folder_is_not_a_base_encoder() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(8, 4));
    let gpt2 = s.path("gpt2");
    std::fs::create_dir_all(&gpt2).unwrap();
    // Everything a folder needs but the architecture: tiny-bert's weights and tokenizer.
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_bert().join(file), gpt2.join(file)).unwrap();
    }
    std::fs::write(
        gpt2.join("config.json"),
        r#"{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "n_positions": 64, "vocab_size": 634}"#,
    )
    .unwrap();
    let out = s.path("out");
    fails(
        &mut finetune(&gpt2, &data, &out),
        &[
            "config.json",
            "GPT2LMHeadModel",
            "not supported",
            "BertModel",
        ],
    );
    assert!(!out.exists());
}

#[test]
fn a_folder_that_is_not_a_model_is_refused() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(8, 4));
    let notes = s.path("notes");
    s.write("notes/README.txt", "just notes");
    let out = s.path("out");
    fails(
        &mut finetune(&notes, &data, &out),
        &["notes", "not a model folder", "config.json"],
    );
    fails(
        &mut finetune(&s.path("nowhere"), &data, &out),
        &["nowhere", "no such model folder"],
    );
    assert!(!out.exists());
}

#[test]
fn an_existing_output_folder_is_left_alone_without_overwrite() {
    let s = Scratch::new();
    let data = s.write("train.csv", support_csv(8, 4));
    let out = s.path("model-out");
    s.write("model-out/keep.txt", "mine");
    fails(
        finetune(&tiny_bert(), &data, &out).args(["--epochs", "1"]),
        &["model-out", "already exists", "--overwrite"],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "the refused run wrote into the folder"
    );
    assert!(!s.path("model-out.checkpoint").exists());

    succeeds(finetune(&tiny_bert(), &data, &out).args(["--epochs", "1", "--overwrite"]));
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("model.safetensors").is_file());
}

#[test]
fn a_loss_that_becomes_nan_stops_with_the_last_checkpoint() {
    let s = Scratch::new();
    // 8 rows in one batch: one step per epoch. Step 1 (epoch 1) starts from the base
    // weights and is finite; its update at lr 1e9 wrecks them, so epoch 2's loss is not.
    let data = s.write("train.csv", support_csv(8, 4));
    let out = s.path("diverged");
    let line = fails_after(
        finetune(&tiny_bert(), &data, &out).args([
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--lr",
            "1e9",
            "--max-grad-norm",
            "0",
        ]),
        &[
            "the loss became",
            "epoch 2 step 2",
            "last finished epoch is kept in",
            "diverged.checkpoint",
            "--lr",
        ],
        true,
    );
    assert!(line.contains("NaN") || line.contains("inf"), "{line}");
    let progress = read_json(&s.path("diverged.checkpoint/progress.json"));
    assert_eq!(progress["epoch"], 1, "{progress:#}");
    assert!(!out.exists(), "a diverged run wrote its model folder");

    // Diverging at the first step: no checkpoint, and the message says so.
    let out = s.path("diverged-early");
    let line = fails(
        finetune(&tiny_bert(), &data, &out).args([
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--lr",
            "1e9",
            "--max-grad-norm",
            "0",
        ]),
        &["the loss became", "epoch 1 step 2", "no checkpoint"],
    );
    assert!(line.contains("NaN") || line.contains("inf"), "{line}");
    assert!(!out.exists());
}
