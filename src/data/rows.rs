//! Turning the cells of one row into an `Example`, with the checks every format shares.
//!
//! CSV, TSV and JSONL differ only in how they find a row's cells; the rules after that (labels
//! and ids trimmed and non-empty, ids unique, row numbers as default ids) live here once, so the
//! three formats cannot drift apart.

use std::collections::HashMap;
use std::path::Path;

use crate::data::columns::Columns;
use crate::data::error::{DataError, Role};
use crate::data::Example;

/// The raw cells of one row, as the format parser found them.
#[derive(Debug, Default)]
pub(crate) struct RawRow {
    pub text: String,
    pub label: Option<String>,
    pub id: Option<String>,
}

/// What a format parser hands back to `load`.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub columns: Columns,
    pub examples: Vec<Example>,
}

/// Collects examples, checking each row as it arrives.
pub(crate) struct Rows<'a> {
    path: &'a Path,
    columns: Columns,
    examples: Vec<Example>,
    /// First line of each id seen, to name both lines of a duplicate.
    id_lines: HashMap<String, usize>,
}

impl<'a> Rows<'a> {
    pub fn new(path: &'a Path, columns: Columns) -> Self {
        Rows {
            path,
            columns,
            examples: Vec::new(),
            id_lines: HashMap::new(),
        }
    }

    /// Checks `raw` (which starts on `line`) and adds it as the next example.
    pub fn push(&mut self, line: usize, raw: RawRow) -> Result<(), DataError> {
        let label = match (&self.columns.label, raw.label) {
            (Some(col), Some(cell)) => Some(self.cell(line, Role::Label, &col.name, &cell)?),
            _ => None,
        };
        let id = match (&self.columns.id, raw.id) {
            (Some(col), Some(cell)) => self.cell(line, Role::Id, &col.name, &cell)?,
            // Row numbers are unique by construction, so they skip the duplicate check.
            _ => (self.examples.len() + 1).to_string(),
        };
        if self.columns.id.is_some() {
            self.check_unique(&id, line)?;
        }
        self.examples.push(Example {
            id,
            text: raw.text,
            label,
            line,
        });
        Ok(())
    }

    pub fn finish(self) -> Parsed {
        Parsed {
            columns: self.columns,
            examples: self.examples,
        }
    }

    /// A label or id cell, trimmed: spaces around a label are export noise, never meaning.
    fn cell(&self, line: usize, role: Role, column: &str, cell: &str) -> Result<String, DataError> {
        let value = cell.trim();
        let err = |multiline: bool| {
            let (path, column) = (self.path.to_path_buf(), column.to_string());
            if multiline {
                DataError::MultilineCell {
                    path,
                    line,
                    role,
                    column,
                }
            } else {
                DataError::EmptyCell {
                    path,
                    line,
                    role,
                    column,
                }
            }
        };
        if value.is_empty() {
            return Err(err(false));
        }
        // A label spanning lines is almost always a quote opened and never closed.
        if value.contains('\n') {
            return Err(err(true));
        }
        Ok(value.to_string())
    }

    fn check_unique(&mut self, id: &str, line: usize) -> Result<(), DataError> {
        if let Some(&first_line) = self.id_lines.get(id) {
            return Err(DataError::DuplicateId {
                path: self.path.to_path_buf(),
                id: id.to_string(),
                first_line,
                line,
            });
        }
        self.id_lines.insert(id.to_string(), line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::columns::Column;

    fn columns(id: bool) -> Columns {
        let col = |index, name: &str| Column {
            index,
            name: name.to_string(),
        };
        Columns {
            text: col(0, "text"),
            label: Some(col(1, "label")),
            id: id.then(|| col(2, "id")),
        }
    }

    fn raw(text: &str, label: &str, id: Option<&str>) -> RawRow {
        RawRow {
            text: text.into(),
            label: Some(label.into()),
            id: id.map(Into::into),
        }
    }

    #[test]
    fn labels_are_trimmed_and_ids_default_to_row_numbers() {
        let mut rows = Rows::new(Path::new("a.csv"), columns(false));
        rows.push(2, raw(" hi ", " fire ", None)).unwrap();
        rows.push(5, raw("yo", "water", None)).unwrap();
        let ex = rows.finish().examples;
        assert_eq!(
            (
                ex[0].id.as_str(),
                ex[0].text.as_str(),
                ex[0].label.as_deref()
            ),
            ("1", " hi ", Some("fire"))
        );
        assert_eq!((ex[1].id.as_str(), ex[1].line), ("2", 5));
    }

    #[test]
    fn blank_label_is_an_error_naming_line_and_column() {
        let mut rows = Rows::new(Path::new("a.csv"), columns(false));
        let msg = rows.push(7, raw("x", "  ", None)).unwrap_err().to_string();
        assert_eq!(msg, "a.csv: line 7: empty label in column \"label\"");
    }

    #[test]
    fn duplicate_ids_name_both_lines() {
        let mut rows = Rows::new(Path::new("a.csv"), columns(true));
        rows.push(2, raw("x", "a", Some("17"))).unwrap();
        let msg = rows
            .push(9, raw("y", "a", Some(" 17")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "a.csv: id \"17\" is on line 2 and on line 9; ids must be unique"
        );
    }

    #[test]
    fn multiline_label_hints_at_an_open_quote() {
        let mut rows = Rows::new(Path::new("a.csv"), columns(false));
        let msg = rows
            .push(3, raw("x", "a\nb", None))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("line 3: the label in column \"label\" runs over several lines"),
            "{msg}"
        );
    }
}
