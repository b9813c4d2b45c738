//! Encoder classifiers (BERT, MiniLM, TinyBERT, DistilBERT, RoBERTa, XLM-R) loaded from a HF
//! model folder and run on candle, with the head the folder describes.
//!
//! Written here rather than taken from candle-transformers: its `BertModel` has no pooler or
//! classification head, its DistilBERT uses the tanh GELU where HF uses erf, and it pads every
//! batch. This one packs sequences without padding, so a batch costs its real tokens.

pub mod config;
mod grad_ops;
pub mod head;
mod ops;
pub mod save;
pub mod trainable;
pub mod transformer;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use self::config::{EncoderConfig, Family};
use self::head::{Features, Head, Pooling, StDenseConfig, StModule, StPoolingConfig, IDENTITY};
pub use self::transformer::Precision;
use self::transformer::{Linear, PackedBatch, Transformer};
use super::{Classifier, ModelInfo, TokenizedText};

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}; a model is a folder with config.json, model.safetensors and tokenizer.json", path.display())]
    NotAFolder { path: PathBuf, reason: &'static str },
    #[error("{}: not a model folder: missing {file}", dir.display())]
    MissingFile { dir: PathBuf, file: String },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: architecture \"{found}\" is not supported; supported: {}", path.display(), Family::SUPPORTED)]
    Unsupported { path: PathBuf, found: String },
    #[error("{}: cannot read the weights: {message}", path.display())]
    Weights { path: PathBuf, message: String },
    #[error("{}: cannot load the tokenizer: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error("{}: this is a {architecture} backbone with no classification head, so it cannot classify yet. \
Train a head on your labelled data first: taskbench train --head-only --model {} --data TRAIN.csv --out DIR", dir.display(), dir.display())]
    NoHead { dir: PathBuf, architecture: String },
    #[error("{}", candle_message(.0))]
    Compute(candle_core::Error),
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("precision {precision} runs on the CPU only, and this model is on {device}; use the CPU or precision fp32")]
    PrecisionNeedsCpu {
        precision: Precision,
        device: String,
    },
}

impl From<candle_core::Error> for EncoderError {
    fn from(err: candle_core::Error) -> Self {
        EncoderError::Compute(err)
    }
}

/// candle's error text without the backtrace it appends when `RUST_BACKTRACE` is set, and
/// without the path it adds (taskbench names the file itself).
pub fn candle_message(err: &candle_core::Error) -> String {
    match err {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => candle_message(inner),
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        other => other.to_string(),
    }
}

/// A loaded encoder: tokenizer, backbone, feature extractor and (optionally) a head.
pub struct Encoder {
    pub config: EncoderConfig,
    tokenizer: Tokenizer,
    transformer: Transformer,
    features: Features,
    head: Option<(Head, Vec<String>)>,
    /// BERT's pooler when the checkpoint has one, whether or not its head reads it.
    pooler: Option<Linear>,
    max_tokens: usize,
    device: Device,
    info: ModelInfo,
    dir: PathBuf,
    /// True when the folder is a sentence-transformers model (`modules.json`).
    sentence_transformers: bool,
}

