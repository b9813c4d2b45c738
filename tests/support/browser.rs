//! Test support: open an HTML file in headless Chromium and report whether its
//! inline SVG charts rendered, plus console/JS errors and the page title.
//!
//! Uses only std, `serde_json` and `tempfile`, and drives the `chromium`
//! binary directly (no DevTools client): one `--dump-dom` run of a copy of the
//! page with an injected probe script, and, if asked, one `--screenshot` run of
//! the original file.
//!
//! Findings that shaped this (Debian 12, chromium 148, new headless mode):
//! * `--dump-dom` prints the DOM right after the `load` event unless
//!   `--virtual-time-budget` is given; with it, timers and animation frames are
//!   fast-forwarded (a 3 s `setTimeout` completes in ~0.3 s wall clock) and the
//!   dump happens when the budget is used up. `--screenshot` honours the budget
//!   the same way.
//! * Virtual time does not help against a busy loop (`while(true){}`): chromium
//!   then never exits, so every run has a hard wall-clock timeout.
//! * With `--enable-logging=stderr` chromium logs every console message of the
//!   page as `[...:INFO:CONSOLE:<line>] "<msg>", source: <url> (<line>)`, always
//!   at INFO whatever the console level, so stderr alone cannot tell
//!   `console.log` from `console.error`. Browser-generated messages (e.g.
//!   `Error: <path> attribute d: Expected number`) appear only there. Hence the
//!   probe hooks `console.*` for levels, and stderr lines that the probe did
//!   not see are reported as browser messages.
//! * Failed `file://` loads (missing `<img src>`) are not logged at all; the
//!   probe catches them with a capture-phase `error` listener.
//! * A missing HTML file still exits 0 and dumps chromium's error page.
//! * As root, chromium refuses to start without `--no-sandbox`.
//! * Debian's `/usr/bin/chromium` is a shell wrapper. Its `/etc/chromium.d/dev-shm`
//!   check breaks when `findmnt` prints two lines for /dev/shm (`[: ...:
//!   unexpected operator` on stderr) and then never adds
//!   `--disable-dev-shm-usage`; CI containers often have a 64 MiB /dev/shm, so
//!   we always pass it ourselves.
//! * chromium starts `chrome_crashpad_handler` processes in their own sessions
//!   (outside our process group); they exit by themselves once the browser is
//!   gone. Because of such strays, output goes to files, not pipes: a pipe
//!   would stay open as long as any descendant holds it.
//! * With no usable font installed, text is laid out with zero width and is
//!   simply invisible (no tofu boxes). `fonts-dejavu-core` is enough.
//! * Cost on 2 cores: `check_page` ~0.8-1.2 s, ~1.5-2.3 s with a screenshot
//!   (a bare `--dump-dom` run is ~0.4 s, ~0.7 s with the 5 s virtual time
//!   budget; the probe's re-measuring adds ~0.1-0.3 s).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Wall-clock limit for one chromium run in [`check_page`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Virtual time given to the page (ms): enough for load handlers, timers and
/// animation frames of a report, at almost no wall-clock cost.
const VIRTUAL_TIME_BUDGET_MS: u32 = 5000;

/// Same viewport for the probe run and the screenshot, so the layout measured
/// is the layout photographed. The CLI cannot take full-page shots: anything
/// below 3000 px is cut off in the PNG (but still measured by the probe).
const WINDOW_SIZE: &str = "1200,3000";

const PROBE_ID: &str = "taskbench-probe";

/// Result of [`check_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageCheck {
    /// Outermost `<svg>` elements that rendered: non-zero bounding box in the
    /// real layout and at least one drawn shape/text/image with a non-empty box.
    pub svg_count: usize,
    /// Label of each outermost `<svg>` that did not render (0x0 box, e.g.
    /// `width="0"` or `display:none`, or no drawn children). The label is the
    /// `id`, else the `<title>` child's text, else `aria-label`, else `svg#N`
    /// (1-based position among outermost svgs).
    pub empty_svgs: Vec<String>,
    /// `"error: ..."` / `"warning: ..."` from `console.error`/`console.warn`/
    /// failed `console.assert`, `"error: failed to load <img> ..."` for broken
    /// resources, and `"browser: ..."` for messages chromium itself logged to
    /// the console (e.g. invalid SVG attribute values).
    pub console_errors: Vec<String>,
    /// Uncaught exceptions (including syntax errors) and unhandled promise
    /// rejections, as `"Uncaught ... (url:line:col)"`.
    pub js_errors: Vec<String>,
    /// `document.title` after load.
    pub title: String,
}

