//! `Format`: which parser a data file gets, decided from its extension alone.
//!
//! The extension, not the content, decides, because sniffing guesses wrong on exactly the files
//! that matter (a CSV whose texts are full of tabs, a one-column file). An unknown extension is
//! an error that lists the supported ones, so the fix (rename the file) is obvious.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use crate::data::error::DataError;

/// The extensions `Format::from_path` accepts, as shown in error messages.
pub const SUPPORTED_EXTENSIONS: &str = ".csv, .tsv, .tab, .jsonl, .ndjson";

/// The layout of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated, header row, RFC 4180 quoting.
    Csv,
    /// Tab-separated, header row, no quoting: `"` is an ordinary character.
    Tsv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// The format for `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Format, DataError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("tsv" | "tab") => Ok(Format::Tsv),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            _ => Err(DataError::UnknownFormat {
                path: path.to_path_buf(),
                extension: describe_extension(path),
                supported: SUPPORTED_EXTENSIONS,
            }),
        }
    }
}

/// `".txt"` or `(no extension)`, for the unknown-format message.
pub(crate) fn describe_extension(path: &Path) -> String {
    match path.extension() {
        Some(e) => format!("\".{}\"", e.to_string_lossy()),
        None => "(no extension)".to_string(),
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "CSV",
            Format::Tsv => "TSV",
            Format::Jsonl => "JSONL",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_map_to_formats_case_insensitively() {
        assert_eq!(
            Format::from_path(Path::new("a.csv")).ok(),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.CSV")).ok(),
            Some(Format::Csv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.tsv")).ok(),
            Some(Format::Tsv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.tab")).ok(),
            Some(Format::Tsv)
        );
        assert_eq!(
            Format::from_path(Path::new("a.jsonl")).ok(),
            Some(Format::Jsonl)
        );
        assert_eq!(
            Format::from_path(Path::new("a.ndjson")).ok(),
            Some(Format::Jsonl)
        );
    }

    #[test]
    fn unknown_extension_lists_supported_ones() {
        let msg = Format::from_path(Path::new("claims.txt"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("claims.txt: unknown file type \".txt\""),
            "{msg}"
        );
        assert!(msg.contains(".csv, .tsv, .tab, .jsonl, .ndjson"), "{msg}");
        let msg = Format::from_path(Path::new("claims"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("(no extension)"), "{msg}");
    }
}
