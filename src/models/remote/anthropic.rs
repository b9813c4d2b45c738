//! The Anthropic Messages wire format: system turns move to the top-level `system` field
//! (the API rejects a `system` role inside `messages`), and the stream is typed events:
//! `message_start` (input tokens), `content_block_delta` (text), `message_delta` (output
//! tokens, stop reason), `message_stop` (the end marker).

use serde::{Deserialize, Serialize};

use crate::models::remote::client::Partial;
use crate::models::remote::error::ApiError;
use crate::models::remote::request::{ChatRequest, Usage};
use crate::models::remote::sse::SseEvent;
use crate::models::Message;

pub(crate) const VERSION: &str = "2023-06-01";

/// Field order here is the byte order of the body, and so part of every cache key.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    messages: Vec<&'a Message>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// Seed and logprobs are left out: the Messages API has neither and rejects unknown fields.
pub(crate) fn body(req: &ChatRequest, model: &str, stream: bool) -> Vec<u8> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let body = Body {
        model,
        max_tokens: req.max_tokens,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages: req.messages.iter().filter(|m| m.role != "system").collect(),
        temperature: req.temperature,
        stream,
    };
    serde_json::to_vec(&body).expect("a struct of strings and numbers always serializes")
}

#[derive(Deserialize, Default)]
struct AnUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    content: Vec<Block>,
    usage: Option<AnUsage>,
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

pub(crate) fn parse_response(bytes: &[u8]) -> Result<Partial, ApiError> {
    let resp: Response = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::malformed("messages body is not the expected JSON", e))?;
    let text = resp
        .content
        .iter()
        .filter(|b| b.kind == "text")
        .map(|b| b.text.as_str())
        .collect();
    Ok(Partial {
        text,
        usage: resp.usage.map(|u| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }),
        logprobs: None,
        finish_reason: resp.stop_reason,
        done: true,
    })
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDelta,
        usage: Option<AnUsage>,
    },
    MessageStop,
    Error {
        error: serde_json::Value,
    },
    /// `ping`, `content_block_start`, `content_block_stop` and types added later.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    usage: AnUsage,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize, Default)]
struct MessageDelta {
    stop_reason: Option<String>,
}

/// Applies one streamed event; returns the text it added, which is what the client times.
pub(crate) fn apply_event(acc: &mut Partial, ev: &SseEvent) -> Result<usize, ApiError> {
    let event: Event = serde_json::from_str(&ev.data)
        .map_err(|e| ApiError::malformed("stream event is not the expected JSON", e))?;
    match event {
        Event::MessageStart { message } => {
            let usage = acc.usage.get_or_insert_with(Usage::default);
            usage.input_tokens = message.usage.input_tokens;
            usage.output_tokens = message.usage.output_tokens;
        }
        Event::ContentBlockDelta { delta } => {
            // Only text deltas; `input_json_delta`/`thinking_delta` carry no answer text.
            let text = delta.text.unwrap_or_default();
            acc.text.push_str(&text);
            return Ok(text.len());
        }
        Event::MessageDelta { delta, usage } => {
            if let Some(u) = usage {
                acc.usage.get_or_insert_with(Usage::default).output_tokens = u.output_tokens;
            }
            if delta.stop_reason.is_some() {
                acc.finish_reason = delta.stop_reason;
            }
        }
        Event::MessageStop => acc.done = true,
        Event::Error { error } => return Err(ApiError::StreamError(error.to_string())),
        Event::Other => {}
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_goes_top_level() {
        let req = ChatRequest {
            messages: vec![
                Message::system("a"),
                Message::user("hi"),
                Message::system("b"),
            ],
            max_tokens: 9,
            temperature: None,
            seed: Some(1),
            logprobs: Some(2),
        };
        let b = String::from_utf8(body(&req, "claude", true)).unwrap();
        assert_eq!(
            b,
            r#"{"model":"claude","max_tokens":9,"system":"a\n\nb","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        );
    }

    #[test]
    fn stream_events_fill_usage_and_text() {
        let mut acc = Partial::default();
        let ev = |data: &str| SseEvent {
            event: None,
            data: data.into(),
        };
        let evs = [
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        let added: Vec<usize> = evs
            .iter()
            .map(|d| apply_event(&mut acc, &ev(d)).unwrap())
            .collect();
        assert_eq!(added, [0, 0, 0, 3, 2, 0, 0]);
        assert!(acc.done);
        assert_eq!(acc.text, "Hello");
        assert_eq!(
            acc.usage,
            Some(Usage {
                input_tokens: 10,
                output_tokens: 2
            })
        );
        assert_eq!(acc.finish_reason.as_deref(), Some("end_turn"));
        let err = apply_event(
            &mut acc,
            &ev(r#"{"type":"error","error":{"type":"overloaded_error"}}"#),
        );
        assert!(matches!(err, Err(ApiError::StreamError(_))));
    }
}