/// Locate a Chromium binary: `$TASKBENCH_CHROMIUM` (a path, or a name looked
/// up on PATH), else `chromium`, `chromium-browser`, `google-chrome` on PATH.
///
/// An explicitly set `$TASKBENCH_CHROMIUM` is returned even if it does not
/// exist, so that a typo fails loudly in [`check_page`] instead of silently
/// falling back to another browser (or skipping tests).
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("TASKBENCH_CHROMIUM").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&v);
        let on_path = if p.components().count() == 1 {
            which(&v)
        } else {
            None
        };
        return Some(on_path.unwrap_or(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| which(OsStr::new(name)))
}

/// For integration tests: the chromium to use, or `None` to skip the test.
/// Outside CI a missing browser only prints a note; with `CI` set (any value
/// but empty/`false`/`0`) it panics, so CI can never pass by skipping.
pub fn chromium_or_skip(test_name: &str) -> Option<PathBuf> {
    if let Some(p) = find_chromium() {
        return Some(p);
    }
    let in_ci = std::env::var("CI")
        .map(|v| !v.is_empty() && v != "false" && v != "0")
        .unwrap_or(false);
    if in_ci {
        panic!(
            "{test_name}: chromium not found (install the `chromium` package or set TASKBENCH_CHROMIUM); \
             CI must not skip browser tests"
        );
    }
    eprintln!(
        "skipping {test_name}: chromium not found (install `chromium` or set TASKBENCH_CHROMIUM)"
    );
    None
}

