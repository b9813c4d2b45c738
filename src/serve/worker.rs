//! The model's own thread: takes jobs from the queue, batches waiting `/predict` texts up to a
//! token budget, runs generations one at a time and streams their text as it is decoded.

use tokio::sync::{mpsc, oneshot};

use super::openai::{ChatCompletionRequest, Usage};
use crate::models::causal::{CausalLm, Sampling};
use crate::models::encoder::Encoder;
use crate::models::{Classifier, TokenizedText};

/// A model `serve` can run.
pub enum LocalModel {
    Classifier(Box<Encoder>),
    Generative(Box<CausalLm>),
}

impl LocalModel {
    pub fn is_generative(&self) -> bool {
        matches!(self, LocalModel::Generative(_))
    }
}

/// `[{label, score}]` per text, best first (text-embeddings-inference's `/predict` answer).
pub type LabelScores = Vec<LabelScore>;

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// Where a `/predict` request's answer goes: one list per text, or the error.
pub type PredictReply = oneshot::Sender<Result<Vec<LabelScores>, String>>;

pub enum Job {
    Predict {
        texts: Vec<String>,
        reply: PredictReply,
    },
    Generate {
        request: ChatCompletionRequest,
        events: mpsc::UnboundedSender<GenEvent>,
    },
}

pub enum GenEvent {
    Delta(String),
    Done { usage: Usage, finish_reason: String },
    Failed(String),
}

/// Starts the worker thread; the queue closes when every sender is gone.
pub fn spawn(model: LocalModel, max_batch_tokens: usize) -> mpsc::Sender<Job> {
    let (sender, receiver) = mpsc::channel(1024);
    std::thread::Builder::new()
        .name("taskbench-model".into())
        .spawn(move || run(model, receiver, max_batch_tokens))
        .expect("spawn the model thread");
    sender
}

fn run(model: LocalModel, mut jobs: mpsc::Receiver<Job>, max_batch_tokens: usize) {
    while let Some(first) = jobs.blocking_recv() {
        match (first, &model) {
            (Job::Predict { texts, reply }, LocalModel::Classifier(encoder)) => {
                // Everything already waiting joins this batch, up to the token budget.
                let mut batch = vec![(texts, reply)];
                let mut deferred = None;
                while let Ok(job) = jobs.try_recv() {
                    match job {
                        Job::Predict { texts, reply } => batch.push((texts, reply)),
                        other => {
                            deferred = Some(other);
                            break;
                        }
                    }
                }
                predict_batch(encoder, batch, max_batch_tokens);
                if let Some(Job::Generate { events, .. }) = deferred {
                    let _ = events.send(GenEvent::Failed("not a generative model".into()));
                }
            }
            (Job::Generate { request, events }, LocalModel::Generative(lm)) => {
                generate(lm, &request, &events);
            }
            (Job::Predict { reply, .. }, LocalModel::Generative(_)) => {
                let _ = reply.send(Err("not a classifier".into()));
            }
            (Job::Generate { events, .. }, LocalModel::Classifier(_)) => {
                let _ = events.send(GenEvent::Failed("not a generative model".into()));
            }
        }
    }
}

/// Classifies every waiting request's texts in batches of at most `max_batch_tokens`, then
/// answers each request with its own texts' scores.
fn predict_batch(
    encoder: &Encoder,
    requests: Vec<(Vec<String>, PredictReply)>,
    max_batch_tokens: usize,
) {
    let texts: Vec<&str> = requests
        .iter()
        .flat_map(|(texts, _)| texts.iter().map(String::as_str))
        .collect();
    let scores = classify_all(encoder, &texts, max_batch_tokens);
    let mut next = 0;
    for (own, reply) in requests {
        let result = match &scores {
            Ok(all) => Ok(all[next..next + own.len()].to_vec()),
            Err(message) => Err(message.clone()),
        };
        next += own.len();
        let _ = reply.send(result);
    }
}

fn classify_all(
    encoder: &Encoder,
    texts: &[&str],
    max_batch_tokens: usize,
) -> Result<Vec<LabelScores>, String> {
    let tokenized = encoder.tokenize(texts).map_err(|e| format!("{e:#}"))?;
    let lengths: Vec<usize> = tokenized.iter().map(TokenizedText::len).collect();
    let mut out = vec![Vec::new(); texts.len()];
    let labels = encoder.labels();
    for batch in crate::runtime::batching::token_budget_batches(&lengths, max_batch_tokens, 256) {
        let items: Vec<&TokenizedText> = batch.indices.iter().map(|&i| &tokenized[i]).collect();
        let probs = encoder.classify(&items).map_err(|e| format!("{e:#}"))?;
        for (&i, p) in batch.indices.iter().zip(probs) {
            let mut scores: Vec<LabelScore> = labels
                .iter()
                .zip(p)
                .map(|(label, score)| LabelScore {
                    label: label.clone(),
                    score,
                })
                .collect();
            scores.sort_by(|a, b| b.score.total_cmp(&a.score));
            out[i] = scores;
        }
    }
    Ok(out)
}

/// Generates for one request, sending each new piece of text as soon as it decodes to
/// whole characters.
fn generate(
    lm: &CausalLm,
    request: &ChatCompletionRequest,
    events: &mpsc::UnboundedSender<GenEvent>,
) {
    let raw = !lm.has_chat_template();
    let ids = match lm
        .prompt_text(&request.messages, raw)
        .and_then(|p| lm.encode(&p))
    {
        Ok(ids) => ids,
        Err(e) => {
            let _ = events.send(GenEvent::Failed(e.to_string()));
            return;
        }
    };
    let sampling = Sampling {
        max_tokens: request.max_new_tokens(),
        temperature: request.temperature.unwrap_or(1.0).max(0.0),
        seed: request.seed.unwrap_or(0),
    };
    let mut produced: Vec<u32> = Vec::new();
    let mut sent = 0usize;
    let result = lm.generate(&ids, &sampling, |id| {
        produced.push(id);
        if let Ok(text) = lm.decode(&produced) {
            // A token may end inside a multi-byte character: wait for the rest.
            if text.len() > sent && !text.ends_with('\u{FFFD}') {
                let _ = events.send(GenEvent::Delta(text[sent..].to_string()));
                sent = text.len();
            }
        }
    });
    match result {
        Ok(generation) => {
            if generation.text.len() > sent {
                let _ = events.send(GenEvent::Delta(generation.text[sent..].to_string()));
            }
            let _ = events.send(GenEvent::Done {
                usage: Usage::new(generation.prompt_tokens, generation.ids.len()),
                finish_reason: if generation.stopped { "stop" } else { "length" }.into(),
            });
        }
        Err(e) => {
            let _ = events.send(GenEvent::Failed(e.to_string()));
        }
    }
}
