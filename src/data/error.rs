//! `DataError`: everything that can go wrong reading a team's data file or label-map file.
//!
//! One enum for the whole `data` module, so callers handle one type. Every variant carries the
//! file path and, where there is one, the line, column or label, so the message alone says where
//! to look: `claims.csv: line 14: expected 3 fields (text,label,id), found 2`. Wrapped errors are
//! `#[source]` and are not repeated in the message, so `{:#}` (anyhow) prints each cause once.

use std::fmt;
use std::path::PathBuf;

use thiserror::Error;

use crate::data::labels::{unknown_labels_message, UnknownLabel};

/// Which column a message is about; also names the command-line flag that sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Text,
    Label,
    Id,
}

impl Role {
    /// The flag a user passes to name this column (used in "what to do next" hints).
    pub fn flag(self) -> &'static str {
        match self {
            Role::Text => "--text-col",
            Role::Label => "--label-col",
            Role::Id => "--id-col",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Text => "text",
            Role::Label => "label",
            Role::Id => "id",
        })
    }
}

/// An error reading a data set or a label map, or matching its labels to a model's.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: cannot read the file", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: unknown file type {extension}; supported: {supported}", .path.display())]
    UnknownFormat {
        path: PathBuf,
        /// The extension as written, quoted, or "(no extension)".
        extension: String,
        supported: &'static str,
    },

    #[error("{}: the file is empty", .path.display())]
    Empty { path: PathBuf },

    #[error("{}: no rows of data", .path.display())]
    NoRows { path: PathBuf },

    #[error(
        "{}: line {line}: not valid UTF-8 (byte 0x{byte:02X} at byte {column} of the line); save the file as UTF-8",
        .path.display()
    )]
    InvalidUtf8 {
        path: PathBuf,
        line: usize,
        /// 1-based byte offset within the line.
        column: usize,
        byte: u8,
    },

    #[error("{}: line {line}: expected {expected} fields ({header}), found {found}{hint}", .path.display())]
    FieldCount {
        path: PathBuf,
        line: usize,
        expected: usize,
        /// The header names, comma-joined and shortened with "..." when long.
        header: String,
        found: usize,
        /// Empty, or "; " and a likely cause.
        hint: &'static str,
    },

    #[error("{}: no {role} column \"{name}\"; the columns are: {}", .path.display(), .available.join(", "))]
    MissingColumn {
        path: PathBuf,
        role: Role,
        name: String,
        available: Vec<String>,
    },

    #[error(
        "{}: no {role} column (looked for {}); the columns are: {}. Name it with {}",
        .path.display(), .tried.join(", "), .available.join(", "), .role.flag()
    )]
    NoDefaultColumn {
        path: PathBuf,
        role: Role,
        tried: &'static [&'static str],
        available: Vec<String>,
    },

    #[error(
        "{}: columns {} all match {role} column \"{name}\"; rename all but one",
        .path.display(), .matches.join(", ")
    )]
    AmbiguousColumn {
        path: PathBuf,
        role: Role,
        name: String,
        matches: Vec<String>,
    },

    #[error("{}: line {line}: empty {role} in column \"{column}\"", .path.display())]
    EmptyCell {
        path: PathBuf,
        line: usize,
        role: Role,
        column: String,
    },

    #[error(
        "{}: line {line}: the {role} in column \"{column}\" runs over several lines; is a quote left open?",
        .path.display()
    )]
    MultilineCell {
        path: PathBuf,
        line: usize,
        role: Role,
        column: String,
    },

    #[error("{}: id \"{id}\" is on line {first_line} and on line {line}; ids must be unique", .path.display())]
    DuplicateId {
        path: PathBuf,
        id: String,
        first_line: usize,
        line: usize,
    },

    #[error("{}: line {line}: not valid JSON ({reason})", .path.display())]
    Json {
        path: PathBuf,
        line: usize,
        /// serde's message with its own position turned into a column of this line.
        reason: String,
    },

    #[error("{}: line {line}: expected a JSON object, found {found}", .path.display())]
    NotAnObject {
        path: PathBuf,
        line: usize,
        found: &'static str,
    },

    #[error("{}: line {line}: no \"{field}\" field", .path.display())]
    MissingField {
        path: PathBuf,
        line: usize,
        field: String,
    },

    #[error("{}: line {line}: field \"{field}\" must be {expected}, found {found}", .path.display())]
    FieldType {
        path: PathBuf,
        line: usize,
        field: String,
        expected: &'static str,
        found: &'static str,
    },

    #[error("{}: line {line}: cannot parse the row", .path.display())]
    Csv {
        path: PathBuf,
        line: usize,
        #[source]
        source: csv::Error,
    },

    #[error(
        "{}: a label map must be a JSON object of \"dataset label\": \"model label\" pairs, found {found}",
        .path.display()
    )]
    MapNotObject { path: PathBuf, found: &'static str },

    #[error("{}: the model label for \"{key}\" must be a string, found {found}", .path.display())]
    MapValueType {
        path: PathBuf,
        key: String,
        found: &'static str,
    },

    #[error(
        "{}: \"{dataset_label}\" is mapped to \"{first}\" on line {first_line} and to \"{second}\" on line {line}",
        .path.display()
    )]
    MapConflict {
        path: PathBuf,
        dataset_label: String,
        first: String,
        first_line: usize,
        second: String,
        line: usize,
    },

    #[error(
        "{}: {}maps \"{dataset_label}\" to \"{model_label}\", which is not a label of the model; the model knows: {}",
        .path.display(), .line.map(|l| format!("line {l}: ")).unwrap_or_default(), .model_labels.join(", ")
    )]
    MapUnknownModelLabel {
        path: PathBuf,
        /// The CSV line of the entry; `None` for a JSON map.
        line: Option<usize>,
        dataset_label: String,
        model_label: String,
        model_labels: Vec<String>,
    },

    #[error(
        "dataset label \"{dataset_label}\" matches {} model labels ({}); map it with --label-map FILE",
        .matches.len(), .matches.join(", ")
    )]
    AmbiguousLabel {
        dataset_label: String,
        matches: Vec<String>,
    },

    #[error("{}", unknown_labels_message(.path, .unknown, .model_labels))]
    UnknownLabels {
        path: PathBuf,
        unknown: Vec<UnknownLabel>,
        model_labels: Vec<String>,
    },
}
