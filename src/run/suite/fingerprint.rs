//! What a model's results depend on, hashed: the model's weights, the data's bytes, every
//! setting of its suite entry and the taskbench version. Equal fingerprints mean a rerun would
//! compute the same thing, so `taskbench run` reuses the folder instead.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::run::sha256_file;
use crate::suite::{ModelEntry, ModelKind, Suite};

/// Written last into a finished folder; its presence means the folder is complete.
pub const INPUTS_FILE: &str = "inputs.json";

#[derive(Debug, Serialize, Deserialize)]
pub struct Fingerprint {
    parts: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct InputsFile {
    digest: String,
    inputs: Map<String, Value>,
}

impl Fingerprint {
    fn new() -> Self {
        let mut parts = Map::new();
        parts.insert("taskbench".into(), json!(env!("CARGO_PKG_VERSION")));
        Fingerprint { parts }
    }

    pub fn add(&mut self, key: &str, value: impl Serialize) {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.parts.insert(key.into(), value);
    }

    /// Inputs of an evaluation: the entry, the test data, the weights, the prices of the
    /// machine (they go into the results' cost) and the sampling seed.
    pub fn for_eval(suite: &Suite, entry: &ModelEntry) -> anyhow::Result<Fingerprint> {
        let file = &suite.file;
        let mut f = Fingerprint::new();
        f.add("entry", entry);
        f.add("test_sha256", sha256_file(&file.data.test)?);
        f.add(
            "columns",
            [&file.data.text_col, &file.data.label_col, &file.data.id_col],
        );
        f.add("defaults", &file.defaults);
        f.add(
            "machine",
            [file.costs.hourly_usd, Some(file.costs.utilisation)],
        );
        if entry.shots.is_some() {
            if let Some(train) = &file.data.train {
                f.add("examples_sha256", sha256_file(train)?);
            }
        }
        if let Some(pricing) = &file.costs.pricing {
            f.add("pricing_sha256", sha256_file(pricing)?);
        }
        if entry.kind() != ModelKind::Trained {
            let spec = entry.model.as_ref().or(entry.serve.as_ref());
            if let Some(spec) = spec {
                f.add("weights", weights_identity(spec)?);
            }
        }
        Ok(f)
    }

    /// Inputs of a training run: base weights, training data and the recipe's settings.
    pub fn for_training(suite: &Suite, entry: &ModelEntry) -> anyhow::Result<Fingerprint> {
        let file = &suite.file;
        let mut f = Fingerprint::new();
        f.add(
            "recipe",
            json!({
                "train": entry.train,
                "pooling": entry.pooling,
                "epochs": entry.epochs,
                "lr": entry.lr,
                "batch_size": entry.batch_size,
                "max_len": entry.max_len,
                "seed": file.defaults.seed,
            }),
        );
        if let Some(base) = &entry.base {
            f.add("base", weights_identity(base)?);
        }
        if let Some(train) = &file.data.train {
            f.add("train_sha256", sha256_file(train)?);
        }
        f.add(
            "columns",
            [&file.data.text_col, &file.data.label_col, &file.data.id_col],
        );
        Ok(f)
    }

    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(&self.parts).unwrap_or_default();
        hex::encode(Sha256::digest(bytes))
    }

    /// Whether `dir` holds finished work computed from these same inputs.
    pub fn matches(&self, dir: &Path) -> bool {
        std::fs::read(dir.join(INPUTS_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<InputsFile>(&bytes).ok())
            .is_some_and(|stored| stored.digest == self.digest())
    }

    /// Marks `dir` finished; called after everything else in it is written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let inputs = InputsFile {
            digest: self.digest(),
            inputs: self.parts.clone(),
        };
        let path = dir.join(INPUTS_FILE);
        crate::report::write_json(&path, &inputs)
            .with_context(|| format!("{}: cannot write", path.display()))
    }
}

/// A local model by the hash of its weights (a folder's `model.safetensors`, or the file);
/// anything else (hf:, openai:) by its spec.
fn weights_identity(spec: &str) -> anyhow::Result<String> {
    let path = Path::new(spec);
    if path.is_file() {
        return sha256_file(path);
    }
    let weights = path.join("model.safetensors");
    if weights.is_file() {
        return sha256_file(&weights);
    }
    Ok(spec.to_string())
}
