//! `provider:model` strings as the user writes them on the command line. Parsing is kept
//! apart from the client so a bad spec fails while arguments are checked, before any key is
//! read or any request is sent.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// Which wire format a model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// OpenAI Chat Completions, also spoken by vLLM, TGI, Ollama, llama.cpp server, LiteLLM.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
}

impl Provider {
    /// The prefix used in model specs and in cache keys; changing it invalidates caches.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Provider::OpenAi => "https://api.openai.com/v1",
            Provider::Anthropic => "https://api.anthropic.com",
        }
    }

    /// Where the key comes from when the user names no key file.
    pub fn key_env(self) -> &'static str {
        match self {
            Provider::OpenAi => "OPENAI_API_KEY",
            Provider::Anthropic => "ANTHROPIC_API_KEY",
        }
    }

    /// Where a base URL comes from when the user passes none. Anthropic has no such
    /// convention that tools agree on, so only OpenAI's is honoured.
    pub fn base_url_env(self) -> Option<&'static str> {
        match self {
            Provider::OpenAi => Some("OPENAI_BASE_URL"),
            Provider::Anthropic => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hosted model: `openai:gpt-4o-mini`, `anthropic:claude-3-5-haiku-latest`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    pub provider: Provider,
    /// The model name exactly as the API wants it; may itself contain `:` or `/`
    /// (`openai:llama3.1:8b` for Ollama, `openai:meta-llama/Llama-3.1-8B` for vLLM).
    pub model: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("model spec '{0}' has no provider (format is provider:model, e.g. openai:gpt-4o-mini or anthropic:claude-3-5-haiku-latest)")]
    MissingProvider(String),
    #[error("unknown provider '{provider}' in '{spec}' (known: openai, anthropic; any OpenAI-compatible server is openai:MODEL with a base URL)")]
    UnknownProvider { spec: String, provider: String },
    #[error("model spec '{0}' names no model after the ':' (e.g. openai:gpt-4o-mini)")]
    MissingModel(String),
}

impl ModelSpec {
    pub fn parse(spec: &str) -> Result<ModelSpec, SpecError> {
        let (provider, model) = spec
            .split_once(':')
            .ok_or_else(|| SpecError::MissingProvider(spec.to_string()))?;
        let provider = match provider.trim().to_ascii_lowercase().as_str() {
            "openai" => Provider::OpenAi,
            "anthropic" => Provider::Anthropic,
            _ => {
                return Err(SpecError::UnknownProvider {
                    spec: spec.to_string(),
                    provider: provider.to_string(),
                })
            }
        };
        let model = model.trim();
        if model.is_empty() {
            return Err(SpecError::MissingModel(spec.to_string()));
        }
        Ok(ModelSpec {
            provider,
            model: model.to_string(),
        })
    }
}

impl FromStr for ModelSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelSpec::parse(s)
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_providers_and_keeps_colons_in_model() {
        let s = ModelSpec::parse("openai:gpt-4o-mini").unwrap();
        assert_eq!(
            (s.provider, s.model.as_str()),
            (Provider::OpenAi, "gpt-4o-mini")
        );
        let s = ModelSpec::parse("openai:llama3.1:8b").unwrap();
        assert_eq!(s.model, "llama3.1:8b");
        let s: ModelSpec = "Anthropic:claude-3-5-haiku-latest".parse().unwrap();
        assert_eq!(s.provider, Provider::Anthropic);
        assert_eq!(s.to_string(), "anthropic:claude-3-5-haiku-latest");
    }

    #[test]
    fn errors_say_the_format() {
        let e = ModelSpec::parse("gpt-4o").unwrap_err();
        assert!(e.to_string().contains("provider:model"), "{e}");
        let e = ModelSpec::parse("gemini:pro").unwrap_err();
        assert!(matches!(e, SpecError::UnknownProvider { .. }), "{e}");
        assert!(e.to_string().contains("known: openai, anthropic"));
        assert_eq!(
            ModelSpec::parse("openai: ").unwrap_err(),
            SpecError::MissingModel("openai: ".into())
        );
    }
}
