//! Files the loader must refuse with a message that says what is wrong, and prompts longer
//! than the model's context (cut from the left, and counted).

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use taskbench::models::causal::{CausalError, CausalLm, Sampling};

use crate::scratch::Scratch;
use crate::{smollm2_path, tiny};

fn load_error(path: &Path) -> (CausalError, String) {
    match CausalLm::load(path, None) {
        Ok(_) => panic!("{} loaded, but it should have failed", path.display()),
        Err(e) => {
            let text = e.to_string();
            (e, text)
        }
    }
}

/// A one-layer GGUF (hidden 8, 2 heads, 1 key/value head, feed-forward 16, 4 tokens) with
/// every tensor llama needs, in f32; `extra` metadata is added (and may replace the defaults).
fn write_tiny_gguf(path: &Path, architecture: &str, extra: Vec<(&str, Value)>) {
    let (vocab, hidden, kv, ff) = (4usize, 8usize, 4usize, 16usize);
    let arch = |key: &str| format!("{architecture}.{key}");
    let mut metadata: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(architecture.into()),
        ),
        (arch("embedding_length"), Value::U32(hidden as u32)),
        (arch("block_count"), Value::U32(1)),
        (arch("attention.head_count"), Value::U32(2)),
        (arch("attention.head_count_kv"), Value::U32(1)),
        (arch("feed_forward_length"), Value::U32(ff as u32)),
        (arch("context_length"), Value::U32(32)),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(
                ["a", "b", "c", "ab"]
                    .iter()
                    .map(|t| Value::String(t.to_string()))
                    .collect(),
            ),
        ),
    ];
    for (key, value) in extra {
        metadata.retain(|(k, _)| k != key);
        metadata.push((key.into(), value));
    }
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("token_embd.weight".into(), vec![vocab, hidden]),
        ("blk.0.attn_norm.weight".into(), vec![hidden]),
        ("blk.0.attn_q.weight".into(), vec![hidden, hidden]),
        ("blk.0.attn_k.weight".into(), vec![kv, hidden]),
        ("blk.0.attn_v.weight".into(), vec![kv, hidden]),
        ("blk.0.attn_output.weight".into(), vec![hidden, hidden]),
        ("blk.0.ffn_norm.weight".into(), vec![hidden]),
        ("blk.0.ffn_gate.weight".into(), vec![ff, hidden]),
        ("blk.0.ffn_up.weight".into(), vec![ff, hidden]),
        ("blk.0.ffn_down.weight".into(), vec![hidden, ff]),
        ("output_norm.weight".into(), vec![hidden]),
    ];
    let tensors: Vec<(String, QTensor)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| ((i * 7 % 13) as f32 - 6.0) / 10.0).collect();
            let t = Tensor::from_vec(data, shape, &Device::Cpu).unwrap();
            (name, QTensor::quantize(&t, GgmlDType::F32).unwrap())
        })
        .collect();
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata_refs, &tensor_refs).unwrap();
}

fn gpt2_tokenizer_metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        ),
    ]
}

#[test]
fn tiny_gguf_with_a_gpt2_vocabulary_loads() {
    // The control for the failures below: the same file builder makes a loadable model.
    let scratch = Scratch::new();
    let path = scratch.path("ok.gguf");
    write_tiny_gguf(&path, "llama", gpt2_tokenizer_metadata());
    let model = CausalLm::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(model.config().vocab, 4);
    assert_eq!(model.encode("abc").unwrap(), [3, 2]);
    let logits = model.logits(&[0, 3, 1]);
    assert_eq!(logits.len(), 3 * 4);
    assert!(logits.iter().all(|v| v.is_finite()));
}

#[test]
fn unsupported_architecture_is_named_with_the_supported_ones() {
    let scratch = Scratch::new();
    for architecture in ["gpt2", "falcon"] {
        let path = scratch.path(&format!("{architecture}.gguf"));
        write_tiny_gguf(&path, architecture, gpt2_tokenizer_metadata());
        let (_, err) = load_error(&path);
        assert!(
            err.contains(&format!("architecture \"{architecture}\" is not supported"))
                && err.contains("llama")
                && err.contains("qwen2")
                && err.contains(&path.display().to_string()),
            "the error should name the file, the architecture and the supported ones: {err}"
        );
    }
}

