//! The encoder's `config.json`, read for the three families taskbench runs, and turned into
//! one shape that the transformer code follows.
//!
//! BERT (MiniLM, TinyBERT) and RoBERTa / XLM-R share HF's BERT names (`hidden_size`,
//! `num_hidden_layers`, ...); DistilBERT uses its own (`dim`, `n_layers`, `hidden_dim`). All are
//! post-LayerNorm transformers, so one implementation serves them once the names are mapped.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

use super::EncoderError;

/// The model families with the head each one's HF `...ForSequenceClassification` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `BertForSequenceClassification`: pooler (dense + tanh on [CLS]) then `classifier`.
    Bert,
    /// `DistilBertForSequenceClassification`: [CLS] -> `pre_classifier` -> ReLU -> `classifier`.
    DistilBert,
    /// `RobertaForSequenceClassification` / XLM-R: [CLS] -> dense -> tanh -> `out_proj`;
    /// position ids start at `padding_idx + 1`.
    Roberta,
}

impl Family {
    pub const SUPPORTED: &'static str = "BertForSequenceClassification, BertModel, \
        DistilBertForSequenceClassification, DistilBertModel, RobertaForSequenceClassification, \
        RobertaModel, XLMRobertaForSequenceClassification, XLMRobertaModel";

    /// The prefix HF puts before backbone tensors in a model with a head (`bert.`, ...).
    pub fn backbone_prefix(self, model_type: &str) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::DistilBert => "distilbert",
            Family::Roberta if model_type == "xlm-roberta" => "roberta",
            Family::Roberta => "roberta",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// HF's `"gelu"`: the exact erf form.
    GeluErf,
    /// HF's `"gelu_new"` / `"gelu_pytorch_tanh"`: the tanh approximation.
    GeluTanh,
    Relu,
}

/// What the transformer code needs, whatever the family's own names were.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncoderConfig {
    pub family: Family,
    pub model_type: String,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub activation: Activation,
    pub max_position_embeddings: usize,
    /// 0 for DistilBERT, which has no token-type embeddings.
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    pub pad_token_id: u32,
    /// Labels in id order, when the checkpoint has a classification head.
    pub id2label: Option<Vec<String>>,
    /// Dropout on hidden states (embeddings, after each block's projections).
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attention_dropout: f32,
    /// Dropout before the classification head.
    pub classifier_dropout: f32,
    /// Standard deviation of the normal init HF uses for new weights (a new head).
    pub initializer_range: f64,
}

impl EncoderConfig {
    /// The first position id of a sequence: RoBERTa counts from `padding_idx + 1`.
    pub fn position_offset(&self) -> usize {
        match self.family {
            Family::Roberta => self.pad_token_id as usize + 1,
            _ => 0,
        }
    }

    /// The longest input the position table allows.
    pub fn max_tokens(&self) -> usize {
        self.max_position_embeddings - self.position_offset()
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    pub fn from_file(path: &Path) -> Result<Self, EncoderError> {
        let text = std::fs::read_to_string(path).map_err(|source| EncoderError::Io {
            path: path.to_owned(),
            source,
        })?;
        let raw: RawConfig =
            serde_json::from_str(&text).map_err(|source| EncoderError::Config {
                path: path.to_owned(),
                message: source.to_string(),
            })?;
        raw.into_config(path)
    }
}

/// `config.json` as HF writes it, with both naming schemes optional.
#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    // BERT / RoBERTa names
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    hidden_act: Option<String>,
    type_vocab_size: Option<usize>,
    layer_norm_eps: Option<f64>,
    position_embedding_type: Option<String>,
    // DistilBERT names
    dim: Option<usize>,
    n_layers: Option<usize>,
    n_heads: Option<usize>,
    hidden_dim: Option<usize>,
    activation: Option<String>,
    #[serde(default)]
    sinusoidal_pos_embds: bool,
    // shared
    max_position_embeddings: Option<usize>,
    pad_token_id: Option<u32>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    // dropout, both naming schemes
    hidden_dropout_prob: Option<f32>,
    attention_probs_dropout_prob: Option<f32>,
    classifier_dropout: Option<f32>,
    dropout: Option<f32>,
    attention_dropout: Option<f32>,
    seq_classif_dropout: Option<f32>,
    initializer_range: Option<f64>,
}

