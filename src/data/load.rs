//! `load`: from a path to a checked `Dataset`.
//!
//! The one entry point every command uses to read a team's data, so that all of them accept the
//! same files and fail with the same messages. It reads the file once, hashes the bytes (reports
//! record which data produced a number), checks UTF-8, and hands the text to the format's parser.

use std::path::Path;

use crate::data::error::DataError;
use crate::data::file::{decode_utf8, read_bytes, sha256_hex};
use crate::data::format::Format;
use crate::data::rows::Parsed;
use crate::data::{delimited, jsonl, Dataset, LoadOptions};

/// Reads `path` as a labelled (or, with `opts.allow_unlabelled`, possibly unlabelled) data set.
///
/// Fails on an unknown extension, an unreadable, empty or non-UTF-8 file, a file with no rows,
/// a malformed row, a missing column, an empty label or id, or a repeated id; the error names
/// the path and, where there is one, the line.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset, DataError> {
    let format = Format::from_path(path)?;
    let bytes = read_bytes(path)?;
    let text = decode_utf8(path, &bytes)?;
    if text.trim().is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    let Parsed { columns, examples } = match format {
        Format::Csv | Format::Tsv => delimited::parse(path, text, format, opts)?,
        Format::Jsonl => jsonl::parse(path, text, opts)?,
    };
    if examples.is_empty() {
        return Err(DataError::NoRows {
            path: path.to_path_buf(),
        });
    }
    Ok(Dataset {
        path: path.to_path_buf(),
        format,
        text_col: columns.text.name,
        label_col: columns.label.map(|c| c.name),
        examples,
        sha256: sha256_hex(&bytes),
    })
}
