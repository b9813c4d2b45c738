//! Resolution tests with explicit settings (no environment, no internet: the
//! online tests talk to a stand-in Hub on 127.0.0.1).

use std::path::{Path, PathBuf};

use crate::common::*;
use taskbench::models::resolve::{
    parse_model_arg, resolve, resolve_with, HubConfig, ModelSource, ResolveError,
};

fn hub(arg: &str) -> ModelSource {
    parse_model_arg(arg).unwrap()
}

fn offline(cache: &Path) -> HubConfig {
    HubConfig {
        offline: true,
        ..HubConfig::new(cache)
    }
}

fn online(cache: &Path, endpoint: &str) -> HubConfig {
    HubConfig {
        endpoint: endpoint.to_string(),
        ..HubConfig::new(cache)
    }
}

fn names(files: &[PathBuf], dir: &Path) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            f.strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect()
}

fn model_arg() -> String {
    format!("hf:{ORG_NAME}")
}

// ---------------------------------------------------------------- parsing

#[test]
fn parses_paths_and_hub_ids() {
    assert_eq!(
        parse_model_arg("models/x").unwrap(),
        ModelSource::Local(PathBuf::from("models/x"))
    );
    assert_eq!(
        parse_model_arg("./hf:odd-folder").unwrap(),
        ModelSource::Local(PathBuf::from("./hf:odd-folder"))
    );
    assert_eq!(
        hub("hf:sentence-transformers/all-MiniLM-L6-v2"),
        ModelSource::Hub {
            repo: "sentence-transformers/all-MiniLM-L6-v2".into(),
            revision: None
        }
    );
    let with_rev = hub(&format!("hf:org/name.v2@{COMMIT_A}"));
    assert_eq!(
        with_rev,
        ModelSource::Hub {
            repo: "org/name.v2".into(),
            revision: Some(COMMIT_A.into())
        }
    );
    assert_eq!(with_rev.to_string(), format!("hf:org/name.v2@{COMMIT_A}"));
    assert_eq!(hub("hf:org/name").revision(), Some("main"));
    assert_eq!(hub("hf:org/name@refs/pr/1").revision(), Some("refs/pr/1"));
    assert_eq!(hub("hf:org/name").to_string(), "hf:org/name");
}

#[test]
fn rejects_bad_hub_ids_showing_the_expected_form() {
    for arg in [
        "hf:",
        "hf:name-only",
        "hf:a/b/c",
        "hf:org/",
        "hf:/name",
        "hf:org/na me",
        "hf:org/name@",
        "hf:org/name@../../etc",
        "hf:org/name@a//b",
        "hf:-org/name",
        "hf:org/name.",
        "hf:org/na--me",
        "hf:org/name@v1@v2",
    ] {
        let err = parse_model_arg(arg).unwrap_err();
        assert!(
            matches!(err, ResolveError::BadHubId { .. }),
            "{arg}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!("`{arg}`")), "{msg}");
        assert!(msg.contains("expected hf:ORG/NAME[@REVISION]"), "{msg}");
    }
    assert!(matches!(parse_model_arg(""), Err(ResolveError::EmptyArg)));
    assert!(matches!(parse_model_arg("  "), Err(ResolveError::EmptyArg)));
}

// ---------------------------------------------------------------- local folders

#[test]
fn local_folder_with_optional_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "1_Pooling/config.json",
    ] {
        std::fs::write(dir.join(f), "{}").unwrap();
    }
    let source = ModelSource::Local(dir.clone());
    let r = resolve(&source, WANTED, OPTIONAL).unwrap();
    assert_eq!(r.dir, dir);
    assert_eq!(r.source, source);
    assert_eq!(r.commit(), None);
    assert_eq!(
        names(&r.files, &dir),
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "1_Pooling/config.json"
        ]
    );
    assert!(r.file("1_Pooling/config.json").is_some());
    assert!(r.file("modules.json").is_none());
}

