//! Build a `tokenizers::Tokenizer` from the vocabulary stored in a GGUF file.
//!
//! Only byte-level BPE vocabularies (`tokenizer.ggml.model = gpt2`) are supported. The
//! pre-tokenizer is chosen from `tokenizer.ggml.pre` the way llama.cpp does it: every `pre` name
//! maps to an ordered list of split regexes; each regex is applied to every piece produced by
//! the previous one, keeping both the matches and the text between them (HF `Split` with
//! `Isolated` behaviour), and the pieces are then byte-level encoded and merged with BPE.
//!
//! Control tokens (`token_type` 3, and 2 = unknown) become special added tokens; user-defined
//! tokens (`token_type` 4) become non-special added tokens. Both are matched in the raw text
//! before pre-tokenization, so chat markup such as `<|im_start|>` encodes to one id, as
//! llama.cpp does when it tokenizes with `parse_special = true`.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::{self, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel as ByteLevelPre;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

/// GPT-2's split regex (also the second stage of `smollm`/`starcoder`).
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3: case-insensitive contractions (spelled out per letter so that Unicode case folding
/// cannot widen them), letters with one optional leading non-letter, digits in groups of 1-3.
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2 / Qwen2.5: as Llama 3, but every digit is its own piece.
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// One numeric character per piece (SmolLM, StarCoder, ...).
const RE_DIGIT: &str = r"\p{N}";
/// llama.cpp's fallback list for `pre = default` (or a missing `pre`).
const RE_DEFAULT_PUNCT: &str = r"[\p{P}\$\+<=>\^~\|]+";
const RE_DEFAULT_NUMBERS: &str = r"\p{N}+";
const RE_DEFAULT_THREE_DIGITS: &str = r"[0-9][0-9][0-9]";

/// `tokenizer.ggml.pre` values this module understands, grouped by the regexes they use.
const SUPPORTED_PRE: &[&str] = &[
    "default",
    "gpt-2",
    "gpt2",
    "phi-2",
    "mpt",
    "olmo",
    "smollm",
    "starcoder",
    "refact",
    "codeshell",
    "command-r",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "smaug-bpe",
    "dbrx",
    "qwen2",
    "deepseek-r1-qwen",
    "stablelm2",
    "megrez",
];

// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_UNKNOWN: i64 = 2;
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Token texts llama.cpp treats as end-of-generation (and as control tokens, whatever their
/// declared type).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];

/// Why a tokenizer could not be built from GGUF metadata.
#[derive(Debug, thiserror::Error)]
pub enum GgufTokenizerError {
    #[error("GGUF metadata has no `{0}` key")]
    MissingKey(String),
    #[error("GGUF metadata key `{key}` is not {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error(
        "unsupported GGUF tokenizer model `tokenizer.ggml.model = {0}`: only byte-level BPE \
         vocabularies (`gpt2`) are supported; SentencePiece (`llama`), WordPiece (`bert`), \
         Unigram (`t5`) and other vocabularies are not"
    )]
    UnsupportedModel(String),
    #[error("unsupported GGUF pre-tokenizer `tokenizer.ggml.pre = {pre}`; supported: {supported}")]
    UnsupportedPre { pre: String, supported: String },
    #[error("invalid GGUF tokenizer metadata: {0}")]
    Invalid(String),
    #[error("building the tokenizer failed: {0}")]
    Build(String),
}

/// Facts about the GGUF vocabulary that generation and prompt building need.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTokenizerInfo {
    /// `tokenizer.ggml.model` (always `gpt2` for a tokenizer this module built).
    pub model: String,
    /// `tokenizer.ggml.pre`, or `default` when absent.
    pub pre: String,
    pub vocab_size: usize,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub unk_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    /// Text of the BOS/EOS tokens (for chat templates' `bos_token` / `eos_token`).
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Whether a BOS is prepended when encoding with `add_special_tokens = true`
    /// (`tokenizer.ggml.add_bos_token`, else llama.cpp's default for the `pre` type).
    pub add_bos: bool,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos: bool,
    /// Tokens that end generation: EOS plus llama.cpp's end-of-turn tokens found in the vocab.
    pub eog_token_ids: Vec<u32>,
    /// `tokenizer.chat_template`, if present.
    pub chat_template: Option<String>,
}

