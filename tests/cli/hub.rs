//! `hf:ORG/NAME[@REV]` models: parse errors, and the offline Hub cache.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::common::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Lays out `cache/models--acme--tiny-bert` as the Hub does: `refs/main` holding the
/// commit, `snapshots/<commit>/<file>` symlinks into `blobs/<sha256>`. Returns the snapshot.
fn hub_cache_with_tiny_bert(cache: &Path, skip: &[&str]) -> PathBuf {
    let repo = cache.join("models--acme--tiny-bert");
    let blobs = repo.join("blobs");
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    for entry in std::fs::read_dir(tiny_bert()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) || name == "reference.json" {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        let sha = hex::encode(Sha256::digest(&bytes));
        std::fs::write(blobs.join(&sha), &bytes).unwrap();
        let target = Path::new("../../blobs").join(&sha);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, snapshot.join(&name)).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(blobs.join(&sha), snapshot.join(&name)).unwrap();
    }
    snapshot
}

#[test]
fn malformed_hub_id_shows_the_expected_form() {
    let s = Scratch::new();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = taskbench();
    cmd.args(["eval", "--model", "hf:bad", "--data"]).arg(&data);
    fails(&mut cmd, &["hf:bad", "hf:ORG/NAME"]);
}

#[test]
fn cached_hub_model_evaluates_offline() {
    let s = Scratch::new();
    let cache = s.path("hub");
    let snapshot = hub_cache_with_tiny_bert(&cache, &[]);
    assert!(snapshot.join("config.json").is_file());
    let data = s.write("d.csv", SUPPORT_CSV);
    let out = s.path("out");
    let mut cmd = taskbench();
    cmd.env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "eval",
            "--model",
            "hf:acme/tiny-bert",
            "--warmup",
            "0",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&out);
    succeeds(&mut cmd);
    let results = read_json(&out.join("results.json"));
    assert_eq!(results["model"]["name"], "hf:acme/tiny-bert", "{results:#}");
    assert_eq!(results["metrics"]["n"], SUPPORT_ROWS, "{results:#}");
}

#[test]
fn cached_hub_model_missing_a_file_offline() {
    let s = Scratch::new();
    let cache = s.path("hub");
    hub_cache_with_tiny_bert(&cache, &["tokenizer.json"]);
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = taskbench();
    cmd.env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .args(["eval", "--model", "hf:acme/tiny-bert", "--data"])
        .arg(&data);
    fails(
        &mut cmd,
        &[
            "hf:acme/tiny-bert",
            "tokenizer.json",
            "offline",
            "HF_HUB_OFFLINE",
        ],
    );
}

#[test]
fn hub_model_not_in_the_cache_offline() {
    let s = Scratch::new();
    let cache = s.path("hub");
    std::fs::create_dir_all(&cache).unwrap();
    let data = s.write("d.csv", SUPPORT_CSV);
    let mut cmd = taskbench();
    cmd.env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .args(["eval", "--model", "hf:acme/tiny-bert", "--data"])
        .arg(&data);
    fails(&mut cmd, &["hf:acme/tiny-bert", "offline"]);
}