#[test]
fn local_folder_missing_files_names_folder_and_every_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let err = resolve(&ModelSource::Local(dir.clone()), WANTED, OPTIONAL).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a Hugging Face model folder: missing tokenizer.json, model.safetensors \
             (expected config.json, tokenizer.json, model.safetensors)",
            dir.display()
        )
    );

    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let err = resolve(&ModelSource::Local(dir.clone()), WANTED, &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a Hugging Face model folder: missing model.safetensors \
             (expected config.json, tokenizer.json, model.safetensors)",
            dir.display()
        )
    );
}

#[test]
fn local_path_that_does_not_exist_or_is_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let gone = tmp.path().join("nope");
    let err = resolve(&ModelSource::Local(gone.clone()), WANTED, &[]).unwrap_err();
    assert!(matches!(err, ResolveError::LocalNotFound { .. }));
    assert!(err
        .to_string()
        .starts_with(&format!("{}: no such file or directory", gone.display())));

    let file = tmp.path().join("model.safetensors");
    std::fs::write(&file, "x").unwrap();
    let err = resolve(&ModelSource::Local(file.clone()), WANTED, &[]).unwrap_err();
    assert!(matches!(err, ResolveError::LocalNotADir { .. }));
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn file_names_must_stay_inside_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["../config.json", "/etc/passwd", "", "a/../../b"] {
        let err = resolve(&ModelSource::Local(tmp.path().into()), &[bad], &[]).unwrap_err();
        assert!(
            matches!(err, ResolveError::InvalidFileName { .. }),
            "{bad}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------- Hub cache, offline

#[test]
fn offline_main_resolves_to_the_snapshot_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let snapshot = add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);

    let r = resolve_with(&hub(&model_arg()), WANTED, OPTIONAL, &offline(cache)).unwrap();
    assert_eq!(r.dir, snapshot);
    assert_eq!(r.commit(), Some(COMMIT_A));
    assert_eq!(
        names(&r.files, &r.dir),
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "modules.json",
            "1_Pooling/config.json"
        ]
    );
    for f in &r.files {
        assert!(f.starts_with(&snapshot));
    }
    #[cfg(unix)]
    assert!(std::fs::symlink_metadata(&r.files[0])
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(r.file("1_Pooling/config.json").unwrap()).unwrap(),
        r#"{"pooling_mode_mean_tokens":true}"#
    );
}

#[test]
fn offline_commit_hash_revision_uses_the_snapshot_without_a_ref() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    // An older commit downloaded by hash: huggingface_hub writes no refs/<hash>.
    let old = add_snapshot(cache, ORG_NAME, COMMIT_B, &model_files()[..3]);

    let source = hub(&format!("hf:{ORG_NAME}@{COMMIT_B}"));
    let r = resolve_with(&source, WANTED, OPTIONAL, &offline(cache)).unwrap();
    assert_eq!(r.dir, old);
    assert_eq!(r.commit(), Some(COMMIT_B));
    assert_eq!(names(&r.files, &r.dir), WANTED);

    // hf-hub's own CacheRepo::get misses this case (it only reads refs/<revision>).
    let repo =
        hf_hub::Repo::with_revision(ORG_NAME.into(), hf_hub::RepoType::Model, COMMIT_B.into());
    assert_eq!(
        hf_hub::Cache::new(cache.into())
            .repo(repo)
            .get("config.json"),
        None
    );
}

#[test]
fn offline_named_revisions_go_through_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    let v1 = add_snapshot(cache, ORG_NAME, COMMIT_B, &model_files()[..3]);
    add_ref(cache, ORG_NAME, "v1.0", COMMIT_B);
    // A PR ref: refs/refs/pr/1, with a trailing newline (tolerated).
    add_ref(cache, ORG_NAME, "refs/pr/1", &format!("{COMMIT_B}\n"));

    for rev in ["v1.0", "refs/pr/1"] {
        let source = hub(&format!("hf:{ORG_NAME}@{rev}"));
        let r = resolve_with(&source, WANTED, OPTIONAL, &offline(cache)).unwrap();
        assert_eq!(r.dir, v1, "{rev}");
        assert_eq!(r.commit(), Some(COMMIT_B));
        assert_eq!(r.source, source);
    }
}

