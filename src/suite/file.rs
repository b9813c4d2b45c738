//! The suite file: one TOML document naming the data, the models to compare, the service-level
//! objective, the accuracy floor and the prices, read into a checked [`Suite`].
//!
//! Paths inside the file are relative to the file's own folder (as Cargo and Compose read
//! theirs), so a suite can be run from anywhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cost::mistakes::CostMatrix;
use crate::data::line_at;

/// A suite as written, before paths are resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// Names the run folder (`runs/NAME`) and titles the report.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub data: DataSpec,
    #[serde(default)]
    pub goals: Goals,
    #[serde(default)]
    pub costs: Costs,
    /// What each kind of mistake costs the business.
    #[serde(default)]
    pub cost_matrix: Option<CostMatrix>,
    #[serde(default)]
    pub defaults: Defaults,
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Labelled rows models are trained on (needed when a model has `train`).
    #[serde(default)]
    pub train: Option<PathBuf>,
    /// Labelled rows every model is evaluated on.
    pub test: PathBuf,
    #[serde(default)]
    pub text_col: Option<String>,
    #[serde(default)]
    pub label_col: Option<String>,
    #[serde(default)]
    pub id_col: Option<String>,
}

/// What "good enough" means: a latency objective and an accuracy floor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goals {
    /// The latency objective in milliseconds, at `slo_percentile`.
    #[serde(default)]
    pub slo_latency_ms: Option<f64>,
    /// 50, 90, 95 or 99.
    #[serde(default = "default_percentile")]
    pub slo_percentile: u8,
    /// Lowest acceptable accuracy, absolute (0.85).
    #[serde(default)]
    pub accuracy_floor: Option<f64>,
    /// Lowest acceptable accuracy as a share of the best API model's (0.99 = within 1% of it),
    /// as MLPerf gates accuracy against a reference.
    #[serde(default)]
    pub accuracy_floor_vs_best_api: Option<f64>,
}

fn default_percentile() -> u8 {
    95
}

impl Default for Goals {
    fn default() -> Self {
        Goals {
            slo_latency_ms: None,
            slo_percentile: default_percentile(),
            accuracy_floor: None,
            accuracy_floor_vs_best_api: None,
        }
    }
}

/// Prices that are not per token: the machine local models run on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Costs {
    /// $ per hour of the machine local models run on (and are fine-tuned on).
    #[serde(default)]
    pub hourly_usd: Option<f64>,
    /// Share of the hour the machine serves queries, in (0, 1].
    #[serde(default = "one")]
    pub utilisation: f64,
    /// A fixed monthly bill for hosting the local model (a reserved machine); with it a local
    /// query costs nothing extra in the break-even.
    #[serde(default)]
    pub monthly_hosting_usd: Option<f64>,
    /// Months the one-off fine-tuning cost is spread over in the break-even.
    #[serde(default = "twelve")]
    pub amortise_months: u32,
    /// A pricing TOML whose entries replace the built-in `models/pricing.toml`'s.
    #[serde(default)]
    pub pricing: Option<PathBuf>,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            hourly_usd: None,
            utilisation: 1.0,
            monthly_hosting_usd: None,
            amortise_months: 12,
            pricing: None,
        }
    }
}

fn one() -> f64 {
    1.0
}

fn twelve() -> u32 {
    12
}

/// Settings every model gets unless its entry says otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Evaluate a seeded, stratified sample of this many test rows.
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Requests in flight at once for API and served models.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            limit: None,
            seed: default_seed(),
            concurrency: default_concurrency(),
        }
    }
}

fn default_seed() -> u64 {
    42
}

fn default_concurrency() -> usize {
    8
}

