//! The suite report: from a run folder of `taskbench run` to `summary.json` (for machines),
//! `report.md` (for pull requests) and `report.html` (for people), all built from the files
//! alone so `taskbench report RUN_DIR` rebuilds them anywhere.

mod analysis;
mod html;
mod load;
mod markdown;
pub mod summary;
mod verdict;

use std::path::{Path, PathBuf};

pub use analysis::{ALPHA, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED};
pub use load::{load_run, RunData};
pub use markdown::render_terminal;
pub use summary::{Summary, SUMMARY_SCHEMA_VERSION};

pub const SUMMARY_FILE: &str = "summary.json";
pub const MARKDOWN_FILE: &str = "report.md";
pub const HTML_FILE: &str = "report.html";

/// What [`write_reports`] produced.
pub struct Written {
    pub summary: Summary,
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub json: PathBuf,
}

/// Reads the run folder and writes the three reports into it.
pub fn write_reports(run_dir: &Path) -> anyhow::Result<Written> {
    let run = load_run(run_dir)?;
    let summary = analysis::summarize(&run);
    let json = run_dir.join(SUMMARY_FILE);
    let markdown = run_dir.join(MARKDOWN_FILE);
    let html = run_dir.join(HTML_FILE);
    super::write_json(&json, &summary)?;
    write_text(&markdown, &markdown::render_markdown(&summary))?;
    write_text(&html, &html::render_html(&summary, &run))?;
    Ok(Written {
        summary,
        html,
        markdown,
        json,
    })
}

fn write_text(path: &Path, text: &str) -> anyhow::Result<()> {
    super::write_atomic(path, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(())
}