impl Encoder {
    /// Loads a HF model folder. `name` is how the user named it, for reports.
    pub fn load(dir: &Path, name: &str, device: &Device) -> Result<Self, EncoderError> {
        let config = EncoderConfig::from_file(&required(dir, "config.json")?)?;
        let weights_path = required(dir, "model.safetensors")?;
        let tokenizer_path = required(dir, "tokenizer.json")?;
        let weights_err = |e: candle_core::Error| EncoderError::Weights {
            path: weights_path.clone(),
            message: candle_message(&e),
        };
        check_safetensors(&weights_path)?;
        // SAFETY: the file is mapped read-only; taskbench never writes a weights file it has
        // mapped, and tensors are copied out of the map at load.
        let root =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, device) }
                .map_err(weights_err)?;
        let prefix = config.family.backbone_prefix(&config.model_type);
        let backbone = find_backbone(&root, prefix).ok_or_else(|| EncoderError::Weights {
            path: weights_path.clone(),
            message: format!(
                "no encoder tensors found (looked for `{prefix}.embeddings.word_embeddings.weight` and `embeddings.word_embeddings.weight`)"
            ),
        })?;
        let transformer = Transformer::load(&backbone, &config).map_err(weights_err)?;
        let st = SentenceTransformersLayout::read(dir)?;
        let pooler = load_pooler(&backbone, &config).map_err(weights_err)?;
        let (features, head) = match &st {
            Some(st) => {
                let features = Features {
                    pooling: st.pooling,
                    pooler: None,
                    normalize: st.normalize,
                };
                let head = match &st.dense {
                    Some(dense_dir) => Some(load_dense_head(dense_dir, &config, dir, device)?),
                    None => None,
                };
                (features, head)
            }
            None => {
                let head = if config.architecture.ends_with("ForSequenceClassification") {
                    let labels = config
                        .id2label
                        .clone()
                        .ok_or_else(|| EncoderError::Config {
                            path: dir.join("config.json"),
                            message: format!("{} without id2label", config.architecture),
                        })?;
                    Some((
                        Head::load_hf(&root, &config, labels.len()).map_err(weights_err)?,
                        labels,
                    ))
                } else {
                    None
                };
                (
                    Features {
                        pooling: Pooling::Cls,
                        pooler: pooler.clone(),
                        normalize: false,
                    },
                    head,
                )
            }
        };
        if config.family == Family::Bert
            && features.pooling == Pooling::Cls
            && features.pooler.is_none()
            && head.is_some()
            && st.is_none()
        {
            return Err(EncoderError::Weights {
                path: weights_path,
                message: "BertForSequenceClassification without `bert.pooler.dense` weights".into(),
            });
        }
        let max_tokens = max_tokens(dir, &config, st.as_ref().and_then(|s| s.max_seq_length))?;
        let tokenizer = load_tokenizer(&tokenizer_path, max_tokens)?;
        let info = ModelInfo {
            precision: Some(Precision::Fp32.to_string()),
            name: name.to_string(),
            path: dir.display().to_string(),
            backend: "encoder".into(),
            architecture: config.architecture.clone(),
            head: describe_head(&head, st.is_some()),
            pooling: describe_features(&features),
            num_labels: head.as_ref().map_or(0, |(_, l)| l.len()),
            max_tokens,
            parameters: count_parameters(&weights_path).unwrap_or(0),
            weights_sha256: String::new(),
            device: format!("{device:?}"),
        };
        Ok(Self {
            config,
            tokenizer,
            transformer,
            features,
            head,
            pooler,
            max_tokens,
            device: device.clone(),
            info,
            dir: dir.to_owned(),
            sentence_transformers: st.is_some(),
        })
    }

    /// Runs the matrix products of the backbone in `precision` from now on (see [`Precision`]):
    /// `Int8` quantizes the weights once, here, and needs the CPU; `Fp32` (the default)
    /// restores the f32 path exactly. The pooler and head stay f32 either way.
    pub fn set_precision(&mut self, precision: Precision) -> Result<(), EncoderError> {
        if self.transformer.set_precision(precision)? {
            self.info.precision = Some(precision.to_string());
            Ok(())
        } else {
            Err(EncoderError::PrecisionNeedsCpu {
                precision,
                device: format!("{:?}", self.device),
            })
        }
    }

    /// The precision of the backbone's matrix products.
    pub fn precision(&self) -> Precision {
        self.transformer.precision()
    }

    /// Runs the device-generic candle ops even on CPU (the path CUDA and Metal take), so
    /// tests can check it against the references.
    pub fn use_candle_ops(&mut self) {
        self.transformer.use_candle_ops();
    }

    /// Truncates inputs at `max_tokens` from now on (at most the model's own limit).
    pub fn set_max_tokens(&mut self, max_tokens: usize) -> Result<(), EncoderError> {
        let max_tokens = max_tokens.min(self.config.max_tokens());
        self.tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..Default::default()
            }))
            .map_err(|e| EncoderError::Tokenizer {
                path: self.dir.join("tokenizer.json"),
                message: e.to_string(),
            })?;
        self.max_tokens = max_tokens;
        Ok(())
    }

    /// Fails with a message pointing to `train` when the folder has no head.
    pub fn require_head(&self) -> Result<(), EncoderError> {
        match self.head {
            Some(_) => Ok(()),
            None => Err(EncoderError::NoHead {
                dir: self.dir.clone(),
                architecture: self.config.architecture.clone(),
            }),
        }
    }

    pub fn set_weights_sha256(&mut self, sha: String) {
        self.info.weights_sha256 = sha;
    }

    pub fn info_sha256(&self) -> String {
        self.info.weights_sha256.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn is_sentence_transformers(&self) -> bool {
        self.sentence_transformers
    }

    /// The pooling the checkpoint was trained for: what its head reads, else what its
    /// sentence-transformers config says, else the [CLS] state through the pooler.
    pub fn default_pooling(&self) -> Pooling {
        self.features.pooling
    }

    pub fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn encode(&self, texts: &[&str]) -> Result<Vec<TokenizedText>, EncoderError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        Ok(encodings
            .into_iter()
            .map(|enc| {
                let overflow: usize = enc
                    .get_overflowing()
                    .iter()
                    .map(|o| o.get_ids().len())
                    .sum();
                TokenizedText {
                    ids: enc.get_ids().to_vec(),
                    type_ids: enc.get_type_ids().to_vec(),
                    truncated_from: (overflow > 0).then(|| enc.get_ids().len() + overflow),
                }
            })
            .collect())
    }

    fn packed(&self, batch: &[&TokenizedText]) -> candle_core::Result<PackedBatch> {
        let sequences: Vec<(Vec<u32>, Vec<u32>)> = batch
            .iter()
            .map(|t| (t.ids.clone(), t.type_ids.clone()))
            .collect();
        PackedBatch::new(&sequences, self.transformer.positions(), &self.device)
    }

    /// Pooled features `(batch, hidden)` with the given extractor settings.
    pub fn features_with(
        &self,
        batch: &[&TokenizedText],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Tensor, EncoderError> {
        let packed = self.packed(batch)?;
        let hidden = self.transformer.forward(&packed)?;
        let features = Features {
            pooling,
            pooler: if pooling == Pooling::Cls {
                self.pooler.clone()
            } else {
                None
            },
            normalize,
        };
        Ok(features.apply(&hidden, &packed)?)
    }

    /// [`Self::features_with`] as one `Vec` per item.
    pub fn feature_rows(
        &self,
        batch: &[&TokenizedText],
        pooling: Pooling,
        normalize: bool,
    ) -> Result<Vec<Vec<f32>>, EncoderError> {
        Ok(self
            .features_with(batch, pooling, normalize)?
            .to_vec2::<f32>()?)
    }

    /// Whether the checkpoint's own features are L2-normalised (sentence-transformers).
    pub fn normalizes(&self) -> bool {
        self.features.normalize
    }

    /// Logits `(batch, labels)`.
    pub fn logits(&self, batch: &[&TokenizedText]) -> Result<Tensor, EncoderError> {
        let (head, _) = self.head.as_ref().ok_or_else(|| EncoderError::NoHead {
            dir: self.dir.clone(),
            architecture: self.config.architecture.clone(),
        })?;
        let packed = self.packed(batch)?;
        let hidden = self.transformer.forward(&packed)?;
        Ok(head.forward(&self.features.apply(&hidden, &packed)?)?)
    }

    /// The BERT pooler, when the checkpoint has one (saved with a trained head).
    pub fn pooler(&self) -> Option<&Linear> {
        self.pooler.as_ref()
    }
}

