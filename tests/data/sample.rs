//! `stratified_sample` and `stratified_split`: proportions, determinism, file order, edge cases.

use std::collections::{BTreeMap, HashSet};

use crate::common::Files;
use taskbench::data::{
    label_counts, load, stratified_sample, stratified_split, Example, LoadOptions,
};

/// `counts` rows per label, interleaved the way real files are (not sorted by label).
fn examples(counts: &[(&str, usize)]) -> Vec<Example> {
    let mut labels: Vec<&str> = Vec::new();
    let mut left: Vec<usize> = counts.iter().map(|c| c.1).collect();
    while left.iter().any(|&c| c > 0) {
        for (i, (label, _)) in counts.iter().enumerate() {
            if left[i] > 0 {
                left[i] -= 1;
                labels.push(label);
            }
        }
    }
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| Example {
            id: (i + 1).to_string(),
            text: format!("text {i}"),
            label: Some(label.to_string()),
            line: i + 2,
        })
        .collect()
}

fn unlabelled(n: usize) -> Vec<Example> {
    (0..n)
        .map(|i| Example {
            id: (i + 1).to_string(),
            text: format!("t{i}"),
            label: None,
            line: i + 2,
        })
        .collect()
}

fn count(sample: &[Example]) -> BTreeMap<String, usize> {
    label_counts(sample).into_iter().collect()
}

fn in_file_order(sample: &[Example]) -> bool {
    sample.windows(2).all(|w| w[0].line < w[1].line)
}

fn ids(sample: &[Example]) -> Vec<&str> {
    sample.iter().map(|e| e.id.as_str()).collect()
}

#[test]
fn sample_keeps_proportions() {
    let data = examples(&[("a", 700), ("b", 200), ("c", 100)]);
    let s = stratified_sample(&data, 100, 42);
    assert_eq!(s.len(), 100);
    assert_eq!(
        count(&s),
        BTreeMap::from([("a".into(), 70), ("b".into(), 20), ("c".into(), 10)])
    );
}

#[test]
fn sample_uses_largest_remainder() {
    // quotas: a 6.67, b 2.22, c 1.11 -> floors 6, 2, 1 -> one spare row to a (largest remainder)
    let data = examples(&[("a", 60), ("b", 20), ("c", 10)]);
    let s = stratified_sample(&data, 10, 1);
    assert_eq!(
        count(&s),
        BTreeMap::from([("a".into(), 7), ("b".into(), 2), ("c".into(), 1)])
    );
}

#[test]
fn rare_labels_get_at_least_one_row() {
    let data = examples(&[("common", 990), ("rare1", 5), ("rare2", 5)]);
    let s = stratified_sample(&data, 10, 7);
    let c = count(&s);
    assert_eq!((c["common"], c["rare1"], c["rare2"]), (8, 1, 1));
}

#[test]
fn same_seed_same_rows_different_seed_different_rows() {
    let data = examples(&[("a", 300), ("b", 150), ("c", 50)]);
    let first = stratified_sample(&data, 50, 123);
    assert_eq!(first, stratified_sample(&data, 50, 123));
    let other = stratified_sample(&data, 50, 124);
    assert_ne!(ids(&first), ids(&other));
    assert_eq!(count(&first), count(&other));
}

#[test]
fn sample_is_in_file_order() {
    let data = examples(&[("a", 300), ("b", 150)]);
    let s = stratified_sample(&data, 40, 9);
    assert!(in_file_order(&s));
    let all: HashSet<&str> = ids(&data).into_iter().collect();
    assert!(ids(&s).iter().all(|id| all.contains(id)));
    assert_eq!(
        ids(&s).into_iter().collect::<HashSet<_>>().len(),
        40,
        "no row twice"
    );
}

#[test]
fn n_at_least_len_returns_everything_in_order() {
    let data = examples(&[("a", 3), ("b", 2)]);
    assert_eq!(stratified_sample(&data, 5, 1), data);
    assert_eq!(stratified_sample(&data, 1000, 1), data);
    assert!(stratified_sample(&data, 0, 1).is_empty());
    assert!(stratified_sample(&[], 3, 1).is_empty());
}

#[test]
fn fewer_rows_than_labels() {
    let data = examples(&[("a", 10), ("b", 10), ("c", 10)]);
    assert_eq!(stratified_sample(&data, 2, 5).len(), 2);
}