impl RawConfig {
    fn into_config(self, path: &Path) -> Result<EncoderConfig, EncoderError> {
        let bad = |message: String| EncoderError::Config {
            path: path.to_owned(),
            message,
        };
        let architecture = self
            .architectures
            .as_ref()
            .and_then(|a| a.first().cloned())
            .unwrap_or_default();
        let model_type = self.model_type.clone().unwrap_or_default();
        let family =
            family_of(&model_type, &architecture).ok_or_else(|| EncoderError::Unsupported {
                path: path.to_owned(),
                found: if architecture.is_empty() {
                    model_type.clone()
                } else {
                    architecture.clone()
                },
            })?;
        if let Some(kind) = &self.position_embedding_type {
            if kind != "absolute" {
                return Err(bad(format!(
                    "position_embedding_type \"{kind}\" is not supported (only \"absolute\")"
                )));
            }
        }
        if self.sinusoidal_pos_embds {
            return Err(bad("sinusoidal_pos_embds = true is not supported".into()));
        }
        let need =
            |v: Option<usize>, name: &str| v.ok_or_else(|| bad(format!("missing field `{name}`")));
        let is_distil = family == Family::DistilBert;
        let (hidden, layers, heads, inter, act) = if is_distil {
            (
                need(self.dim, "dim")?,
                need(self.n_layers, "n_layers")?,
                need(self.n_heads, "n_heads")?,
                need(self.hidden_dim, "hidden_dim")?,
                self.activation.clone().unwrap_or_else(|| "gelu".into()),
            )
        } else {
            (
                need(self.hidden_size, "hidden_size")?,
                need(self.num_hidden_layers, "num_hidden_layers")?,
                need(self.num_attention_heads, "num_attention_heads")?,
                need(self.intermediate_size, "intermediate_size")?,
                self.hidden_act.clone().unwrap_or_else(|| "gelu".into()),
            )
        };
        if heads == 0 || hidden % heads != 0 {
            return Err(bad(format!(
                "hidden size {hidden} is not a multiple of {heads} heads"
            )));
        }
        let activation = match act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(bad(format!(
                    "activation \"{other}\" is not supported (gelu, gelu_new, relu)"
                )))
            }
        };
        let pad_token_id =
            self.pad_token_id
                .unwrap_or(if family == Family::Roberta { 1 } else { 0 });
        let max_position_embeddings =
            need(self.max_position_embeddings, "max_position_embeddings")?;
        let config = EncoderConfig {
            family,
            model_type,
            architecture,
            vocab_size: need(self.vocab_size, "vocab_size")?,
            hidden_size: hidden,
            num_layers: layers,
            num_heads: heads,
            intermediate_size: inter,
            activation,
            max_position_embeddings,
            type_vocab_size: if is_distil {
                0
            } else {
                self.type_vocab_size.unwrap_or(2)
            },
            layer_norm_eps: if is_distil {
                1e-12
            } else {
                self.layer_norm_eps.unwrap_or(1e-12)
            },
            pad_token_id,
            id2label: self
                .id2label
                .clone()
                .map(|m| labels_in_id_order(m, path))
                .transpose()?,
            hidden_dropout: if is_distil {
                self.dropout.unwrap_or(0.1)
            } else {
                self.hidden_dropout_prob.unwrap_or(0.1)
            },
            attention_dropout: if is_distil {
                self.attention_dropout.unwrap_or(0.1)
            } else {
                self.attention_probs_dropout_prob.unwrap_or(0.1)
            },
            classifier_dropout: if is_distil {
                self.seq_classif_dropout.unwrap_or(0.2)
            } else {
                self.classifier_dropout
                    .or(self.hidden_dropout_prob)
                    .unwrap_or(0.1)
            },
            initializer_range: self.initializer_range.unwrap_or(0.02),
        };
        if config.max_position_embeddings <= config.position_offset() {
            return Err(bad(
                "max_position_embeddings is smaller than the position offset".into(),
            ));
        }
        Ok(config)
    }
}

fn family_of(model_type: &str, architecture: &str) -> Option<Family> {
    let by_arch = match architecture {
        "BertForSequenceClassification"
        | "BertModel"
        | "BertForMaskedLM"
        | "BertForPreTraining" => Some(Family::Bert),
        "DistilBertForSequenceClassification" | "DistilBertModel" | "DistilBertForMaskedLM" => {
            Some(Family::DistilBert)
        }
        "RobertaForSequenceClassification"
        | "RobertaModel"
        | "RobertaForMaskedLM"
        | "XLMRobertaForSequenceClassification"
        | "XLMRobertaModel"
        | "XLMRobertaForMaskedLM" => Some(Family::Roberta),
        "" => None,
        _ => return None,
    };
    by_arch.or(match model_type {
        "bert" => Some(Family::Bert),
        "distilbert" => Some(Family::DistilBert),
        "roberta" | "xlm-roberta" => Some(Family::Roberta),
        _ => None,
    })
}

/// HF writes `id2label` as a JSON object keyed by the id as a string.
fn labels_in_id_order(
    map: BTreeMap<String, String>,
    path: &Path,
) -> Result<Vec<String>, EncoderError> {
    let mut pairs = Vec::with_capacity(map.len());
    for (id, label) in map {
        let id: usize = id.parse().map_err(|_| EncoderError::Config {
            path: path.to_owned(),
            message: format!("id2label key \"{id}\" is not an integer"),
        })?;
        pairs.push((id, label));
    }
    pairs.sort();
    for (expected, (id, _)) in pairs.iter().enumerate() {
        if *id != expected {
            return Err(EncoderError::Config {
                path: path.to_owned(),
                message: format!("id2label ids must be 0..{}, found {id}", pairs.len()),
            });
        }
    }
    Ok(pairs.into_iter().map(|(_, l)| l).collect())
}
