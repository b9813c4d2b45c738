//! A temporary folder for test data, model copies and outputs, shared by the test targets
//! that drive the binary (`tests/cli`, `tests/finetune`) through `#[path]`.

use std::path::PathBuf;

use tempfile::TempDir;

pub struct Scratch {
    pub dir: TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `content` to `name` (creating parent folders) and returns its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, content).expect("write test file");
        path
    }
}
