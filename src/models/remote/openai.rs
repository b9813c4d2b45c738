//! The OpenAI Chat Completions wire format, which vLLM, TGI, Ollama, llama.cpp server and
//! LiteLLM also speak: request body, the non-streaming response, and streamed chunks
//! (`choices[0].delta.content`, a final usage chunk from `stream_options.include_usage`,
//! then `data: [DONE]`).

use serde::{Deserialize, Serialize};

use crate::models::remote::client::Partial;
use crate::models::remote::error::ApiError;
use crate::models::remote::request::{ChatRequest, TokenLogprob, Usage};
use crate::models::remote::sse::SseEvent;
use crate::models::Message;

/// Field order here is the byte order of the body, and so part of every cache key.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    /// `max_tokens`, not `max_completion_tokens`: every compatible server accepts it.
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    logprobs: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_logprobs: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

pub(crate) fn body(req: &ChatRequest, model: &str, stream: bool) -> Vec<u8> {
    let body = Body {
        model,
        messages: &req.messages,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        seed: req.seed,
        logprobs: req.logprobs.is_some(),
        top_logprobs: req.logprobs,
        stream,
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    };
    serde_json::to_vec(&body).expect("a struct of strings and numbers always serializes")
}

#[derive(Deserialize)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

impl From<OaUsage> for Usage {
    fn from(u: OaUsage) -> Usage {
        Usage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

#[derive(Deserialize)]
struct Logprobs {
    #[serde(default)]
    content: Option<Vec<LpToken>>,
}

#[derive(Deserialize)]
struct LpToken {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<LpAlt>,
}

#[derive(Deserialize)]
struct LpAlt {
    token: String,
    logprob: f64,
}

/// The first generated token's alternatives; with `top_logprobs: 0` only the chosen token.
fn first_token(lp: Option<Logprobs>) -> Option<Vec<TokenLogprob>> {
    let first = lp?.content?.into_iter().next()?;
    if first.top_logprobs.is_empty() {
        return Some(vec![TokenLogprob {
            token: first.token,
            logprob: first.logprob,
        }]);
    }
    Some(
        first
            .top_logprobs
            .into_iter()
            .map(|a| TokenLogprob {
                token: a.token,
                logprob: a.logprob,
            })
            .collect(),
    )
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<OaUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
    logprobs: Option<Logprobs>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

pub(crate) fn parse_response(bytes: &[u8]) -> Result<Partial, ApiError> {
    let resp: Response = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed("chat completion body is not the expected JSON", e))?;
    let choice = resp
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Malformed {
            what: "chat completion has no choices".into(),
            source: None,
        })?;
    Ok(Partial {
        text: choice.message.content.unwrap_or_default(),
        usage: resp.usage.map(Usage::from),
        logprobs: first_token(choice.logprobs),
        finish_reason: choice.finish_reason,
        done: true,
    })
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    usage: Option<OaUsage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    delta: Option<Delta>,
    logprobs: Option<Logprobs>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
}

/// Applies one streamed event; returns the content it added (empty for role/usage chunks),
/// which is what the client times.
pub(crate) fn apply_event(acc: &mut Partial, ev: &SseEvent) -> Result<usize, ApiError> {
    if ev.data.trim() == "[DONE]" {
        acc.done = true;
        return Ok(0);
    }
    let chunk: Chunk = serde_json::from_str(&ev.data)
        .map_err(|e| ApiError::malformed("stream chunk is not the expected JSON", e))?;
    if let Some(err) = chunk.error {
        return Err(ApiError::StreamError(err.to_string()));
    }
    if let Some(u) = chunk.usage {
        acc.usage = Some(u.into());
    }
    let Some(choice) = chunk.choices.into_iter().next() else {
        return Ok(0);
    };
    if choice.finish_reason.is_some() {
        acc.finish_reason = choice.finish_reason;
    }
    if acc.logprobs.is_none() {
        acc.logprobs = first_token(choice.logprobs);
    }
    let content = choice.delta.and_then(|d| d.content).unwrap_or_default();
    acc.text.push_str(&content);
    Ok(content.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> ChatRequest {
        ChatRequest {
            messages: vec![Message::system("be brief"), Message::user("hi")],
            max_tokens: 5,
            temperature: Some(0.0),
            seed: Some(7),
            logprobs: Some(3),
        }
    }

    #[test]
    fn body_is_exact_and_stable() {
        let b = String::from_utf8(body(&req(), "gpt-4o-mini", true)).unwrap();
        assert_eq!(
            b,
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0.0,"seed":7,"logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true}}"#
        );
        let plain = ChatRequest::new(vec![Message::user("hi")], 5);
        let b = String::from_utf8(body(&plain, "m", false)).unwrap();
        assert_eq!(
            b,
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5,"temperature":0.0}"#
        );
    }

    #[test]
    fn parses_non_streaming_with_logprobs() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":"pos"},"finish_reason":"stop",
            "logprobs":{"content":[{"token":"pos","logprob":-0.1,"top_logprobs":[{"token":"pos","logprob":-0.1},{"token":"neg","logprob":-2.4}]}]}}],
            "usage":{"prompt_tokens":12,"completion_tokens":1,"total_tokens":13}}"#;
        let p = parse_response(body).unwrap();
        assert_eq!(p.text, "pos");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 1
            })
        );
        let lp = p.logprobs.unwrap();
        assert_eq!((lp[1].token.as_str(), lp[1].logprob), ("neg", -2.4));
        assert!(matches!(
            parse_response(b"{\"choices\":[]}"),
            Err(ApiError::Malformed { .. })
        ));
        assert!(matches!(
            parse_response(b"{oops"),
            Err(ApiError::Malformed { .. })
        ));
    }
}
