//! What turns token states into label scores: the pooling a checkpoint was trained with and
//! the head on top, in each of the layouts taskbench reads and writes.
//!
//! - HF `...ForSequenceClassification` heads, exactly as transformers computes them.
//! - A sentence-transformers folder (`modules.json`): `Pooling` (mean or CLS), an optional
//!   `Normalize`, then a `Dense` module with identity activation holding the head; this is
//!   the layout `taskbench train --head-only` writes for mean-pooled features.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::config::{EncoderConfig, Family};
use super::transformer::{l2_normalize, mean_pool, Linear, PackedBatch};

/// How a sequence of token states becomes one feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The first token's state, through the family's pooler when it has one (BERT's
    /// `pooler.dense` + tanh); what HF sequence-classification heads read.
    Cls,
    /// The mean over the sequence's real tokens; what sentence-transformers models such as
    /// all-MiniLM-L6-v2 are trained for.
    Mean,
}

/// The feature extractor in front of a head (or of head-only training).
pub struct Features {
    pub pooling: Pooling,
    /// BERT's pooler (dense + tanh) applied after CLS pooling, when the checkpoint has it.
    pub pooler: Option<Linear>,
    /// L2-normalise after pooling (sentence-transformers `Normalize`).
    pub normalize: bool,
}

impl Features {
    pub fn apply(&self, hidden: &Tensor, batch: &PackedBatch) -> Result<Tensor> {
        let pooled = match self.pooling {
            Pooling::Mean => mean_pool(hidden, &batch.seq_lens)?,
            Pooling::Cls => {
                let rows = Tensor::new(batch.first_token_rows(), hidden.device())?;
                let cls = hidden.index_select(&rows, 0)?;
                match &self.pooler {
                    Some(pooler) => pooler.forward(&cls)?.tanh()?,
                    None => cls,
                }
            }
        };
        if self.normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

/// The layers between the pooled features and the logits.
pub enum Head {
    /// BERT: `classifier` on the pooler output (the pooler lives in [`Features`]).
    Linear(Linear),
    /// DistilBERT: `pre_classifier` -> ReLU -> `classifier`.
    DistilBert {
        pre_classifier: Linear,
        classifier: Linear,
    },
    /// RoBERTa / XLM-R: `classifier.dense` -> tanh -> `classifier.out_proj`.
    Roberta { dense: Linear, out_proj: Linear },
}

impl Head {
    /// Loads the HF head of a `...ForSequenceClassification` checkpoint (`vb` at the root).
    pub fn load_hf(vb: &VarBuilder, cfg: &EncoderConfig, num_labels: usize) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(match cfg.family {
            Family::Bert => Head::Linear(Linear::load(&vb.pp("classifier"), h, num_labels)?),
            Family::DistilBert => Head::DistilBert {
                pre_classifier: Linear::load(&vb.pp("pre_classifier"), h, h)?,
                classifier: Linear::load(&vb.pp("classifier"), h, num_labels)?,
            },
            Family::Roberta => Head::Roberta {
                dense: Linear::load(&vb.pp("classifier.dense"), h, h)?,
                out_proj: Linear::load(&vb.pp("classifier.out_proj"), h, num_labels)?,
            },
        })
    }

    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        match self {
            Head::Linear(linear) => linear.forward(features),
            Head::DistilBert {
                pre_classifier,
                classifier,
            } => classifier.forward(&pre_classifier.forward(features)?.relu()?),
            Head::Roberta { dense, out_proj } => {
                out_proj.forward(&dense.forward(features)?.tanh()?)
            }
        }
    }
}

/// `modules.json` of a sentence-transformers folder.
#[derive(Debug, Deserialize)]
pub struct StModule {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// `1_Pooling/config.json`.
#[derive(Debug, Deserialize)]
pub struct StPoolingConfig {
    #[serde(default)]
    pub pooling_mode_cls_token: bool,
    #[serde(default)]
    pub pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pub pooling_mode_max_tokens: bool,
    #[serde(default)]
    pub pooling_mode_mean_sqrt_len_tokens: bool,
}

/// `N_Dense/config.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StDenseConfig {
    pub in_features: usize,
    pub out_features: usize,
    #[serde(default = "yes")]
    pub bias: bool,
    #[serde(default = "identity")]
    pub activation_function: String,
}

fn yes() -> bool {
    true
}

pub const IDENTITY: &str = "torch.nn.modules.linear.Identity";

fn identity() -> String {
    IDENTITY.to_string()
}
