//! The per-item exporter: [`Prediction`] and `predictions.jsonl`, one compact JSON object per
//! evaluated item, in evaluation order, so every metric can be recomputed and every error
//! inspected.
//!
//! Probabilities are written as a JSON object `{label: probability}` in the model's label
//! order, each value the shortest decimal that reads back as the same `f32` (no rounding).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{output_path, write_atomic, ReportError};

/// File name [`write_predictions`] writes in the output folder.
pub const PREDICTIONS_FILE: &str = "predictions.jsonl";

/// One evaluated item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub text: String,
    /// The data set's label; `None` when the data set has no label column.
    pub gold: Option<String>,
    pub predicted: String,
    /// `None` when there is no gold label to compare with.
    pub correct: Option<bool>,
    pub probabilities: Probabilities,
    /// Single-stream latency of this item, when that pass ran.
    pub latency_ms: Option<f64>,
    /// Tokens the model saw (after truncation).
    pub tokens: usize,
    /// Token count before truncation, when the text was cut.
    pub truncated_from: Option<usize>,
    /// A generative model's text answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// `--task generate`: the scorer's score in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Why an item has no answer (a hosted API that kept failing, a request not sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `(label, probability)` pairs in the model's label order; serialised as a JSON object.
///
/// Values are `f32` and written exactly (shortest round-trip form). A non-finite value, which
/// JSON cannot hold, is written as `null` and read back as NaN, so a broken model output
/// still leaves a readable file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Probabilities(pub Vec<(String, f32)>);

impl Probabilities {
    /// Pairs `labels` with `probs`; `None` if their lengths differ.
    pub fn from_labels(labels: &[String], probs: &[f32]) -> Option<Self> {
        (labels.len() == probs.len())
            .then(|| Probabilities(labels.iter().cloned().zip(probs.iter().copied()).collect()))
    }

    /// The probability of `label`, if the model has it.
    pub fn get(&self, label: &str) -> Option<f32> {
        self.0.iter().find(|(l, _)| l == label).map(|&(_, p)| p)
    }
}

impl FromIterator<(String, f32)> for Probabilities {
    fn from_iter<I: IntoIterator<Item = (String, f32)>>(iter: I) -> Self {
        Probabilities(iter.into_iter().collect())
    }
}

impl Serialize for Probabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, p) in &self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Probabilities {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ProbabilitiesVisitor)
    }
}

/// Reads the object back in file order; `null` becomes NaN (see [`Probabilities`]).
struct ProbabilitiesVisitor;

impl<'de> Visitor<'de> for ProbabilitiesVisitor {
    type Value = Probabilities;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object mapping labels to probabilities")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probabilities, A::Error> {
        let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some((label, p)) = map.next_entry::<String, Option<f32>>()? {
            pairs.push((label, p.unwrap_or(f32::NAN)));
        }
        Ok(Probabilities(pairs))
    }
}

/// Writes `dir/predictions.jsonl` atomically (one compact object and `\n` per item, streamed,
/// so memory does not grow with the file), creating `dir` if needed; returns its path.
pub fn write_predictions(dir: &Path, predictions: &[Prediction]) -> Result<PathBuf, ReportError> {
    let path = output_path(dir, PREDICTIONS_FILE)?;
    write_atomic(&path, |w| {
        for p in predictions {
            serde_json::to_writer(&mut *w, p)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(path)
}

/// Reads a `predictions.jsonl`; a bad line is an error naming the file and line, never skipped
/// (a report built on a silently shortened file would be wrong).
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| ReportError::Line {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn labels() -> Vec<String> {
        ["negative", "neutral", "positive"]
            .map(String::from)
            .to_vec()
    }

    fn prediction(i: usize) -> Prediction {
        let probs = [0.1f32, 0.2, 0.7 - i as f32 * 1e-7];
        Prediction {
            id: format!("row-{i}"),
            text: format!("text {i} with \"quotes\"\nand a newline"),
            gold: (!i.is_multiple_of(3)).then(|| "positive".to_string()),
            predicted: "positive".to_string(),
            correct: (!i.is_multiple_of(3)).then_some(true),
            probabilities: Probabilities::from_labels(&labels(), &probs).unwrap(),
            latency_ms: i.is_multiple_of(2).then_some(1.25),
            tokens: 7 + i,
            truncated_from: (i == 4).then_some(900),
            output: (i == 1).then(|| "positive, I think".to_string()),
            score: None,
            error: None,
        }
    }

    fn write_sample(n: usize) -> (tempfile::TempDir, Vec<Prediction>, String) {
        let dir = tempfile::tempdir().unwrap();
        let preds: Vec<Prediction> = (0..n).map(prediction).collect();
        let path = write_predictions(dir.path(), &preds).unwrap();
        let text = fs::read_to_string(path).unwrap();
        (dir, preds, text)
    }

    #[test]
    fn one_valid_compact_json_object_per_line() {
        let (_dir, preds, text) = write_sample(7);
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), preds.len());
        for (line, want) in lines.iter().zip(&preds) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.is_object());
            assert!(!line.contains(": "), "compact: {line}");
            let back: Prediction = serde_json::from_str(line).unwrap();
            assert_eq!(&back, want, "f32 values read back exactly");
        }
    }

    #[test]
    fn probabilities_are_an_object_in_label_order_with_full_f32_values() {
        let (_dir, _, text) = write_sample(2);
        let second = text.lines().nth(1).unwrap();
        let want = r#""probabilities":{"negative":0.1,"neutral":0.2,"positive":0.69999987}"#;
        assert!(second.contains(want), "{second}");
    }

    #[test]
    fn empty_input_writes_an_empty_file_and_no_temp() {
        let (dir, _, text) = write_sample(0);
        assert!(text.is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn non_finite_probability_is_null_and_reads_back_as_nan() {
        let mut p = prediction(1);
        p.probabilities.0[0].1 = f32::NAN;
        let line = serde_json::to_string(&p).unwrap();
        assert!(line.contains(r#""negative":null"#), "{line}");
        let back: Prediction = serde_json::from_str(&line).unwrap();
        assert!(back.probabilities.get("negative").unwrap().is_nan());
    }

    #[test]
    fn from_labels_checks_lengths() {
        assert!(Probabilities::from_labels(&labels(), &[0.5, 0.5]).is_none());
        let p = Probabilities::from_labels(&labels(), &[0.2, 0.3, 0.5]).unwrap();
        assert_eq!(p.get("neutral"), Some(0.3));
        assert_eq!(p.get("missing"), None);
    }
}
