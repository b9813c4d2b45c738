//! Reading a `--label-map` file: which model label each dataset label means.
//!
//! Two forms, chosen by extension, because teams keep this either next to code (JSON) or in a
//! spreadsheet (CSV):
//! - `.json`: one object, `{"dataset label": "model label", ...}`.
//! - `.csv`: two columns, `dataset_label,model_label`; that header row is optional.
//!
//! Cells are trimmed like dataset labels. Checking the model labels exist is `labels.rs`'s job;
//! this file only reads entries and rejects a dataset label mapped two different ways.

use std::collections::HashMap;
use std::path::Path;

use csv::{ReaderBuilder, StringRecord, Trim};
use serde_json::Value;

use crate::data::error::{DataError, Role};
use crate::data::file::{decode_utf8, read_bytes};
use crate::data::format::describe_extension;
use crate::data::jsonl::kind;

/// The extensions a label map may have, as shown in error messages.
pub const LABEL_MAP_EXTENSIONS: &str = ".json, .csv";

const CSV_HEADER: [&str; 2] = ["dataset_label", "model_label"];

/// One `dataset label -> model label` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapEntry {
    pub dataset: String,
    pub model: String,
    /// The CSV line, for messages; `None` for JSON (serde_json does not keep key positions).
    pub line: Option<usize>,
}

/// The entries of the map file at `path`, in file order.
pub(crate) fn read_label_map(path: &Path) -> Result<Vec<MapEntry>, DataError> {
    let is_json = match path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .as_deref()
    {
        Some("json") => true,
        Some("csv") => false,
        _ => {
            return Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
                extension: describe_extension(path),
                supported: LABEL_MAP_EXTENSIONS,
            })
        }
    };
    let bytes = read_bytes(path)?;
    let text = decode_utf8(path, &bytes)?;
    if text.trim().is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    if is_json {
        json_entries(path, text)
    } else {
        csv_entries(path, text)
    }
}

fn json_entries(path: &Path, text: &str) -> Result<Vec<MapEntry>, DataError> {
    let value: Value = serde_json::from_str(text).map_err(|e| DataError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        reason: super::jsonl::json_reason(&e),
    })?;
    let Value::Object(object) = value else {
        return Err(DataError::MapNotObject {
            path: path.to_path_buf(),
            found: kind(&value),
        });
    };
    object
        .iter()
        .map(|(key, value)| match value {
            Value::String(model) => Ok(MapEntry {
                dataset: key.trim().to_string(),
                model: model.trim().to_string(),
                line: None,
            }),
            other => Err(DataError::MapValueType {
                path: path.to_path_buf(),
                key: key.clone(),
                found: kind(other),
            }),
        })
        .collect()
}

fn csv_entries(path: &Path, text: &str) -> Result<Vec<MapEntry>, DataError> {
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(Trim::All)
        .from_reader(text.as_bytes());
    let mut entries: Vec<MapEntry> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|source| DataError::Csv {
            path: path.to_path_buf(),
            line: source.position().map_or(0, |p| p.line() as usize),
            source,
        })?;
        if i == 0 && is_header(&record) {
            continue;
        }
        let entry = csv_entry(path, &record)?;
        match seen.get(&entry.dataset) {
            Some(&j) => check_same(path, &entries[j], &entry)?,
            None => {
                seen.insert(entry.dataset.clone(), entries.len());
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

fn is_header(record: &StringRecord) -> bool {
    record.len() == 2
        && record
            .iter()
            .zip(CSV_HEADER)
            .all(|(cell, name)| cell.eq_ignore_ascii_case(name))
}

/// One two-cell CSV row as an entry.
fn csv_entry(path: &Path, record: &StringRecord) -> Result<MapEntry, DataError> {
    let line = record.position().map_or(0, |p| p.line() as usize);
    if record.len() != 2 {
        return Err(DataError::FieldCount {
            path: path.to_path_buf(),
            line,
            expected: 2,
            header: CSV_HEADER.join(","),
            found: record.len(),
            hint: "",
        });
    }
    let cell = |i: usize| -> Result<String, DataError> {
        match record.get(i) {
            Some(value) if !value.is_empty() => Ok(value.to_string()),
            _ => Err(DataError::EmptyCell {
                path: path.to_path_buf(),
                line,
                role: Role::Label,
                column: CSV_HEADER[i].to_string(),
            }),
        }
    };
    Ok(MapEntry {
        dataset: cell(0)?,
        model: cell(1)?,
        line: Some(line),
    })
}

/// A repeated entry is fine when it says the same thing; a contradiction is an error.
fn check_same(path: &Path, first: &MapEntry, again: &MapEntry) -> Result<(), DataError> {
    if first.model == again.model {
        return Ok(());
    }
    Err(DataError::MapConflict {
        path: path.to_path_buf(),
        dataset_label: again.dataset.clone(),
        first: first.model.clone(),
        first_line: first.line.unwrap_or(0),
        second: again.model.clone(),
        line: again.line.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries_of(name: &str, content: &str) -> Result<Vec<MapEntry>, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        read_label_map(&path)
    }

    #[test]
    fn csv_header_is_optional_and_cells_are_trimmed() {
        let with = entries_of("m.csv", "dataset_label,model_label\nFire , fire_smoke\n").unwrap();
        let without = entries_of("m.csv", "Fire,fire_smoke\n").unwrap();
        assert_eq!(with[0].dataset, "Fire");
        assert_eq!(with[0].model, "fire_smoke");
        assert_eq!((with[0].line, without[0].line), (Some(2), Some(1)));
    }

    #[test]
    fn csv_conflict_names_both_lines() {
        let err = entries_of(
            "m.csv",
            "Fire,fire_smoke\nWater,water_damage\nFire,storm_damage\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with(
                "\"Fire\" is mapped to \"fire_smoke\" on line 1 and to \"storm_damage\" on line 3"
            ),
            "{msg}"
        );
    }

    #[test]
    fn csv_repeat_that_agrees_is_fine() {
        let e = entries_of("m.csv", "Fire,fire_smoke\nFire,fire_smoke\n").unwrap();
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn json_values_must_be_strings() {
        let msg = entries_of("m.json", "{\"Fire\": 3}")
            .unwrap_err()
            .to_string();
        assert!(
            msg.ends_with("the model label for \"Fire\" must be a string, found a number"),
            "{msg}"
        );
        let msg = entries_of("m.json", "[\"Fire\"]").unwrap_err().to_string();
        assert!(msg.contains("must be a JSON object"), "{msg}");
    }

    #[test]
    fn other_extensions_are_refused() {
        let msg = entries_of("m.yaml", "a: b").unwrap_err().to_string();
        assert!(
            msg.contains("unknown file type \".yaml\"; supported: .json, .csv"),
            "{msg}"
        );
    }
}
