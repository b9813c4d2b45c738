//! The provider-neutral request and answer. A [`ChatRequest`] becomes an exact, byte-stable
//! JSON body per wire format (`openai.rs`, `anthropic.rs`): the cache key hashes those bytes,
//! so the same request must always serialize the same way (fields are typed structs in a fixed
//! order, never maps).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::models::remote::spec::Provider;
use crate::models::Message;

/// The most alternatives per token OpenAI returns (`top_logprobs` is 0 to 20).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One chat to send.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub max_tokens: u32,
    /// `None` leaves the provider's default (some reasoning models accept no other value).
    pub temperature: Option<f32>,
    /// OpenAI-compatible only; Anthropic has no seed and it is left out of that body.
    pub seed: Option<u64>,
    /// Ask for each generated token's log-probability and its top-N alternatives
    /// (OpenAI-compatible only; Anthropic returns none and the answer's `logprobs` stays
    /// `None`).
    pub logprobs: Option<usize>,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>, max_tokens: u32) -> ChatRequest {
        ChatRequest {
            messages,
            max_tokens,
            temperature: Some(0.0),
            seed: None,
            logprobs: None,
        }
    }

    /// The exact body for `provider`; the cache key hashes these bytes.
    pub fn body(&self, provider: Provider, model: &str, stream: bool) -> Vec<u8> {
        match provider {
            Provider::OpenAi => crate::models::remote::openai::body(self, model, stream),
            Provider::Anthropic => crate::models::remote::anthropic::body(self, model, stream),
        }
    }

    /// What the request may count against a tokens-per-minute limit before the answer says
    /// the truth: ~4 characters per prompt token plus the whole completion budget, which is
    /// how OpenAI itself estimates it.
    pub fn estimated_tokens(&self) -> u64 {
        let chars: usize = self.messages.iter().map(|m| m.content.len()).sum();
        (chars as u64).div_ceil(4) + u64::from(self.max_tokens)
    }
}

/// Tokens as the API counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A token and its log-probability (natural log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f64,
}

/// One generated token as the API reported it: the token chosen, and the most likely
/// tokens at that position (which usually include the chosen one), most likely first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedToken {
    pub token: String,
    pub logprob: f64,
    pub top_logprobs: Vec<TokenLogprob>,
}

/// Client-side timings of one answer, as vLLM's serving benchmark defines them: TTFT from
/// sending the request to the first chunk carrying content, ITL between consecutive content
/// chunks, latency to the end of the response. Non-streaming answers have only `latency`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timing {
    pub ttft: Option<Duration>,
    pub itl: Vec<Duration>,
    pub latency: Duration,
}

/// A finished answer, fresh or from the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    /// `None` when the server reported no usage (some OpenAI-compatible servers don't).
    pub usage: Option<Usage>,
    /// Every generated token with its alternatives, in order; `None` when not asked for
    /// or the server gave none (Anthropic never does).
    pub logprobs: Option<Vec<GeneratedToken>>,
    pub finish_reason: Option<String>,
    /// As measured when the answer was fetched; for cached answers that is the original run,
    /// which is why [`Answer::from_cache`] exists: keep those out of latency statistics.
    pub timing: Timing,
    pub from_cache: bool,
}