/// One model to compare. Exactly one of `model`, `base` (with `train`) or `serve` says where it
/// comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Unique within the suite; names the model's folders and its row in the report.
    pub name: String,
    /// A classifier folder, `hf:ORG/NAME`, a .gguf file, a llama / qwen2 folder, or
    /// `openai:MODEL` / `anthropic:MODEL`.
    #[serde(default)]
    pub model: Option<String>,
    /// A base encoder to train first (with `train`).
    #[serde(default)]
    pub base: Option<String>,
    /// `head-only` or `full`.
    #[serde(default)]
    pub train: Option<TrainRecipe>,
    /// A local generative model to start `taskbench serve` with and measure over HTTP.
    #[serde(default)]
    pub serve: Option<String>,
    // Training.
    #[serde(default)]
    pub pooling: Option<String>,
    #[serde(default)]
    pub epochs: Option<usize>,
    #[serde(default)]
    pub lr: Option<f64>,
    #[serde(default)]
    pub batch_size: Option<usize>,
    #[serde(default)]
    pub max_len: Option<usize>,
    // Generative models and APIs.
    /// `score` (label log-probabilities, local models only) or `generate`.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub prompt_template: Option<String>,
    #[serde(default)]
    pub shots: Option<usize>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    // APIs.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default)]
    pub rpm: Option<f64>,
    #[serde(default)]
    pub max_cost_usd: Option<f64>,
    // Any model.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Classifiers: `fp32` (default) or `int8` matrix products.
    #[serde(default)]
    pub precision: Option<crate::models::encoder::Precision>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainRecipe {
    HeadOnly,
    Full,
}

/// Where a model entry's model comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// A classifier folder evaluated as it is.
    Classifier,
    /// A classifier trained from `base` first.
    Trained,
    /// A local generative model run in-process.
    Generative,
    /// A local generative model behind `taskbench serve`, measured over HTTP.
    Served,
    /// A hosted API.
    Api,
}

impl ModelKind {
    /// Runs on the machine the suite prices by the hour.
    pub fn is_local(self) -> bool {
        self != ModelKind::Api
    }
}

impl ModelEntry {
    pub fn kind(&self) -> ModelKind {
        match (&self.model, &self.base, &self.serve) {
            (_, Some(_), _) => ModelKind::Trained,
            (_, _, Some(_)) => ModelKind::Served,
            (Some(m), _, _) if crate::models::remote::is_remote_spec(m) => ModelKind::Api,
            (Some(m), _, _) if crate::models::causal::is_causal_lm(m) => ModelKind::Generative,
            _ => ModelKind::Classifier,
        }
    }
}

/// A checked suite: paths resolved against the file's folder.
#[derive(Debug, Clone)]
pub struct Suite {
    pub file: SuiteFile,
    /// The file as read, copied into the run folder so `report` needs nothing else.
    pub source: String,
    pub path: PathBuf,
}

/// A suite that cannot be run, with the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Suite {
    pub fn load(path: &Path) -> Result<Suite, SuiteError> {
        let source = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Suite::parse(&source, path)
    }

    /// Parses `source` as if read from `path` (paths resolve against its folder).
    pub fn parse(source: &str, path: &Path) -> Result<Suite, SuiteError> {
        let shown = path.display().to_string();
        let mut file: SuiteFile = toml::from_str(source).map_err(|e| SuiteError::Syntax {
            path: shown.clone(),
            line: e.span().map_or(1, |s| line_at(source, s.start)),
            message: e.message().to_string(),
        })?;
        validate(&file).map_err(|message| SuiteError::Invalid {
            path: shown.clone(),
            message,
        })?;
        resolve_paths(&mut file, path.parent().unwrap_or(Path::new("")));
        Ok(Suite {
            file,
            source: source.to_string(),
            path: path.to_path_buf(),
        })
    }

    pub fn entry(&self, name: &str) -> Option<&ModelEntry> {
        self.file.models.iter().find(|m| m.name == name)
    }
}

/// Everything that can be checked without touching the disk.
fn validate(file: &SuiteFile) -> Result<(), String> {
    check_name("suite name", &file.name)?;
    if file.models.is_empty() {
        return Err("no [[models]]: name at least one model to compare".into());
    }
    let mut seen = BTreeSet::new();
    for (i, entry) in file.models.iter().enumerate() {
        let at = format!("[[models]] #{} ({:?})", i + 1, entry.name);
        check_name(&at, &entry.name)?;
        if !seen.insert(entry.name.to_lowercase()) {
            return Err(format!(
                "{at}: two models are named {:?}; names must be unique (they name folders)",
                entry.name
            ));
        }
        check_entry(entry).map_err(|m| format!("{at}: {m}"))?;
        if entry.kind() == ModelKind::Trained && file.data.train.is_none() {
            return Err(format!(
                "{at}: trains from `base`, but [data] has no `train` file"
            ));
        }
    }
    check_goals(&file.goals)?;
    check_costs(&file.costs)
}

/// Names become folder names and HTML ids, so keep them to a safe alphabet.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: {name:?} must be 1-64 characters of letters, digits, '-', '_' or '.' (not first)"
        ))
    }
}

