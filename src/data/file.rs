//! Reading a file's bytes and turning them into checked UTF-8 text.
//!
//! Data and label-map files are read whole: classification sets are small next to memory, the
//! SHA-256 of the exact bytes goes into reports, and validating UTF-8 once up front lets the
//! error name the line of the bad byte (the usual culprit is a spreadsheet saved as Windows-1252),
//! which a streaming parser would report less helpfully.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::error::DataError;

const BOM: &str = "\u{feff}";

/// The file's bytes, or an error naming the path with the OS reason as its source.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Lower-case hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `bytes` as UTF-8 text without a leading byte-order mark.
///
/// Line numbers in the error count from the start of the file, BOM or not, so they match
/// what an editor shows.
pub(crate) fn decode_utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, DataError> {
    let text = std::str::from_utf8(bytes).map_err(|e| utf8_error(path, bytes, e.valid_up_to()))?;
    Ok(text.strip_prefix(BOM).unwrap_or(text))
}

/// The 1-based line of byte `offset` in a file's text (an offset past the end counts as the
/// last line), for messages that point into a file.
pub(crate) fn line_at(text: impl AsRef<[u8]>, offset: usize) -> usize {
    let text = text.as_ref();
    let end = offset.min(text.len());
    text[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The error for an invalid byte at offset `bad`, located by line and byte within the line.
fn utf8_error(path: &Path, bytes: &[u8], bad: usize) -> DataError {
    let before = &bytes[..bad];
    let line = line_at(bytes, bad);
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    DataError::InvalidUtf8 {
        path: path.to_path_buf(),
        line,
        column: bad - line_start + 1,
        byte: bytes[bad],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_is_stripped() {
        let bytes = b"\xEF\xBB\xBFtext,label\n";
        assert_eq!(
            decode_utf8(Path::new("a.csv"), bytes).ok(),
            Some("text,label\n")
        );
    }

    #[test]
    fn invalid_utf8_names_line_and_byte() {
        let bytes = b"text,label\nok,a\ncaf\xE9,b\n";
        let msg = decode_utf8(Path::new("a.csv"), bytes)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "a.csv: line 3: not valid UTF-8 (byte 0xE9 at byte 4 of the line); save the file as UTF-8"
        );
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
