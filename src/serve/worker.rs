//! The model's own thread: takes jobs from the queue, batches waiting `/predict` texts up to a
//! token budget, runs generations one at a time and streams their text as it is decoded.

use tokio::sync::{mpsc, oneshot};

use super::openai::{ChatCompletionRequest, TokenLogprobs, TopLogprob, Usage};
use crate::models::causal::{log_softmax, top_ids, CausalError, CausalLm, Sampling};
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
    /// New text, with the log-probabilities of the tokens it came from when they were asked
    /// for (a token that ends inside a character waits for the next piece of text).
    Delta {
        text: String,
        logprobs: Vec<TokenLogprobs>,
    },
    Done {
        usage: Usage,
        finish_reason: String,
    },
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
    let failed = |message: String| {
        let _ = events.send(GenEvent::Failed(message));
    };
    let top_logprobs = match request.top_logprobs() {
        Ok(n) => n,
        Err(message) => return failed(message),
    };
    let raw = !lm.has_chat_template();
    let ids = match lm
        .prompt_text(&request.messages, raw)
        .and_then(|p| lm.encode(&p))
    {
        Ok(ids) => ids,
        Err(e) => return failed(e.to_string()),
    };
    let sampling = Sampling {
        max_tokens: request.max_new_tokens(),
        temperature: request.temperature.unwrap_or(1.0).max(0.0),
        seed: request.seed.unwrap_or(0),
    };
    let mut produced: Vec<u32> = Vec::new();
    let mut pending: Vec<TokenLogprobs> = Vec::new();
    let mut sent = 0usize;
    let mut logprob_error = None;
    let result = lm.generate_with_logits(&ids, &sampling, |id, logits| {
        if let Some(n) = top_logprobs {
            match token_logprobs(lm, &produced, id, logits, n) {
                Ok(entry) => pending.push(entry),
                Err(e) => logprob_error = Some(e),
            }
        }
        produced.push(id);
        if let Ok(text) = lm.decode(&produced) {
            // A token may end inside a multi-byte character: wait for the rest.
            if text.len() > sent && !text.ends_with('\u{FFFD}') {
                spell(&mut pending, &text[sent..]);
                let _ = events.send(GenEvent::Delta {
                    text: text[sent..].to_string(),
                    logprobs: std::mem::take(&mut pending),
                });
                sent = text.len();
            }
        }
    });
    if let Some(e) = logprob_error {
        return failed(e.to_string());
    }
    match result {
        Ok(generation) => {
            if generation.text.len() > sent || !pending.is_empty() {
                let rest = generation.text.get(sent..).unwrap_or_default();
                spell(&mut pending, rest);
                let _ = events.send(GenEvent::Delta {
                    text: rest.to_string(),
                    logprobs: pending,
                });
            }
            let _ = events.send(GenEvent::Done {
                usage: Usage::new(generation.prompt_tokens, generation.ids.len()),
                finish_reason: if generation.stopped { "stop" } else { "length" }.into(),
            });
        }
        Err(e) => failed(e.to_string()),
    }
}

/// Makes the chosen tokens' texts add up to `delta`, the text they produced, as OpenAI's add
/// up to the answer. They already do unless a character was split over several tokens: each
/// piece then decodes to U+FFFD alone, so the token that completes the character carries
/// all of it and the ones before carry nothing (OpenAI sends their raw bytes, which a
/// string cannot hold).
fn spell(pending: &mut [TokenLogprobs], delta: &str) {
    let pieces: String = pending.iter().map(|t| t.token.as_str()).collect();
    if pieces == delta {
        return;
    }
    if let Some((last, before)) = pending.split_last_mut() {
        before.iter_mut().for_each(|t| t.token.clear());
        last.token = delta.to_string();
    }
}

/// The OpenAI `logprobs.content` entry of `id`, drawn from `logits` after `context`: its
/// log-probability and the `n` most likely tokens there.
fn token_logprobs(
    lm: &CausalLm,
    context: &[u32],
    id: u32,
    logits: &[f32],
    n: usize,
) -> Result<TokenLogprobs, CausalError> {
    let log_probs = log_softmax(logits);
    let top = top_ids(&log_probs, n);
    let mut ids = vec![id];
    ids.extend(&top);
    let mut texts = lm.token_texts(context, &ids)?.into_iter();
    let token = texts.next().unwrap_or_default();
    let top_logprobs = top
        .iter()
        .zip(texts)
        .map(|(&t, token)| TopLogprob {
            token,
            logprob: log_probs[t as usize],
        })
        .collect();
    Ok(TokenLogprobs {
        token,
        logprob: log_probs[id as usize],
        top_logprobs,
    })
}
