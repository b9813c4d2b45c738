//! One request, one attempt: builds the body, sends it, reads the answer (streamed or whole)
//! and times it. Retries, rate limits and the cache belong to the runner, so this file stays
//! a plain translation between [`ChatRequest`] and the wire.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use crate::models::remote::error::{ApiError, ConfigError};
use crate::models::remote::request::{Answer, ChatRequest, GeneratedToken, Timing, Usage};
use crate::models::remote::retry::parse_retry_after;
use crate::models::remote::secret::ApiKey;
use crate::models::remote::spec::{ModelSpec, Provider};
use crate::models::remote::sse::SseDecoder;
use crate::models::remote::{anthropic, openai};

/// Error bodies are cut to this many characters: enough for the server's message, not a page.
const ERROR_BODY_CHARS: usize = 500;

/// Where a model lives and the key to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub spec: ModelSpec,
    /// Without a trailing `/`: `https://api.openai.com/v1`, `http://localhost:8000/v1`.
    pub base_url: String,
    key: Option<ApiKey>,
}

impl Endpoint {
    /// Everything explicit; `base_url` `None` means the provider's official API, which needs
    /// a key. A self-hosted OpenAI-compatible server usually needs none.
    pub fn new(
        spec: ModelSpec,
        base_url: Option<&str>,
        key: Option<ApiKey>,
    ) -> Result<Endpoint, ConfigError> {
        let base_url = base_url
            .unwrap_or(spec.provider.default_base_url())
            .trim_end_matches('/')
            .to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(ConfigError::BadBaseUrl(base_url));
        }
        if key.is_none() && base_url == spec.provider.default_base_url() {
            return Err(ConfigError::MissingKey {
                provider: spec.provider.as_str(),
                env: spec.provider.key_env(),
            });
        }
        Ok(Endpoint {
            spec,
            base_url,
            key,
        })
    }

    /// As the CLI resolves it: base URL from the option, else `OPENAI_BASE_URL` (OpenAI
    /// only), else the official one; key from the named file, else the provider's variable.
    pub fn resolve(
        spec: ModelSpec,
        base_url: Option<&str>,
        key_file: Option<&Path>,
    ) -> Result<Endpoint, ConfigError> {
        let env_url = spec
            .provider
            .base_url_env()
            .and_then(|v| std::env::var(v).ok());
        let base_url = base_url.map(str::to_string).or(env_url);
        let key = match key_file {
            Some(path) => Some(ApiKey::from_file(path)?),
            None => ApiKey::from_env(spec.provider.key_env()),
        };
        Endpoint::new(spec, base_url.as_deref(), key)
    }

    fn url(&self) -> String {
        match self.spec.provider {
            Provider::OpenAi => format!("{}/chat/completions", self.base_url),
            Provider::Anthropic => format!("{}/v1/messages", self.base_url),
        }
    }

    /// Auth and version headers; the key's value is marked sensitive so no HTTP-layer Debug
    /// output shows it.
    fn headers(&self) -> Result<HeaderMap, ConfigError> {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let auth = match (&self.key, self.spec.provider) {
            (None, _) => None,
            (Some(k), Provider::OpenAi) => {
                Some(("authorization", format!("Bearer {}", k.expose())))
            }
            (Some(k), Provider::Anthropic) => Some(("x-api-key", k.expose().to_string())),
        };
        if let Some((name, value)) = auth {
            let mut value = HeaderValue::from_str(&value).map_err(|_| ConfigError::BadKey)?;
            value.set_sensitive(true);
            h.insert(HeaderName::from_static(name), value);
        }
        if self.spec.provider == Provider::Anthropic {
            h.insert(
                "anthropic-version",
                HeaderValue::from_static(anthropic::VERSION),
            );
        }
        Ok(h)
    }
}

/// How each attempt is made.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Stream (SSE) so TTFT and inter-token latencies can be measured; on by default.
    pub stream: bool,
    /// Whole attempt, from sending to the last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            stream: true,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a response has said so far; the wire-format modules fill it.
#[derive(Debug, Default)]
pub(crate) struct Partial {
    pub text: String,
    pub usage: Option<Usage>,
    pub logprobs: Option<Vec<GeneratedToken>>,
    pub finish_reason: Option<String>,
    /// The end marker (`[DONE]`, `message_stop`, or a whole non-streamed body) was seen.
    pub done: bool,
}

impl Partial {
    fn into_answer(self, timing: Timing) -> Answer {
        Answer {
            text: self.text,
            usage: self.usage,
            logprobs: self.logprobs,
            finish_reason: self.finish_reason,
            timing,
            from_cache: false,
        }
    }
}

