//! `eval` with a generative model (the tiny random Llama fixture, HF safetensors): label
//! scoring, generate-and-parse, `--task generate`, and the generative options' bad input.

use crate::common::*;

const CLAIMS: &str = "text,label\n\
The kitchen caught fire last night,fire\n\
Water came through the ceiling,water\n\
Someone broke into the shed,theft\n\
Smoke damaged the living room,fire\n\
A pipe burst under the sink,water\n\
My bike was stolen from the garage,theft\n";

fn tiny_llama() -> std::path::PathBuf {
    root().join("tests/fixtures/tiny-llama")
}

fn eval_llama(data: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.arg("eval")
        .arg("--model")
        .arg(tiny_llama())
        .arg("--data")
        .arg(data)
        .args(["--threads", "2"]);
    cmd
}

#[test]
fn label_scoring_gives_a_probability_per_label_for_every_item() {
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let out = s.path("out");
    let (stdout, _) = succeeds(eval_llama(&data).arg("--out").arg(&out));
    assert!(stdout.contains("classify by score"), "{stdout}");
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["metrics"]["n"], 6, "{results:#}");
    assert_eq!(results["prompting"]["method"], "score", "{results:#}");
    assert_eq!(results["prompting"]["invalid_outputs"], 0, "{results:#}");
    assert_eq!(results["model"]["backend"], "causal-lm", "{results:#}");
    // The fixture's context is 64 tokens: the zero-shot prompt is cut from the left.
    assert!(
        results["prompting"]["truncated_prompt_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{results:#}"
    );
    for p in read_jsonl(&out.join("predictions.jsonl")) {
        let probs = p["probabilities"].as_object().expect("probabilities");
        let labels: Vec<&String> = probs.keys().collect();
        assert_eq!(labels, ["fire", "water", "theft"], "{p}");
        let total: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!(
            (total - 1.0).abs() < 1e-4,
            "probabilities sum to {total}: {p}"
        );
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap()
            .0;
        assert_eq!(p["predicted"], best.as_str(), "{p}");
    }
}

#[test]
fn generate_and_parse_records_outputs_and_generation_timings() {
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let out = s.path("out");
    succeeds(
        eval_llama(&data)
            .args(["--method", "generate", "--max-tokens", "4", "--out"])
            .arg(&out),
    );
    let results = read_json(&out.join("results.json"));
    let g = &results["generation"];
    assert!(g["ttft"]["n"].as_u64() == Some(6), "{results:#}");
    assert!(g["output_tokens"].as_u64().unwrap() <= 24, "{results:#}");
    let predictions = read_jsonl(&out.join("predictions.jsonl"));
    let invalid = predictions
        .iter()
        .filter(|p| p["predicted"] == "(invalid)")
        .count();
    assert_eq!(
        results["prompting"]["invalid_outputs"].as_u64(),
        Some(invalid as u64),
        "{results:#}"
    );
    for p in &predictions {
        assert!(p["output"].is_string(), "{p}");
        assert_eq!(p["correct"], p["gold"] == p["predicted"], "{p}");
    }
}

#[test]
fn generate_task_scores_outputs_against_references() {
    let s = Scratch::new();
    let data = s.write(
        "qa.jsonl",
        "{\"prompt\": \"Say yes\", \"reference\": \"yes\"}\n{\"prompt\": \"Say no\", \"reference\": \"no\"}\n",
    );
    let out = s.path("out");
    succeeds(
        eval_llama(&data)
            .args([
                "--task",
                "generate",
                "--scorer",
                "normalized",
                "--max-tokens",
                "3",
            ])
            .arg("--out")
            .arg(&out),
    );
    let results = read_json(&out.join("results.json"));
    assert!(results.get("metrics").is_none(), "{results:#}");
    assert_eq!(results["scoring"]["scorer"], "normalized", "{results:#}");
    assert_eq!(results["scoring"]["items"], 2, "{results:#}");
    for p in read_jsonl(&out.join("predictions.jsonl")) {
        let score = p["score"].as_f64().expect("score");
        assert!(score == 0.0 || score == 1.0, "{p}");
    }
}

#[test]
fn k_shot_without_examples_says_to_pass_them() {
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    fails(
        eval_llama(&data).args(["--prompt-template", "k-shot"]),
        &["5-shot", "--examples"],
    );
}

#[test]
fn a_prompt_template_with_a_syntax_error_names_its_line() {
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let template = s.write(
        "prompt.toml",
        "system = \"Classify.\"\nuser = \"\"\"\nText: {{ text }\n\"\"\"\n",
    );
    fails(
        eval_llama(&data).arg("--prompt-template").arg(&template),
        &["prompt.toml", "line 3"],
    );
}

#[test]
fn a_judge_scorer_needs_a_judge_model() {
    let s = Scratch::new();
    let data = s.write("qa.csv", "prompt,reference\nSay yes,yes\n");
    fails(
        eval_llama(&data).args(["--task", "generate", "--scorer", "judge"]),
        &["--judge-model"],
    );
}

#[test]
fn a_truncated_gguf_is_named_as_such() {
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let real = root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bytes = std::fs::read(&real).expect("run `make models` first");
    let cut = s.write("cut.gguf", &bytes[..bytes.len() / 3]);
    fails(
        taskbench()
            .arg("eval")
            .arg("--model")
            .arg(&cut)
            .arg("--data")
            .arg(&data),
        &["cut.gguf", "truncated"],
    );
}

#[test]
fn a_judge_that_gives_no_score_is_counted_as_a_scoring_error_not_a_zero() {
    let s = Scratch::new();
    let data = s.write("qa.csv", "prompt,reference\nSay yes,yes\nSay no,no\n");
    let out = s.path("out");
    // The tiny random model cannot grade: its answers hold no score.
    succeeds(
        eval_llama(&data)
            .args([
                "--task",
                "generate",
                "--scorer",
                "judge",
                "--max-tokens",
                "2",
            ])
            .arg("--judge-model")
            .arg(tiny_llama())
            .arg("--out")
            .arg(&out),
    );
    let results = read_json(&out.join("results.json"));
    let scoring = &results["scoring"];
    assert_eq!(scoring["scorer"], "judge", "{results:#}");
    assert_eq!(scoring["items"], 2, "{results:#}");
    assert_eq!(scoring["errors"], 2, "{results:#}");
    assert_eq!(scoring["passed"], 0, "{results:#}");
    for p in read_jsonl(&out.join("predictions.jsonl")) {
        assert!(
            p.get("score").is_none(),
            "an unscored item has no score: {p}"
        );
    }
}
