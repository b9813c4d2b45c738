//! `data::match_labels` in every mode, with map files on disk, and the unknown-labels message.

use std::path::Path;

use crate::common::{chain, Files};
use taskbench::data::{
    load, match_labels, unknown_labels_message, LabelMatch, LoadOptions, MatchKind, UnknownLabel,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const MODEL: &[&str] = &[
    "auto_collision",
    "water_damage",
    "fire_smoke",
    "storm_damage",
];

fn matched(dataset: &[&str], map: Option<&Path>) -> LabelMatch {
    match_labels(&strings(dataset), &strings(MODEL), map)
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
}

fn failed(dataset: &[&str], model: &[&str], map: Option<&Path>) -> String {
    match match_labels(&strings(dataset), &strings(model), map) {
        Ok(m) => panic!("expected an error, got {:?}", m.entries()),
        Err(e) => chain(&e),
    }
}

fn kinds(m: &LabelMatch) -> Vec<(Option<usize>, Option<MatchKind>)> {
    m.entries()
        .iter()
        .map(|e| (e.model_index, e.kind))
        .collect()
}

#[test]
fn exact_normalized_and_unmatched() {
    let m = matched(
        &["water_damage", "Fire Smoke", " STORM--damage", "travel"],
        None,
    );
    assert_eq!(
        kinds(&m),
        [
            (Some(1), Some(MatchKind::Exact)),
            (Some(2), Some(MatchKind::Normalized)),
            (Some(3), Some(MatchKind::Normalized)),
            (None, None),
        ]
    );
    assert_eq!(m.model_index("Fire Smoke"), Some(2));
    assert_eq!(m.model_index("travel"), None);
    assert_eq!(m.model_index("never seen"), None);
    assert_eq!(m.model_labels(), strings(MODEL));
}

#[test]
fn json_map_comes_first_even_over_exact() {
    let f = Files::new();
    let map = f.write(
        "map.json",
        r#"{"Fire": "fire_smoke", "water_damage": "storm_damage", "unused": "auto_collision"}"#,
    );
    let m = matched(&["Fire", "water_damage", "auto collision"], Some(&map));
    assert_eq!(
        kinds(&m),
        [
            (Some(2), Some(MatchKind::Mapped)),
            (Some(3), Some(MatchKind::Mapped)),
            (Some(0), Some(MatchKind::Normalized)),
        ]
    );
}

#[test]
fn csv_map_with_and_without_header() {
    let f = Files::new();
    for content in [
        "dataset_label,model_label\nBurst pipe,water_damage\n",
        "Burst pipe , water_damage\n",
    ] {
        let map = f.write("map.csv", content);
        let m = matched(&["Burst pipe"], Some(&map));
        assert_eq!(kinds(&m), [(Some(1), Some(MatchKind::Mapped))]);
    }
}

#[test]
fn map_naming_a_missing_model_label_lists_the_models_labels() {
    let f = Files::new();
    let map = f.write("map.json", r#"{"Fire": "fire"}"#);
    assert_eq!(
        failed(&["Fire"], MODEL, Some(&map)),
        format!(
            "{}: maps \"Fire\" to \"fire\", which is not a label of the model; \
             the model knows: auto_collision, water_damage, fire_smoke, storm_damage",
            map.display()
        )
    );
    let map = f.write(
        "map.csv",
        "dataset_label,model_label\nFire,fire_smoke\nHail,hail\n",
    );
    let err = failed(&["Fire"], MODEL, Some(&map));
    assert!(
        err.starts_with(&format!(
            "{}: line 3: maps \"Hail\" to \"hail\"",
            map.display()
        )),
        "{err}"
    );
}

#[test]
fn map_file_errors_name_the_map() {
    let f = Files::new();
    let missing = f.dir.path().join("none.json");
    let err = failed(&["a"], MODEL, Some(&missing));
    assert!(
        err.starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{err}"
    );

    let bad = f.write(
        "bad.json",
        "{\n  \"Fire\": \"fire_smoke\",\n  \"Hail\" \"storm_damage\"\n}\n",
    );
    let err = failed(&["a"], MODEL, Some(&bad));
    assert!(
        err.starts_with(&format!(
            "{}: line 3: not valid JSON (expected `:`, at column 10)",
            bad.display()
        )),
        "{err}"
    );

    let wide = f.write("wide.csv", "Fire,fire_smoke,extra\n");
    assert_eq!(
        failed(&["a"], MODEL, Some(&wide)),
        format!(
            "{}: line 1: expected 2 fields (dataset_label,model_label), found 3",
            wide.display()
        )
    );

    let empty = f.write("empty.csv", "Fire,\n");
    assert_eq!(
        failed(&["a"], MODEL, Some(&empty)),
        format!(
            "{}: line 1: empty label in column \"model_label\"",
            empty.display()
        )
    );

    let conflict = f.write("c.csv", "Fire,fire_smoke\nFire,storm_damage\n");
    assert!(failed(&["a"], MODEL, Some(&conflict))
        .contains("on line 1 and to \"storm_damage\" on line 2"));

    let blank = f.write("blank.json", "  \n");
    assert_eq!(
        failed(&["a"], MODEL, Some(&blank)),
        format!("{}: the file is empty", blank.display())
    );
}

#[test]
fn two_model_labels_normalizing_alike_are_ambiguous() {
    let model = ["Water-Damage", "water_damage", "fire"];
    assert_eq!(
        failed(&["fire", "Water damage"], &model, None),
        "dataset label \"Water damage\" matches 2 model labels (Water-Damage, water_damage); \
         map it with --label-map FILE"
    );
    // An exact hit is not ambiguous, and labels that match neither are simply unknown.
    let m = match_labels(&strings(&["water_damage", "storm"]), &strings(&model), None).unwrap();
    assert_eq!(kinds(&m), [(Some(1), Some(MatchKind::Exact)), (None, None)]);
}

#[test]
fn a_map_resolves_an_ambiguity() {
    let f = Files::new();
    let map = f.write("m.json", r#"{"Water damage": "water_damage"}"#);
    let model = strings(&["Water-Damage", "water_damage"]);
    let m = match_labels(&strings(&["Water damage"]), &model, Some(&map)).unwrap();
    assert_eq!(m.model_index("Water damage"), Some(1));
}

#[test]
fn unknown_labels_with_row_counts_and_message() {
    let f = Files::new();
    let data = f.write(
        "claims.csv",
        "text,label\na,Fire\nb,water_damage\nc,Fire\nd,Flood\ne,Other\nf,Fire\ng,Flood\n",
    );
    let d = load(&data, &LoadOptions::default()).unwrap();
    let m = match_labels(&d.labels(), &strings(&["a", "b", "water_damage"]), None).unwrap();
    let unknown = m.unknown(&d.examples);
    assert_eq!(
        unknown,
        [
            UnknownLabel {
                label: "Fire".into(),
                rows: 3
            },
            UnknownLabel {
                label: "Flood".into(),
                rows: 2
            },
            UnknownLabel {
                label: "Other".into(),
                rows: 1
            },
        ]
    );
    let err = m
        .require_all_known(&d.path, &d.examples)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "3 labels in {} are not labels of the model: \"Fire\" (3 rows), \"Flood\" (2 rows), \"Other\" (1 row). \
             The model knows: a, b, water_damage. Map them with --label-map FILE, or pass --unknown-labels error \
             to count those rows as wrong.",
            data.display()
        )
    );
    let all_known = match_labels(
        &d.labels(),
        &strings(&["Fire", "water_damage", "Flood", "Other"]),
        None,
    )
    .unwrap();
    assert!(all_known.unknown(&d.examples).is_empty());
    assert!(all_known.require_all_known(&d.path, &d.examples).is_ok());
}

#[test]
fn long_lists_are_shortened() {
    let unknown: Vec<UnknownLabel> = (0..12)
        .map(|i| UnknownLabel {
            label: format!("L{i}"),
            rows: 2,
        })
        .collect();
    let model: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    let msg = unknown_labels_message(Path::new("x.csv"), &unknown, &model);
    assert!(
        msg.starts_with("12 labels in x.csv are not labels"),
        "{msg}"
    );
    assert!(
        msg.contains("\"L9\" (2 rows), and 2 more. The model knows: m0,"),
        "{msg}"
    );
    assert!(msg.contains("m29, and 10 more. Map them"), "{msg}");
}
