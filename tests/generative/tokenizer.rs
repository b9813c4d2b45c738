//! SmolLM2's GGUF vocabulary against llama.cpp's tokenizer (`special = true`, BOS as the
//! metadata says) and detokenizer.

use candle_core::quantized::gguf_file;
use taskbench::models::causal::tokenizer::{load_gguf_tokenizer, tokenizer_from_gguf};

use crate::{llamacpp_refs, preview, smollm2, smollm2_path};

fn smollm2_content() -> gguf_file::Content {
    let path = smollm2_path();
    let mut file = std::fs::File::open(&path).unwrap();
    gguf_file::Content::read(&mut file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prompt_ids_and_decodes_match_llama_cpp() {
    let model = smollm2();
    let refs = llamacpp_refs();
    let mut failures = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let ours = model.encode(&r.prompt).unwrap();
        if ours != r.prompt_ids {
            failures.push(format!(
                "prompt {i} {}: encode differs\n  llama.cpp {:?}\n  ours      {:?}",
                preview(&r.prompt),
                r.prompt_ids,
                ours
            ));
        }
        let decoded = model.decode(&r.ids).unwrap();
        if decoded != r.text {
            failures.push(format!(
                "prompt {i}: decode of {:?} differs\n  llama.cpp {:?}\n  ours      {:?}",
                r.ids, r.text, decoded
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences from llama.cpp over {} prompts:\n{}",
        failures.len(),
        refs.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_vocabulary_facts() {
    let (_, info) = load_gguf_tokenizer(&smollm2_content()).unwrap();
    assert_eq!(info.model, "gpt2");
    assert_eq!(info.pre, "smollm");
    assert_eq!(info.vocab_size, 49152);
    assert_eq!(info.bos_token_id, Some(1));
    assert_eq!(info.eos_token_id, Some(2));
    assert_eq!(info.bos_token.as_deref(), Some("<|im_start|>"));
    assert_eq!(info.eos_token.as_deref(), Some("<|im_end|>"));
    assert!(!info.add_bos, "SmolLM2 adds no BOS");
    assert!(info.eog_token_ids.contains(&2), "{:?}", info.eog_token_ids);

    let special = smollm2().special_tokens();
    assert_eq!(special.bos, Some(1));
    assert!(!special.add_bos);
    assert!(special.eos.contains(&2), "EOS ids {:?}", special.eos);
    assert_eq!(smollm2().config().vocab, 49152);
}

#[test]
fn chat_markup_is_one_token_each_and_skipped_when_decoding() {
    let model = smollm2();
    let ids = model
        .encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        .unwrap();
    assert_eq!(ids, [1, 4093, 198, 26843, 2, 198, 1, 520, 9531, 198]);
    assert_eq!(model.decode(&ids).unwrap(), "user\nHi\nassistant\n");
    // A continuation never gets BOS, whatever the metadata says.
    assert_eq!(
        model.encode_continuation(" positive").unwrap(),
        model.encode(" positive").unwrap()
    );
}

#[test]
fn unsupported_pre_tokenizer_is_named_with_the_supported_ones() {
    let mut content = smollm2_content();
    content.metadata.insert(
        "tokenizer.ggml.pre".into(),
        gguf_file::Value::String("chatglm-bpe".into()),
    );
    let err = tokenizer_from_gguf(&content).unwrap_err().to_string();
    assert!(
        err.contains("chatglm-bpe") && err.contains("smollm") && err.contains("qwen2"),
        "error should name the pre-tokenizer and list supported ones: {err}"
    );
}