/// Build the tokenizer from GGUF metadata. Encoding with `add_special_tokens = true` adds BOS/EOS
/// as the metadata asks (like llama.cpp's `add_special`); added/control tokens are always parsed
/// (like llama.cpp's `parse_special = true`).
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<Tokenizer, GgufTokenizerError> {
    load_gguf_tokenizer(content).map(|(tokenizer, _)| tokenizer)
}

/// Read the BOS/EOS/add_bos facts (and the chat template) without building the tokenizer.
pub fn tokenizer_info_from_gguf(
    content: &gguf_file::Content,
) -> Result<GgufTokenizerInfo, GgufTokenizerError> {
    let vocab = read_vocab(content)?;
    Ok(vocab.info)
}

/// Build the tokenizer and return it with the vocabulary facts.
pub fn load_gguf_tokenizer(
    content: &gguf_file::Content,
) -> Result<(Tokenizer, GgufTokenizerInfo), GgufTokenizerError> {
    let vocab = read_vocab(content)?;
    let merges = read_merges(content)?;
    let info = vocab.info;
    let style = pre_style(&info.pre)?;

    let mut token_to_id = HashMap::with_capacity(vocab.tokens.len());
    for (id, token) in vocab.tokens.iter().enumerate() {
        if let Some(previous) = token_to_id.insert(token.as_str(), id as u32) {
            return Err(GgufTokenizerError::Invalid(format!(
                "duplicate token {token:?} with ids {previous} and {id}"
            )));
        }
    }
    let bpe_vocab: Vocab = token_to_id
        .iter()
        .map(|(token, id)| (token.to_string(), *id))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(bpe_vocab, merges)
        .ignore_merges(style.ignore_merges)
        .build()
        .map_err(|e| GgufTokenizerError::Build(e.to_string()))?;

    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer(style.regexes)?));
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, false, false)));

    let added: Vec<AddedToken> = vocab
        .tokens
        .iter()
        .zip(&vocab.types)
        .filter_map(|(text, ty)| {
            let special = match *ty {
                TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => true,
                TOKEN_TYPE_USER_DEFINED => EOG_TEXTS.contains(&text.as_str()),
                _ if EOG_TEXTS.contains(&text.as_str()) => true,
                _ => return None,
            };
            Some(AddedToken::from(text.clone(), special).normalized(false))
        })
        .collect();
    let (specials, plain): (Vec<_>, Vec<_>) = added.into_iter().partition(|t| t.special);
    tokenizer
        .add_special_tokens(specials)
        .and_then(|_| tokenizer.add_tokens(plain))
        .map_err(|e| GgufTokenizerError::Build(e.to_string()))?;

    if let Some(post) = post_processor(&info)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok((tokenizer, info))
}

struct PreStyle {
    regexes: &'static [&'static str],
    ignore_merges: bool,
    add_bos_default: bool,
}

