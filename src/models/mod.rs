//! Model backends behind small traits that know nothing heavy: the runtime, metrics and
//! reports see [`Classifier`] and plain data, never candle.
//!
//! Backends: [`encoder`] (BERT / DistilBERT / RoBERTa classifiers on candle). Causal LMs and
//! remote APIs implement the same trait.

pub mod causal;
pub mod device;
pub mod encoder;
pub mod remote;
pub mod resolve;

use serde::{Deserialize, Serialize};

/// One text after tokenization, as the model will see it.
#[derive(Debug, Clone)]
pub struct TokenizedText {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    /// The token count before truncation, when the text was cut to the model's limit.
    pub truncated_from: Option<usize>,
}

impl TokenizedText {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// One turn of a chat, as chat templates and chat APIs take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// What a report says about a model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelInfo {
    /// What the user passed (`models/x`, `hf:org/name@rev`).
    pub name: String,
    pub path: String,
    pub backend: String,
    pub architecture: String,
    pub head: String,
    pub pooling: String,
    pub num_labels: usize,
    pub max_tokens: usize,
    pub parameters: usize,
    pub weights_sha256: String,
    pub device: String,
    /// The encoder's matrix-product precision (`fp32`, `int8`); absent for other models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

/// A model that gives a probability per label for each text of a batch.
pub trait Classifier {
    /// Labels in the order of the probabilities.
    fn labels(&self) -> &[String];

    /// Tokenizes as the model's own tokenizer does, truncated to the model's limit.
    fn tokenize(&self, texts: &[&str]) -> anyhow::Result<Vec<TokenizedText>>;

    /// Probabilities per label for each item, in the order given. Items of any lengths may
    /// share a batch; the result for an item does not depend on its batch mates.
    fn classify(&self, batch: &[&TokenizedText]) -> anyhow::Result<Vec<Vec<f32>>>;

    fn info(&self) -> &ModelInfo;
}
