//! CSV and TSV: a header row, then one record per row.
//!
//! CSV follows RFC 4180: fields may be double-quoted, `""` is a quote inside a quoted field, and
//! a quoted field may span lines (line numbers in errors are where the record starts).
//!
//! TSV is read with quoting OFF: `"` is an ordinary character, and a field can hold neither a tab
//! nor a line break. That is the IANA `text/tab-separated-values` definition and what people
//! mean by "tab file": real TSV texts are full of unbalanced quotes (SMS, tweets, `5" screen`),
//! and honouring quotes would silently glue rows together at the first stray one. The cost: a
//! TSV written with CSV-style quoting keeps its quotes in the text; save such a file as CSV.

use std::path::Path;

use csv::{ReaderBuilder, StringRecord};

use crate::data::columns::{self, Columns};
use crate::data::error::DataError;
use crate::data::format::Format;
use crate::data::rows::{Parsed, RawRow, Rows};
use crate::data::LoadOptions;

/// How many header names a field-count message shows before "...".
const HEADER_NAMES_SHOWN: usize = 4;

/// Parses `text` (UTF-8, BOM already stripped) as CSV or TSV.
pub(crate) fn parse(
    path: &Path,
    text: &str,
    format: Format,
    opts: &LoadOptions,
) -> Result<Parsed, DataError> {
    let mut reader = ReaderBuilder::new()
        .delimiter(if format == Format::Tsv { b'\t' } else { b',' })
        .quoting(format != Format::Tsv)
        // Field counts are checked here, to name the header in the message.
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|source| csv_error(path, source))?
        .iter()
        .map(|name| name.trim().to_string())
        .collect();
    let columns = columns::resolve(path, &header, opts)?;
    let mut rows = Rows::new(path, columns.clone());
    for record in reader.records() {
        let record = record.map_err(|source| csv_error(path, source))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        check_width(path, format, &header, &record, line)?;
        rows.push(line, cells(&columns, &record))?;
    }
    Ok(rows.finish())
}

/// The cells `columns` names; the record's width has been checked, so they exist.
fn cells(columns: &Columns, record: &StringRecord) -> RawRow {
    let get = |index: usize| record.get(index).unwrap_or_default().to_string();
    RawRow {
        text: get(columns.text.index),
        label: columns.label.as_ref().map(|c| get(c.index)),
        id: columns.id.as_ref().map(|c| get(c.index)),
    }
}

/// Every record must have as many fields as the header.
fn check_width(
    path: &Path,
    format: Format,
    header: &[String],
    record: &StringRecord,
    line: usize,
) -> Result<(), DataError> {
    if record.len() == header.len() {
        return Ok(());
    }
    Err(DataError::FieldCount {
        path: path.to_path_buf(),
        line,
        expected: header.len(),
        header: short_header(header),
        found: record.len(),
        hint: width_hint(format, record.len() > header.len()),
    })
}

/// The likeliest cause of a wrong field count, to save the user a hunt.
fn width_hint(format: Format, too_many: bool) -> &'static str {
    match (format, too_many) {
        (Format::Tsv, true) => "; a field cannot contain a tab",
        (Format::Tsv, false) => {
            "; TSV fields are not quoted, so a field cannot contain a line break"
        }
        (_, true) => "; a field that contains a comma must be in double quotes",
        (_, false) => "",
    }
}

/// `text,label,id` or, for wide headers, `a,b,c,d,...`.
fn short_header(header: &[String]) -> String {
    let mut shown: Vec<&str> = header
        .iter()
        .take(HEADER_NAMES_SHOWN)
        .map(String::as_str)
        .collect();
    if header.len() > HEADER_NAMES_SHOWN {
        shown.push("...");
    }
    shown.join(",")
}

fn csv_error(path: &Path, source: csv::Error) -> DataError {
    let line = source.position().map_or(0, |p| p.line() as usize);
    DataError::Csv {
        path: path.to_path_buf(),
        line,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str, format: Format) -> Result<Parsed, DataError> {
        parse(Path::new("a.csv"), text, format, &LoadOptions::default())
    }

    #[test]
    fn quoted_fields_may_hold_commas_quotes_and_newlines() {
        let text = "text,label\n\"a, \"\"b\"\"\nc\",x\nplain,y\n";
        let ex = parse_str(text, Format::Csv).unwrap().examples;
        assert_eq!(ex[0].text, "a, \"b\"\nc");
        assert_eq!((ex[0].line, ex[1].line), (2, 4));
    }

    #[test]
    fn tsv_keeps_quotes_as_text() {
        let text = "label\ttext\nham\t\"Hi\" she said\nspam\tWin a 5\" TV\n";
        let ex = parse_str(text, Format::Tsv).unwrap().examples;
        assert_eq!(ex[0].text, "\"Hi\" she said");
        assert_eq!(ex[1].text, "Win a 5\" TV");
    }

    #[test]
    fn crlf_line_endings_are_fine() {
        let ex = parse_str("text,label\r\na,x\r\nb,y\r\n", Format::Csv)
            .unwrap()
            .examples;
        assert_eq!(
            (ex[1].text.as_str(), ex[1].label.as_deref()),
            ("b", Some("y"))
        );
    }

    #[test]
    fn too_many_fields_hints_at_quoting() {
        let msg = parse_str("text,label\na,b,c\n", Format::Csv)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "a.csv: line 2: expected 2 fields (text,label), found 3; a field that contains a comma must be in double quotes"
        );
    }

    #[test]
    fn wide_headers_are_shortened() {
        let h: Vec<String> = ["text", "label", "a", "b", "c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(short_header(&h), "text,label,a,b,...");
    }
}
