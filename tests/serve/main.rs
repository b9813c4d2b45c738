//! `taskbench serve`'s routes driven in process (`Router::oneshot`, no socket): the OpenAI
//! wire format streamed and not (log-probabilities included), `/predict` single and batched, and bad requests, each
//! answer checked against the library computing the same thing directly.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use taskbench::models::causal::{CausalLm, Sampling};
use taskbench::models::encoder::Encoder;
use taskbench::models::{Classifier, Message};
use taskbench::serve::{app, LocalModel};
use tower::ServiceExt;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn llama() -> CausalLm {
    CausalLm::load(&fixture("tiny-llama"), None).expect("tiny-llama fixture")
}

fn generative_app() -> Router {
    app(
        LocalModel::Generative(Box::new(llama())),
        "tiny-llama",
        4096,
    )
}

fn classifier() -> Encoder {
    Encoder::load(
        &fixture("tiny-bert"),
        "tiny-bert",
        &candle_core::Device::Cpu,
    )
    .expect("tiny-bert")
}

async fn call(app: Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn chat_body(stream: bool) -> Value {
    json!({
        "model": "tiny-llama",
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 6,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": true}
    })
}

/// What the library generates greedily for the same conversation.
fn expected_text() -> (String, usize) {
    let lm = llama();
    let prompt = lm
        .prompt_text(&[Message::user("hello there")], false)
        .unwrap();
    let ids = lm.encode(&prompt).unwrap();
    let sampling = Sampling {
        max_tokens: 6,
        temperature: 0.0,
        seed: 0,
    };
    let g = lm.generate(&ids, &sampling, |_| {}).unwrap();
    (g.text, ids.len())
}

#[tokio::test]
async fn models_lists_the_served_model() {
    let (status, body) = call(generative_app(), "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "tiny-llama", "{v}");
}

#[tokio::test]
async fn chat_completion_returns_what_the_library_generates() {
    let (status, body) = call(
        generative_app(),
        "POST",
        "/v1/chat/completions",
        Some(chat_body(false)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let (text, prompt_tokens) = expected_text();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{v}");
    assert_eq!(v["choices"][0]["message"]["content"], text.as_str(), "{v}");
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens, "{v}");
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion <= 6, "{v}");
    let finish = v["choices"][0]["finish_reason"].as_str().unwrap();
    assert!(finish == "length" || finish == "stop", "{v}");
    assert_eq!(finish == "length", completion == 6, "{v}");
}

#[tokio::test]
async fn streamed_chunks_add_up_to_the_same_text_then_usage_then_done() {
    let (status, body) = call(
        generative_app(),
        "POST",
        "/v1/chat/completions",
        Some(chat_body(true)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"]["role"], "assistant",
        "{body}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected_text().0, "{body}");
    let usage = chunks.last().unwrap();
    assert!(usage["choices"].as_array().unwrap().is_empty(), "{body}");
    assert!(
        usage["usage"]["completion_tokens"].as_u64().unwrap() <= 6,
        "{body}"
    );
    let finished = &chunks[chunks.len() - 2]["choices"][0]["finish_reason"];
    assert!(finished.is_string(), "{body}");
}

/// Greedy ids for "hello there" and, per generated token, the log-softmax (in f64) of the
/// logits the model gives that position in one full forward pass over prompt + answer: the
/// batched path, not the one-token decode step serve generates with.
fn expected_log_probs(max_tokens: usize) -> (Vec<u32>, Vec<Vec<f64>>) {
    let lm = llama();
    let prompt = lm
        .prompt_text(&[Message::user("hello there")], false)
        .unwrap();
    let prompt_ids = lm.encode(&prompt).unwrap();
    let sampling = Sampling {
        max_tokens,
        temperature: 0.0,
        seed: 0,
    };
    let ids = lm.generate(&prompt_ids, &sampling, |_| {}).unwrap().ids;
    let all: Vec<u32> = prompt_ids.iter().chain(&ids).copied().collect();
    let logits = lm.logits(&all);
    let vocab = logits.len() / all.len();
    let rows = (0..ids.len())
        .map(|i| {
            let row = &logits[(prompt_ids.len() - 1 + i) * vocab..][..vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_sum = row
                .iter()
                .map(|&v| (v as f64 - max).exp())
                .sum::<f64>()
                .ln();
            row.iter().map(|&v| v as f64 - max - log_sum).collect()
        })
        .collect();
    (ids, rows)
}

fn logprob_body(stream: bool) -> Value {
    let mut body = chat_body(stream);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(5);
    body
}

/// `logprobs.content` of a whole response, or of every chunk of a stream, concatenated.
fn served_logprobs(body: &str, stream: bool) -> Vec<Value> {
    if !stream {
        let v: Value = serde_json::from_str(body).unwrap();
        return v["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap_or_else(|| panic!("no logprobs.content: {v}"))
            .clone();
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["logprobs"]["content"].as_array().cloned())
        .flatten()
        .collect()
}

/// The served log-probabilities are the model's: each token's equals the log-softmax of
/// the library's logits at that position (within 1e-4: the server decodes one token at a
/// time, the check runs one batched pass), the top list is the most likely tokens in order
/// with the greedy token first, the tokens spell the answer (this fixture splits characters
/// over tokens, see `spell` in serve's worker), and the stream carries exactly what the whole
/// response does.
#[tokio::test]
async fn logprobs_are_the_models_own_streamed_and_not() {
    let (ids, rows) = expected_log_probs(6);
    let lm = llama();
    let mut served = Vec::new();
    for stream in [false, true] {
        let (status, body) = call(
            generative_app(),
            "POST",
            "/v1/chat/completions",
            Some(logprob_body(stream)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let content = served_logprobs(&body, stream);
        assert_eq!(content.len(), ids.len(), "one entry per token: {body}");
        let spelled: String = content
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(spelled, lm.decode(&ids).unwrap(), "{body}");
        for (i, (entry, row)) in content.iter().zip(&rows).enumerate() {
            let chosen = entry["logprob"].as_f64().unwrap();
            assert!(
                (chosen - row[ids[i] as usize]).abs() < 1e-4,
                "token {i}: {entry}"
            );
            let top = entry["top_logprobs"].as_array().unwrap();
            assert_eq!(top.len(), 5, "{entry}");
            assert_eq!(
                top[0]["logprob"], entry["logprob"],
                "greedy picks the most likely: {entry}"
            );
            let mut sorted: Vec<f64> = row.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (rank, alt) in top.iter().enumerate() {
                let lp = alt["logprob"].as_f64().unwrap();
                assert!((lp - sorted[rank]).abs() < 1e-4, "rank {rank}: {entry}");
            }
        }
        served.push(content);
    }
    assert_eq!(served[0], served[1], "stream and whole response agree");
    // Without `logprobs`, none are sent.
    let (_, body) = call(
        generative_app(),
        "POST",
        "/v1/chat/completions",
        Some(chat_body(false)),
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["choices"][0]["logprobs"].is_null(), "{v}");
}

#[tokio::test]
async fn predict_answers_like_the_classifier_single_and_batched() {
    let router = app(
        LocalModel::Classifier(Box::new(classifier())),
        "tiny-bert",
        4096,
    );
    let texts = [
        "my invoice is wrong",
        "the parcel never came",
        "refund please",
    ];
    let encoder = classifier();
    let tokenized = encoder.tokenize(&texts).unwrap();
    let items: Vec<_> = tokenized.iter().collect();
    let direct = encoder.classify(&items).unwrap();

    let (status, body) = call(
        router.clone(),
        "POST",
        "/predict",
        Some(json!({"inputs": texts})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let batch: Value = serde_json::from_str(&body).unwrap();
    for (i, answer) in batch.as_array().unwrap().iter().enumerate() {
        let scores = answer.as_array().unwrap();
        let values: Vec<f64> = scores
            .iter()
            .map(|s| s["score"].as_f64().unwrap())
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] >= w[1]),
            "best first: {answer}"
        );
        for s in scores {
            let label = s["label"].as_str().unwrap();
            let index = encoder.labels().iter().position(|l| l == label).unwrap();
            assert!(
                (s["score"].as_f64().unwrap() - direct[i][index] as f64).abs() < 1e-6,
                "{answer}"
            );
        }
    }
    let (status, body) = call(
        router,
        "POST",
        "/predict",
        Some(json!({"inputs": texts[0]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let single: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(single, batch[0], "a single input answers with one list");
}

#[tokio::test]
async fn bad_requests_get_an_openai_style_error() {
    let cases = [
        (
            "/v1/chat/completions",
            Some(json!({"messages": []})),
            "messages must not be empty",
        ),
        (
            "/v1/chat/completions",
            Some(json!({"messages": "hi"})),
            "messages",
        ),
        (
            "/predict",
            Some(json!({"inputs": ["x"]})),
            "use POST /v1/chat/completions",
        ),
        (
            "/v1/chat/completions",
            Some(json!({"messages": [{"role": "user", "content": "hi"}],
                        "logprobs": true, "top_logprobs": 21})),
            "top_logprobs 21: expected 0 to 20",
        ),
        (
            "/v1/chat/completions",
            Some(json!({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2})),
            "top_logprobs needs logprobs: true",
        ),
    ];
    for (uri, body, needle) in cases {
        let (status, text) = call(generative_app(), "POST", uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {text}");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON error body: {text}"));
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{uri}: {message}");
    }
    let router = app(
        LocalModel::Classifier(Box::new(classifier())),
        "tiny-bert",
        4096,
    );
    let (status, text) = call(
        router,
        "POST",
        "/v1/chat/completions",
        Some(chat_body(false)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("use POST /predict"), "{text}");
}
