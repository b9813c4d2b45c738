//! Reports: one results document ([`EvalResults`]) and the exporters that turn a run into
//! files and text.
//!
//! In the manner of hyperfine's `export/`: the run builds a single [`EvalResults`], and each
//! exporter owns one output and nothing else:
//!
//! - [`results`]: the versioned `results.json` ([`write_results`], [`read_results`]);
//! - [`predictions`]: one line per item in `predictions.jsonl` ([`write_predictions`]);
//! - [`table`]: the terminal summary ([`render_eval`]);
//! - [`environment`]: what the run ran on ([`Environment::detect`], [`peak_rss_bytes`]).
//!
//! This file owns what they share: [`ReportError`] and [`write_atomic`], which makes sure a
//! reader never sees a half-written file.

pub mod bench;
pub mod charts;
pub mod environment;
pub mod predictions;
pub mod results;
pub mod suite;
pub mod table;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use thiserror::Error;

pub use environment::{peak_rss_bytes, Environment};
pub use predictions::{
    read_predictions, write_predictions, Prediction, Probabilities, PREDICTIONS_FILE,
};
pub use results::{
    read_results, write_results, DatasetInfo, EvalResults, LabelMatchInfo, LatencyReport, Settings,
    RESULTS_FILE, SCHEMA_VERSION,
};
pub use table::render_eval;

/// An error writing or reading a report file.
///
/// Every variant names the file, so the message alone says where to look. Wrapped errors are
/// `#[source]` and not repeated in the message, so `{:#}` (anyhow) prints each cause once.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("{}: cannot create the output folder", .path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: cannot write the file", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: cannot read the file", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{}: not a valid taskbench results file", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}:{line}: not a valid prediction line", .path.display())]
    Line {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    #[error("{}: no schema_version field; is this a taskbench results.json?", .path.display())]
    MissingSchemaVersion { path: PathBuf },

    #[error(
        "{}: results.json has schema_version {found}; this taskbench reads version {expected}",
        .path.display()
    )]
    SchemaVersion {
        path: PathBuf,
        /// The version as written in the file (a number, or whatever JSON stood there).
        found: String,
        expected: u32,
    },

    #[error("{}: results of kind {found:?}; expected {expected:?}", .path.display())]
    Kind {
        path: PathBuf,
        found: String,
        expected: &'static str,
    },

    #[error(
        "{}: {field} is {value}, which JSON cannot hold; refusing to write a file that could not be read back",
        .path.display()
    )]
    NonFinite {
        path: PathBuf,
        field: String,
        value: f64,
    },
}

/// Writes `value` as pretty JSON and a final newline to `path`, atomically ([`write_atomic`]).
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ReportError> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value)?;
        w.write_all(b"\n")
    })
}

/// Writes `path` so that it either keeps its old contents or holds all of the new ones.
///
/// `fill` writes into a fresh temporary file in the same folder (a rename is only atomic
/// within one file system), which is then flushed, `fsync`ed and renamed over `path`; on Unix
/// the folder is then `fsync`ed too (best effort) so the rename itself survives a crash. If
/// anything fails the temporary file is removed and `path` is untouched.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), ReportError> {
    let write_err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let (tmp_path, file) = create_temp_beside(path).map_err(write_err)?;
    let written = fill_and_sync(file, fill).and_then(|()| fs::rename(&tmp_path, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(write_err(e));
    }
    sync_parent(path);
    Ok(())
}

/// Creates `dir` (and its parents) if missing and returns `dir/file_name`.
fn output_path(dir: &Path, file_name: &str) -> Result<PathBuf, ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(dir.join(file_name))
}

/// Temp files are `.<name>.tmp-<pid>-<n>`: hidden, and unique per process and call.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Opens a new temporary file next to `path`. `create_new` never reuses an existing file; a
/// leftover from a crashed run with the same pid only makes us try the next number.
fn create_temp_beside(path: &Path) -> io::Result<(PathBuf, File)> {
    let name = path
        .file_name()
        .map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut last_err = None;
    for _ in 0..100 {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free temporary file name")))
}

fn fill_and_sync(
    file: File,
    fill: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    let mut w = BufWriter::new(file);
    fill(&mut w)?;
    w.flush()?;
    w.get_ref().sync_all()
}

/// `fsync`s the folder holding `path` so the rename is durable. Best effort: some file
/// systems refuse to sync a folder, and the data itself is already on disk by then.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, |w| w.write_all(b"first")).unwrap();
        write_atomic(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        assert_eq!(entries(dir.path()), ["out.txt"]);
    }

    #[test]
    fn failed_fill_keeps_old_file_and_removes_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, |w| w.write_all(b"old")).unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(matches!(err, ReportError::Write { ref path, .. } if path.ends_with("out.txt")));
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(entries(dir.path()), ["out.txt"]);
    }

    #[test]
    fn missing_folder_is_a_write_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("out.txt");
        let err = write_atomic(&path, |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().contains("out.txt"), "{err}");
    }

    #[test]
    fn output_path_creates_nested_folders() {
        let dir = tempfile::tempdir().unwrap();
        let path = output_path(&dir.path().join("a/b"), "f.json").unwrap();
        assert!(path.parent().unwrap().is_dir());
    }
}
