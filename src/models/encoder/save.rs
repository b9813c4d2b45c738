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
//! The same layouts serve `train --head-only` (frozen backbone copied, head fitted) and full
//! fine-tuning (every tensor trained). The folder is written next to its destination and
//! renamed into place, so an interrupted run never leaves a half-written model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::head::{Pooling, StDenseConfig, IDENTITY};

/// What to write.
pub struct ModelToSave<'a> {
    /// Where `config.json` and the tokenizer files come from.
    pub source_dir: &'a Path,
    pub labels: &'a [String],
    pub layout: Layout,
    /// The longest input, written as the sentence-transformers `max_seq_length`.
    pub max_tokens: usize,
    /// Markdown for the folder's README.md.
    pub readme: String,
}

/// The two layouts taskbench writes.
pub enum Layout {
    /// A HF `...ForSequenceClassification` folder: every tensor under its final HF name.
    HfClassifier {
        architecture: String,
        tensors: HashMap<String, Tensor>,
    },
    /// sentence-transformers: the backbone (tensor names without the model prefix), a
    /// `Pooling` module, optionally `Normalize`, and the head as a `Dense` module.
    SentenceTransformers {
        backbone: Backbone,
        pooling: Pooling,
        normalize: bool,
        head_weight: Tensor,
        head_bias: Tensor,
    },
}

/// The backbone's weights: unchanged (copied from the base folder) or trained.
pub enum Backbone {
    CopyFile(PathBuf),
    Tensors(HashMap<String, Tensor>),
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
    #[error("{}: {}", path.display(), super::candle_message(source))]
    Tensors {
        path: PathBuf,
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
pub fn save(model: &ModelToSave, out: &Path) -> Result<(), SaveError> {
    let staging = staging_dir(out);
    let _ = std::fs::remove_dir_all(&staging);
    create_dir(&staging)?;
    let result = write_layout(model, &staging)
        .and_then(|_| write(&staging.join("README.md"), model.readme.as_bytes()))
        .and_then(|_| {
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

fn write_layout(model: &ModelToSave, dir: &Path) -> Result<(), SaveError> {
    let mut config = read_config(model.source_dir)?;
    add_labels(&mut config, model.labels);
    copy_tokenizer(model.source_dir, dir)?;
    match &model.layout {
        Layout::HfClassifier {
            architecture,
            tensors,
        } => {
            config["architectures"] = json!([architecture]);
            config["problem_type"] = json!("single_label_classification");
            write_json(&dir.join("config.json"), &config)?;
            save_tensors(tensors, &dir.join("model.safetensors"))
        }
        Layout::SentenceTransformers {
            backbone,
            pooling,
            normalize,
            head_weight,
            head_bias,
        } => {
            write_json(&dir.join("config.json"), &config)?;
            match backbone {
                Backbone::CopyFile(path) => copy(path, &dir.join("model.safetensors"))?,
                Backbone::Tensors(tensors) => {
                    save_tensors(tensors, &dir.join("model.safetensors"))?
                }
            }
            write_st_modules(model, dir, *pooling, *normalize, head_weight, head_bias)
        }
    }
}

fn write_st_modules(
    model: &ModelToSave,
    dir: &Path,
    pooling: Pooling,
    normalize: bool,
    weight: &Tensor,
    bias: &Tensor,
) -> Result<(), SaveError> {
    let st_config = model.source_dir.join("config_sentence_transformers.json");
    if st_config.is_file() {
        copy(&st_config, &dir.join("config_sentence_transformers.json"))?;
    }
    write_json(
        &dir.join("sentence_bert_config.json"),
        &json!({"max_seq_length": model.max_tokens, "do_lower_case": false}),
    )?;
    create_dir(&dir.join("1_Pooling"))?;
    let (classes, hidden) = weight.dims2().map_err(|e| tensor_err(dir, e))?;
    write_json(
        &dir.join("1_Pooling/config.json"),
        &json!({
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": pooling == Pooling::Cls,
            "pooling_mode_mean_tokens": pooling == Pooling::Mean,
            "pooling_mode_max_tokens": false,
            "pooling_mode_mean_sqrt_len_tokens": false,
        }),
    )?;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}),
    ];
    if normalize {
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
        out_features: classes,
        bias: true,
        activation_function: IDENTITY.into(),
    };
    write_json(
        &dense_dir.join("config.json"),
        &serde_json::to_value(&dense).expect("plain struct"),
    )?;
    let mut tensors = HashMap::new();
    tensors.insert("linear.weight".to_string(), weight.clone());
    tensors.insert("linear.bias".to_string(), bias.clone());
    save_tensors(&tensors, &dense_dir.join("model.safetensors"))
}

fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), SaveError> {
    candle_core::safetensors::save(tensors, path).map_err(|e| tensor_err(path, e))
}

/// The tensors of a safetensors file with `prefix.` put before every name that lacks it
/// (a bare `BertModel` checkpoint under the names `BertForSequenceClassification` uses).
pub fn load_with_prefix(path: &Path, prefix: &str) -> Result<HashMap<String, Tensor>, SaveError> {
    let tensors =
        candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| tensor_err(path, e))?;
    let with_dot = format!("{prefix}.");
    Ok(tensors
        .into_iter()
        .map(|(name, t)| {
            if name.starts_with(&with_dot) {
                (name, t)
            } else {
                (format!("{with_dot}{name}"), t)
            }
        })
        .collect())
}

/// A `[rows][cols]` matrix as a CPU tensor.
pub fn matrix(rows: &[Vec<f32>]) -> candle_core::Result<Tensor> {
    let cols = rows.first().map_or(0, Vec::len);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu)
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
