//! Reads the reference files written by `scripts/make_reference.py`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
pub struct Reference {
    pub fixture: String,
    pub num_labels: usize,
    pub id2label: BTreeMap<String, String>,
    pub cases: Vec<Case>,
}

#[derive(Deserialize)]
pub struct Case {
    pub index: usize,
    pub text: String,
    pub truncated: bool,
    pub input_ids: Vec<u32>,
    pub probs_single: Vec<f32>,
    #[allow(dead_code)]
    pub probs_batch: Vec<f32>,
}

impl Reference {
    pub fn load(path: &Path) -> Self {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Labels in id order.
    pub fn labels(&self) -> Vec<String> {
        (0..self.num_labels)
            .map(|i| self.id2label[&i.to_string()].clone())
            .collect()
    }
}
