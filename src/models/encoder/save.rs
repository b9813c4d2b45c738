//! Writes a frozen encoder plus a trained linear head in the layouts other tools load:
//!
//! - BERT through its pooler: a HF `BertForSequenceClassification` folder
//!   (`architectures`, `id2label`, `label2id`, `bert.`-prefixed tensors, `classifier.*`), which
//!   `AutoModelForSequenceClassification.from_pretrained` loads unchanged.
//! - Any other pooling (mean, or CLS without a pooler): the sentence-transformers layout, with
//!   the head as a `Dense` module (identity activation) whose outputs are the logits, and the
//!   labels as `id2label` in `config.json`. `SentenceTransformer(dir).encode(texts)` returns
//!   the logits; the folder's README shows the same in plain transformers.
//!
//! The folder is written next to its destination and renamed into place, so an interrupted
//! run never leaves a half-written model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::head::{Pooling, StDenseConfig, IDENTITY};

/// What to write: the head on top of the backbone in `source_dir`.
pub struct HeadToSave<'a> {
    pub source_dir: &'a Path,
    pub labels: &'a [String],
    /// `[classes][hidden]`.
    pub weight: &'a [Vec<f32>],
    pub bias: &'a [f32],
    pub pooling: Pooling,
    /// Features went through BERT's pooler (only with `Pooling::Cls`).
    pub through_pooler: bool,
    pub normalize: bool,
    pub max_tokens: usize,
    /// Markdown to put in the folder's README.md.
    pub readme: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Tensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
}

/// Tokenizer files a model folder may carry (WordPiece, BPE, SentencePiece).
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
];

/// Writes the folder at `out` (which must not exist; the caller handles `--overwrite`).
pub fn save(head: &HeadToSave, out: &Path) -> Result<(), SaveError> {
    let staging = staging_dir(out);
    let _ = std::fs::remove_dir_all(&staging);
    create_dir(&staging)?;
    let result = if head.through_pooler {
        write_hf_bert(head, &staging)
    } else {
        write_sentence_transformers(head, &staging)
    };
    let result = result.and_then(|_| {
        write(&staging.join("README.md"), head.readme.as_bytes())?;
        std::fs::rename(&staging, out).map_err(|source| SaveError::Io {
            path: out.to_owned(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

fn staging_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn write_hf_bert(head: &HeadToSave, dir: &Path) -> Result<(), SaveError> {
    let mut config = read_config(head.source_dir)?;
    config["architectures"] = json!(["BertForSequenceClassification"]);
    add_labels(&mut config, head.labels);
    config["problem_type"] = json!("single_label_classification");
    write_json(&dir.join("config.json"), &config)?;
    let source = head.source_dir.join("model.safetensors");
    let mut tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(&source, &Device::Cpu)
            .map_err(|source_err| SaveError::Tensors {
                path: source.clone(),
                source: source_err,
            })?
            .into_iter()
            .map(|(name, t)| {
                if name.starts_with("bert.") {
                    (name, t)
                } else {
                    (format!("bert.{name}"), t)
                }
            })
            .collect();
    tensors.insert("classifier.weight".into(), matrix(head.weight)?);
    tensors.insert(
        "classifier.bias".into(),
        Tensor::new(head.bias, &Device::Cpu).map_err(|e| tensor_err(dir, e))?,
    );
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| tensor_err(&weights, e))?;
    copy_tokenizer(head.source_dir, dir)
}

fn write_sentence_transformers(head: &HeadToSave, dir: &Path) -> Result<(), SaveError> {
    let mut config = read_config(head.source_dir)?;
    add_labels(&mut config, head.labels);
    write_json(&dir.join("config.json"), &config)?;
    copy(
        &head.source_dir.join("model.safetensors"),
        &dir.join("model.safetensors"),
    )?;
    copy_tokenizer(head.source_dir, dir)?;
    let st_config = head.source_dir.join("config_sentence_transformers.json");
    if st_config.is_file() {
        copy(&st_config, &dir.join("config_sentence_transformers.json"))?;
    }
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": head.max_tokens, "do_lower_case": false}),
    )?;
    create_dir(&dir.join("1_Pooling"))?;
    let hidden = head.weight.first().map_or(0, Vec::len);
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": head.pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": head.pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if head.normalize {
        create_dir(&dir.join("2_Normalize"))?;
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}));
    }
    let dense_path = format!("{}_Dense", modules.len());
    modules.push(json!({"idx": modules.len(), "name": modules.len().to_string(), "path": dense_path, "type": "sentence_transformers.models.Dense"}));
    write_json(&dir.join("modules.json"), &Value::Array(modules))?;
    let dense_dir = dir.join(&dense_path);
    create_dir(&dense_dir)?;
    let dense = StDenseConfig {
        in_features: hidden,
        out_features: head.labels.len(),
        bias: true,
        activation_function: IDENTITY.into(),
    };
    write_json(
        &dense_dir.join("config.json"),
        &serde_json::to_value(&dense).expect("plain struct"),
    )?;
    let mut tensors = HashMap::new();
    tensors.insert("linear.weight".to_string(), matrix(head.weight)?);
    tensors.insert(
        "linear.bias".to_string(),
        Tensor::new(head.bias, &Device::Cpu).map_err(|e| tensor_err(dir, e))?,
    );
    let weights = dense_dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights).map_err(|e| tensor_err(&weights, e))
}

fn add_labels(config: &mut Value, labels: &[String]) {
    config["id2label"] = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    config["label2id"] = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), json!(i)))
        .collect();
}

fn matrix(rows: &[Vec<f32>]) -> Result<Tensor, SaveError> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu)
        .map_err(|e| tensor_err(Path::new("head"), e))
}

fn tensor_err(path: &Path, source: candle_core::Error) -> SaveError {
    SaveError::Tensors {
        path: path.to_owned(),
        source,
    }
}

fn read_config(dir: &Path) -> Result<Value, SaveError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| SaveError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| SaveError::Format {
        path,
        message: e.to_string(),
    })
}

fn copy_tokenizer(from: &Path, to: &Path) -> Result<(), SaveError> {
    for file in TOKENIZER_FILES {
        let src = from.join(file);
        if src.is_file() {
            copy(&src, &to.join(file))?;
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), SaveError> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|source| SaveError::Io {
            path: from.to_owned(),
            source,
        })
}

fn create_dir(path: &Path) -> Result<(), SaveError> {
    std::fs::create_dir_all(path).map_err(|source| SaveError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), SaveError> {
    std::fs::write(path, bytes).map_err(|source| SaveError::Io {
        path: path.to_owned(),
        source,
    })
}

fn write_json(path: &Path, value: &Value) -> Result<(), SaveError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    write(path, format!("{text}\n").as_bytes())
}