#[test]
fn offline_missing_file_names_the_cache_path() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let files = model_files();
    let snapshot = add_snapshot(cache, ORG_NAME, COMMIT_A, &files[..1]);
    add_ref(cache, ORG_NAME, "main", COMMIT_A);

    let err = resolve_with(&hub(&model_arg()), WANTED, OPTIONAL, &offline(cache)).unwrap_err();
    assert!(matches!(err, ResolveError::NotCached { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "hf:{ORG_NAME}: tokenizer.json, model.safetensors not in the cache at {} and offline mode \
             is on (HF_HUB_OFFLINE=1); download the model once while online (or with `hf download \
             {ORG_NAME}`) or pass a local model folder",
            snapshot.display()
        )
    );
}

#[test]
fn offline_uncached_revision_or_model_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);

    let err = resolve_with(
        &hub(&format!("hf:{ORG_NAME}@v2")),
        WANTED,
        &[],
        &offline(cache),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("revision `v2` not in the cache at"), "{msg}");
    assert!(
        msg.contains(&repo_dir(cache, ORG_NAME).display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("offline mode is on"), "{msg}");

    let err = resolve_with(&hub("hf:other/model"), WANTED, &[], &offline(cache)).unwrap_err();
    assert!(err.to_string().contains("models--other--model"), "{err}");
}

#[test]
fn dangling_snapshot_symlink_counts_as_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    // Remove the blob behind model.safetensors.
    let blob = repo_dir(cache, ORG_NAME)
        .join("blobs")
        .join(fake_sha("not really safetensors"));
    std::fs::remove_file(blob).unwrap();
    let err = resolve_with(&hub(&model_arg()), WANTED, &[], &offline(cache)).unwrap_err();
    assert!(
        err.to_string()
            .contains(": model.safetensors not in the cache"),
        "{err}"
    );
}

// ---------------------------------------------------------------- Hub, online

#[test]
fn online_uses_a_complete_cache_without_touching_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let files = model_files();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &files);
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    // What the repo lacks was recorded by an earlier download.
    add_no_exist(cache, ORG_NAME, COMMIT_A, "sentence_bert_config.json");
    add_no_exist(cache, ORG_NAME, COMMIT_A, "tokenizer_config.json");

    let r = resolve_with(
        &hub(&model_arg()),
        WANTED,
        OPTIONAL,
        &online(cache, &dead_endpoint()),
    )
    .unwrap();
    assert_eq!(r.commit(), Some(COMMIT_A));
    assert_eq!(r.files.len(), 5);
}

#[test]
fn network_failure_is_one_clear_sentence_without_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let endpoint = dead_endpoint();
    let config = HubConfig {
        token: Some("hf_SECRETSECRET".into()),
        ..online(cache, &endpoint)
    };
    let err = resolve_with(&hub(&model_arg()), WANTED, &[], &config).unwrap_err();
    assert!(matches!(err, ResolveError::Network { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "could not fetch config.json, tokenizer.json, model.safetensors for hf:{ORG_NAME} from \
             {endpoint} (searched the cache at {} first): check the network connection, or set \
             HF_HUB_OFFLINE=1 after downloading the model, or pass a local model folder",
            repo_dir(cache, ORG_NAME).display()
        )
    );
    assert!(std::error::Error::source(&err).is_some());
    let debug = format!("{err:?} {config:?}");
    let everything = format!("{debug} {:#}", anyhow::Error::from(err));
    assert!(!everything.contains("SECRET"), "{everything}");
    assert!(everything.contains("<redacted>"));
}

