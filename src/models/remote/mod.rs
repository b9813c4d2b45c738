//! Hosted chat APIs (OpenAI Chat Completions and every server that speaks it, Anthropic
//! Messages) as one client that taskbench can hold up against local models: the same
//! [`ChatRequest`] goes to either wire format, answers come back with token usage,
//! client-side timings (TTFT, inter-token latencies, total latency, measured as vLLM's
//! benchmark defines them) and, where the API gives them, every generated token's
//! log-probability with its top alternatives.
//!
//! [`run_all`] runs a batch: bounded concurrency, client-side RPM/TPM limits, `Retry-After`
//! and adaptive slow-down on 429, jittered retries on transient faults, a SQLite response
//! cache so reruns cost nothing, and a [`CancelToken`] for Ctrl-C. Every item ends in exactly
//! one [`ItemOutcome`], answered or failed with its error.
//!
//! The key lives in [`ApiKey`], which never prints; see `secret.rs` for what that covers.

mod anthropic;
mod cache;
mod client;
mod error;
mod limiter;
mod openai;
mod request;
mod retry;
mod runner;
mod secret;
mod spec;
mod sse;

pub use cache::{Cache, CacheError};
pub use client::{ApiClient, ClientOptions, Endpoint};
pub use error::{ApiError, ConfigError};
pub use limiter::RateLimits;
pub use request::{
    Answer, ChatRequest, GeneratedToken, Timing, TokenLogprob, Usage, MAX_TOP_LOGPROBS,
};
pub use retry::RetryPolicy;
pub use runner::{run_all, CacheMode, CancelToken, ItemError, ItemOutcome, RunOptions, RunSummary};
pub use secret::ApiKey;
pub use spec::{ModelSpec, Provider, SpecError};

/// Whether a model spec names a hosted API (`openai:MODEL`, `anthropic:MODEL`).
pub fn is_remote_spec(model: &str) -> bool {
    model.starts_with("openai:") || model.starts_with("anthropic:")
}