fn pre_style(pre: &str) -> Result<PreStyle, GgufTokenizerError> {
    let style = |regexes, ignore_merges, add_bos_default| PreStyle {
        regexes,
        ignore_merges,
        add_bos_default,
    };
    Ok(match pre {
        "default" => style(
            &[
                RE_DEFAULT_PUNCT,
                RE_GPT2,
                RE_DEFAULT_NUMBERS,
                RE_DEFAULT_THREE_DIGITS,
            ],
            false,
            false,
        ),
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" => style(&[RE_GPT2], false, false),
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => {
            style(&[RE_DIGIT, RE_GPT2], false, false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => style(&[RE_LLAMA3], true, true),
        "smaug-bpe" | "dbrx" => style(&[RE_LLAMA3], false, false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => style(&[RE_QWEN2], false, false),
        other => {
            return Err(GgufTokenizerError::UnsupportedPre {
                pre: other.to_string(),
                supported: SUPPORTED_PRE.join(", "),
            })
        }
    })
}

fn pre_tokenizer(regexes: &[&str]) -> Result<PreTokenizerWrapper, GgufTokenizerError> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::with_capacity(regexes.len() + 1);
    for regex in regexes {
        let split = Split::new(
            SplitPattern::Regex((*regex).to_string()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| GgufTokenizerError::Build(format!("split regex {regex:?}: {e}")))?;
        steps.push(split.into());
    }
    steps.push(ByteLevelPre::new(false, false, false).into());
    Ok(Sequence::new(steps).into())
}

fn post_processor(
    info: &GgufTokenizerInfo,
) -> Result<Option<TemplateProcessing>, GgufTokenizerError> {
    if !info.add_bos && !info.add_eos {
        return Ok(None);
    }
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut specials = Vec::new();
    let bos = if info.add_bos {
        match (&info.bos_token, info.bos_token_id) {
            (Some(text), Some(id)) => Some((text.clone(), id)),
            _ => {
                return Err(GgufTokenizerError::Invalid(
                    "tokenizer.ggml.add_bos_token is true but there is no BOS token".into(),
                ))
            }
        }
    } else {
        None
    };
    let eos = if info.add_eos {
        match (&info.eos_token, info.eos_token_id) {
            (Some(text), Some(id)) => Some((text.clone(), id)),
            _ => {
                return Err(GgufTokenizerError::Invalid(
                    "tokenizer.ggml.add_eos_token is true but there is no EOS token".into(),
                ))
            }
        }
    } else {
        None
    };
    for (seq, part) in [("A", 0), ("B", 1)] {
        if let Some((text, _)) = &bos {
            pair.push(format!("{text}:{part}"));
            if part == 0 {
                single.push(text.clone());
            }
        }
        pair.push(format!("${seq}:{part}"));
        if part == 0 {
            single.push("$A".to_string());
        }
        if let Some((text, _)) = &eos {
            pair.push(format!("{text}:{part}"));
            if part == 0 {
                single.push(text.clone());
            }
        }
    }
    specials.extend(bos.clone());
    if eos != bos {
        specials.extend(eos);
    }
    TemplateProcessing::builder()
        .try_single(single)
        .and_then(|b| b.try_pair(pair))
        .map_err(|e| GgufTokenizerError::Build(e.to_string()))?
        .special_tokens(specials)
        .build()
        .map(Some)
        .map_err(|e| GgufTokenizerError::Build(e.to_string()))
}

struct GgufVocab {
    tokens: Vec<String>,
    types: Vec<i64>,
    info: GgufTokenizerInfo,
}

fn read_vocab(content: &gguf_file::Content) -> Result<GgufVocab, GgufTokenizerError> {
    let md = &content.metadata;
    let model = get_string(md, "tokenizer.ggml.model")?
        .ok_or_else(|| GgufTokenizerError::MissingKey("tokenizer.ggml.model".into()))?;
    if model != "gpt2" {
        return Err(GgufTokenizerError::UnsupportedModel(model));
    }
    let pre = get_string(md, "tokenizer.ggml.pre")?.unwrap_or_else(|| "default".to_string());
    let style = pre_style(&pre)?;

    let tokens = get_string_array(md, "tokenizer.ggml.tokens")?
        .ok_or_else(|| GgufTokenizerError::MissingKey("tokenizer.ggml.tokens".into()))?;
    let types = match md.get("tokenizer.ggml.token_type") {
        None => vec![1; tokens.len()],
        Some(value) => {
            let key = "tokenizer.ggml.token_type";
            let items = value.to_vec().map_err(|_| wrong_type(key, "an array"))?;
            let types = items
                .iter()
                .map(|v| as_i64(v).ok_or_else(|| wrong_type(key, "an array of integers")))
                .collect::<Result<Vec<_>, _>>()?;
            if types.len() < tokens.len() {
                return Err(GgufTokenizerError::Invalid(format!(
                    "{key} has {} entries for {} tokens",
                    types.len(),
                    tokens.len()
                )));
            }
            types
        }
    };

    let token_id = |key: &str| -> Result<Option<u32>, GgufTokenizerError> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => {
                let id = as_i64(v).ok_or_else(|| wrong_type(key, "an integer"))?;
                // llama.cpp ignores ids outside the vocabulary.
                Ok((0..tokens.len() as i64).contains(&id).then_some(id as u32))
            }
        }
    };
    let bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
    let eos_token_id = token_id("tokenizer.ggml.eos_token_id")?;
    let eot_token_id = token_id("tokenizer.ggml.eot_token_id")?;
    let eom_token_id = token_id("tokenizer.ggml.eom_token_id")?;
    let unk_token_id = token_id("tokenizer.ggml.unknown_token_id")?;
    let pad_token_id = token_id("tokenizer.ggml.padding_token_id")?;
    let add_bos = get_bool(md, "tokenizer.ggml.add_bos_token")?.unwrap_or(style.add_bos_default);
    let add_eos = get_bool(md, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);

    let mut eog_token_ids: Vec<u32> = [eos_token_id, eot_token_id, eom_token_id]
        .into_iter()
        .flatten()
        .collect();
    for (id, token) in tokens.iter().enumerate() {
        if EOG_TEXTS.contains(&token.as_str()) {
            eog_token_ids.push(id as u32);
        }
    }
    eog_token_ids.sort_unstable();
    eog_token_ids.dedup();

    let text_of = |id: Option<u32>| id.map(|id| tokens[id as usize].clone());
    let info = GgufTokenizerInfo {
        model,
        pre,
        vocab_size: tokens.len(),
        bos_token_id,
        eos_token_id,
        unk_token_id,
        pad_token_id,
        bos_token: text_of(bos_token_id),
        eos_token: text_of(eos_token_id),
        add_bos,
        add_eos,
        eog_token_ids,
        chat_template: get_string(md, "tokenizer.chat_template")?,
    };
    Ok(GgufVocab {
        tokens,
        types,
        info,
    })
}

fn read_merges(content: &gguf_file::Content) -> Result<Vec<(String, String)>, GgufTokenizerError> {
    let key = "tokenizer.ggml.merges";
    let merges = get_string_array(&content.metadata, key)?
        .ok_or_else(|| GgufTokenizerError::MissingKey(key.into()))?;
    merges
        .into_iter()
        .map(|merge| {
            // As llama.cpp: the separator is the first space after the first character.
            let skip = merge.chars().next().map_or(0, char::len_utf8);
            match merge[skip..].find(' ').map(|pos| pos + skip) {
                Some(pos) => Ok((merge[..pos].to_string(), merge[pos + 1..].to_string())),
                None => Err(GgufTokenizerError::Invalid(format!(
                    "merge {merge:?} has no space separator"
                ))),
            }
        })
        .collect()
}

fn wrong_type(key: &str, expected: &'static str) -> GgufTokenizerError {
    GgufTokenizerError::WrongType {
        key: key.to_string(),
        expected,
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    Some(match value {
        Value::U8(v) => *v as i64,
        Value::I8(v) => *v as i64,
        Value::U16(v) => *v as i64,
        Value::I16(v) => *v as i64,
        Value::U32(v) => *v as i64,
        Value::I32(v) => *v as i64,
        Value::U64(v) => i64::try_from(*v).ok()?,
        Value::I64(v) => *v,
        _ => return None,
    })
}

fn get_string(
    md: &HashMap<String, Value>,
    key: &str,
) -> Result<Option<String>, GgufTokenizerError> {
    md.get(key)
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| wrong_type(key, "a string"))
        })
        .transpose()
}

