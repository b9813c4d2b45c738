//! Matching a data set's labels to a model's output labels (`id2label` order).
//!
//! A team's file says "Water Damage" where the model says `water_damage`; evaluating without
//! matching would score every row wrong. Matching is tried in a fixed order, strictest first:
//! 1. an explicit `--label-map` entry (the user's word beats any guess);
//! 2. exact equality;
//! 3. normalized equality: case-insensitive, with runs of whitespace, `-` and `_` counting as
//!    one separator and ignored at the ends (`Water-Damage` = `water_damage` = `water  damage`).
//!
//! A guess that could go two ways (two model labels normalizing alike) is an error, never a
//! coin toss. Labels that match nothing are reported by `LabelMatch::unknown`; whether that is
//! fatal is the caller's decision (`--unknown-labels`), and `unknown_labels_message` says it.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::data::error::DataError;
use crate::data::label_counts;
use crate::data::label_map::read_label_map;
use crate::data::Example;

/// How many unknown labels / model labels a message lists before "and N more".
const UNKNOWN_SHOWN: usize = 10;
const MODEL_LABELS_SHOWN: usize = 30;

/// How a dataset label found its model label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    Exact,
    Normalized,
    Mapped,
}

/// The outcome for one dataset label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LabelMatchEntry {
    pub dataset_label: String,
    /// Index into the model's labels; `None` when nothing matched.
    pub model_index: Option<usize>,
    /// `None` exactly when `model_index` is `None`.
    pub kind: Option<MatchKind>,
}

/// A dataset label no model label matched, with how many rows carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownLabel {
    pub label: String,
    pub rows: usize,
}

/// Every dataset label's model index, in the order the dataset labels were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatch {
    entries: Vec<LabelMatchEntry>,
    by_label: HashMap<String, usize>,
    model_labels: Vec<String>,
}

impl LabelMatch {
    /// One entry per distinct dataset label, in first-seen order.
    pub fn entries(&self) -> &[LabelMatchEntry] {
        &self.entries
    }

    /// The model labels matched against, in `id2label` order.
    pub fn model_labels(&self) -> &[String] {
        &self.model_labels
    }

    /// The model index for `dataset_label`, or `None` if unmatched (or never seen).
    pub fn model_index(&self, dataset_label: &str) -> Option<usize> {
        let entry = self.by_label.get(dataset_label)?;
        self.entries[*entry].model_index
    }

    /// The labels of `examples` that have no model index, with row counts, in first-seen order.
    ///
    /// Takes the examples (not just the labels given to `match_labels`) so the counts are real
    /// and a label missed when matching still shows up.
    pub fn unknown(&self, examples: &[Example]) -> Vec<UnknownLabel> {
        label_counts(examples)
            .into_iter()
            .filter(|(label, _)| self.model_index(label).is_none())
            .map(|(label, rows)| UnknownLabel { label, rows })
            .collect()
    }

    /// `Err(DataError::UnknownLabels)` when some label of `examples` is unmatched, for callers
    /// that treat unknown labels as fatal.
    pub fn require_all_known(
        &self,
        dataset_path: &Path,
        examples: &[Example],
    ) -> Result<(), DataError> {
        let unknown = self.unknown(examples);
        if unknown.is_empty() {
            return Ok(());
        }
        Err(DataError::UnknownLabels {
            path: dataset_path.to_path_buf(),
            unknown,
            model_labels: self.model_labels.clone(),
        })
    }
}

/// Matches each of `dataset_labels` (distinct, first-seen order) to an index of `model_labels`.
///
/// Fails when the map file cannot be read, names a model label that does not exist, or when a
/// dataset label matches two model labels equally well.
pub fn match_labels(
    dataset_labels: &[String],
    model_labels: &[String],
    label_map: Option<&Path>,
) -> Result<LabelMatch, DataError> {
    let mapped = match label_map {
        Some(path) => checked_map(path, model_labels)?,
        None => HashMap::new(),
    };
    let exact = index_by(model_labels, |label| label.to_string());
    let normalized = index_by(model_labels, normalize_label);
    let mut result = LabelMatch {
        entries: Vec::new(),
        by_label: HashMap::new(),
        model_labels: model_labels.to_vec(),
    };
    for label in dataset_labels {
        if result.by_label.contains_key(label) {
            continue; // tolerate repeats in the input
        }
        let (model_index, kind) = match_one(label, &mapped, &exact, &normalized, model_labels)?;
        result.by_label.insert(label.clone(), result.entries.len());
        result.entries.push(LabelMatchEntry {
            dataset_label: label.clone(),
            model_index,
            kind,
        });
    }
    Ok(result)
}

type Found = (Option<usize>, Option<MatchKind>);