impl Classifier for Encoder {
    fn labels(&self) -> &[String] {
        self.head
            .as_ref()
            .map_or(&[], |(_, labels)| labels.as_slice())
    }

    fn tokenize(&self, texts: &[&str]) -> anyhow::Result<Vec<TokenizedText>> {
        Ok(self.encode(texts)?)
    }

    fn classify(&self, batch: &[&TokenizedText]) -> anyhow::Result<Vec<Vec<f32>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let logits = self.logits(batch)?;
        let probs = || {
            candle_nn::ops::softmax_last_dim(&logits)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()
        };
        Ok(probs().map_err(EncoderError::from)?)
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// Reads the safetensors header and checks that it describes the whole file, so a truncated
/// download or a corrupt file is named as such before candle maps it.
fn check_safetensors(path: &Path) -> Result<(), EncoderError> {
    let file = std::fs::File::open(path).map_err(|source| EncoderError::Io {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: read-only map of a file taskbench does not modify while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| EncoderError::Io {
        path: path.to_owned(),
        source,
    })?;
    safetensors::SafeTensors::deserialize(&map).map(|_| ()).map_err(|e| EncoderError::Weights {
        path: path.to_owned(),
        message: format!("not a valid safetensors file, truncated or corrupt ({e}); download or export it again"),
    })
}

fn required(dir: &Path, file: &str) -> Result<PathBuf, EncoderError> {
    if !dir.exists() {
        return Err(EncoderError::NotAFolder {
            path: dir.to_owned(),
            reason: "no such model folder",
        });
    }
    if !dir.is_dir() {
        return Err(EncoderError::NotAFolder {
            path: dir.to_owned(),
            reason: "this is a file, not a model folder",
        });
    }
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EncoderError::MissingFile {
            dir: dir.to_owned(),
            file: file.to_string(),
        })
    }
}

