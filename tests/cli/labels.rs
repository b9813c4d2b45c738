//! Dataset labels the model does not know: refused by default, counted wrong with
//! `--unknown-labels error`, made known with `--label-map`.

use crate::common::*;

/// tiny-bert's labels plus two it does not know: "complaint" (2 rows) and "Warranty" (1 row).
const WITH_UNKNOWN: &str = "\
id,text,label
1,my card was charged twice,billing
2,I want my money back,refund
3,the app crashes when I log in,Technical Support
4,where is my parcel,shipping
5,your service is terrible,complaint
6,nobody answers the phone,complaint
7,is my blender still covered,Warranty
";

#[test]
fn unknown_labels_are_refused_with_what_to_do() {
    let s = Scratch::new();
    let data = s.write("d.csv", WITH_UNKNOWN);
    fails(
        &mut eval_tiny(&data),
        &[
            "d.csv",
            "\"complaint\" (2 rows)",
            "\"Warranty\" (1 row)",
            "billing, refund, Technical Support, shipping",
            "--label-map",
            "--unknown-labels",
        ],
    );
}

#[test]
fn unknown_labels_error_counts_them_wrong() {
    let s = Scratch::new();
    let data = s.write("d.csv", WITH_UNKNOWN);
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.args(["--unknown-labels", "error", "--no-single-stream"])
        .arg("--out")
        .arg(&out);
    succeeds(&mut cmd);
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["metrics"]["n"], 7, "{results:#}");
    assert_eq!(results["metrics"]["unknown_gold"], 3, "{results:#}");
    assert_eq!(results["dataset"]["unknown_label_rows"], 3, "{results:#}");
    assert!(
        results["metrics"]["correct"].as_u64().unwrap() <= 4,
        "{results:#}"
    );
    let predictions = read_jsonl(&out.join("predictions.jsonl"));
    for p in predictions
        .iter()
        .filter(|p| p["gold"] == "complaint" || p["gold"] == "Warranty")
    {
        assert_eq!(p["correct"], false, "{p}");
    }
}

#[test]
fn label_map_makes_unknown_labels_known() {
    let s = Scratch::new();
    let data = s.write("d.csv", WITH_UNKNOWN);
    let map = s.write(
        "map.json",
        r#"{"complaint": "Technical Support", "Warranty": "refund"}"#,
    );
    let out = s.path("out");
    let mut cmd = eval_tiny(&data);
    cmd.arg("--label-map")
        .arg(&map)
        .arg("--out")
        .arg(&out)
        .arg("--no-single-stream");
    succeeds(&mut cmd);
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["metrics"]["n"], 7, "{results:#}");
    assert_eq!(results["metrics"]["unknown_gold"], 0, "{results:#}");
    let matches = results["dataset"]["label_matches"].as_array().unwrap();
    let complaint = matches
        .iter()
        .find(|m| m["dataset_label"] == "complaint")
        .expect("complaint matched");
    assert_eq!(complaint["model_label"], "Technical Support");
    assert_eq!(complaint["how"], "mapped");
}
