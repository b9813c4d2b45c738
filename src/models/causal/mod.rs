//! Causal (generative) language models of the llama family, from GGUF files or HF safetensors
//! folders, run on CPU by taskbench's own decoder: tokenizer, chat template, a key/value cache
//! per sequence, greedy or seeded sampling, and label scoring that computes a shared prompt
//! once for every label.

pub mod config;
mod decode;
pub mod llama;
pub mod load;
pub mod template;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use tokenizers::Tokenizer;

use self::config::LmConfig;
use self::llama::{KvCache, Llama, Logits};
use self::template::ChatTemplate;
use super::{Message, ModelInfo};

#[derive(Debug, thiserror::Error)]
pub enum CausalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{}: cannot build the tokenizer: {message}", path.display())]
    Tokenizer { path: PathBuf, message: String },
    #[error(transparent)]
    Template(#[from] template::TemplateError),
    #[error("{}: the model has no chat template; pass --chat-template FILE or --no-chat-template", path.display())]
    NoTemplate { path: PathBuf },
    #[error("tokenizer: {0}")]
    Tokenize(String),
    #[error("prompt of {tokens} tokens leaves no room in the model's context of {context} tokens")]
    PromptTooLong { tokens: usize, context: usize },
}

/// Token ids the tokenizer treats specially.
#[derive(Debug, Clone)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    /// Generation stops at any of these.
    pub eos: Vec<u32>,
    /// Whether the model expects BOS before every prompt (GGUF `tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

pub struct CausalLm {
    model: Llama,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    special: SpecialTokens,
    info: ModelInfo,
}

/// Sampling settings of one generation.
#[derive(Debug, Clone)]
pub struct Sampling {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub seed: u64,
}

/// One generation with its client-side timings.
#[derive(Debug, Clone)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    pub prompt_tokens: usize,
    /// Prompt tokens dropped from the left to fit the context.
    pub truncated_tokens: usize,
    /// Seconds from the call to the first generated token.
    pub ttft_s: f64,
    /// Seconds between consecutive output tokens.
    pub inter_token_s: Vec<f64>,
    pub total_s: f64,
    /// Whether generation ended on an end-of-sequence token (not the token limit).
    pub stopped: bool,
}