fn find_backbone<'a>(root: &VarBuilder<'a>, prefix: &str) -> Option<VarBuilder<'a>> {
    let key = "embeddings.word_embeddings.weight";
    if root.contains_tensor(&format!("{prefix}.{key}")) {
        Some(root.pp(prefix))
    } else if root.contains_tensor(key) {
        Some(root.clone())
    } else {
        None
    }
}

fn load_pooler(backbone: &VarBuilder, cfg: &EncoderConfig) -> candle_core::Result<Option<Linear>> {
    if cfg.family == Family::Bert && backbone.contains_tensor("pooler.dense.weight") {
        Ok(Some(Linear::load(
            &backbone.pp("pooler.dense"),
            cfg.hidden_size,
            cfg.hidden_size,
        )?))
    } else {
        Ok(None)
    }
}

/// What a sentence-transformers `modules.json` says about pooling, normalising and a head.
struct SentenceTransformersLayout {
    pooling: Pooling,
    normalize: bool,
    dense: Option<PathBuf>,
    max_seq_length: Option<usize>,
}

impl SentenceTransformersLayout {
    fn read(dir: &Path) -> Result<Option<Self>, EncoderError> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let modules: Vec<StModule> = read_json(&modules_path)?;
        let mut layout = SentenceTransformersLayout {
            pooling: Pooling::Mean,
            normalize: false,
            dense: None,
            max_seq_length: None,
        };
        let mut saw_pooling = false;
        for module in &modules {
            match module.kind.rsplit('.').next().unwrap_or_default() {
                "Transformer" => {}
                "Pooling" => {
                    let path = dir.join(&module.path).join("config.json");
                    let cfg: StPoolingConfig = read_json(&path)?;
                    layout.pooling = match (cfg.pooling_mode_mean_tokens, cfg.pooling_mode_cls_token) {
                        (true, false) => Pooling::Mean,
                        (false, true) => Pooling::Cls,
                        _ => {
                            return Err(EncoderError::Config {
                                path,
                                message: "only mean or CLS pooling (one of them) is supported".into(),
                            })
                        }
                    };
                    if cfg.pooling_mode_max_tokens || cfg.pooling_mode_mean_sqrt_len_tokens {
                        return Err(EncoderError::Config { path, message: "max and mean-sqrt-len pooling are not supported".into() });
                    }
                    saw_pooling = true;
                }
                "Normalize" => layout.normalize = true,
                "Dense" => layout.dense = Some(dir.join(&module.path)),
                other => {
                    return Err(EncoderError::Config {
                        path: modules_path.clone(),
                        message: format!("sentence-transformers module \"{other}\" is not supported (Transformer, Pooling, Normalize, Dense)"),
                    })
                }
            }
        }
        if !saw_pooling {
            return Err(EncoderError::Config {
                path: modules_path,
                message: "no Pooling module".into(),
            });
        }
        let st_config = dir.join("sentence_bert_config.json");
        if st_config.is_file() {
            let value: serde_json::Value = read_json(&st_config)?;
            layout.max_seq_length = value
                .get("max_seq_length")
                .and_then(|v| v.as_u64())
                .map(|v| v as usize);
        }
        Ok(Some(layout))
    }
}