#[test]
fn online_downloads_into_one_snapshot_and_records_absent_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let mut repo = FakeRepo::new(COMMIT_B, &model_files());
    // Listed but answering 404: must be treated as absent too.
    repo.listed.push("tokenizer_config.json".into());
    let fake = FakeHub::start(repo);

    let r = resolve_with(
        &hub(&model_arg()),
        WANTED,
        OPTIONAL,
        &online(cache, &fake.endpoint),
    )
    .unwrap();
    let rd = repo_dir(cache, ORG_NAME);
    assert_eq!(r.dir, rd.join("snapshots").join(COMMIT_B));
    assert_eq!(r.commit(), Some(COMMIT_B));
    assert_eq!(
        names(&r.files, &r.dir),
        [
            "config.json",
            "tokenizer.json",
            "model.safetensors",
            "modules.json",
            "1_Pooling/config.json"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&r.files[2]).unwrap(),
        "not really safetensors"
    );
    #[cfg(unix)]
    assert!(std::fs::symlink_metadata(&r.files[4])
        .unwrap()
        .file_type()
        .is_symlink());
    // refs/main now points at the commit; no stray refs/<commit>.
    assert_eq!(
        std::fs::read_to_string(rd.join("refs/main")).unwrap(),
        COMMIT_B
    );
    assert!(!rd.join("refs").join(COMMIT_B).exists());
    // Absent optional files are recorded like huggingface_hub does.
    for f in ["sentence_bert_config.json", "tokenizer_config.json"] {
        assert!(rd.join(".no_exist").join(COMMIT_B).join(f).is_file(), "{f}");
    }
    // Files were fetched pinned to the commit, after one info call.
    let requests = fake.requests();
    assert_eq!(requests[0], format!("/api/models/{ORG_NAME}/revision/main"));
    assert!(
        requests[1..]
            .iter()
            .all(|p| p.starts_with(&format!("/{ORG_NAME}/resolve/{COMMIT_B}/"))),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|p| p.contains("sentence_bert_config")),
        "{requests:?}"
    );

    // The next run, even offline, needs nothing more.
    let again = resolve_with(&hub(&model_arg()), WANTED, OPTIONAL, &offline(cache)).unwrap();
    assert_eq!(again, r);
    let before = fake.requests().len();
    let again = resolve_with(
        &hub(&model_arg()),
        WANTED,
        OPTIONAL,
        &online(cache, &fake.endpoint),
    )
    .unwrap();
    assert_eq!(again, r);
    assert_eq!(
        fake.requests().len(),
        before,
        "a complete cache must not hit the network"
    );
}

#[test]
fn online_stale_partial_cache_moves_everything_to_the_new_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let files = model_files();
    add_snapshot(cache, ORG_NAME, COMMIT_A, &files[..1]);
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    let fake = FakeHub::start(FakeRepo::new(COMMIT_B, &files));

    let r = resolve_with(
        &hub(&model_arg()),
        WANTED,
        &[],
        &online(cache, &fake.endpoint),
    )
    .unwrap();
    assert_eq!(r.commit(), Some(COMMIT_B));
    for f in &r.files {
        assert!(f.starts_with(&r.dir) && f.is_file(), "{}", f.display());
    }
    let rd = repo_dir(cache, ORG_NAME);
    assert_eq!(
        std::fs::read_to_string(rd.join("refs/main")).unwrap(),
        COMMIT_B
    );
}

