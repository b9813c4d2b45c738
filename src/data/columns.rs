//! Choosing the text, label and id columns from a file's header (or a JSONL file's keys).
//!
//! Names match case-insensitively because the same data arrives as `Text`, `text` and `TEXT`
//! from different exports. When the caller names no column, well-known names are tried in order,
//! so most files load with no flags at all; when nothing fits, the error lists the columns that
//! do exist so the user can pick one.

use std::path::Path;

use crate::data::error::{DataError, Role};
use crate::data::LoadOptions;

/// Text column names tried, in order, when `LoadOptions::text_col` is not set.
pub const TEXT_COLUMNS: &[&str] = &[
    "text",
    "sentence",
    "content",
    "utterance",
    "query",
    "input",
    "prompt",
];

/// Label column names tried, in order, when `LoadOptions::label_col` is not set.
pub const LABEL_COLUMNS: &[&str] = &["label", "labels", "category", "class", "intent", "target"];

/// Id column name tried when `LoadOptions::id_col` is not set.
pub const ID_COLUMNS: &[&str] = &["id"];

/// A resolved column: its position in the header and its name as written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Column {
    pub index: usize,
    pub name: String,
}

/// The columns a loader reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    pub text: Column,
    pub label: Option<Column>,
    pub id: Option<Column>,
}

/// Picks the columns from `header` following `opts` (see `LoadOptions` for the rules).
pub(crate) fn resolve(
    path: &Path,
    header: &[String],
    opts: &LoadOptions,
) -> Result<Columns, DataError> {
    let find = |role, asked: &Option<String>, defaults| {
        pick(path, header, role, asked.as_deref(), defaults)
    };
    let text = find(Role::Text, &opts.text_col, TEXT_COLUMNS)?;
    let label = find(Role::Label, &opts.label_col, LABEL_COLUMNS);
    let label = match label {
        Err(DataError::NoDefaultColumn { .. }) if opts.allow_unlabelled => None,
        other => Some(other?),
    };
    // A missing default id column is normal: ids fall back to row numbers.
    let id = match find(Role::Id, &opts.id_col, ID_COLUMNS) {
        Err(DataError::NoDefaultColumn { .. }) => None,
        other => Some(other?),
    };
    Ok(Columns { text, label, id })
}

/// The column the caller asked for, or the first default name present.
fn pick(
    path: &Path,
    header: &[String],
    role: Role,
    asked: Option<&str>,
    defaults: &'static [&'static str],
) -> Result<Column, DataError> {
    if let Some(name) = asked {
        return find_one(path, header, role, name)?.ok_or_else(|| DataError::MissingColumn {
            path: path.to_path_buf(),
            role,
            name: name.to_string(),
            available: header.to_vec(),
        });
    }
    for name in defaults {
        if let Some(column) = find_one(path, header, role, name)? {
            return Ok(column);
        }
    }
    Err(DataError::NoDefaultColumn {
        path: path.to_path_buf(),
        role,
        tried: defaults,
        available: header.to_vec(),
    })
}

/// The header entry equal to `name` ignoring case and surrounding spaces.
///
/// Several matches are an error unless exactly one also matches case, since reading the wrong
/// one would silently evaluate on the wrong data.
fn find_one(
    path: &Path,
    header: &[String],
    role: Role,
    name: &str,
) -> Result<Option<Column>, DataError> {
    let wanted = name.trim();
    let lower = wanted.to_lowercase();
    let hits: Vec<usize> = (0..header.len())
        .filter(|&i| header[i].trim().to_lowercase() == lower)
        .collect();
    let chosen = match hits.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => exact_case(header, many, wanted).ok_or_else(|| DataError::AmbiguousColumn {
            path: path.to_path_buf(),
            role,
            name: name.to_string(),
            matches: many.iter().map(|&i| header[i].clone()).collect(),
        })?,
    };
    Ok(Some(Column {
        index: chosen,
        name: header[chosen].clone(),
    }))
}

/// The only hit whose case matches `wanted` exactly, if there is exactly one.
fn exact_case(header: &[String], hits: &[usize], wanted: &str) -> Option<usize> {
    let exact: Vec<usize> = hits
        .iter()
        .copied()
        .filter(|&i| header[i].trim() == wanted)
        .collect();
    match exact.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn opts() -> LoadOptions {
        LoadOptions::default()
    }

    #[test]
    fn defaults_are_found_case_insensitively_in_priority_order() {
        let h = header(&["ID", "Utterance", "Sentence", "Intent", "Class"]);
        let c = resolve(Path::new("a.csv"), &h, &opts()).unwrap();
        assert_eq!(c.text.name, "Sentence"); // "sentence" comes before "utterance"
        assert_eq!(c.label.unwrap().name, "Class"); // "class" comes before "intent"
        assert_eq!(c.id.unwrap().index, 0);
    }

    #[test]
    fn no_id_column_means_row_numbers() {
        let c = resolve(Path::new("a.csv"), &header(&["text", "label"]), &opts()).unwrap();
        assert!(c.id.is_none());
    }

    #[test]
    fn overrides_win_over_defaults() {
        let o = LoadOptions {
            text_col: Some("body".into()),
            label_col: Some("TEAM".into()),
            id_col: Some("claim_no".into()),
            ..opts()
        };
        let h = header(&["text", "label", "body", "team", "claim_no"]);
        let c = resolve(Path::new("a.csv"), &h, &o).unwrap();
        assert_eq!(
            (c.text.index, c.label.unwrap().index, c.id.unwrap().index),
            (2, 3, 4)
        );
    }

    #[test]
    fn missing_asked_column_lists_existing_ones() {
        let o = LoadOptions {
            label_col: Some("team".into()),
            ..opts()
        };
        let msg = resolve(Path::new("a.csv"), &header(&["text", "label"]), &o)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "a.csv: no label column \"team\"; the columns are: text, label"
        );
    }

    #[test]
    fn missing_default_label_is_an_error_unless_unlabelled_allowed() {
        let h = header(&["text", "note"]);
        let msg = resolve(Path::new("a.csv"), &h, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no label column (looked for label, labels, category"),
            "{msg}"
        );
        assert!(
            msg.contains("the columns are: text, note. Name it with --label-col"),
            "{msg}"
        );
        let o = LoadOptions {
            allow_unlabelled: true,
            ..opts()
        };
        assert!(resolve(Path::new("a.csv"), &h, &o).unwrap().label.is_none());
    }

    #[test]
    fn asked_label_column_must_exist_even_when_unlabelled_allowed() {
        let o = LoadOptions {
            label_col: Some("team".into()),
            allow_unlabelled: true,
            ..opts()
        };
        assert!(resolve(Path::new("a.csv"), &header(&["text"]), &o).is_err());
    }

    #[test]
    fn case_variants_are_ambiguous_unless_one_matches_exactly() {
        let h = header(&["Text", "TEXT", "label"]);
        let msg = resolve(Path::new("a.csv"), &h, &opts())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("columns Text, TEXT all match text column \"text\""),
            "{msg}"
        );
        let h = header(&["Text", "text", "label"]);
        assert_eq!(
            resolve(Path::new("a.csv"), &h, &opts()).unwrap().text.index,
            1
        );
    }
}
