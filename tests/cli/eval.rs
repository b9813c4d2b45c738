//! `eval` on good input: the table on stdout, results.json and predictions.jsonl.

use std::collections::BTreeMap;

use crate::common::*;

#[test]
fn eval_writes_results_and_predictions() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.arg("--out").arg(&out);
    let (stdout, _) = succeeds(&mut cmd);
    assert!(stdout.contains("Accuracy"), "{stdout}");
    assert!(
        stdout.contains("results.json") && stdout.contains("predictions.jsonl"),
        "{stdout}"
    );

    let results = read_json(&out.join("results.json"));
    assert_eq!(results["schema_version"], 1, "{results:#}");
    assert_eq!(results["kind"], "eval", "{results:#}");
    assert_eq!(results["metrics"]["n"], SUPPORT_ROWS, "{results:#}");
    assert_eq!(
        results["dataset"]["rows_in_file"], SUPPORT_ROWS,
        "{results:#}"
    );
    assert_eq!(
        results["environment"]["candle_version"], "0.11.1",
        "{results:#}"
    );
    assert_eq!(results["model"]["num_labels"], 4, "{results:#}");

    let predictions = read_jsonl(&out.join("predictions.jsonl"));
    assert_eq!(predictions.len(), SUPPORT_ROWS);
    let ids: Vec<&str> = predictions
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8"]);
    for p in &predictions {
        assert!(p["text"].is_string(), "{p}");
        assert!(p["gold"].is_string(), "{p}");
        let predicted = p["predicted"].as_str().expect("predicted");
        assert!(TINY_BERT_LABELS.contains(&predicted), "{p}");
        let probs = p["probabilities"].as_object().expect("probabilities");
        let labels: Vec<&str> = probs.keys().map(String::as_str).collect();
        assert_eq!(labels, TINY_BERT_LABELS, "{p}");
        let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() <= 1e-5, "probabilities sum to {sum}: {p}");
        assert!(
            probs
                .values()
                .all(|v| (0.0..=1.0).contains(&v.as_f64().unwrap())),
            "{p}"
        );
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
            .unwrap()
            .0;
        assert_eq!(best, predicted, "{p}");
    }
    let correct = predictions.iter().filter(|p| p["correct"] == true).count();
    assert_eq!(results["metrics"]["correct"], correct, "{results:#}");
}

#[test]
fn eval_without_out_prints_the_table_only() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let (stdout, stderr) = succeeds(&mut eval_tiny(&data));
    assert!(
        stdout.contains("Accuracy") && stdout.contains("Macro-F1"),
        "{stdout}"
    );
    assert!(!stdout.contains("wrote"), "{stdout}");
    assert!(
        stderr.is_empty(),
        "nothing on stderr when all goes well: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(s.dir.path()).unwrap().count(),
        1,
        "only the data file"
    );
}

#[test]
fn eval_reads_jsonl_too() {
    let s = Scratch::new();
    let mut jsonl = String::new();
    for line in SUPPORT_CSV.lines().skip(1) {
        let cells: Vec<&str> = line.splitn(3, ',').collect();
        jsonl.push_str(
            &serde_json::json!({"id": cells[0], "text": cells[1], "label": cells[2]}).to_string(),
        );
        jsonl.push('\n');
    }
    let data = s.write("d.jsonl", jsonl);
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.arg("--out").arg(&out).arg("--no-single-stream");
    succeeds(&mut cmd);
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["metrics"]["n"], SUPPORT_ROWS, "{results:#}");
    assert_eq!(results["dataset"]["format"], "jsonl", "{results:#}");
}

#[test]
fn limit_evaluates_a_stratified_sample() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.args(["--limit", "4"]).arg("--out").arg(&out);
    succeeds(&mut cmd);
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["metrics"]["n"], 4, "{results:#}");
    assert_eq!(results["dataset"]["rows_evaluated"], 4, "{results:#}");
    assert_eq!(
        results["dataset"]["rows_in_file"], SUPPORT_ROWS,
        "{results:#}"
    );
    assert_eq!(results["dataset"]["limit"], 4, "{results:#}");
    let predictions = read_jsonl(&out.join("predictions.jsonl"));
    assert_eq!(predictions.len(), 4);
    // Two rows per label in the file, four rows asked for: one row of each label.
    let mut per_label: BTreeMap<String, usize> = BTreeMap::new();
    for p in &predictions {
        *per_label
            .entry(p["gold"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_label.len(), 4, "{per_label:?}");
    assert!(per_label.values().all(|&n| n == 1), "{per_label:?}");

    // Same seed, same rows.
    let again = s.path("again");
    let mut cmd = eval_tiny(&data);
    cmd.args(["--limit", "4"]).arg("--out").arg(&again);
    succeeds(&mut cmd);
    let ids = |rows: &[serde_json::Value]| rows.iter().map(|p| p["id"].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&predictions),
        ids(&read_jsonl(&again.join("predictions.jsonl")))
    );
}

#[test]
fn output_has_no_ansi_escapes_when_piped() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let out = eval_tiny(&data).output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(!stdout_of(&out).contains('\u{1b}'), "{:?}", stdout_of(&out));
    assert!(!stderr_of(&out).contains('\u{1b}'), "{:?}", stderr_of(&out));
    // Errors, too.
    let out = eval_tiny(&s.path("missing.csv")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr_of(&out).contains('\u{1b}'), "{:?}", stderr_of(&out));
    // And clap's usage errors.
    let out = taskbench().args(["eval", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr_of(&out).contains('\u{1b}'), "{:?}", stderr_of(&out));
}

#[test]
fn limit_zero_is_refused_naming_the_flag() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = eval_tiny(&data);
    cmd.args(["--limit", "0"]);
    let what = describe(&cmd);
    let out = cmd.output().unwrap();
    let stderr = stderr_of(&out);
    assert_clean(&what, &out);
    assert_eq!(out.status.code(), Some(2), "{what}\n{stderr}");
    // Either clap refuses the value or taskbench does; the file has rows, so the message
    // must be about --limit, not about the file.
    assert!(stderr.contains("--limit"), "{what}\n{stderr}");
}

#[test]
fn hourly_cost_turns_measured_throughput_into_dollars_per_thousand_queries() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.args(["--hourly-cost", "3.60", "--utilisation", "0.5", "--out"])
        .arg(&out);
    let (stdout, _) = succeeds(&mut cmd);
    assert!(stdout.contains("per 1,000 queries"), "{stdout}");
    let results = read_json(&out.join("results.json"));
    let cost = &results["cost"];
    let items_per_s = results["throughput"]["items_per_s"].as_f64().unwrap();
    // $3.60/h at 50% busy: 1,000 queries take 1000 / items_per_s seconds of busy time.
    let expected = 3.60 * 1000.0 / (items_per_s * 3600.0 * 0.5);
    let got = cost["usd_per_1000_queries"].as_f64().unwrap();
    assert!(
        (got - expected).abs() <= 1e-9 + 1e-6 * expected,
        "{got} vs {expected}: {results:#}"
    );
    assert_eq!(cost["utilisation"], 0.5, "{results:#}");
}

#[test]
fn a_utilisation_outside_zero_to_one_is_refused() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    fails(
        eval_tiny(&data).args(["--hourly-cost", "1", "--utilisation", "0"]),
        &["utilisation 0", "(0, 1]"],
    );
}