#[test]
fn online_reuses_blobs_already_in_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let files = model_files();
    // An old snapshot with the same weights but no tokenizer.json.
    add_snapshot(cache, ORG_NAME, COMMIT_A, &[files[0], files[2]]);
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    // A dangling link in the new snapshot (its blob was deleted).
    let stale = repo_dir(cache, ORG_NAME).join("snapshots").join(COMMIT_B);
    std::fs::create_dir_all(&stale).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../../blobs/gone", stale.join("config.json")).unwrap();
    let fake = FakeHub::start(FakeRepo::new(COMMIT_B, &files));

    let r = resolve_with(
        &hub(&model_arg()),
        WANTED,
        &[],
        &online(cache, &fake.endpoint),
    )
    .unwrap();
    assert_eq!(r.commit(), Some(COMMIT_B));
    for f in &r.files {
        assert!(f.is_file(), "{}", f.display());
    }
    let weights = format!("/{ORG_NAME}/resolve/{COMMIT_B}/model.safetensors");
    let requests = fake.ranged_requests();
    assert!(requests.contains(&format!("{weights} 0-0")), "{requests:?}");
    assert!(
        !requests
            .iter()
            .any(|r| r.starts_with(&weights) && !r.ends_with(" 0-0")),
        "the cached blob must not be downloaded again: {requests:?}"
    );
    #[cfg(unix)]
    assert_eq!(
        std::fs::read_link(r.file("model.safetensors").unwrap()).unwrap(),
        PathBuf::from("../../blobs").join(fake_sha("not really safetensors"))
    );
}

#[test]
fn online_commit_hash_revision_downloads_without_refs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let fake = FakeHub::start(FakeRepo::new(COMMIT_B, &model_files()));
    let source = hub(&format!("hf:{ORG_NAME}@{COMMIT_B}"));
    let r = resolve_with(&source, WANTED, &[], &online(cache, &fake.endpoint)).unwrap();
    assert_eq!(r.commit(), Some(COMMIT_B));
    let refs = repo_dir(cache, ORG_NAME).join("refs");
    assert!(!refs.join(COMMIT_B).exists());
    assert!(!refs.join("main").exists());
    // And it is found offline afterwards, with no ref at all.
    let again = resolve_with(&source, WANTED, &[], &offline(cache)).unwrap();
    assert_eq!(again.dir, r.dir);
}

#[test]
fn online_repo_without_a_wanted_file_lists_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    let files = model_files();
    let fake = FakeHub::start(FakeRepo::new(COMMIT_B, &files[..1]));
    let err = resolve_with(
        &hub(&model_arg()),
        WANTED,
        &[],
        &online(cache, &fake.endpoint),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "hf:{ORG_NAME}: not a usable model repository: missing tokenizer.json, \
             model.safetensors at commit {COMMIT_B} (expected config.json, tokenizer.json, \
             model.safetensors)"
        )
    );

    // Listed, but the download answers 404.
    let mut repo = FakeRepo::new(COMMIT_B, &files[..1]);
    repo.listed = WANTED.iter().map(|s| s.to_string()).collect();
    let fake = FakeHub::start(repo);
    let err = resolve_with(
        &hub(&model_arg()),
        WANTED,
        &[],
        &online(cache, &fake.endpoint),
    )
    .unwrap_err();
    assert!(
        matches!(err, ResolveError::NotInRepo { ref missing, .. } if missing == &["tokenizer.json"]),
        "{err:?}"
    );
}

#[test]
fn online_http_errors_explain_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path();
    for (status, needle) in [
        (401, "set HF_TOKEN"),
        (403, "gated"),
        (404, "revision `main`"),
        (503, "server error"),
    ] {
        let mut repo = FakeRepo::new(COMMIT_B, &model_files());
        repo.info_status = Some(status);
        let fake = FakeHub::start(repo);
        let err = resolve_with(
            &hub(&model_arg()),
            WANTED,
            &[],
            &online(cache, &fake.endpoint),
        )
        .unwrap_err();
        assert!(
            matches!(err, ResolveError::HubStatus { status: s, .. } if s == status),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("(HTTP {status})")) && msg.contains(needle),
            "{msg}"
        );
    }
}

#[test]
fn errors_are_send_sync_for_anyhow() {
    fn check<T: Send + Sync + 'static>() {}
    check::<ResolveError>();
}
