//! A fault-injecting loopback server that speaks both wire formats (OpenAI Chat Completions
//! at `/v1/chat/completions`, Anthropic Messages at `/v1/messages`), streamed and whole.
//! Each request is identified by the content of its last message; a script per id says
//! which faults its next hits get, and every hit is counted and timed so tests can check
//! retries, `Retry-After` and "no item answered twice" against what the server really saw.
//!
//! One copy for every crate that needs it (`tests/remote`, `tests/cli`, `benches/api.rs`),
//! each including it with `#[path]`.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// What the next hit for an id gets instead of a good answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// An error status; `retry_after` is sent as the `Retry-After` header verbatim.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// A 401 whose body echoes the key the client sent, as real servers do.
    EchoKey,
    /// Waits this long before answering (past the client's timeout in tests).
    Slow(Duration),
    /// 200, some content, then the connection is torn down.
    DropMidStream,
    /// 200 with a body (or stream event) that is not JSON.
    Malformed,
    /// 200, content and usage, then a clean end without `[DONE]` / `message_stop`.
    CutBeforeDone,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    hits: Mutex<HashMap<String, Vec<Instant>>>,
    recorded: Mutex<Vec<Recorded>>,
    total: AtomicU64,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    chunk_delay: Duration,
    record: bool,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// Content chunks per answer: "answer", " to", " <id>".
pub const CHUNKS: usize = 3;

impl FaultServer {
    /// `chunk_delay` between streamed content chunks; `record` keeps every request (off for
    /// the benchmark, where it would measure the server).
    pub async fn start(chunk_delay: Duration, record: bool) -> FaultServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            chunk_delay,
            record,
            ..State::default()
        });
        let st = Arc::clone(&state);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let st = Arc::clone(&st);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&st), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultServer { addr, state }
    }

    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn anthropic_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn script(&self, id: &str, faults: Vec<Fault>) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(id.to_string(), faults.into());
    }

    pub fn hits(&self, id: &str) -> usize {
        self.state.hits.lock().unwrap().get(id).map_or(0, Vec::len)
    }

    pub fn hit_times(&self, id: &str) -> Vec<Instant> {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    pub fn total_hits(&self) -> u64 {
        self.state.total.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.state.recorded.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.state.hits.lock().unwrap().clear();
        self.state.total.store(0, Ordering::SeqCst);
    }
}

/// A response body fed from a channel: chunks as they are produced, an `Err` tears the
/// connection down mid-body.
pub struct ChanBody(mpsc::UnboundedReceiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

type Tx = mpsc::UnboundedSender<Result<Bytes, std::io::Error>>;

fn whole(status: u16, headers: &[(&str, String)], body: String) -> Response<ChanBody> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(Ok(Bytes::from(body)));
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, v.as_str());
    }
    b.body(ChanBody(rx)).unwrap()
}

struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Result<Response<ChanBody>, Infallible> {
    let n = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.max_in_flight.fetch_max(n, Ordering::SeqCst);
    let guard = InFlight(Arc::clone(&st));
    let path = req.uri().path().to_string();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let Ok(body) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(whole(400, &[], r#"{"error":"body is not JSON"}"#.into()));
    };
    let anthropic = path == "/v1/messages";
    if !anthropic && path != "/v1/chat/completions" {
        return Ok(whole(404, &[], format!(r#"{{"error":"no route {path}"}}"#)));
    }
    if let Some(problem) = validate(anthropic, &headers, &body) {
        return Ok(whole(
            400,
            &[],
            json!({ "error": { "message": problem } }).to_string(),
        ));
    }
    let msgs = body["messages"].as_array().unwrap();
    let id = msgs.last().unwrap()["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    st.total.fetch_add(1, Ordering::SeqCst);
    st.hits
        .lock()
        .unwrap()
        .entry(id.clone())
        .or_default()
        .push(Instant::now());
    if st.record {
        st.recorded.lock().unwrap().push(Recorded {
            path,
            headers: headers.clone(),
            body: body.clone(),
        });
    }
    let fault = st
        .faults
        .lock()
        .unwrap()
        .get_mut(&id)
        .and_then(VecDeque::pop_front);
    let key = headers
        .get("authorization")
        .map(|v| v.trim_start_matches("Bearer ").to_string())
        .or_else(|| headers.get("x-api-key").cloned())
        .unwrap_or_default();
    match fault {
        Some(Fault::Status { code, retry_after }) => {
            let h: Vec<_> = retry_after
                .into_iter()
                .map(|v| ("retry-after", v))
                .collect();
            let msg = json!({ "error": { "message": format!("scripted {code} for {id}") } });
            return Ok(whole(code, &h, msg.to_string()));
        }
        Some(Fault::EchoKey) => {
            let msg =
                format!("Incorrect API key provided: {key}. You can find your API key at ...");
            return Ok(whole(
                401,
                &[],
                json!({ "error": { "message": msg } }).to_string(),
            ));
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        _ => {}
    }
    let answer = Answer::new(&id, msgs, anthropic, &body);
    let stream = body["stream"].as_bool().unwrap_or(false);
    if !stream {
        let text = match fault {
            Some(Fault::Malformed) => r#"{"choices": [ {"message": "#.to_string(),
            _ => answer.whole(),
        };
        return Ok(whole(200, &[], text));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let delay = st.chunk_delay;
    tokio::spawn(async move {
        let _guard = guard;
        answer.stream(&tx, fault, delay).await;
    });
    let resp = Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(ChanBody(rx))
        .unwrap();
    Ok(resp)
}

/// What a real server would reject: a system role inside Anthropic messages, missing
/// version header or max_tokens.
fn validate(anthropic: bool, headers: &HashMap<String, String>, body: &Value) -> Option<String> {
    if !body["messages"].is_array() || body["messages"].as_array().unwrap().is_empty() {
        return Some("messages must be a non-empty array".into());
    }
    if !anthropic {
        return None;
    }
    if headers.get("anthropic-version").map(String::as_str) != Some("2023-06-01") {
        return Some("anthropic-version header missing".into());
    }
    if !headers.contains_key("x-api-key") {
        return Some("x-api-key header missing".into());
    }
    if body["max_tokens"].as_u64().is_none() {
        return Some("max_tokens: Field required".into());
    }
    let roles_ok = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["role"] == "user" || m["role"] == "assistant");
    (!roles_ok)
        .then(|| "messages: roles must be user or assistant; use the top-level system field".into())
}

struct Answer {
    anthropic: bool,
    chunks: Vec<String>,
    input_tokens: usize,
    logprobs: Option<usize>,
}

impl Answer {
    fn new(id: &str, msgs: &[Value], anthropic: bool, body: &Value) -> Answer {
        let system_words = body["system"]
            .as_str()
            .map_or(0, |s| s.split_whitespace().count());
        let input_tokens = system_words
            + msgs
                .iter()
                .map(|m| {
                    m["content"]
                        .as_str()
                        .unwrap_or("")
                        .split_whitespace()
                        .count()
                })
                .sum::<usize>();
        Answer {
            anthropic,
            chunks: vec!["answer".into(), " to".into(), format!(" {id}")],
            input_tokens,
            logprobs: body["logprobs"]
                .as_bool()
                .filter(|b| *b)
                .map(|_| body["top_logprobs"].as_u64().unwrap_or(0) as usize),
        }
    }

    fn text(&self) -> String {
        self.chunks.concat()
    }

    /// The `logprobs.content` entries of chunks `range`: each chunk is one token, the most
    /// likely at its position, followed by made-up alternatives.
    fn logprobs_json(&self, range: std::ops::Range<usize>) -> Value {
        let content: Vec<Value> = self.chunks[range.clone()]
            .iter()
            .zip(range)
            .map(|(chunk, i)| {
                let chosen = -0.05 * (i as f64 + 1.0);
                let alts = [chunk.as_str(), "other", "third", "fourth", "fifth"];
                let top: Vec<Value> = alts
                    .iter()
                    .take(self.logprobs.unwrap_or(0))
                    .enumerate()
                    .map(|(j, t)| {
                        let logprob = if j == 0 {
                            chosen
                        } else {
                            -0.5 * (j as f64 + 0.1)
                        };
                        json!({ "token": t, "logprob": logprob })
                    })
                    .collect();
                json!({ "token": chunk, "logprob": chosen, "top_logprobs": top })
            })
            .collect();
        json!({ "content": content })
    }

    fn whole(&self) -> String {
        let out = self.chunks.len();
        if self.anthropic {
            return json!({
                "id": "msg_1", "type": "message", "role": "assistant",
                "content": [{ "type": "text", "text": self.text() }],
                "stop_reason": "end_turn",
                "usage": { "input_tokens": self.input_tokens, "output_tokens": out }
            })
            .to_string();
        }
        let mut choice = json!({
            "index": 0, "finish_reason": "stop",
            "message": { "role": "assistant", "content": self.text() }
        });
        if self.logprobs.is_some() {
            choice["logprobs"] = self.logprobs_json(0..self.chunks.len());
        }
        json!({
            "id": "c1", "object": "chat.completion", "choices": [choice],
            "usage": { "prompt_tokens": self.input_tokens, "completion_tokens": out,
                       "total_tokens": self.input_tokens + out }
        })
        .to_string()
    }

    /// The whole event list: (is content chunk, SSE text).
    fn events(&self) -> Vec<(bool, String)> {
        let out = self.chunks.len();
        let mut ev = Vec::new();
        if self.anthropic {
            let sse = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
            ev.push((
                false,
                sse(
                    "message_start",
                    json!({ "type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "content": [],
                "usage": { "input_tokens": self.input_tokens, "output_tokens": 1 } } }),
                ),
            ));
            ev.push((
                false,
                sse(
                    "content_block_start",
                    json!({ "type": "content_block_start",
                "index": 0, "content_block": { "type": "text", "text": "" } }),
                ),
            ));
            ev.push((false, sse("ping", json!({ "type": "ping" }))));
            for c in &self.chunks {
                ev.push((
                    true,
                    sse(
                        "content_block_delta",
                        json!({ "type": "content_block_delta",
                    "index": 0, "delta": { "type": "text_delta", "text": c } }),
                    ),
                ));
            }
            ev.push((
                false,
                sse(
                    "content_block_stop",
                    json!({ "type": "content_block_stop", "index": 0 }),
                ),
            ));
            ev.push((
                false,
                sse(
                    "message_delta",
                    json!({ "type": "message_delta",
                "delta": { "stop_reason": "end_turn" }, "usage": { "output_tokens": out } }),
                ),
            ));
            ev.push((
                false,
                sse("message_stop", json!({ "type": "message_stop" })),
            ));
        } else {
            let sse = |v: Value| format!("data: {v}\n\n");
            ev.push((false, sse(json!({ "object": "chat.completion.chunk", "choices": [
                { "index": 0, "delta": { "role": "assistant", "content": "" }, "finish_reason": null }] }))));
            for (i, c) in self.chunks.iter().enumerate() {
                let mut choice =
                    json!({ "index": 0, "delta": { "content": c }, "finish_reason": null });
                if self.logprobs.is_some() {
                    choice["logprobs"] = self.logprobs_json(i..i + 1);
                }
                ev.push((
                    true,
                    sse(json!({ "object": "chat.completion.chunk", "choices": [choice] })),
                ));
            }
            ev.push((
                false,
                sse(json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] })),
            ));
            ev.push((
                false,
                sse(
                    json!({ "choices": [], "usage": { "prompt_tokens": self.input_tokens,
                "completion_tokens": out, "total_tokens": self.input_tokens + out } }),
                ),
            ));
            ev.push((false, "data: [DONE]\n\n".to_string()));
        }
        ev
    }

    async fn stream(&self, tx: &Tx, fault: Option<Fault>, delay: Duration) {
        let mut events = self.events();
        match fault {
            Some(Fault::Malformed) => {
                events.insert(1, (false, "data: {\"choices\": [{\"delta\n\n".into()))
            }
            Some(Fault::CutBeforeDone) => {
                events.pop();
            }
            _ => {}
        }
        let mut content_seen = 0;
        for (is_content, text) in events {
            if is_content {
                if content_seen > 0 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                content_seen += 1;
                if content_seen == 2 && matches!(fault, Some(Fault::DropMidStream)) {
                    let _ = tx.send(Err(std::io::Error::other("scripted connection drop")));
                    return;
                }
            }
            if tx.send(Ok(Bytes::from(text))).is_err() {
                return;
            }
        }
    }
}