fn check_entry(entry: &ModelEntry) -> Result<(), String> {
    let sources = [&entry.model, &entry.base, &entry.serve]
        .iter()
        .filter(|s| s.is_some())
        .count();
    if sources != 1 {
        return Err("set exactly one of `model` (evaluate as is), `base` (with `train`) or `serve` (a local generative model measured over HTTP)".into());
    }
    match (entry.base.is_some(), entry.train) {
        (true, None) => return Err("`base` needs `train = \"head-only\"` or `\"full\"`".into()),
        (false, Some(_)) => return Err("`train` needs `base`, the encoder to start from".into()),
        _ => {}
    }
    if let Some(pooling) = &entry.pooling {
        if !matches!(pooling.as_str(), "auto" | "cls" | "mean") {
            return Err(format!("pooling {pooling:?}: expected auto, cls or mean"));
        }
    }
    if let Some(method) = &entry.method {
        if !matches!(method.as_str(), "score" | "generate") {
            return Err(format!("method {method:?}: expected score or generate"));
        }
        let over_http = matches!(entry.kind(), ModelKind::Api | ModelKind::Served);
        if method == "score" && over_http {
            return Err("method \"score\" needs the model's log-probabilities, which an HTTP model does not give here; use \"generate\"".into());
        }
    }
    if entry.limit == Some(0) {
        return Err("limit must be at least 1".into());
    }
    if entry.concurrency == Some(0) {
        return Err("concurrency must be at least 1".into());
    }
    Ok(())
}

fn check_goals(goals: &Goals) -> Result<(), String> {
    if !matches!(goals.slo_percentile, 50 | 90 | 95 | 99) {
        return Err(format!(
            "[goals] slo_percentile = {}: expected 50, 90, 95 or 99",
            goals.slo_percentile
        ));
    }
    if let Some(ms) = goals.slo_latency_ms {
        if !(ms.is_finite() && ms > 0.0) {
            return Err(format!(
                "[goals] slo_latency_ms = {ms}: expected a positive number"
            ));
        }
    }
    match (goals.accuracy_floor, goals.accuracy_floor_vs_best_api) {
        (Some(_), Some(_)) => {
            Err("[goals]: set accuracy_floor or accuracy_floor_vs_best_api, not both".into())
        }
        (Some(f), None) | (None, Some(f)) if !(f > 0.0 && f <= 1.0) => Err(format!(
            "[goals] accuracy floor {f}: expected a fraction in (0, 1]"
        )),
        _ => Ok(()),
    }
}

fn check_costs(costs: &Costs) -> Result<(), String> {
    let non_negative = |what: &str, v: Option<f64>| match v {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(format!(
            "[costs] {what} = {v}: expected a non-negative number of dollars"
        )),
        _ => Ok(()),
    };
    non_negative("hourly_usd", costs.hourly_usd)?;
    non_negative("monthly_hosting_usd", costs.monthly_hosting_usd)?;
    if !(costs.utilisation > 0.0 && costs.utilisation <= 1.0) {
        return Err(format!(
            "[costs] utilisation = {}: expected a share in (0, 1]",
            costs.utilisation
        ));
    }
    if costs.amortise_months == 0 {
        return Err("[costs] amortise_months must be at least 1".into());
    }
    Ok(())
}

/// Makes every relative path in the file relative to `dir` instead of the working folder.
/// Model specs that are not paths (`hf:`, `openai:`) are left alone.
fn resolve_paths(file: &mut SuiteFile, dir: &Path) {
    let join = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = normalize(&dir.join(&*p));
        }
    };
    join(&mut file.data.test);
    if let Some(train) = &mut file.data.train {
        join(train);
    }
    if let Some(pricing) = &mut file.costs.pricing {
        join(pricing);
    }
    for entry in &mut file.models {
        for spec in [&mut entry.model, &mut entry.base, &mut entry.serve]
            .into_iter()
            .flatten()
        {
            if is_path_spec(spec) {
                *spec = normalize(&dir.join(&*spec)).display().to_string();
            }
        }
        if let Some(template) = &mut entry.prompt_template {
            if template.ends_with(".toml") {
                *template = dir.join(&*template).display().to_string();
            }
        }
    }
}

