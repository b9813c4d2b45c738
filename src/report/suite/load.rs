//! Reads a run folder back: the suite, `run.json`, and each evaluated model's results,
//! predictions and training record. Nothing else is needed to rebuild the report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::report::{read_predictions, read_results, EvalResults, Prediction};
use crate::report::{PREDICTIONS_FILE, RESULTS_FILE};
use crate::suite::{
    read_run_record, ModelEntry, ModelRun, RunRecord, Suite, EVALS_DIR, MODELS_DIR, SUITE_COPY,
};

pub struct RunData {
    pub dir: PathBuf,
    pub suite: Suite,
    pub record: RunRecord,
    /// Models with results, in suite order.
    pub models: Vec<LoadedModel>,
    /// One index over every gold and predicted label of every model.
    pub labels: LabelIndex,
}

pub struct LoadedModel {
    pub entry: ModelEntry,
    pub run: ModelRun,
    pub results: EvalResults,
    pub predictions: Vec<Prediction>,
    pub training: Option<TrainingRecordLite>,
    /// Gold and predicted label indices of the items with a gold label, in file order.
    pub gold: Vec<usize>,
    pub predicted: Vec<Option<usize>>,
    /// Item id -> position in `gold` / `predicted`.
    pub position: HashMap<String, usize>,
}

/// The part of `training.json` the report uses.
#[derive(Debug, Clone, Deserialize)]
pub struct TrainingRecordLite {
    pub recipe: String,
    pub seconds: TrainingSeconds,
    pub train_items_per_second: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TrainingSeconds {
    pub training: f64,
}

/// Label names to dense indices, gold labels first so the confusion matrix reads naturally.
#[derive(Debug, Clone, Default)]
pub struct LabelIndex {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl LabelIndex {
    fn insert(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Loads `dir`; a model listed with results whose files are missing or unreadable is an
/// error naming the file.
pub fn load_run(dir: &Path) -> anyhow::Result<RunData> {
    let record = read_run_record(dir)?;
    let suite_path = dir.join(SUITE_COPY);
    let suite = Suite::load(&suite_path)?;
    let mut labels = LabelIndex::default();
    let mut raw = Vec::new();
    for run in record.models.iter().filter(|r| r.has_results()) {
        let Some(entry) = suite.entry(&run.name) else {
            anyhow::bail!(
                "{}: lists model {:?}, which {} does not define",
                dir.join(crate::suite::RUN_FILE).display(),
                run.name,
                suite_path.display()
            );
        };
        let eval_dir = dir.join(EVALS_DIR).join(&run.name);
        let results = read_results(&eval_dir.join(RESULTS_FILE))?;
        let predictions = read_predictions(&eval_dir.join(PREDICTIONS_FILE))?;
        let training = read_training(&dir.join(MODELS_DIR).join(&run.name))?;
        raw.push((entry.clone(), run.clone(), results, predictions, training));
    }
    // Gold labels first, in the order the first model met them; then predicted-only ones.
    for (_, _, _, predictions, _) in &raw {
        for p in predictions {
            if let Some(g) = &p.gold {
                labels.insert(g);
            }
        }
    }
    let models = raw
        .into_iter()
        .map(|(entry, run, results, predictions, training)| {
            let (gold, predicted, position) = index_items(&predictions, &mut labels);
            LoadedModel {
                entry,
                run,
                results,
                predictions,
                training,
                gold,
                predicted,
                position,
            }
        })
        .collect();
    Ok(RunData {
        dir: dir.to_path_buf(),
        suite,
        record,
        models,
        labels,
    })
}

type Indexed = (Vec<usize>, Vec<Option<usize>>, HashMap<String, usize>);

/// Every predicted string gets an index, "(invalid)" included, so the statistics count an
/// invalid answer exactly as `results.json`'s metrics do: a wrong prediction of its own class.
fn index_items(predictions: &[Prediction], labels: &mut LabelIndex) -> Indexed {
    let mut gold = Vec::new();
    let mut predicted = Vec::new();
    let mut position = HashMap::new();
    for p in predictions {
        let Some(g) = &p.gold else { continue };
        position.insert(p.id.clone(), gold.len());
        gold.push(labels.insert(g));
        predicted.push(Some(labels.insert(&p.predicted)));
    }
    (gold, predicted, position)
}

fn read_training(dir: &Path) -> anyhow::Result<Option<TrainingRecordLite>> {
    let path = dir.join("training.json");
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{}: not a taskbench training record: {e}", path.display()))
}
