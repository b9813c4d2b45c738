//! Test helpers: a Hub-style cache folder and a tiny local stand-in for the Hub.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const ORG_NAME: &str = "acme/tiny-bert";
pub const COMMIT_A: &str = "0123456789abcdef0123456789abcdef01234567";
pub const COMMIT_B: &str = "89abcdef0123456789abcdef0123456789abcdef";

pub const WANTED: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];
pub const OPTIONAL: &[&str] = &[
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
];

/// A content hash good enough to name fake blobs (the Hub uses sha256/git sha1).
pub fn fake_sha(content: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:016x}", h.rotate_left(29) ^ 0x5555_aaaa_5555_aaaa)
}

/// `<cache>/models--ORG--NAME`.
pub fn repo_dir(cache: &Path, repo: &str) -> PathBuf {
    cache.join(format!("models--{}", repo.replace('/', "--")))
}

/// Lays out `snapshots/<commit>/<file>` as symlinks into `blobs/<sha>`, as the
/// Hub cache does. Returns the snapshot folder.
pub fn add_snapshot(cache: &Path, repo: &str, commit: &str, files: &[(&str, &str)]) -> PathBuf {
    let repo_dir = repo_dir(cache, repo);
    let blobs = repo_dir.join("blobs");
    let snapshot = repo_dir.join("snapshots").join(commit);
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for (file, content) in files {
        let sha = fake_sha(content);
        std::fs::write(blobs.join(&sha), content).unwrap();
        let link = snapshot.join(file);
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        // snapshots/<commit>/<a/b/file> -> ../../(../)blobs/<sha>
        let depth = 2 + Path::new(file).components().count() - 1;
        let mut target = PathBuf::new();
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(&sha);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &link).unwrap();
        #[cfg(not(unix))]
        std::fs::copy(blobs.join(&sha), &link).unwrap();
    }
    snapshot
}

/// Writes `refs/<name>` holding `commit`, without a newline, as huggingface_hub does.
pub fn add_ref(cache: &Path, repo: &str, name: &str, commit: &str) {
    let path = repo_dir(cache, repo).join("refs").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, commit).unwrap();
}

/// A `.no_exist/<commit>/<file>` marker.
pub fn add_no_exist(cache: &Path, repo: &str, commit: &str, file: &str) {
    let path = repo_dir(cache, repo)
        .join(".no_exist")
        .join(commit)
        .join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, "").unwrap();
}

pub fn model_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("config.json", r#"{"model_type":"bert"}"#),
        ("tokenizer.json", r#"{"version":"1.0"}"#),
        ("model.safetensors", "not really safetensors"),
        ("modules.json", "[]"),
        (
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens":true}"#,
        ),
    ]
}

/// A minimal Hub: `GET /api/models/<repo>/revision/<rev>` and
/// `GET /<repo>/resolve/<rev>/<file>` with `Range`, for one repository whose
/// `main` points at `commit`.
pub struct FakeHub {
    pub endpoint: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
pub struct FakeRepo {
    pub repo: String,
    pub commit: String,
    pub files: HashMap<String, String>,
    /// What the info call lists; files listed but not served give a 404.
    pub listed: Vec<String>,
    /// Answer the info call with this status instead.
    pub info_status: Option<u16>,
}

impl FakeRepo {
    pub fn new(commit: &str, files: &[(&str, &str)]) -> Self {
        FakeRepo {
            repo: ORG_NAME.to_string(),
            commit: commit.to_string(),
            files: files
                .iter()
                .map(|(f, c)| (f.to_string(), c.to_string()))
                .collect(),
            listed: files.iter().map(|(f, _)| f.to_string()).collect(),
            info_status: None,
        }
    }
}

impl FakeHub {
    pub fn start(repo: FakeRepo) -> FakeHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = serve(stream, &repo, &log);
            }
        });
        FakeHub { endpoint, requests }
    }

    /// The paths asked for, in order.
    pub fn requests(&self) -> Vec<String> {
        self.ranged_requests()
            .into_iter()
            .map(|r| r.split(' ').next().unwrap_or("").to_string())
            .collect()
    }

    /// `"<path> <range>"` for every request (`-` when no Range header).
    pub fn ranged_requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, repo: &FakeRepo, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range_start = 0usize;
    let mut range_end: Option<usize> = None;
    let mut range = String::from("-");
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            let v = v.trim();
            range = v.to_string();
            let (a, b) = v.split_once('-').unwrap_or((v, ""));
            range_start = a.parse().unwrap_or(0);
            range_end = b.parse().ok();
        }
    }
    log.lock().unwrap().push(format!("{path} {range}"));
    let mut out = stream;

    let info_prefix = format!("/api/models/{}/revision/", repo.repo);
    let file_prefix = format!("/{}/resolve/", repo.repo);
    let rev_ok = |rev: &str| rev == "main" || rev == repo.commit;
    if let Some(rev) = path.strip_prefix(&info_prefix) {
        if let Some(status) = repo.info_status {
            return respond(&mut out, status, &[], b"{\"error\":\"nope\"}");
        }
        if !rev_ok(rev) {
            return respond(&mut out, 404, &[], b"{\"error\":\"Revision Not Found\"}");
        }
        let siblings: Vec<String> = repo
            .listed
            .iter()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"id\":\"{}\",\"sha\":\"{}\",\"siblings\":[{}]}}",
            repo.repo,
            repo.commit,
            siblings.join(",")
        );
        return respond(
            &mut out,
            200,
            &[("Content-Type", "application/json".into())],
            body.as_bytes(),
        );
    }
    if let Some(rest) = path.strip_prefix(&file_prefix) {
        let (rev, file) = rest.split_once('/').unwrap_or((rest, ""));
        let rev = rev.replace("%2F", "/");
        match repo.files.get(file) {
            Some(content) if rev_ok(&rev) => {
                let bytes = content.as_bytes();
                let end = range_end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
                let body = &bytes[range_start.min(bytes.len())..=end];
                let headers = [
                    ("ETag", format!("\"{}\"", fake_sha(content))),
                    ("X-Repo-Commit", repo.commit.clone()),
                    (
                        "Content-Range",
                        format!("bytes {range_start}-{end}/{}", bytes.len()),
                    ),
                ];
                return respond(&mut out, 206, &headers, body);
            }
            _ => {
                let headers = [("X-Error-Code", "EntryNotFound".to_string())];
                return respond(&mut out, 404, &headers, b"Entry not found");
            }
        }
    }
    respond(&mut out, 404, &[], b"not found")
}

fn respond(
    out: &mut TcpStream,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

/// An endpoint nothing listens on: connections are refused at once.
pub fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