/// A client for one model. Cheap to share behind an `Arc`; the HTTP pool is inside.
#[derive(Debug)]
pub struct ApiClient {
    endpoint: Endpoint,
    options: ClientOptions,
    url: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(endpoint: Endpoint, options: ClientOptions) -> Result<ApiClient, ConfigError> {
        let http = reqwest::Client::builder()
            .default_headers(endpoint.headers()?)
            .connect_timeout(options.connect_timeout)
            // Idle keep-alive connections: enough for high concurrency without reconnecting.
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(ConfigError::Http)?;
        let url = endpoint.url();
        Ok(ApiClient {
            endpoint,
            options,
            url,
            http,
        })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The exact bytes this client sends for `req`.
    pub fn body(&self, req: &ChatRequest) -> Vec<u8> {
        req.body(
            self.endpoint.spec.provider,
            &self.endpoint.spec.model,
            self.options.stream,
        )
    }

    /// One attempt, no retries, no cache.
    pub async fn send(&self, req: &ChatRequest) -> Result<Answer, ApiError> {
        self.send_body(self.body(req)).await
    }

    pub(crate) async fn send_body(&self, body: Vec<u8>) -> Result<Answer, ApiError> {
        let timeout = self.options.timeout;
        tokio::time::timeout(timeout, self.attempt(body))
            .await
            .unwrap_or(Err(ApiError::Timeout(timeout)))
    }

    async fn attempt(&self, body: Vec<u8>) -> Result<Answer, ApiError> {
        let start = Instant::now();
        let resp = self
            .http
            .post(&self.url)
            .body(body)
            .send()
            .await
            .map_err(ApiError::Transport)?;
        if !resp.status().is_success() {
            return Err(self.status_error(resp).await);
        }
        if self.options.stream {
            self.read_stream(resp, start).await
        } else {
            let bytes = resp.bytes().await.map_err(ApiError::Transport)?;
            let partial = match self.endpoint.spec.provider {
                Provider::OpenAi => openai::parse_response(&bytes)?,
                Provider::Anthropic => anthropic::parse_response(&bytes)?,
            };
            let timing = Timing {
                latency: start.elapsed(),
                ..Timing::default()
            };
            Ok(partial.into_answer(timing))
        }
    }

    /// Reads SSE to the end marker, timing every chunk that carries content.
    async fn read_stream(
        &self,
        mut resp: reqwest::Response,
        start: Instant,
    ) -> Result<Answer, ApiError> {
        let provider = self.endpoint.spec.provider;
        let mut decoder = SseDecoder::default();
        let mut acc = Partial::default();
        let mut timing = Timing::default();
        let mut last_content: Option<Instant> = None;
        let mut events = 0;
        while !acc.done {
            let Some(chunk) = resp.chunk().await.map_err(ApiError::Transport)? else {
                break;
            };
            for ev in decoder.push(&chunk) {
                events += 1;
                let added = match provider {
                    Provider::OpenAi => openai::apply_event(&mut acc, &ev)?,
                    Provider::Anthropic => anthropic::apply_event(&mut acc, &ev)?,
                };
                if added > 0 {
                    let now = Instant::now();
                    match last_content {
                        None => timing.ttft = Some(now - start),
                        Some(prev) => timing.itl.push(now - prev),
                    }
                    last_content = Some(now);
                }
                if acc.done {
                    break;
                }
            }
        }
        if !acc.done {
            let expected = match provider {
                Provider::OpenAi => "data: [DONE]",
                Provider::Anthropic => "message_stop",
            };
            return Err(ApiError::StreamCut { expected, events });
        }
        timing.latency = start.elapsed();
        drain(resp).await;
        Ok(acc.into_answer(timing))
    }

    /// Turns an error status into [`ApiError::Status`]: body cut short and scrubbed of the
    /// key (some servers echo the key they rejected), `Retry-After` parsed.
    async fn status_error(&self, resp: reqwest::Response) -> ApiError {
        let status = resp.status().as_u16();
        let retry_after = parse_retry_after(resp.headers(), std::time::SystemTime::now());
        let raw = resp.text().await.unwrap_or_default();
        let scrubbed = match &self.endpoint.key {
            Some(k) => k.scrub(&raw),
            None => raw,
        };
        let mut body: String = scrubbed.chars().take(ERROR_BODY_CHARS).collect();
        if body.len() < scrubbed.len() {
            body.push('…');
        }
        ApiError::Status {
            status,
            body,
            retry_after,
        }
    }
}

/// Reads what follows the end marker (usually just the chunked terminator) so the connection
/// goes back to the pool; a server that keeps it open past this is not waited for.
async fn drain(mut resp: reqwest::Response) {
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
    .await;
}
