//! Shared helpers for the integration tests: files in a temporary folder, error chains as text.

#![allow(dead_code)]

use std::path::PathBuf;

use tempfile::TempDir;

/// A temporary folder that keeps the files written into it alive for the test.
pub struct Files {
    pub dir: TempDir,
}

impl Files {
    pub fn new() -> Files {
        Files {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes `content` to `name` in the folder and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write test file");
        path
    }
}

/// The error and its sources joined by ": ", as `{:#}` prints it through anyhow.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
