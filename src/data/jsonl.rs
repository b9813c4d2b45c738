//! JSONL (NDJSON): one JSON object per line, blank lines skipped.
//!
//! The "columns" are the keys seen across all objects, in first-seen order, so defaults and
//! "the columns are: ..." messages work as for CSV. Text must be a string. Labels may be strings
//! or integers (`0`, `1`, `2` exports are common; `1` becomes "1"); a fractional number or a
//! boolean is refused rather than guessed at. Ids may be strings or numbers.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value};

use crate::data::columns::{self, Columns};
use crate::data::error::DataError;
use crate::data::rows::{Parsed, RawRow, Rows};
use crate::data::LoadOptions;

type Object = Map<String, Value>;

/// Parses `text` (UTF-8, BOM already stripped) as JSONL.
pub(crate) fn parse(path: &Path, text: &str, opts: &LoadOptions) -> Result<Parsed, DataError> {
    let objects = objects(path, text)?;
    let columns = columns::resolve(path, &keys(&objects), opts)?;
    let mut rows = Rows::new(path, columns.clone());
    for (line, object) in &objects {
        rows.push(*line, cells(path, *line, &columns, object)?)?;
    }
    Ok(rows.finish())
}

/// Every non-blank line as (1-based line number, object).
fn objects(path: &Path, text: &str) -> Result<Vec<(usize, Object)>, DataError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let value: Value = serde_json::from_str(raw).map_err(|e| DataError::Json {
            path: path.to_path_buf(),
            line,
            reason: json_reason(&e),
        })?;
        match value {
            Value::Object(object) => out.push((line, object)),
            other => {
                return Err(DataError::NotAnObject {
                    path: path.to_path_buf(),
                    line,
                    found: kind(&other),
                })
            }
        }
    }
    Ok(out)
}

/// All keys, in the order they first appear.
fn keys(objects: &[(usize, Object)]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for key in objects.iter().flat_map(|(_, o)| o.keys()) {
        if seen.insert(key.as_str()) {
            out.push(key.clone());
        }
    }
    out
}

/// The text, label and id of one object.
fn cells(
    path: &Path,
    line: usize,
    columns: &Columns,
    object: &Object,
) -> Result<RawRow, DataError> {
    let field = |name: &str| {
        object.get(name).ok_or_else(|| DataError::MissingField {
            path: path.to_path_buf(),
            line,
            field: name.to_string(),
        })
    };
    let type_error = |name: &str, expected, value: &Value| DataError::FieldType {
        path: path.to_path_buf(),
        line,
        field: name.to_string(),
        expected,
        found: kind(value),
    };
    let name = &columns.text.name;
    let text = match field(name)? {
        Value::String(s) => s.clone(),
        other => return Err(type_error(name, "a string", other)),
    };
    let mut row = RawRow {
        text,
        label: None,
        id: None,
    };
    if let Some(col) = &columns.label {
        let value = field(&col.name)?;
        let label = label_string(value)
            .ok_or_else(|| type_error(&col.name, "a string or an integer", value))?;
        row.label = Some(label);
    }
    if let Some(col) = &columns.id {
        let value = field(&col.name)?;
        row.id = Some(
            id_string(value).ok_or_else(|| type_error(&col.name, "a string or a number", value))?,
        );
    }
    Ok(row)
}

/// A label as text; `null` becomes "" so it is reported as an empty label.
fn label_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// An id as text; `null` becomes "" so it is reported as an empty id.
fn id_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// "an array", "a number", ... for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(n) if n.is_f64() => "a fractional number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json says "expected ident at line 1 column 2" about the single line it was given;
/// keep the reason and the column, since the file's line number is already in the message.
pub(super) fn json_reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let reason = text.split(" at line ").next().unwrap_or(&text);
    format!("{reason}, at column {}", err.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Parsed, DataError> {
        parse(Path::new("a.jsonl"), text, &LoadOptions::default())
    }

    #[test]
    fn integer_labels_and_numeric_ids_become_strings() {
        let text = "{\"id\": 7, \"text\": \"up\", \"label\": 1}\n\n{\"id\": \"x\", \"text\": \"down\", \"label\": \"0\"}\n";
        let ex = parse_str(text).unwrap().examples;
        assert_eq!(
            (ex[0].id.as_str(), ex[0].label.as_deref()),
            ("7", Some("1"))
        );
        assert_eq!((ex[1].id.as_str(), ex[1].line), ("x", 3));
    }

    #[test]
    fn fractional_label_is_refused() {
        let msg = parse_str("{\"text\": \"a\", \"label\": 1.5}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "a.jsonl: line 1: field \"label\" must be a string or an integer, found a fractional number"
        );
    }

    #[test]
    fn keys_from_later_lines_count_as_columns() {
        let msg = parse_str("{\"text\": \"a\"}\n{\"text\": \"b\", \"label\": \"x\"}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "a.jsonl: line 1: no \"label\" field");
    }

    #[test]
    fn null_label_is_an_empty_label() {
        let msg = parse_str("{\"text\": \"a\", \"label\": null}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "a.jsonl: line 1: empty label in column \"label\"");
    }
}