fn which(name: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// [`check_page_with_timeout`] with [`DEFAULT_TIMEOUT`] per chromium run.
pub fn check_page(
    chromium: &Path,
    html: &Path,
    screenshot: Option<&Path>,
) -> Result<PageCheck, String> {
    check_page_with_timeout(chromium, html, screenshot, DEFAULT_TIMEOUT)
}

/// Open `html` in headless chromium and measure it; if `screenshot` is given,
/// also save a 1200x3000 PNG of the original (un-probed) page there (parent
/// directories are created). `timeout` applies to each of the (at most two)
/// chromium runs; on expiry the browser's process group is killed and an
/// error returned.
///
/// The probe runs on a copy of the page in a temp dir, so relative references
/// from the page do not resolve there and show up as `failed to load` console
/// errors: a self-contained report has none.
pub fn check_page_with_timeout(
    chromium: &Path,
    html: &Path,
    screenshot: Option<&Path>,
    timeout: Duration,
) -> Result<PageCheck, String> {
    let meta = fs::metadata(html).map_err(|e| format!("cannot read {}: {e}", html.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", html.display()));
    }
    let original = fs::read(html).map_err(|e| format!("cannot read {}: {e}", html.display()))?;

    let tmp = tempfile::Builder::new()
        .prefix("taskbench-browser-")
        .tempdir()
        .map_err(|e| format!("cannot create temp dir: {e}"))?;
    let page_dir = tmp.path().join("page");
    fs::create_dir(&page_dir).map_err(|e| format!("cannot create {}: {e}", page_dir.display()))?;
    let file_name: OsString = html
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_else(|| "page.html".into());
    let probed = page_dir.join(file_name);
    let probe_js = page_dir.join("taskbench-probe.js");
    fs::write(&probe_js, PROBE_JS)
        .map_err(|e| format!("cannot write {}: {e}", probe_js.display()))?;
    fs::write(&probed, inject_probe(&original, &file_url(&probe_js)))
        .map_err(|e| format!("cannot write {}: {e}", probed.display()))?;

    let run = run_chromium(
        chromium,
        tmp.path(),
        "probe",
        &["--dump-dom".to_string()],
        &probed,
        timeout,
    )
    .map_err(|e| format!("checking {}: {e}", html.display()))?;
    let (mut check, seen) = parse_probe(&run.stdout).map_err(|e| {
        format!(
            "{e} (chromium {}, {}, page {}):\n--- stdout head ---\n{}\n--- stderr tail ---\n{}",
            chromium.display(),
            run.status,
            html.display(),
            head(&run.stdout, 1500),
            stderr_tail(&run.stderr)
        )
    })?;
    merge_stderr_console(&mut check, &seen, &run.stderr);
    // Point error locations at the real file rather than the probed copy.
    let (copy_url, real_url) = (file_url(&probed), file_url(html));
    for m in check
        .js_errors
        .iter_mut()
        .chain(check.console_errors.iter_mut())
    {
        *m = m.replace(&copy_url, &real_url);
    }

    if let Some(shot) = screenshot {
        take_screenshot(chromium, tmp.path(), html, shot, timeout)
            .map_err(|e| format!("screenshot of {}: {e}", html.display()))?;
    }
    Ok(check)
}

/// Screenshot of the original file. A separate run because the probe run's
/// page is a modified copy, and `--dump-dom` and `--screenshot` are
/// alternative "what to do after load" modes of the headless CLI.
fn take_screenshot(
    chromium: &Path,
    tmp: &Path,
    html: &Path,
    shot: &Path,
    timeout: Duration,
) -> Result<(), String> {
    // chromium resolves a relative --screenshot path against its own cwd,
    // which is the temp dir.
    let shot = std::path::absolute(shot)
        .map_err(|e| format!("bad screenshot path {}: {e}", shot.display()))?;
    if let Some(parent) = shot.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    // A stale file from an earlier run must not pass for a fresh screenshot.
    let _ = fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    let run = run_chromium(chromium, tmp, "shot", &[arg], html, timeout)?;
    png_dimensions(&shot).map_err(|e| {
        format!(
            "chromium ({}) did not write a screenshot to {}: {e}\n--- stderr tail ---\n{}",
            run.status,
            shot.display(),
            stderr_tail(&run.stderr)
        )
    })?;
    Ok(())
}

/// Width and height from a PNG's IHDR chunk; Err if `path` is not a PNG.
pub fn png_dimensions(path: &Path) -> Result<(u32, u32), String> {
    let mut buf = [0u8; 24];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if &buf[..8] != b"\x89PNG\r\n\x1a\n" || &buf[12..16] != b"IHDR" {
        return Err(format!("{} is not a PNG", path.display()));
    }
    let w = u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]]);
    let h = u32::from_be_bytes([buf[20], buf[21], buf[22], buf[23]]);
    Ok((w, h))
}

