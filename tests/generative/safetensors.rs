//! HF safetensors folders against transformers: tiny random `LlamaForCausalLM` (untied output
//! head, BOS added) and `Qwen2ForCausalLM` (q/k/v biases, head tied to the embeddings), from
//! `scripts/make_causal_reference.py`. Logits of every position within 1e-4 of transformers'.

use serde::Deserialize;
use taskbench::models::causal::config::Architecture;
use taskbench::models::Message;

use crate::{fixtures, preview, tiny};

const LOGIT_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    tie_word_embeddings: bool,
    add_bos: bool,
    chat: Chat,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Chat {
    messages: Vec<Message>,
    rendered: String,
}

#[derive(Deserialize)]
struct Case {
    text: Option<String>,
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn check(name: &str, architecture: Architecture, rope_theta: f32) {
    let dir = fixtures().join(name);
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reference: Reference =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = tiny(name);
    let config = model.config();
    assert_eq!(config.architecture, architecture, "{name}");
    assert_eq!(
        (
            config.hidden,
            config.layers,
            config.heads,
            config.kv_heads,
            config.head_dim
        ),
        (64, 2, 4, 2, 16),
        "{name}: shape from config.json"
    );
    assert_eq!(config.context, 64, "{name}: max_position_embeddings");
    assert_eq!(
        config.rope_theta, rope_theta,
        "{name}: rope_theta (config.json's rope_parameters.rope_theta)"
    );
    assert_eq!(
        model.model().output.is_none(),
        reference.tie_word_embeddings,
        "{name}: the output head should be tied exactly when the checkpoint has no lm_head.weight"
    );
    let special = model.special_tokens();
    assert_eq!(special.bos, Some(1), "{name}: BOS <|im_start|>");
    assert_eq!(special.add_bos, reference.add_bos, "{name}: add_bos_token");
    assert!(
        special.eos.contains(&2),
        "{name}: EOS ids {:?}",
        special.eos
    );

    assert_eq!(
        model.prompt_text(&reference.chat.messages, false).unwrap(),
        reference.chat.rendered,
        "{name}: chat template from tokenizer_config.json"
    );

    let vocab = config.vocab;
    let mut worst = 0.0f32;
    for (k, case) in reference.cases.iter().enumerate() {
        if let Some(text) = &case.text {
            assert_eq!(
                model.encode(text).unwrap(),
                case.ids,
                "{name} case {k} {}: ids differ from the HF tokenizer's",
                preview(text)
            );
        }
        let ours = model.logits(&case.ids);
        assert_eq!(ours.len(), case.ids.len() * vocab);
        for (pos, (row, theirs)) in ours.chunks_exact(vocab).zip(&case.logits).enumerate() {
            let (at, diff) = row
                .iter()
                .zip(theirs)
                .map(|(a, b)| (a - b).abs())
                .enumerate()
                .fold(
                    (0, 0.0f32),
                    |acc, (i, d)| if d > acc.1 { (i, d) } else { acc },
                );
            worst = worst.max(diff);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{name} case {k} ({} tokens) position {pos}: max abs logit diff {diff:e} > {LOGIT_TOLERANCE:e} \
                 at token {at} (ours {}, transformers {})",
                case.ids.len(),
                row[at],
                theirs[at]
            );
        }
    }
    eprintln!(
        "{name}: {} sequences, worst max abs logit diff {worst:e}",
        reference.cases.len()
    );
}

#[test]
fn tiny_llama_matches_transformers() {
    check("tiny-llama", Architecture::Llama, 1000.0);
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check("tiny-qwen2", Architecture::Qwen2, 100000.0);
}
