//! The OpenAI Chat Completions wire format, which vLLM, TGI, Ollama, llama.cpp server and
//! LiteLLM also speak: request body, the non-streaming response, and streamed chunks
//! (`choices[0].delta.content`, a final usage chunk from `stream_options.include_usage`,
//! then `data: [DONE]`). With `logprobs: true`, `choices[0].logprobs.content` lists each
//! generated token (the whole answer's in a response, each chunk's own in a stream).

use serde::{Deserialize, Serialize};

use crate::models::remote::client::Partial;
use crate::models::remote::error::ApiError;
use crate::models::remote::request::{ChatRequest, GeneratedToken, TokenLogprob, Usage};
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

/// Every generated token with its alternatives; `None` when the server sent no `content`
/// list (it ignored `logprobs`, or the chunk carries none).
fn generated_tokens(lp: Option<Logprobs>) -> Option<Vec<GeneratedToken>> {
    let tokens = lp?.content?.into_iter().map(|t| GeneratedToken {
        token: t.token,
        logprob: t.logprob,
        top_logprobs: t
            .top_logprobs
            .into_iter()
            .map(|a| TokenLogprob {
                token: a.token,
                logprob: a.logprob,
            })
            .collect(),
    });
    Some(tokens.collect())
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
        logprobs: generated_tokens(choice.logprobs),
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
    // Each content chunk carries the entries of the tokens it adds.
    if let Some(tokens) = generated_tokens(choice.logprobs) {
        acc.logprobs.get_or_insert_with(Vec::new).extend(tokens);
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

    /// Two generated tokens, each with two alternatives, as OpenAI sends them.
    const TWO_TOKENS: &str = r#"{"content":[
        {"token":"card","logprob":-0.1,"bytes":[99,97,114,100],"top_logprobs":[{"token":"card","logprob":-0.1},{"token":"Card","logprob":-2.4}]},
        {"token":"_arrival","logprob":-0.3,"bytes":null,"top_logprobs":[{"token":"_arrival","logprob":-0.3},{"token":"_payment","logprob":-1.5}]}]}"#;

    fn expected_tokens() -> Vec<GeneratedToken> {
        let lp = |token: &str, logprob| TokenLogprob {
            token: token.into(),
            logprob,
        };
        vec![
            GeneratedToken {
                token: "card".into(),
                logprob: -0.1,
                top_logprobs: vec![lp("card", -0.1), lp("Card", -2.4)],
            },
            GeneratedToken {
                token: "_arrival".into(),
                logprob: -0.3,
                top_logprobs: vec![lp("_arrival", -0.3), lp("_payment", -1.5)],
            },
        ]
    }

    #[test]
    fn parses_non_streaming_with_every_tokens_logprobs() {
        let body = format!(
            r#"{{"choices":[{{"message":{{"role":"assistant","content":"card_arrival"}},"finish_reason":"stop",
            "logprobs":{TWO_TOKENS}}}],
            "usage":{{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}}}"#
        );
        let p = parse_response(body.as_bytes()).unwrap();
        assert_eq!(p.text, "card_arrival");
        assert_eq!(
            p.usage,
            Some(Usage {
                input_tokens: 12,
                output_tokens: 2
            })
        );
        assert_eq!(p.logprobs, Some(expected_tokens()));
        let without = parse_response(
            br#"{"choices":[{"message":{"content":"x"},"logprobs":null,"finish_reason":"stop"}]}"#,
        )
        .unwrap();
        assert_eq!(without.logprobs, None);
        assert!(matches!(
            parse_response(b"{\"choices\":[]}"),
            Err(ApiError::Malformed { .. })
        ));
        assert!(matches!(
            parse_response(b"{oops"),
            Err(ApiError::Malformed { .. })
        ));
    }

    /// A stream spreads the tokens over its chunks; the answer has them all, in order.
    #[test]
    fn streamed_chunks_add_up_to_every_tokens_logprobs() {
        let all: serde_json::Value = serde_json::from_str(TWO_TOKENS).unwrap();
        let chunk = |content: &str, i: usize| {
            let lp = serde_json::json!({ "content": [all["content"][i].clone()] });
            serde_json::json!({ "choices": [{ "index": 0, "delta": { "content": content },
                "logprobs": lp, "finish_reason": null }] })
            .to_string()
        };
        let events = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#.to_string(),
            chunk("card", 0),
            chunk("_arrival", 1),
            r#"{"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#.to_string(),
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#.to_string(),
            "[DONE]".to_string(),
        ];
        let mut acc = Partial::default();
        for data in &events {
            let ev = SseEvent {
                event: None,
                data: data.clone(),
            };
            apply_event(&mut acc, &ev).unwrap();
        }
        assert!(acc.done);
        assert_eq!(acc.text, "card_arrival");
        assert_eq!(acc.logprobs, Some(expected_tokens()));
    }
}