fn get_bool(md: &HashMap<String, Value>, key: &str) -> Result<Option<bool>, GgufTokenizerError> {
    md.get(key)
        .map(|v| v.to_bool().map_err(|_| wrong_type(key, "a boolean")))
        .transpose()
}

fn get_string_array(
    md: &HashMap<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, GgufTokenizerError> {
    let Some(value) = md.get(key) else {
        return Ok(None);
    };
    let items = value
        .to_vec()
        .map_err(|_| wrong_type(key, "an array of strings"))?;
    items
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| wrong_type(key, "an array of strings"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let pre_tok = pre_tokenizer(pre_style(pre).unwrap().regexes).unwrap();
        let mut s = PreTokenizedString::from(text);
        pre_tok.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(piece, _, _)| piece.replace('\u{120}', " ").replace('\u{10a}', "\n"))
            .collect()
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(
            pieces("smollm", "pi is 3.14159, x12"),
            ["pi", " is", " ", "3", ".", "1", "4", "1", "5", "9", ",", " x", "1", "2"]
        );
    }

    #[test]
    fn gpt2_keeps_digit_runs_and_trailing_space_rule() {
        assert_eq!(
            pieces("gpt-2", "I'll pay 1234   now\n"),
            ["I", "'ll", " pay", " 1234", "  ", " now", "\n"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three() {
        assert_eq!(
            pieces("llama3", "It's 1234567!\n\nok"),
            ["It", "'s", " ", "123", "456", "7", "!\n\n", "ok"]
        );
    }

    #[test]
    fn qwen2_splits_digits_and_keeps_case_insensitive_contractions() {
        assert_eq!(pieces("qwen2", "IT'S 42"), ["IT", "'S", " ", "4", "2"]);
    }

    #[test]
    fn unknown_pre_is_named() {
        let err = pre_style("bloom").err().unwrap().to_string();
        assert!(err.contains("bloom") && err.contains("smollm"), "{err}");
    }
}