struct RunOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn run_chromium(
    chromium: &Path,
    tmp: &Path,
    tag: &str,
    extra: &[String],
    page: &Path,
    timeout: Duration,
) -> Result<RunOutput, String> {
    use std::os::unix::process::CommandExt;
    // A fresh profile per run: two chromiums cannot share one (profile lock),
    // and tests run in parallel.
    let profile = tmp.join(format!("profile-{tag}"));
    let out_path = tmp.join(format!("{tag}.stdout"));
    let err_path = tmp.join(format!("{tag}.stderr"));
    let out = File::create(&out_path)
        .map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
    let err = File::create(&err_path)
        .map_err(|e| format!("cannot create {}: {e}", err_path.display()))?;

    let mut cmd = Command::new(chromium);
    cmd.args([
        // Plain --headless means the same since chromium 132 (the old mode was
        // split out into chrome-headless-shell); older ones need "=new".
        "--headless=new",
        // Required as root (CI); the sandbox buys nothing for our own files.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--mute-audio",
        "--hide-scrollbars",
        // Console messages reach stderr only with logging on, at level INFO.
        "--enable-logging=stderr",
        "--log-level=0",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={WINDOW_SIZE}"))
        .arg(format!("--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}"))
        .args(extra)
        .arg(file_url(page))
        .current_dir(tmp)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Own process group, so a timeout can kill renderers/zygotes too.
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("failed to start chromium at {}: {e}", chromium.display()))?;
    let status = wait_with_timeout(&mut child, timeout);
    // Also after a normal exit: kill any straggler of the group.
    kill_group(&child);
    let read = |p: &Path| {
        fs::read(p)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let stdout = read(&out_path);
    let stderr = read(&err_path);
    let Some(status) = status else {
        let _ = child.wait();
        return Err(format!(
            "chromium did not finish within {timeout:?} (killed) on {}; a hung page script \
             (e.g. an endless loop) does this\n--- stderr tail ---\n{}",
            page.display(),
            stderr_tail(&stderr)
        ));
    };
    if !status.success() {
        return Err(format!(
            "chromium {} exited with {status} after {:.1?} on {}\n--- stderr tail ---\n{}",
            chromium.display(),
            started.elapsed(),
            page.display(),
            stderr_tail(&stderr)
        ));
    }
    Ok(RunOutput {
        status,
        stdout,
        stderr,
    })
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

fn kill_group(child: &Child) {
    // std has no killpg; libc's kill() is linked into every Rust binary anyway.
    // Negative pid = the whole process group (our child is its leader). The
    // group id stays reserved while any member is alive, even after the leader
    // has been reaped, and gives ESRCH otherwise, so this cannot hit an
    // unrelated process.
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: plain syscall wrapper; no memory is involved.
        unsafe {
            kill(-pid, SIGKILL);
        }
    }
}

fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut url = String::from("file://");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// Insert the probe as the first script of the document, so that it sees
/// errors from every page script. It is an external (parser-blocking) script
/// so the page's line numbers in error messages stay those of the real file,
/// with an absolute URL so a `<base href>` cannot redirect it. It goes after
/// `<meta charset>` when there is one, so as not to push the declaration past
/// the bytes chromium prescans for it.
fn inject_probe(html: &[u8], probe_url: &str) -> Vec<u8> {
    let tag = format!("<script src=\"{probe_url}\"></script>");
    let at = insertion_point(&html.to_ascii_lowercase());
    let mut out = Vec::with_capacity(html.len() + tag.len());
    out.extend_from_slice(&html[..at]);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(&html[at..]);
    out
}

fn insertion_point(lower: &[u8]) -> usize {
    let after_tag = |from: usize| find(lower, b">", from).map(|i| i + 1);
    // `<head` must not match `<header`.
    let open_tag = |name: &[u8]| {
        let mut from = 0;
        while let Some(i) = find(lower, name, from) {
            match lower.get(i + name.len()) {
                Some(b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/') => return Some(i),
                _ => from = i + 1,
            }
        }
        None
    };
    if let Some(head) = open_tag(b"<head").and_then(after_tag) {
        let head_end = find(lower, b"</head", head).unwrap_or(lower.len());
        let mut from = head;
        while let Some(m) = find(&lower[..head_end], b"<meta", from) {
            let end = after_tag(m).unwrap_or(head_end);
            if find(&lower[m..end], b"charset", 0).is_some() {
                return end;
            }
            from = m + 1;
        }
        return head;
    }
    for name in [&b"<html"[..], b"<!doctype"] {
        if let Some(i) = open_tag(name).and_then(after_tag) {
            return i;
        }
    }
    0
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Returns the check and the probe's `seen` list (every console message the
/// page's scripts produced, rendered like chromium's stderr log).
fn parse_probe(dom: &str) -> Result<(PageCheck, Vec<String>), String> {
    let marker = format!("<pre id=\"{PROBE_ID}\">");
    let start = dom.rfind(&marker).map(|i| i + marker.len()).ok_or_else(|| {
        "probe result missing from chromium's --dump-dom output (page not loaded as HTML, the load \
         event never fired within the virtual time budget, or the page replaced the document)"
            .to_string()
    })?;
    let end = dom[start..]
        .find("</pre>")
        .map(|i| i + start)
        .ok_or("unterminated probe element")?;
    let json = percent_decode(&dom[start..end])?;
    let v: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("bad probe JSON: {e}: {json}"))?;
    if let Some(e) = v.get("probe_error") {
        return Err(format!("probe script failed in the page: {e}"));
    }
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .map(|s| {
                        s.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| s.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let text_width = v.get("text_width").and_then(|w| w.as_f64()).unwrap_or(0.0);
    if text_width <= 0.0 {
        return Err(
            "text renders with zero width: no usable font installed (install fonts-dejavu-core)"
                .into(),
        );
    }
    let check = PageCheck {
        svg_count: v.get("svg_count").and_then(|n| n.as_u64()).unwrap_or(0) as usize,
        empty_svgs: strings("empty_svgs"),
        console_errors: strings("console"),
        js_errors: strings("js"),
        title: v
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or_default()
            .to_string(),
    };
    Ok((check, strings("seen")))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .ok_or("truncated %-escape in probe output")?;
            out.push(
                u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad %-escape {hex:?} in probe output"))?,
            );
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|e| format!("probe output is not UTF-8: {e}"))
}

/// Console messages from chromium's stderr log, in order.
fn stderr_console_messages(stderr: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    let mut lines = stderr.lines();
    while let Some(line) = lines.next() {
        let Some(pos) = line.find(":CONSOLE") else {
            continue;
        };
        let Some(q) = line[pos..].find("] \"").map(|i| pos + i + 3) else {
            continue;
        };
        // A message may span lines; it ends on the line that ends with
        // `", source: <url> (<n>)`. Messages may themselves contain
        // `", source: `, hence rfind on that last line.
        let mut text = line[q..].to_string();
        while !ends_with_source(&text) {
            match lines.next() {
                Some(next) => {
                    text.push('\n');
                    text.push_str(next);
                }
                None => break,
            }
        }
        if let Some(i) = text.rfind("\", source: ") {
            text.truncate(i);
        }
        msgs.push(text);
    }
    msgs
}

fn ends_with_source(text: &str) -> bool {
    let last = text.rsplit('\n').next().unwrap_or(text);
    last.contains("\", source: ") && last.ends_with(')')
}

fn merge_stderr_console(check: &mut PageCheck, seen: &[String], stderr: &str) {
    let mut seen: Vec<&str> = seen.iter().map(String::as_str).collect();
    for msg in stderr_console_messages(stderr) {
        if let Some(i) = seen.iter().position(|s| *s == msg) {
            // Consume it, so that one page message cannot hide a repeated
            // identical browser message.
            seen.swap_remove(i);
            continue;
        }
        if msg.starts_with("Uncaught") {
            check.js_errors.push(msg);
        } else {
            check.console_errors.push(format!("browser: {msg}"));
        }
    }
}

/// Last lines of chromium's stderr without the D-Bus/desktop noise it always
/// prints in a container.
fn stderr_tail(stderr: &str) -> String {
    const NOISE: [&str; 6] = [
        "dbus",
        "DBus",
        "UPower",
        "Floss",
        "ScreenSaver",
        "unexpected operator",
    ];
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !NOISE.iter().any(|n| l.contains(n)))
        .collect();
    let tail = &lines[lines.len().saturating_sub(25)..];
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail.join("\n")
    }
}

fn head(s: &str, n: usize) -> &str {
    let mut end = n.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The probe, loaded as the page's first script. Kept in this file so the
/// module stays a single file under tests/support/. It must not log anything
/// itself (its output would be read back from stderr as page messages).
const PROBE_JS: &str = r#"
(function () {
  "use strict";
  var P = { console: [], js: [], seen: [] };
  var result = null, pre = null, textWidth = null;
  // Messages arriving after the measurement still update the result, which
  // --dump-dom serialises only when the virtual time budget is used up.
  // encodeURIComponent output has no characters that --dump-dom would
  // HTML-escape, so browser.rs can extract it without an HTML parser.
  var flush = function () {
    if (pre) pre.textContent = encodeURIComponent(JSON.stringify(result));
  };
  var str = function (a) {
    try { return String(a); } catch (e) { return "[unprintable]"; }
  };
  // Chromium's stderr log renders console arguments with String(), joined by
  // spaces; recording the same rendering in `seen` lets browser.rs tell
  // page-script messages (whose level is known here) from browser-generated
  // ones (which only appear on stderr, and always at INFO there).
  var join = function (args, from) {
    var out = [];
    for (var i = from; i < args.length; i++) out.push(str(args[i]));
    return out.join(" ");
  };
  var hook = function (name, level) {
    var orig = console[name];
    if (typeof orig !== "function") return;
    console[name] = function () {
      try {
        if (name === "assert") {
          if (arguments[0]) return orig.apply(console, arguments);
          var am = join(arguments, 1);
          P.seen.push(am, "Assertion failed", "Assertion failed: " + am, "console.assert");
          P.console.push("error: Assertion failed" + (am ? ": " + am : ""));
        } else {
          var m = join(arguments, 0);
          P.seen.push(m);
          if (level) P.console.push(level + ": " + m);
        }
        flush();
      } catch (e) { /* the probe must never break the page */ }
      return orig.apply(console, arguments);
    };
  };
  hook("error", "error");
  hook("warn", "warning");
  hook("assert", "error");
  ["log", "info", "debug", "trace", "dir", "dirxml", "table"].forEach(function (n) { hook(n, null); });

  // Capture phase: resource load errors (<img>, <link>, <script src>) do not
  // bubble, and chromium does not log failed file:// loads to stderr at all.
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && t.nodeType === 1) {
      var src = t.currentSrc || t.src || t.href || t.getAttribute("src") || t.getAttribute("href") || "";
      if (src.length > 200) src = src.slice(0, 200) + "...";
      P.console.push("error: failed to load <" + t.localName + "> " + src);
      flush();
      return;
    }
    var m = e.message || str(e.error);
    P.seen.push(m);
    P.js.push(m + (e.filename ? " (" + e.filename + ":" + e.lineno + ":" + e.colno + ")" : ""));
    flush();
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    var m = "Uncaught (in promise) " + str(e.reason);
    P.seen.push(m);
    P.js.push(m);
    flush();
  });

  var DRAWN = { path: 1, rect: 1, circle: 1, ellipse: 1, line: 1, polyline: 1, polygon: 1,
                text: 1, image: 1, use: 1, foreignObject: 1 };
  var NOT_RENDERED = { defs: 1, clipPath: 1, mask: 1, marker: 1, pattern: 1, symbol: 1,
                       linearGradient: 1, radialGradient: 1, filter: 1, title: 1, desc: 1,
                       metadata: 1, style: 1, script: 1 };
  var hasSvgAncestor = function (el) {
    for (var p = el.parentElement; p; p = p.parentElement) if (p.localName === "svg") return true;
    return false;
  };
  var insideNonRendered = function (el, root) {
    for (var p = el; p && p !== root; p = p.parentElement) if (NOT_RENDERED[p.localName]) return true;
    return false;
  };
  var label = function (s, idx) {
    if (s.id) return s.id;
    for (var c = s.firstElementChild; c; c = c.nextElementSibling) {
      if (c.localName === "title" && c.textContent.trim()) return c.textContent.trim();
    }
    var aria = s.getAttribute("aria-label");
    if (aria) return aria;
    return "svg#" + idx;
  };

  var measure = function () {
    try {
      var svgs = document.getElementsByTagNameNS("http://www.w3.org/2000/svg", "svg");
      var count = 0, empty = [], idx = 0;
      for (var i = 0; i < svgs.length; i++) {
        var s = svgs[i];
        if (hasSvgAncestor(s)) continue; // a nested <svg> is part of its chart
        idx++;
        var r = s.getBoundingClientRect();
        var drawn = 0;
        var els = s.getElementsByTagName("*");
        for (var j = 0; j < els.length; j++) {
          var el = els[j];
          if (!DRAWN[el.localName] || insideNonRendered(el, s)) continue;
          var b = el.getBoundingClientRect();
          // "||": a horizontal <line> has a zero-height box but is drawn.
          if (b.width > 0 || b.height > 0) drawn++;
        }
        if (r.width > 0 && r.height > 0 && drawn > 0) count++;
        else empty.push(label(s, idx));
      }
      // With no usable font at all chromium lays text out with zero width
      // (invisible, not even tofu boxes), which would blank every label.
      // Measured once only: inserting the span forces a relayout.
      if (textWidth === null) {
        var span = document.createElement("span");
        span.textContent = "Hg09";
        span.style.cssText = "position:absolute;left:0;top:0;font:16px sans-serif;white-space:nowrap";
        (document.body || document.documentElement).appendChild(span);
        textWidth = span.getBoundingClientRect().width;
        span.remove();
      }
      var tw = textWidth;
      result = { title: document.title, svg_count: count, empty_svgs: empty, console: P.console,
                 js: P.js, seen: P.seen, text_width: tw };
    } catch (e) {
      result = { probe_error: str(e && e.stack || e) };
    }
    if (!pre) {
      pre = document.createElement("pre");
      pre.id = "taskbench-probe";
    }
    flush();
    if (!pre.isConnected) document.documentElement.appendChild(pre);
  };
  // First measurement in a task after the page's own load handlers
  // (registered after ours, so they run after it), then again every 500 ms,
  // so the dump taken when the virtual time budget runs out reflects the
  // final page, including charts drawn late by timers or animation frames.
  // Do not wait on requestAnimationFrame here: once no timer is pending,
  // virtual time jumps to the end of the budget and chromium dumps the DOM
  // before the frame callback runs. Under --virtual-time-budget the interval
  // costs almost no wall-clock time.
  window.addEventListener("load", function () {
    setTimeout(function () {
      measure();
      setInterval(measure, 500);
    }, 0);
  });
})();
"#;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn probe_goes_after_meta_charset() {
        let html = b"<!DOCTYPE html><html><HEAD><title>t</title><meta charset=\"utf-8\"></head><body></body></html>";
        let out = String::from_utf8(inject_probe(html, "P")).unwrap();
        let meta = out.find("<meta charset=\"utf-8\">").unwrap();
        assert_eq!(
            out.find("<script src=\"P\">").unwrap(),
            meta + "<meta charset=\"utf-8\">".len()
        );
    }

    #[test]
    fn probe_goes_first_in_head_and_skips_header() {
        let html = b"<!doctype html><html lang=en><head data-x=1><title>t</title></head><body></body></html>";
        let out = String::from_utf8(inject_probe(html, "P")).unwrap();
        assert!(
            out.starts_with(
                "<!doctype html><html lang=en><head data-x=1><script src=\"P\"></script><title>"
            ),
            "{:.80}",
            out
        );
        let bare = String::from_utf8(inject_probe(b"<p>hi</p>", "P")).unwrap();
        assert!(bare.starts_with("<script src=\"P\"></script><p>"));
        let no_head =
            String::from_utf8(inject_probe(b"<!DOCTYPE html><header>x</header>", "P")).unwrap();
        assert!(
            no_head.starts_with("<!DOCTYPE html><script src=\"P\"></script><header>"),
            "{no_head:.60}"
        );
    }

    #[test]
    fn stderr_console_parsing() {
        let err = "[1:1:1130/202533.29:INFO:CONSOLE:3] \"plain\", source: file:///a.html (3)\n\
                   [1:1:1130/202533.29:ERROR:dbus/bus.cc:405] noise\n\
                   [1:1:1130/202533.29:INFO:CONSOLE:4] \"multi\nline\", source: file:///a.html (4)\n\
                   [1:1:1130/202533.29:INFO:CONSOLE:5] \"has \"q\", source: x\", source: file:///a.html (5)\n";
        assert_eq!(
            stderr_console_messages(err),
            vec!["plain", "multi\nline", "has \"q\", source: x"]
        );
    }

    #[test]
    fn merge_keeps_only_unseen_messages() {
        let mut c = PageCheck::default();
        let err = "[1:1:x:INFO:CONSOLE:3] \"boom\", source: f (3)\n\
                   [1:1:x:INFO:CONSOLE:3] \"boom\", source: f (3)\n\
                   [1:1:x:INFO:CONSOLE:9] \"Uncaught late\", source: f (9)\n";
        merge_stderr_console(&mut c, &["boom".to_string()], err);
        assert_eq!(c.console_errors, vec!["browser: boom"]);
        assert_eq!(c.js_errors, vec!["Uncaught late"]);
    }

    #[test]
    fn file_urls_are_escaped() {
        assert_eq!(
            file_url(Path::new("/tmp/a b/ü.html")),
            "file:///tmp/a%20b/%C3%BC.html"
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("%7B%22a%22%3A%22%C2%B5%22%7D").unwrap(),
            "{\"a\":\"µ\"}"
        );
        assert!(percent_decode("%G1").is_err());
    }
}
