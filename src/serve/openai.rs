//! The OpenAI Chat Completions wire format as the server speaks it: the request fields
//! taskbench honours, the response, the streamed chunks and the error body.
//!
//! `logprobs: true` (with `top_logprobs` 0 to 20) returns each generated token's
//! log-probability under the model (its logits before temperature) and the most likely
//! tokens at that position, in `choices[0].logprobs.content`: the whole answer's in a
//! response, each chunk's own tokens in a stream. The optional `bytes` field is left out.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::models::remote::MAX_TOP_LOGPROBS;
use crate::models::Message;

#[derive(Debug, Clone, Deserialize)]
pub struct ChatCompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<usize>,
}

impl ChatCompletionRequest {
    /// Tokens to generate at most: the request's limit, else 256.
    pub fn max_new_tokens(&self) -> usize {
        self.max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(256)
            .max(1)
    }

    /// How many alternatives per token to return, `None` when log-probabilities were not
    /// asked for; an error (for a 400) on the combinations OpenAI rejects too.
    pub fn top_logprobs(&self) -> Result<Option<usize>, String> {
        match (self.logprobs.unwrap_or(false), self.top_logprobs) {
            (_, Some(n)) if n > MAX_TOP_LOGPROBS => Err(format!(
                "top_logprobs {n}: expected 0 to {MAX_TOP_LOGPROBS}"
            )),
            (false, Some(_)) => Err("top_logprobs needs logprobs: true".into()),
            (false, None) => Ok(None),
            (true, n) => Ok(Some(n.unwrap_or(0))),
        }
    }
}

/// One generated token: its text, its log-probability and the most likely tokens at its
/// position (OpenAI's `logprobs.content[i]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprobs {
    pub token: String,
    pub logprob: f32,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
}

/// `choices[i].logprobs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logprobs {
    pub content: Vec<TokenLogprobs>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ChatCompletion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    usage: Usage,
}

#[derive(Debug, Serialize)]
struct Choice {
    index: usize,
    message: Message,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Logprobs>,
    finish_reason: String,
}

impl ChatCompletion {
    pub fn new(id: String, created: u64, model: &str, answer: Answered, usage: Usage) -> Self {
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: model.to_string(),
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(answer.text),
                logprobs: answer.logprobs.map(|content| Logprobs { content }),
                finish_reason: answer.finish_reason,
            }],
            usage,
        }
    }
}

/// A finished generation as a whole response reports it.
#[derive(Debug, Default)]
pub struct Answered {
    pub text: String,
    /// `Some` when log-probabilities were asked for.
    pub logprobs: Option<Vec<TokenLogprobs>>,
    pub finish_reason: String,
}

#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    choices: Vec<ChunkChoice>,
}

#[derive(Debug, Serialize)]
struct ChunkChoice {
    index: usize,
    delta: Delta,
    /// The tokens this chunk's content came from, when log-probabilities were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Logprobs>,
    finish_reason: Option<String>,
}

/// What one chunk adds: the role first, then content pieces.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

impl Delta {
    pub fn role() -> Self {
        Delta {
            role: Some("assistant"),
            content: None,
        }
    }

    pub fn content(text: String) -> Self {
        Delta {
            role: None,
            content: Some(text),
        }
    }
}

impl ChatCompletionChunk {
    pub fn new(
        id: &str,
        created: u64,
        model: &str,
        delta: Delta,
        logprobs: Option<Vec<TokenLogprobs>>,
        finish: Option<String>,
    ) -> Self {
        ChatCompletionChunk {
            id: id.to_string(),
            object: "chat.completion.chunk",
            created,
            model: model.to_string(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: logprobs.map(|content| Logprobs { content }),
                finish_reason: finish,
            }],
        }
    }
}

/// The last chunk of a stream with `stream_options.include_usage`: no choices, the usage.
#[derive(Debug, Serialize)]
pub struct UsageChunk {
    object: &'static str,
    choices: [(); 0],
    usage: Usage,
}

impl UsageChunk {
    pub fn new(usage: Usage) -> Self {
        UsageChunk {
            object: "chat.completion.chunk",
            choices: [],
            usage,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ModelList {
    object: &'static str,
    data: Vec<ModelEntry>,
}

#[derive(Debug, Serialize)]
struct ModelEntry {
    id: String,
    object: &'static str,
    owned_by: &'static str,
}

impl ModelList {
    pub fn one(name: &str) -> Self {
        ModelList {
            object: "list",
            data: vec![ModelEntry {
                id: name.to_string(),
                object: "model",
                owned_by: "taskbench",
            }],
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Serialize)]
struct ErrorDetail {
    message: String,
    r#type: &'static str,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, status: StatusCode) -> Self {
        ErrorBody {
            error: ErrorDetail {
                message: message.into(),
                r#type: if status.is_server_error() {
                    "server_error"
                } else {
                    "invalid_request_error"
                },
            },
        }
    }
}

/// `chatcmpl-` and a number unique within this process.
pub fn completion_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("chatcmpl-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
