//! What can go wrong talking to a hosted API, and whether trying again can help. The retry
//! decision lives on the error ([`ApiError::is_retryable`]) so the runner, the tests and a
//! reader all see one rule: transient faults retry, a bad request fails at once.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// Setting up a client: key, base URL, HTTP stack.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{provider} needs an API key: set {env} or pass a key file (--api-key-file PATH)")]
    MissingKey {
        provider: &'static str,
        env: &'static str,
    },
    #[error("cannot read the API key file {path}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API key file {0} is empty")]
    EmptyKeyFile(PathBuf),
    #[error("base URL '{0}' must start with http:// or https:// (e.g. http://localhost:8000/v1 for vLLM)")]
    BadBaseUrl(String),
    #[error("the API key contains characters that cannot go in an HTTP header (check the key file for stray quotes or spaces)")]
    BadKey,
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

/// One attempt at one request.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The server answered with an error status; `body` is truncated and scrubbed of the key.
    #[error("HTTP {status}: {body}")]
    Status {
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "no complete answer within {0:?} (raise the per-request timeout for long generations)"
    )]
    Timeout(Duration),
    #[error("connection failed")]
    Transport(#[source] reqwest::Error),
    #[error("the stream ended before its end marker ({expected}) after {events} event(s)")]
    StreamCut {
        expected: &'static str,
        events: usize,
    },
    /// A 200 whose body or stream event is not the JSON the wire format promises.
    #[error("malformed response: {what}")]
    Malformed {
        what: String,
        #[source]
        source: Option<serde_json::Error>,
    },
    /// An error the server reported inside a 200 stream (Anthropic `error` events,
    /// OpenAI-compatible servers that send `{"error": ...}` chunks).
    #[error("the server reported an error mid-stream: {0}")]
    StreamError(String),
    #[error("cancelled before an answer came")]
    Cancelled,
}

impl ApiError {
    /// 408, 429, 5xx, timeouts, broken connections, cut or garbled streams may pass; any other
    /// 4xx is a bad request, key or model name, and sending it again will not fix it.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Status { status, .. } => matches!(status, 408 | 429) || *status >= 500,
            ApiError::Timeout(_)
            | ApiError::Transport(_)
            | ApiError::StreamCut { .. }
            | ApiError::Malformed { .. }
            | ApiError::StreamError(_) => true,
            ApiError::Cancelled => false,
        }
    }

    /// A 429: the runner slows everyone down, not only this item.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, ApiError::Status { status: 429, .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, source: serde_json::Error) -> ApiError {
        ApiError::Malformed {
            what: what.into(),
            source: Some(source),
        }
    }
}
