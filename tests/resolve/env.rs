//! Tests that go through the process environment. They run in their own test
//! binary (so their own process) and take `ENV_LOCK`, so they never race each
//! other or the tests in other files.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::common::*;
use taskbench::models::resolve::{
    hub_cache_dir, hub_cache_dir_from, parse_model_arg, resolve, HubConfig, ResolveError,
};

static ENV_LOCK: Mutex<()> = Mutex::new(());

const VARS: &[&str] = &[
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_HOME",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
];

/// Sets `vars` (clearing the other Hugging Face variables) for the duration of
/// `f`, holding the lock, and restores the environment afterwards.
fn with_env<T>(vars: &[(&str, &str)], f: impl FnOnce() -> T) -> T {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let saved: Vec<(&str, Option<OsString>)> =
        VARS.iter().map(|k| (*k, std::env::var_os(k))).collect();
    for k in VARS {
        std::env::remove_var(k);
    }
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let out = f();
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
    out
}

fn cached_model(cache: &std::path::Path) -> PathBuf {
    let snapshot = add_snapshot(cache, ORG_NAME, COMMIT_A, &model_files());
    add_ref(cache, ORG_NAME, "main", COMMIT_A);
    snapshot
}

#[test]
fn hf_hub_cache_and_offline_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub-cache");
    let snapshot = cached_model(&cache);
    let source = parse_model_arg(&format!("hf:{ORG_NAME}")).unwrap();
    let cache_str = cache.to_str().unwrap();
    with_env(
        &[
            ("HF_HUB_CACHE", cache_str),
            ("HF_HOME", "/nonexistent/hf-home"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_ENDPOINT", "http://127.0.0.1:1"),
        ],
        || {
            assert_eq!(hub_cache_dir(), cache);
            let r = resolve(&source, WANTED, OPTIONAL).unwrap();
            assert_eq!(r.dir, snapshot);
            assert_eq!(r.files.len(), 5);

            let err = resolve(&source, &["pytorch_model.bin"], &[]).unwrap_err();
            assert!(matches!(err, ResolveError::NotCached { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&snapshot.display().to_string()),
                "{err}"
            );
        },
    );
}

#[test]
fn hf_home_and_offline_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    let snapshot = cached_model(&home.join("hub"));
    let source = parse_model_arg(&format!("hf:{ORG_NAME}@{COMMIT_A}")).unwrap();
    with_env(
        &[
            ("HF_HOME", home.to_str().unwrap()),
            ("HF_HUB_OFFLINE", "true"),
        ],
        || {
            assert_eq!(hub_cache_dir(), home.join("hub"));
            let r = resolve(&source, WANTED, &[]).unwrap();
            assert_eq!(r.dir, snapshot);
            assert_eq!(r.commit(), Some(COMMIT_A));
        },
    );
}

#[test]
fn config_from_env_reads_offline_token_and_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("token"), "hf_fromfile\n").unwrap();
    let home_str = home.to_str().unwrap();

    let config = with_env(
        &[
            ("HF_HOME", home_str),
            ("TRANSFORMERS_OFFLINE", "YES"),
            ("HF_ENDPOINT", "https://mirror.example/"),
        ],
        HubConfig::from_env,
    );
    assert!(config.offline);
    assert_eq!(config.endpoint, "https://mirror.example");
    assert_eq!(config.token.as_deref(), Some("hf_fromfile"));
    assert_eq!(config.cache_dir, home.join("hub"));
    assert!(!format!("{config:?}").contains("hf_fromfile"));

    let config = with_env(
        &[
            ("HF_HOME", home_str),
            ("HF_TOKEN", "hf_fromenv"),
            ("HF_HUB_OFFLINE", "0"),
            ("TRANSFORMERS_OFFLINE", "1"),
        ],
        HubConfig::from_env,
    );
    // HF_HUB_OFFLINE, when set, wins over TRANSFORMERS_OFFLINE.
    assert!(!config.offline);
    assert_eq!(config.token.as_deref(), Some("hf_fromenv"));
    assert_eq!(config.endpoint, "https://huggingface.co");
}

#[test]
fn cache_dir_precedence_without_touching_the_environment() {
    let env = |pairs: &[(&str, &str)]| {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k: &str| map.get(k).cloned()
    };
    let all = [
        ("HF_HUB_CACHE", "/a"),
        ("HUGGINGFACE_HUB_CACHE", "/b"),
        ("HF_HOME", "/c"),
        ("XDG_CACHE_HOME", "/d"),
        ("HOME", "/home/u"),
    ];
    let expect = [
        "/a",
        "/b",
        "/c/hub",
        "/d/huggingface/hub",
        "/home/u/.cache/huggingface/hub",
    ];
    for (i, want) in expect.iter().enumerate() {
        assert_eq!(
            hub_cache_dir_from(env(&all[i..])),
            PathBuf::from(want),
            "{:?}",
            &all[i..]
        );
    }
    // Empty means unset; `~` is expanded.
    assert_eq!(
        hub_cache_dir_from(env(&[
            ("HF_HUB_CACHE", ""),
            ("HF_HOME", "~/hf"),
            ("HOME", "/home/u")
        ])),
        PathBuf::from("/home/u/hf/hub")
    );
    // No home at all: a relative folder rather than a panic.
    assert_eq!(
        hub_cache_dir_from(env(&[])),
        PathBuf::from(".cache/huggingface/hub")
    );
}
