//! `taskbench serve`: a local model behind HTTP, so a team can deploy the winner and
//! taskbench can benchmark a local model over HTTP exactly as it benchmarks an API.
//!
//! Routes (wire formats as OpenAI and text-embeddings-inference define them):
//! - `GET /v1/models`
//! - `POST /v1/chat/completions` for generative models, streamed (SSE) or not, with
//!   `logprobs` / `top_logprobs` from the model's own next-token distribution
//! - `POST /predict` for classifiers, `{"inputs": "text"}` or `{"inputs": ["a", "b"]}`
//!
//! The model lives on one worker thread fed by a queue (as TEI's backend thread): HTTP
//! handlers never run model code. Waiting `/predict` requests are batched together up to a
//! token budget; generation requests run one at a time in arrival order (the decoder has no
//! batched decoding yet), streaming tokens as they come.

pub mod openai;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use self::openai::{ChatCompletionRequest, ErrorBody};
pub use self::worker::{Job, LocalModel};

/// What the HTTP side holds: the queue to the worker and the model's public name.
#[derive(Clone)]
pub struct AppState {
    jobs: mpsc::Sender<Job>,
    model_name: Arc<str>,
    generative: bool,
}

/// The router for a model served by `worker` (tests drive it without a socket).
pub fn app(model: LocalModel, model_name: &str, max_batch_tokens: usize) -> Router {
    let generative = model.is_generative();
    let jobs = worker::spawn(model, max_batch_tokens);
    let state = AppState {
        jobs,
        model_name: model_name.into(),
        generative,
    };
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/predict", post(predict))
        .route("/health", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves until Ctrl-C.
pub fn serve(
    model: LocalModel,
    model_name: &str,
    addr: SocketAddr,
    max_batch_tokens: usize,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        eprintln!(
            "taskbench: serving {model_name} on http://{}",
            listener.local_addr()?
        );
        axum::serve(listener, app(model, model_name, max_batch_tokens))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}

/// A server running on its own thread, for measuring a local model over HTTP in-process
/// (`taskbench run`'s served models). Dropping it stops the server and joins the thread.
pub struct BackgroundServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds `addr` (port 0 picks a free one) and serves `model` until dropped.
    pub fn start(
        model: LocalModel,
        model_name: &str,
        addr: SocketAddr,
        max_batch_tokens: usize,
    ) -> anyhow::Result<BackgroundServer> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let router = app(model, model_name, max_batch_tokens);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = stop.await;
                    })
                    .await;
            });
        });
        Ok(BackgroundServer {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI-style base URL clients append `/chat/completions` to.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(message, status))).into_response()
}

async fn list_models(State(state): State<AppState>) -> Response {
    Json(openai::ModelList::one(&state.model_name)).into_response()
}

async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Json<ChatCompletionRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if !state.generative {
        return error(
            StatusCode::BAD_REQUEST,
            "this server runs a classifier: use POST /predict",
        );
    }
    if request.messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages must not be empty");
    }
    let top_logprobs = match request.top_logprobs() {
        Ok(n) => n,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let stream = request.stream.unwrap_or(false);
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let (events, mut receiver) = mpsc::unbounded_channel();
    let job = Job::Generate {
        request: request.clone(),
        events,
    };
    if state.jobs.send(job).await.is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model worker has stopped",
        );
    }
    let id = openai::completion_id();
    let created = openai::unix_now();
    let name = state.model_name.to_string();
    if stream {
        let stream = async_stream_of(
            receiver,
            id,
            created,
            name,
            include_usage,
            top_logprobs.is_some(),
        );
        return Sse::new(stream).into_response();
    }
    let mut answer = openai::Answered {
        logprobs: top_logprobs.map(|_| Vec::new()),
        ..openai::Answered::default()
    };
    while let Some(event) = receiver.recv().await {
        match event {
            worker::GenEvent::Delta { text, logprobs } => {
                answer.text.push_str(&text);
                if let Some(all) = &mut answer.logprobs {
                    all.extend(logprobs);
                }
            }
            worker::GenEvent::Done {
                usage,
                finish_reason,
            } => {
                answer.finish_reason = finish_reason;
                return Json(openai::ChatCompletion::new(
                    id, created, &name, answer, usage,
                ))
                .into_response();
            }
            worker::GenEvent::Failed(message) => return error(StatusCode::BAD_REQUEST, message),
        }
    }
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "generation ended without a result",
    )
}

/// The SSE body: a role chunk, one chunk per text delta (with its tokens' log-probabilities
/// when `logprobs`), a final chunk with the finish reason, a usage chunk when asked for,
/// then `[DONE]`.
fn async_stream_of(
    mut receiver: mpsc::UnboundedReceiver<worker::GenEvent>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
) -> impl futures_core::Stream<Item = Result<Event, std::convert::Infallible>> {
    let chunk = move |delta: openai::Delta,
                      tokens: Option<Vec<openai::TokenLogprobs>>,
                      finish: Option<String>| {
        let body = openai::ChatCompletionChunk::new(&id, created, &model, delta, tokens, finish);
        Event::default().data(serde_json::to_string(&body).unwrap_or_default())
    };
    let (tx, rx) = mpsc::unbounded_channel::<Result<Event, std::convert::Infallible>>();
    tokio::spawn(async move {
        let _ = tx.send(Ok(chunk(openai::Delta::role(), None, None)));
        while let Some(event) = receiver.recv().await {
            match event {
                worker::GenEvent::Delta {
                    text,
                    logprobs: tokens,
                } => {
                    let tokens = logprobs.then_some(tokens);
                    let _ = tx.send(Ok(chunk(openai::Delta::content(text), tokens, None)));
                }
                worker::GenEvent::Done {
                    usage,
                    finish_reason,
                } => {
                    let _ = tx.send(Ok(chunk(
                        openai::Delta::default(),
                        None,
                        Some(finish_reason),
                    )));
                    if include_usage {
                        let _ = tx.send(Ok(Event::default().data(
                            serde_json::to_string(&openai::UsageChunk::new(usage))
                                .unwrap_or_default(),
                        )));
                    }
                    break;
                }
                worker::GenEvent::Failed(message) => {
                    let body = ErrorBody::new(message, StatusCode::BAD_REQUEST);
                    let _ = tx.send(Ok(
                        Event::default().data(serde_json::to_string(&body).unwrap_or_default())
                    ));
                    break;
                }
            }
        }
        let _ = tx.send(Ok(Event::default().data("[DONE]")));
    });
    tokio_stream::wrappers::UnboundedReceiverStream::new(rx)
}

/// `{"inputs": "text"}` or `{"inputs": ["a", "b"]}`.
#[derive(Deserialize)]
struct PredictRequest {
    inputs: Inputs,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
}

async fn predict(
    State(state): State<AppState>,
    body: Result<Json<PredictRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if state.generative {
        return error(
            StatusCode::BAD_REQUEST,
            "this server runs a generative model: use POST /v1/chat/completions",
        );
    }
    let (texts, single) = match request.inputs {
        Inputs::One(text) => (vec![text], true),
        Inputs::Many(texts) => (texts, false),
    };
    if texts.is_empty() {
        return error(StatusCode::BAD_REQUEST, "inputs must not be empty");
    }
    let (reply, answer) = oneshot::channel();
    if state
        .jobs
        .send(Job::Predict { texts, reply })
        .await
        .is_err()
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the model worker has stopped",
        );
    }
    match answer.await {
        Ok(Ok(mut scores)) if single => Json(scores.remove(0)).into_response(),
        Ok(Ok(scores)) => Json(scores).into_response(),
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, message),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the model worker dropped the request",
        ),
    }
}
