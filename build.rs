//! Build provenance for `report::environment`, passed as compile-time environment variables:
//!
//! - `TASKBENCH_GIT_COMMIT`: `git rev-parse HEAD`; unset outside a git checkout, without git,
//!   or before the first commit;
//! - `TASKBENCH_GIT_DIRTY`: `true` / `false` from `git status --porcelain`; unset without git;
//! - `TASKBENCH_CANDLE_VERSION`: candle-core's version in `Cargo.lock` (the nearest one at or
//!   above this package), or `unknown`;
//! - `TASKBENCH_RUSTC_VERSION`: `$RUSTC --version`; unset if that fails;
//! - `TASKBENCH_TARGET`: the target triple.
//!
//! Nothing here fails the build: a missing tool or file only leaves a variable unset.
//!
//! Reruns when `Cargo.lock`, git's `HEAD`, index, current branch ref (or, before the first
//! commit, the folder it will be created in) or packed refs change, and
//! when anything under the [`WATCHED`] paths changes (so `git_dirty` follows source edits).
//! An edit elsewhere in the work tree does not rerun it, so `git_dirty` can lag there.
//!
//! The lock-file parser has tests: `rustc --edition 2021 --test build.rs -o /tmp/bt && /tmp/bt`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Package paths whose changes rerun this script, when they exist.
const WATCHED: [&str; 3] = ["src", "kernels/src", "Cargo.toml"];

fn main() {
    let root = env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    emit_git(&root);
    emit_candle_version(&root);
    emit_rustc_version();
    if let Ok(target) = env::var("TARGET") {
        set_env("TASKBENCH_TARGET", &target);
    }
    for path in WATCHED {
        watch(&root.join(path));
    }
}

fn set_env(key: &str, value: &str) {
    println!("cargo:rustc-env={key}={value}");
}

/// Reruns this script when `path` changes; only for paths that exist, because Cargo reruns on
/// every build for a missing one.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn emit_git(root: &Path) {
    if let Some(commit) = git(root, &["rev-parse", "HEAD"]).filter(|c| is_object_id(c)) {
        set_env("TASKBENCH_GIT_COMMIT", &commit);
    }
    if let Some(status) = git(root, &["status", "--porcelain"]) {
        set_env("TASKBENCH_GIT_DIRTY", &(!status.is_empty()).to_string());
    }
    for path in git_state_files(root) {
        watch(&path);
    }
}

/// The files whose change means a new commit or a changed index, as git names them (correct
/// in linked work trees and submodules too).
fn git_state_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["HEAD", "index", "packed-refs"]
        .iter()
        .filter_map(|name| git_path(root, name))
        .collect();
    let branch = git(root, &["symbolic-ref", "-q", "HEAD"]).and_then(|r| git_path(root, &r));
    if let Some(branch) = branch {
        // Before the first commit the branch file does not exist yet; its folder changes when
        // that commit creates it.
        match branch.parent() {
            Some(dir) if !branch.exists() => files.push(dir.to_path_buf()),
            _ => files.push(branch),
        }
    }
    files
}

/// Where git keeps `name` (`HEAD`, `index`, `refs/heads/main`), as a path from `root`.
fn git_path(root: &Path, name: &str) -> Option<PathBuf> {
    git(root, &["rev-parse", "--git-path", name]).map(|p| root.join(p))
}

/// Runs git in `root`; its trimmed stdout on success, `None` on any failure.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A SHA-1 or SHA-256 object id in hex.
fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn emit_candle_version(root: &Path) {
    let lock = root
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|p| p.is_file());
    let version = lock.as_deref().and_then(|path| {
        watch(path);
        let text = fs::read_to_string(path).ok()?;
        package_version(&text, "candle-core")
    });
    set_env(
        "TASKBENCH_CANDLE_VERSION",
        version.as_deref().unwrap_or("unknown"),
    );
}

/// The version of package `name` in a `Cargo.lock`, read line by line (no TOML parser needed
/// for the lock file's fixed layout). If several versions are locked, the first is returned.
fn package_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    lock.split("[[package]]")
        .find(|block| block.lines().any(|l| l.trim() == want))?
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
}

fn emit_rustc_version() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return;
    };
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !version.is_empty() {
        set_env("TASKBENCH_RUSTC_VERSION", &version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"version = 4

[[package]]
name = "candle-core-extra"
version = "9.9.9"

[[package]]
name = "candle-core"
version = "0.11.1"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "half",
]

[[package]]
name = "half"
version = "2.6.0"
"#;

    #[test]
    fn finds_the_exact_package() {
        assert_eq!(
            package_version(LOCK, "candle-core").as_deref(),
            Some("0.11.1")
        );
        assert_eq!(package_version(LOCK, "half").as_deref(), Some("2.6.0"));
        assert_eq!(package_version(LOCK, "candle-nn"), None);
        assert_eq!(package_version("", "candle-core"), None);
    }

    #[test]
    fn object_ids() {
        assert!(is_object_id(&"a1".repeat(20)));
        assert!(!is_object_id("HEAD"));
        assert!(!is_object_id(&"g1".repeat(20)));
    }
}