#[test]
fn unlabelled_rows_get_a_plain_seeded_sample() {
    let data = unlabelled(500);
    let s = stratified_sample(&data, 30, 11);
    assert_eq!(s.len(), 30);
    assert!(in_file_order(&s));
    assert_eq!(s, stratified_sample(&data, 30, 11));
    assert_ne!(s, stratified_sample(&data, 30, 12));
    // A plain sample of 30 from 500 is not just the first 30 rows.
    assert_ne!(ids(&s), ids(&data[..30]));
}

#[test]
fn one_labels_rows_do_not_depend_on_other_labels() {
    let small = examples(&[("a", 100), ("b", 100)]);
    let mut big = small.clone();
    big.extend(examples(&[("c", 100)]).into_iter().map(|mut e| {
        e.id = format!("c{}", e.id);
        e.line += 1000;
        e
    }));
    // Both give "a" 10 rows (20 of 200 and 30 of 300), drawn from the same ChaCha stream.
    let a_rows = |s: Vec<Example>| -> Vec<String> {
        s.into_iter()
            .filter(|e| e.label.as_deref() == Some("a"))
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(
        a_rows(stratified_sample(&small, 20, 5)),
        a_rows(stratified_sample(&big, 30, 5))
    );
}

#[test]
fn split_is_stratified_disjoint_and_complete() {
    let data = examples(&[("a", 600), ("b", 300), ("c", 100)]);
    let (train, test) = stratified_split(&data, 0.2, 3);
    assert_eq!((train.len(), test.len()), (800, 200));
    assert_eq!(
        count(&test),
        BTreeMap::from([("a".into(), 120), ("b".into(), 60), ("c".into(), 20)])
    );
    assert!(in_file_order(&train) && in_file_order(&test));
    let mut all: Vec<&str> = ids(&train);
    all.extend(ids(&test));
    all.sort_unstable();
    let mut expected = ids(&data);
    expected.sort_unstable();
    assert_eq!(all, expected);
}

#[test]
fn split_is_deterministic() {
    let data = examples(&[("a", 60), ("b", 40)]);
    assert_eq!(
        stratified_split(&data, 0.25, 8),
        stratified_split(&data, 0.25, 8)
    );
    assert_ne!(
        stratified_split(&data, 0.25, 8).1,
        stratified_split(&data, 0.25, 9).1
    );
}

#[test]
fn split_keeps_every_label_in_train() {
    let data = examples(&[("a", 50), ("b", 2), ("solo", 1)]);
    let (train, test) = stratified_split(&data, 0.5, 1);
    let (tr, te) = (count(&train), count(&test));
    assert_eq!(tr["solo"], 1);
    assert!(!te.contains_key("solo"));
    assert_eq!((tr["b"], te["b"]), (1, 1));
    let (train, test) = stratified_split(&data, 1.0, 1);
    assert_eq!(
        count(&train).len(),
        3,
        "each label keeps a training row: {train:?}"
    );
    assert_eq!(test.len(), 50);
}

#[test]
fn split_fraction_edges() {
    let data = examples(&[("a", 10), ("b", 10)]);
    assert_eq!(stratified_split(&data, 0.0, 1).1.len(), 0);
    assert_eq!(stratified_split(&data, -3.0, 1).1.len(), 0);
    assert_eq!(stratified_split(&data, f64::NAN, 1).0.len(), 20);
    assert_eq!(stratified_split(&data, 7.0, 1).1.len(), 18);
    let (train, test) = stratified_split(&unlabelled(10), 0.3, 1);
    assert_eq!((train.len(), test.len()), (7, 3));
}

#[test]
fn sample_after_load() {
    let f = Files::new();
    let mut content = String::from("text,label\n");
    for i in 0..40 {
        content.push_str(&format!(
            "row {i},{}\n",
            if i % 4 == 0 { "rare" } else { "common" }
        ));
    }
    let d = load(&f.write("d.csv", content), &LoadOptions::default()).unwrap();
    let s = stratified_sample(&d.examples, 8, 2024);
    assert_eq!(
        count(&s),
        BTreeMap::from([("common".into(), 6), ("rare".into(), 2)])
    );
}
