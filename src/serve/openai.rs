//! The OpenAI Chat Completions wire format as the server speaks it: the request fields
//! taskbench honours, the response, the streamed chunks and the error body.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

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
}

impl ChatCompletionRequest {
    /// Tokens to generate at most: the request's limit, else 256.
    pub fn max_new_tokens(&self) -> usize {
        self.max_completion_tokens
            .or(self.max_tokens)
            .unwrap_or(256)
            .max(1)
    }
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
    finish_reason: String,
}

impl ChatCompletion {
    pub fn new(
        id: String,
        created: u64,
        model: &str,
        text: String,
        finish_reason: String,
        usage: Usage,
    ) -> Self {
        ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: model.to_string(),
            choices: vec![Choice {
                index: 0,
                message: Message::assistant(text),
                finish_reason,
            }],
            usage,
        }
    }
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
    pub fn new(id: &str, created: u64, model: &str, delta: Delta, finish: Option<String>) -> Self {
        ChatCompletionChunk {
            id: id.to_string(),
            object: "chat.completion.chunk",
            created,
            model: model.to_string(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
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
