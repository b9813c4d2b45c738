//! `run.json`: what `taskbench run` did with each model of the suite, versioned like
//! `results.json` so `taskbench report` refuses a folder it would misread.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::file::{ModelEntry, ModelKind};

/// Version of `run.json`'s layout; bumped when a field changes meaning or goes away.
pub const RUN_SCHEMA_VERSION: u32 = 1;
pub const RUN_FILE: &str = "run.json";
/// The suite as given, copied into the run folder.
pub const SUITE_COPY: &str = "suite.toml";
pub const EVALS_DIR: &str = "evals";
pub const MODELS_DIR: &str = "models";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema_version: u32,
    /// `suite-run`.
    pub kind: String,
    pub suite: String,
    pub updated_at: String,
    pub models: Vec<ModelRun>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Trained (if asked) and evaluated in this run.
    Evaluated,
    /// Earlier results from the same inputs were kept.
    Reused,
    /// Not run, with the reason (an API key not set).
    Skipped,
    /// Stopped by an error, recorded in `message`.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRun {
    pub name: String,
    pub kind: ModelKind,
    pub status: Status,
    pub message: Option<String>,
    /// Wall time of this run's work on the model (training included).
    pub seconds: f64,
}

impl ModelRun {
    pub fn done(entry: &ModelEntry, reused: bool, seconds: f64) -> Self {
        ModelRun {
            name: entry.name.clone(),
            kind: entry.kind(),
            status: if reused {
                Status::Reused
            } else {
                Status::Evaluated
            },
            message: None,
            seconds,
        }
    }

    pub fn skipped(entry: &ModelEntry, reason: String) -> Self {
        ModelRun {
            status: Status::Skipped,
            message: Some(reason),
            ..ModelRun::done(entry, false, 0.0)
        }
    }

    pub fn not_run(entry: &ModelEntry, reason: &str) -> Self {
        ModelRun::skipped(entry, reason.to_string())
    }

    pub fn failed(entry: &ModelEntry, error: String, seconds: f64) -> Self {
        ModelRun {
            status: Status::Failed,
            message: Some(error),
            ..ModelRun::done(entry, false, seconds)
        }
    }

    /// One line for the terminal.
    pub fn describe(&self) -> String {
        let what = match self.status {
            Status::Evaluated => format!("evaluated in {:.1}s", self.seconds),
            Status::Reused => "reused (same inputs as the last run)".to_string(),
            Status::Skipped => format!("skipped: {}", self.message.as_deref().unwrap_or("")),
            Status::Failed => format!("FAILED: {}", self.message.as_deref().unwrap_or("")),
        };
        format!("taskbench: {}: {what}", self.name)
    }

    /// Has results on disk to report.
    pub fn has_results(&self) -> bool {
        matches!(self.status, Status::Evaluated | Status::Reused)
    }
}

/// Writes `run.json` atomically and returns what was written.
pub fn write(dir: &Path, suite: &str, models: &[ModelRun]) -> anyhow::Result<RunRecord> {
    let record = RunRecord {
        schema_version: RUN_SCHEMA_VERSION,
        kind: "suite-run".into(),
        suite: suite.to_string(),
        updated_at: crate::report::results::created_at_now(),
        models: models.to_vec(),
    };
    crate::report::write_json(&dir.join(RUN_FILE), &record)?;
    Ok(record)
}

/// Reads `DIR/run.json`, refusing another schema version with a message that says what to do.
pub fn read_run_record(dir: &Path) -> anyhow::Result<RunRecord> {
    let path = dir.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: cannot read ({e}); is {} a folder written by `taskbench run`?",
            path.display(),
            dir.display()
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid JSON: {e}", path.display()))?;
    let version = value.get("schema_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(RUN_SCHEMA_VERSION)) {
        anyhow::bail!(
            "{}: schema version {}, this taskbench reads version {RUN_SCHEMA_VERSION}; rerun the suite with this version (`taskbench run SUITE.toml --rerun`)",
            path.display(),
            version.map_or("missing".to_string(), |v| v.to_string())
        );
    }
    serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The models of an earlier run in `dir`, if there is one this build can read; an older
/// schema is an error rather than something silently overwritten.
pub fn read_existing(dir: &Path) -> anyhow::Result<Vec<ModelRun>> {
    if !dir.join(RUN_FILE).exists() {
        return Ok(Vec::new());
    }
    Ok(read_run_record(dir)?.models)
}
