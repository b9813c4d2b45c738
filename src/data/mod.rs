//! The team's own data: loading it, matching its labels to a model's, and sampling it.
//!
//! Everything that touches a user's data file lives here, so every command reads files the same
//! way and reports problems the same way (`DataError`, with path and line). The rest of taskbench
//! sees only `Dataset` and `Example`: plain text and string labels, no format details.
//!
//! - `load`: CSV, TSV or JSONL to a `Dataset` (see `LoadOptions` for the column rules).
//! - `labels`: which model output each dataset label is (`match_labels`).
//! - `sample`: seeded, stratified subsets and train/test splits.

mod columns;
mod delimited;
mod error;
mod file;
pub(crate) use file::line_at;
mod format;
mod jsonl;
mod label_map;
pub mod labels;
mod load;
mod rows;
pub mod sample;

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

pub use columns::{ID_COLUMNS, LABEL_COLUMNS, TEXT_COLUMNS};
pub use error::{DataError, Role};
pub use format::{Format, SUPPORTED_EXTENSIONS};
pub use label_map::LABEL_MAP_EXTENSIONS;
pub use labels::{
    match_labels, normalize_label, unknown_labels_message, LabelMatch, LabelMatchEntry, MatchKind,
    UnknownLabel,
};
pub use load::load;
pub use sample::{stratified_sample, stratified_split};

/// One row of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Example {
    /// From the id column, else the 1-based row number (blank JSONL lines do not count).
    pub id: String,
    /// Exactly as in the file: not trimmed, line breaks kept.
    pub text: String,
    /// Trimmed and non-empty; `None` only when the data set has no label column.
    pub label: Option<String>,
    /// The 1-based line where the row starts, for messages about it; 0 if it came from no file.
    pub line: usize,
}

/// A loaded data file.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    /// As the caller gave it; messages show it this way too.
    pub path: PathBuf,
    pub format: Format,
    /// The text column's name as written in the file (for JSONL, the key).
    pub text_col: String,
    /// `None` when the data is unlabelled (`LoadOptions::allow_unlabelled`).
    pub label_col: Option<String>,
    pub examples: Vec<Example>,
    /// Lower-case hex SHA-256 of the file's bytes, BOM included, to pin results to data.
    pub sha256: String,
}

impl Dataset {
    /// True when every example has a label.
    pub fn is_labelled(&self) -> bool {
        self.label_col.is_some()
    }

    /// The distinct labels in first-seen order (the order `match_labels` expects).
    pub fn labels(&self) -> Vec<String> {
        self.label_counts()
            .into_iter()
            .map(|(label, _)| label)
            .collect()
    }

    /// Each distinct label with its number of rows, in first-seen order.
    pub fn label_counts(&self) -> Vec<(String, usize)> {
        label_counts(&self.examples)
    }
}

/// Each distinct label of `examples` with its number of rows, in first-seen order.
pub fn label_counts(examples: &[Example]) -> Vec<(String, usize)> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<(String, usize)> = Vec::new();
    for label in examples.iter().filter_map(|e| e.label.as_deref()) {
        match position.get(label) {
            Some(&i) => out[i].1 += 1,
            None => {
                position.insert(label, out.len());
                out.push((label.to_string(), 1));
            }
        }
    }
    out
}

/// Which columns `load` reads, and whether a label column is required.
///
/// A column left `None` is found by name, ignoring case: text is the first of `TEXT_COLUMNS`
/// present, label the first of `LABEL_COLUMNS`, id a column called `id`; without an id column
/// ids are row numbers. A column that is named here must exist. The label column is required
/// unless `allow_unlabelled` is set, in which case a file with none of the default label
/// names loads with `label_col: None` (a named `label_col` must still exist, and a label column
/// that exists must have no empty cells: half-labelled files are refused, not guessed at).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub text_col: Option<String>,
    pub label_col: Option<String>,
    pub id_col: Option<String>,
    /// Accept a file with no label column (for `predict`-style commands that need no gold labels).
    pub allow_unlabelled: bool,
}