/// The first rule that matches `label`, strictest first.
fn match_one(
    label: &str,
    mapped: &HashMap<String, usize>,
    exact: &HashMap<String, Vec<usize>>,
    normalized: &HashMap<String, Vec<usize>>,
    model_labels: &[String],
) -> Result<Found, DataError> {
    if let Some(&i) = mapped.get(label) {
        return Ok((Some(i), Some(MatchKind::Mapped)));
    }
    if let Some(i) = unique(label, exact.get(label), model_labels)? {
        return Ok((Some(i), Some(MatchKind::Exact)));
    }
    if let Some(i) = unique(label, normalized.get(&normalize_label(label)), model_labels)? {
        return Ok((Some(i), Some(MatchKind::Normalized)));
    }
    Ok((None, None))
}

/// The single model index in `hits`; several are an ambiguity error.
fn unique(
    label: &str,
    hits: Option<&Vec<usize>>,
    model_labels: &[String],
) -> Result<Option<usize>, DataError> {
    match hits.map(Vec::as_slice) {
        None | Some([]) => Ok(None),
        Some([one]) => Ok(Some(*one)),
        Some(many) => Err(DataError::AmbiguousLabel {
            dataset_label: label.to_string(),
            matches: many.iter().map(|&i| model_labels[i].clone()).collect(),
        }),
    }
}

/// Model indices grouped by `key` of their label.
fn index_by(model_labels: &[String], key: impl Fn(&str) -> String) -> HashMap<String, Vec<usize>> {
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, label) in model_labels.iter().enumerate() {
        out.entry(key(label)).or_default().push(i);
    }
    out
}

/// The map file as dataset label -> model index; every entry must name a real model label.
///
/// All entries are checked, not only those for labels in this data set, so a typo in a map is
/// caught the first time the map is used.
fn checked_map(path: &Path, model_labels: &[String]) -> Result<HashMap<String, usize>, DataError> {
    let mut out = HashMap::new();
    for entry in read_label_map(path)? {
        let hits: Vec<usize> = (0..model_labels.len())
            .filter(|&i| model_labels[i] == entry.model)
            .collect();
        let index = unique(&entry.dataset, Some(&hits), model_labels)?.ok_or_else(|| {
            DataError::MapUnknownModelLabel {
                path: path.to_path_buf(),
                line: entry.line,
                dataset_label: entry.dataset.clone(),
                model_label: entry.model.clone(),
                model_labels: model_labels.to_vec(),
            }
        })?;
        out.insert(entry.dataset, index);
    }
    Ok(out)
}

/// `label` lower-cased, with whitespace, `-` and `_` runs as one space and none at the ends.
pub fn normalize_label(label: &str) -> String {
    label
        .to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The message for labels of `dataset_path` that the model does not know, saying what to do.
pub fn unknown_labels_message(
    dataset_path: &Path,
    unknown: &[UnknownLabel],
    model_labels: &[String],
) -> String {
    let one = unknown.len() == 1;
    let listed: Vec<String> = unknown
        .iter()
        .map(|u| {
            format!(
                "\"{}\" ({} row{})",
                u.label,
                u.rows,
                if u.rows == 1 { "" } else { "s" }
            )
        })
        .collect();
    format!(
        "{} label{} in {} {} not {} of the model: {}. The model knows: {}. Map {} with --label-map FILE, \
         or pass --unknown-labels error to count those rows as wrong.",
        unknown.len(),
        if one { "" } else { "s" },
        dataset_path.display(),
        if one { "is" } else { "are" },
        if one { "a label" } else { "labels" },
        shorten(&listed, UNKNOWN_SHOWN),
        shorten(model_labels, MODEL_LABELS_SHOWN),
        if one { "it" } else { "them" },
    )
}

/// `a, b, c` or, past `shown` items, `a, b, and 7 more`.
fn shorten(items: &[String], shown: usize) -> String {
    if items.len() <= shown {
        return items.join(", ");
    }
    format!(
        "{}, and {} more",
        items[..shown].join(", "),
        items.len() - shown
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn normalization_collapses_separators_and_case() {
        assert_eq!(normalize_label("  Water -_ Damage "), "water damage");
        assert_eq!(normalize_label("water_damage"), "water damage");
        assert_eq!(normalize_label("FIRE-smoke"), "fire smoke");
    }

    #[test]
    fn exact_beats_normalized() {
        let m = match_labels(&strings(&["fire"]), &strings(&["Fire", "fire"]), None).unwrap();
        assert_eq!(m.model_index("fire"), Some(1));
        assert_eq!(m.entries()[0].kind, Some(MatchKind::Exact));
    }

    #[test]
    fn shorten_counts_the_rest() {
        assert_eq!(shorten(&strings(&["a", "b", "c"]), 2), "a, b, and 1 more");
        assert_eq!(shorten(&strings(&["a", "b"]), 2), "a, b");
    }

    #[test]
    fn message_for_one_label_is_singular() {
        let unknown = [UnknownLabel {
            label: "Fire".into(),
            rows: 1,
        }];
        let msg = unknown_labels_message(Path::new("claims.csv"), &unknown, &strings(&["a", "b"]));
        assert_eq!(
            msg,
            "1 label in claims.csv is not a label of the model: \"Fire\" (1 row). The model knows: a, b. \
             Map it with --label-map FILE, or pass --unknown-labels error to count those rows as wrong."
        );
    }
}