#[test]
fn unsupported_tokenizer_model_is_named() {
    let scratch = Scratch::new();
    let path = scratch.path("spm.gguf");
    write_tiny_gguf(
        &path,
        "llama",
        vec![("tokenizer.ggml.model", Value::String("llama".into()))],
    );
    let (err, text) = load_error(&path);
    assert!(matches!(err, CausalError::Tokenizer { .. }), "{err:?}");
    assert!(
        text.contains("tokenizer.ggml.model = llama")
            && text.contains("SentencePiece")
            && text.contains("gpt2"),
        "the error should name the tokenizer model and the supported one: {text}"
    );
}

#[test]
fn truncated_gguf_names_a_tensor() {
    let real = smollm2_path();
    let bytes = std::fs::read(&real).unwrap();
    let cut = bytes.len() * 2 / 5;
    let scratch = Scratch::new();
    let path = scratch.write("cut.gguf", &bytes[..cut]);
    let (_, err) = load_error(&path);
    assert!(err.contains("truncated"), "{err}");
    let mut file = std::fs::File::open(&real).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let named = err
        .split("tensor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert!(
        content.tensor_infos.contains_key(named),
        "the error should name a tensor of the file (got {named:?}): {err}"
    );
    assert!(
        err.contains(&format!("{cut} bytes")),
        "the file's size: {err}"
    );
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let scratch = Scratch::new();
    let path = scratch.write(
        "model.gguf",
        "this is a text file, not a model\n".repeat(100),
    );
    let (_, err) = load_error(&path);
    assert!(
        err.contains("not a readable GGUF file") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let (_, err) = load_error(&scratch.path("missing.gguf"));
    assert!(err.contains("missing.gguf"), "{err}");
}

#[test]
fn prompts_longer_than_the_context_are_cut_from_the_left() {
    let model = tiny("tiny-llama");
    let context = model.config().context;
    assert_eq!(context, 64);
    let long: Vec<u32> = (0..100u32).map(|i| (i * 37 + 11) % 300).collect();
    let sampling = Sampling {
        max_tokens: 8,
        temperature: 0.0,
        seed: 0,
    };
    let cut = model.generate(&long, &sampling, |_| {}).unwrap();
    assert_eq!(cut.truncated_tokens, 100 - (context - 8), "dropped tokens");
    assert_eq!(cut.prompt_tokens, context - 8);
    let kept = &long[cut.truncated_tokens..];
    let direct = model.generate(kept, &sampling, |_| {}).unwrap();
    assert_eq!(direct.truncated_tokens, 0);
    assert_eq!(
        cut.ids, direct.ids,
        "the kept tokens should be the last ones"
    );

    let conts = vec![vec![5u32, 6, 7], vec![8]];
    let scored = model.score_continuations(&long, &conts).unwrap();
    let scored_kept = model
        .score_continuations(&long[100 - (context - 3)..], &conts)
        .unwrap();
    assert_eq!(
        scored, scored_kept,
        "scoring keeps the last context - 3 prompt tokens"
    );

    let fits: Vec<u32> = long[..40].to_vec();
    let whole = model.generate(&fits, &sampling, |_| {}).unwrap();
    assert_eq!(whole.truncated_tokens, 0);
    assert_eq!(whole.prompt_tokens, 40);

    let too_many = Sampling {
        max_tokens: context,
        ..sampling
    };
    match model.generate(&long, &too_many, |_| {}) {
        Ok(g) => panic!(
            "max_tokens = context left no room but generated {:?}",
            g.ids
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(
                matches!(
                    e,
                    CausalError::PromptTooLong {
                        tokens: 100,
                        context: 64
                    }
                ) && text.contains("100 tokens")
                    && text.contains("context of 64"),
                "{text}"
            );
        }
    }
}

#[test]
fn rotary_scaling_is_refused_not_ignored() {
    let scratch = Scratch::new();
    // GGUF: a scaling type in the metadata.
    let path = scratch.path("scaled.gguf");
    let mut metadata = gpt2_tokenizer_metadata();
    metadata.push(("llama.rope.scaling.type", Value::String("yarn".into())));
    write_tiny_gguf(&path, "llama", metadata);
    let (_, err) = load_error(&path);
    assert!(
        err.contains("rotary scaling \"yarn\" is not supported"),
        "{err}"
    );
    // HF: Llama 3's rope_scaling in config.json.
    let dir = scratch.path("scaled-llama");
    std::fs::create_dir_all(&dir).unwrap();
    let source = crate::fixtures().join("tiny-llama");
    for entry in std::fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    config["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    config["rope_parameters"]["rope_type"] = serde_json::json!("llama3");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let (_, err) = load_error(&dir);
    assert!(
        err.contains("rotary scaling \"llama3\" is not supported"),
        "{err}"
    );
}