impl CausalLm {
    /// `path`: a `.gguf` file or a HF folder with `config.json`, safetensors weights and
    /// `tokenizer.json`. `chat_template`: a Jinja file replacing the model's own template.
    pub fn load(path: &Path, chat_template: Option<&Path>) -> Result<Self, CausalError> {
        let mut loaded = if path.is_dir() {
            load::hf_folder(path)?
        } else {
            load::gguf(path)?
        };
        if let Some(file) = chat_template {
            loaded.template = Some(
                ChatTemplate::from_file(file)?
                    .with_special_tokens(loaded.bos_text.clone(), loaded.eos_text.clone()),
            );
        }
        let template = loaded.template;
        let model = loaded.model;
        let info = ModelInfo {
            precision: None,
            name: path.display().to_string(),
            path: path.display().to_string(),
            backend: "causal-lm".into(),
            architecture: model.config.architecture.name().into(),
            head: "lm".into(),
            pooling: "none".into(),
            num_labels: 0,
            max_tokens: model.config.context,
            parameters: model.parameters(),
            weights_sha256: String::new(),
            device: "cpu".into(),
        };
        Ok(CausalLm {
            model,
            tokenizer: loaded.tokenizer,
            template,
            special: loaded.special,
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// For the caller that hashed the weights file (hashing is the run's choice: it costs a
    /// read of the whole file).
    pub fn info_mut(&mut self) -> &mut ModelInfo {
        &mut self.info
    }

    pub fn config(&self) -> &LmConfig {
        &self.model.config
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    pub fn has_chat_template(&self) -> bool {
        self.template.is_some()
    }

    /// The text the model sees: the chat template applied (with the assistant turn opened),
    /// or, with `raw`, the messages' contents joined by blank lines.
    pub fn prompt_text(&self, messages: &[Message], raw: bool) -> Result<String, CausalError> {
        if raw {
            let parts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            return Ok(parts.join("\n\n"));
        }
        let template = self.template.as_ref().ok_or(CausalError::NoTemplate {
            path: PathBuf::from(&self.info.path),
        })?;
        Ok(template.render(messages, true)?)
    }

    /// A finished conversation (no assistant turn opened), through the chat template.
    pub fn prompt_text_finished(&self, messages: &[Message]) -> Result<String, CausalError> {
        let template = self.template.as_ref().ok_or(CausalError::NoTemplate {
            path: PathBuf::from(&self.info.path),
        })?;
        Ok(template.render(messages, false)?)
    }

    /// Token ids of `text`, special tokens in it parsed as such, BOS first when the model
    /// asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, CausalError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| CausalError::Tokenize(e.to_string()))?;
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        if self.special.add_bos {
            ids.extend(self.special.bos);
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Ids of a continuation that follows a prompt, without BOS.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>, CausalError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| CausalError::Tokenize(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, CausalError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| CausalError::Tokenize(e.to_string()))
    }

    /// Keeps the last tokens of a prompt so that it and `reserve` more tokens fit the
    /// context; returns the ids kept and how many were dropped.
    fn fit_prompt<'a>(
        &self,
        prompt: &'a [u32],
        reserve: usize,
    ) -> Result<(&'a [u32], usize), CausalError> {
        let context = self.model.config.context;
        let room = context.saturating_sub(reserve);
        if room == 0 {
            return Err(CausalError::PromptTooLong {
                tokens: prompt.len(),
                context,
            });
        }
        let dropped = prompt.len().saturating_sub(room);
        Ok((&prompt[dropped..], dropped))
    }

    /// Log-probability of each continuation after `prompt` (sum over its tokens). The prompt
    /// runs once; each continuation reuses its keys and values.
    pub fn score_continuations(
        &self,
        prompt: &[u32],
        continuations: &[Vec<u32>],
    ) -> Result<Vec<f64>, CausalError> {
        let longest = continuations.iter().map(Vec::len).max().unwrap_or(0);
        let (prompt, _) = self.fit_prompt(prompt, longest)?;
        let mut cache = KvCache::new(&self.model.config, prompt.len() + longest);
        let first = self.model.forward(prompt, &mut cache, Logits::Last);
        let first = log_softmax(&first);
        let vocab = self.model.config.vocab;
        continuations
            .iter()
            .map(|cont| {
                let Some((&head, rest)) = cont.split_first() else {
                    return Ok(0.0);
                };
                let mut total = first[head as usize] as f64;
                if !rest.is_empty() {
                    cache.truncate(prompt.len());
                    let logits =
                        self.model
                            .forward(&cont[..cont.len() - 1], &mut cache, Logits::All);
                    for (row, &next) in logits.chunks_exact(vocab).zip(rest) {
                        total += log_softmax(row)[next as usize] as f64;
                    }
                }
                Ok(total)
            })
            .collect()
    }

    /// Generates up to `sampling.max_tokens` after `prompt`, stopping at an end token.
    /// `on_token` sees each id as it is produced (for streaming).
    pub fn generate(
        &self,
        prompt: &[u32],
        sampling: &Sampling,
        mut on_token: impl FnMut(u32),
    ) -> Result<Generation, CausalError> {
        self.generate_with_logits(prompt, sampling, |id, _| on_token(id))
    }

    /// As [`CausalLm::generate`], and `on_token` also sees the logits the id was drawn
    /// from (before temperature), for serving log-probabilities.
    pub fn generate_with_logits(
        &self,
        prompt: &[u32],
        sampling: &Sampling,
        mut on_token: impl FnMut(u32, &[f32]),
    ) -> Result<Generation, CausalError> {
        let start = Instant::now();
        let max_new = sampling.max_tokens.max(1);
        let (prompt, truncated) = self.fit_prompt(prompt, max_new)?;
        let mut cache = KvCache::new(&self.model.config, prompt.len() + max_new);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(sampling.seed);
        let mut logits = self.model.forward(prompt, &mut cache, Logits::Last);
        let mut ids = Vec::new();
        let mut ttft_s = 0.0;
        let mut inter_token_s = Vec::new();
        let mut last = start;
        let mut stopped = false;
        while ids.len() < max_new {
            let next = sample(&logits, sampling.temperature, &mut rng);
            let now = Instant::now();
            if ids.is_empty() {
                ttft_s = (now - start).as_secs_f64();
            } else {
                inter_token_s.push((now - last).as_secs_f64());
            }
            last = now;
            if self.special.eos.contains(&next) {
                stopped = true;
                break;
            }
            ids.push(next);
            on_token(next, &logits);
            if ids.len() == max_new {
                break;
            }
            logits = self.model.forward(&[next], &mut cache, Logits::Last);
        }
        let text = self.decode(&ids)?;
        Ok(Generation {
            ids,
            text,
            prompt_tokens: prompt.len(),
            truncated_tokens: truncated,
            ttft_s,
            inter_token_s,
            total_s: start.elapsed().as_secs_f64(),
            stopped,
        })
    }

    /// The text each of `ids` would add after `context`. Decoding an id alone is not
    /// enough: SentencePiece decoders drop the leading space of a text's first word, so
    /// ` card` after other tokens would read `card`. The last few ids of `context` are
    /// enough to keep that space; at the very start the text is what the decoder gives the
    /// whole answer, so the pieces still add up to it.
    pub fn token_texts(&self, context: &[u32], ids: &[u32]) -> Result<Vec<String>, CausalError> {
        const CONTEXT: usize = 4;
        let context = &context[context.len().saturating_sub(CONTEXT)..];
        let before = self.decode(context)?;
        let mut with = context.to_vec();
        ids.iter()
            .map(|&id| {
                with.truncate(context.len());
                with.push(id);
                let after = self.decode(&with)?;
                match after.strip_prefix(before.as_str()) {
                    Some(piece) => Ok(piece.to_string()),
                    // The context ended inside a character that `id` completes.
                    None => self.decode(&[id]),
                }
            })
            .collect()
    }

    /// Raw logits of every position of `tokens` from an empty cache (tests, benches).
    pub fn logits(&self, tokens: &[u32]) -> Vec<f32> {
        let mut cache = KvCache::new(&self.model.config, tokens.len());
        self.model.forward(tokens, &mut cache, Logits::All)
    }

    /// Runs `tokens` as a prefill then `decode` steps of greedy decoding; for benchmarks.
    pub fn model(&self) -> &Llama {
        &self.model
    }
}

/// Greedy at temperature 0 (the lowest id wins a tie, as llama.cpp's argmax), otherwise a
/// draw from softmax(logits / T).
fn sample(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> u32 {
    if temperature <= 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&v| (((v - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut draw = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        draw -= w;
        if draw <= 0.0 {
            return i as u32;
        }
    }
    (weights.len() - 1) as u32
}

/// Log-probabilities of the next token from its logits.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = logits
        .iter()
        .map(|&v| ((v - max) as f64).exp())
        .sum::<f64>()
        .ln() as f32;
    logits.iter().map(|&v| v - max - log_sum).collect()
}

/// The `n` most likely ids of a distribution, most likely first; among equals the lower id
/// first, so the order does not depend on the sort.
pub fn top_ids(log_probs: &[f32], n: usize) -> Vec<u32> {
    let by_rank = |a: &u32, b: &u32| {
        log_probs[*b as usize]
            .total_cmp(&log_probs[*a as usize])
            .then(a.cmp(b))
    };
    let mut ids: Vec<u32> = (0..log_probs.len() as u32).collect();
    let n = n.min(ids.len());
    if n < ids.len() {
        ids.select_nth_unstable_by(n, by_rank);
        ids.truncate(n);
    }
    ids.sort_unstable_by(by_rank);
    ids
}

/// Whether `model` names a generative model: a `.gguf` file, or a HF folder whose
/// `config.json` describes a decoder (`llama`, `qwen2`).
pub fn is_causal_lm(model: &str) -> bool {
    let path = std::path::Path::new(model);
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path.join("config.json")) else {
        return false;
    };
    let config: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    matches!(config["model_type"].as_str(), Some("llama" | "qwen2"))
}