/// `suites/../models/x` -> `models/x`, without touching the disk (the path may not exist
/// yet, and symlinks are the user's business).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn is_path_spec(spec: &str) -> bool {
    let scheme = spec.split_once(':').map(|(s, _)| s);
    !matches!(scheme, Some("hf" | "openai" | "anthropic")) && Path::new(spec).is_relative()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "claims"
[data]
train = "../datasets/claims/train.csv"
test = "../datasets/claims/test.csv"
[[models]]
name = "head"
base = "../models/all-MiniLM-L6-v2"
train = "head-only"
[[models]]
name = "gpt"
model = "openai:gpt-4o-mini"
"#;

    fn parse(text: &str) -> Result<Suite, SuiteError> {
        Suite::parse(text, Path::new("suites/claims.toml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn paths_resolve_against_the_suite_folder() {
        let suite = parse(MINIMAL).unwrap();
        assert_eq!(suite.file.data.test, Path::new("datasets/claims/test.csv"));
        assert_eq!(
            suite.entry("head").unwrap().base.as_deref(),
            Some("models/all-MiniLM-L6-v2")
        );
        assert_eq!(
            suite.entry("gpt").unwrap().model.as_deref(),
            Some("openai:gpt-4o-mini")
        );
        assert_eq!(suite.entry("head").unwrap().kind(), ModelKind::Trained);
        assert_eq!(suite.entry("gpt").unwrap().kind(), ModelKind::Api);
        assert_eq!(suite.file.goals.slo_percentile, 95);
    }

    #[test]
    fn two_models_with_one_name_are_refused() {
        let text = format!("{MINIMAL}\n[[models]]\nname = \"GPT\"\nmodel = \"openai:gpt-4o\"\n");
        let e = error(&text);
        assert!(e.contains("two models are named \"GPT\""), "{e}");
        assert!(e.starts_with("suites/claims.toml: [[models]] #3"), "{e}");
    }

    #[test]
    fn an_entry_needs_exactly_one_source() {
        let text = "name = \"s\"\n[data]\ntest = \"t.csv\"\n[[models]]\nname = \"x\"\n";
        assert!(error(text).contains("exactly one of `model`"));
        let both = "name = \"s\"\n[data]\ntest = \"t.csv\"\n[[models]]\nname = \"x\"\nmodel = \"a\"\nserve = \"b.gguf\"\n";
        assert!(error(both).contains("exactly one of `model`"));
    }

    #[test]
    fn training_needs_a_train_split_and_a_recipe() {
        let text = "name = \"s\"\n[data]\ntest = \"t.csv\"\n[[models]]\nname = \"x\"\nbase = \"m\"\ntrain = \"full\"\n";
        assert!(error(text).contains("[data] has no `train` file"));
        let no_recipe = "name = \"s\"\n[data]\ntest = \"t.csv\"\ntrain = \"a.csv\"\n[[models]]\nname = \"x\"\nbase = \"m\"\n";
        assert!(error(no_recipe).contains("`base` needs `train"));
        let bad_recipe = "name = \"s\"\n[data]\ntest = \"t.csv\"\ntrain = \"a.csv\"\n[[models]]\nname = \"x\"\nbase = \"m\"\ntrain = \"lora\"\n";
        let e = error(bad_recipe);
        assert!(
            e.contains("suites/claims.toml:8") && e.contains("head-only"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_goals_are_named() {
        let e = error(&MINIMAL.replace("train = \"head-only\"", "trian = \"head-only\""));
        assert!(e.contains("trian"), "{e}");
        let e = error(
            &format!("{MINIMAL}\n[goals]\nslo_percentile = 97\n")
                .replace("[[models]]\nname = \"gpt\"", "[[models]]\nname = \"gpt\""),
        );
        // [goals] after [[models]] binds to the table, not the array: still a valid document.
        assert!(e.contains("slo_percentile = 97"), "{e}");
        let e = error(&MINIMAL.replace(
            "name = \"claims\"",
            "name = \"claims\"\n[goals]\naccuracy_floor = 1.5",
        ));
        assert!(e.contains("accuracy floor 1.5"), "{e}");
    }

    #[test]
    fn names_must_be_safe_for_folders() {
        let e = error(&MINIMAL.replace("name = \"head\"", "name = \"../head\""));
        assert!(e.contains("letters, digits"), "{e}");
    }

    #[test]
    fn score_is_refused_for_http_models() {
        let e = error(&format!("{MINIMAL}method = \"score\"\n"));
        assert!(e.contains("log-probabilities"), "{e}");
    }
}