/// A `Dense` module with identity activation used as a classification head; its labels are
/// `id2label` in the folder's `config.json`.
fn load_dense_head(
    dense_dir: &Path,
    cfg: &EncoderConfig,
    dir: &Path,
    device: &Device,
) -> Result<(Head, Vec<String>), EncoderError> {
    let config_path = dense_dir.join("config.json");
    let dense: StDenseConfig = read_json(&config_path)?;
    if dense.activation_function != IDENTITY {
        return Err(EncoderError::Config {
            path: config_path,
            message: format!(
                "a Dense head must have activation {IDENTITY}, found {}",
                dense.activation_function
            ),
        });
    }
    if dense.in_features != cfg.hidden_size || !dense.bias {
        return Err(EncoderError::Config {
            path: config_path,
            message: format!(
                "expected in_features {} with a bias, found {} (bias {})",
                cfg.hidden_size, dense.in_features, dense.bias
            ),
        });
    }
    let labels = cfg.id2label.clone().ok_or_else(|| EncoderError::Config {
        path: dir.join("config.json"),
        message: "a sentence-transformers model with a Dense head needs id2label in config.json to name its outputs".into(),
    })?;
    if labels.len() != dense.out_features {
        return Err(EncoderError::Config {
            path: config_path,
            message: format!(
                "out_features {} does not match the {} labels of id2label",
                dense.out_features,
                labels.len()
            ),
        });
    }
    let weights = required(dense_dir, "model.safetensors")?;
    let weights_err = |e: candle_core::Error| EncoderError::Weights {
        path: weights.clone(),
        message: candle_message(&e),
    };
    check_safetensors(&weights)?;
    // SAFETY: as in `Encoder::load`, a read-only map copied out at load.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
        .map_err(weights_err)?;
    let linear = Linear::load(&vb.pp("linear"), dense.in_features, dense.out_features)
        .map_err(weights_err)?;
    Ok((Head::Linear(linear), labels))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, EncoderError> {
    let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| EncoderError::Config {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The longest input: the position table, capped by the tokenizer's `model_max_length` and a
/// sentence-transformers `max_seq_length`, as those libraries truncate.
fn max_tokens(
    dir: &Path,
    cfg: &EncoderConfig,
    st_max: Option<usize>,
) -> Result<usize, EncoderError> {
    let mut limit = cfg.max_tokens();
    let tok_cfg = dir.join("tokenizer_config.json");
    if tok_cfg.is_file() {
        let value: serde_json::Value = read_json(&tok_cfg)?;
        if let Some(n) = value.get("model_max_length").and_then(|v| v.as_f64()) {
            if (1.0..1e9).contains(&n) {
                limit = limit.min(n as usize);
            }
        }
    }
    if let Some(n) = st_max {
        limit = limit.min(n);
    }
    Ok(limit)
}

/// The tokenizer with taskbench's truncation and no padding: `tokenizer.json` may carry a
/// padding or truncation setting of its own (all-MiniLM-L6-v2 pads to 128), which
/// transformers also overrides per call.
fn load_tokenizer(path: &Path, max_tokens: usize) -> Result<Tokenizer, EncoderError> {
    let err = |message: String| EncoderError::Tokenizer {
        path: path.to_owned(),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| err(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            ..Default::default()
        }))
        .map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}

fn count_parameters(path: &Path) -> Option<usize> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only map of a file taskbench does not modify.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&map).ok()?;
    Some(
        meta.tensors()
            .values()
            .map(|t| t.shape.iter().product::<usize>())
            .sum(),
    )
}

fn describe_head(head: &Option<(Head, Vec<String>)>, st: bool) -> String {
    match head {
        None => "none".into(),
        Some((_, labels)) if st => format!("sentence-transformers Dense ({} labels)", labels.len()),
        Some((Head::Linear(_), labels)) => {
            format!("BERT pooler + classifier ({} labels)", labels.len())
        }
        Some((Head::DistilBert { .. }, labels)) => format!(
            "pre_classifier + ReLU + classifier ({} labels)",
            labels.len()
        ),
        Some((Head::Roberta { .. }, labels)) => {
            format!("dense + tanh + out_proj ({} labels)", labels.len())
        }
    }
}

fn describe_features(features: &Features) -> String {
    let base = match (features.pooling, features.pooler.is_some()) {
        (Pooling::Mean, _) => "mean",
        (Pooling::Cls, true) => "cls+pooler",
        (Pooling::Cls, false) => "cls",
    };
    if features.normalize {
        format!("{base}+normalize")
    } else {
        base.to_string()
    }
}
