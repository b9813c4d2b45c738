//! Greedy decoding of SmolLM2 against llama.cpp's, from llama.cpp's own prompt ids.
//!
//! Both run Q4_1 weights against 8-bit quantized activations and keep keys / values in f16, but
//! summation orders differ, so near-ties late in a continuation can flip. Measured when the
//! fixtures were made: 23/32 prompts agree on the first 16 tokens, 19/32 on all 24.

use taskbench::models::causal::Sampling;

use crate::{llamacpp_refs, preview, smollm2, LLAMACPP_GEN_TOKENS};

/// Leading tokens that must agree (or the whole reference when it is shorter).
const PREFIX: usize = 16;
/// Prompts (of 32) that must agree on that prefix.
const MIN_AGREEING: usize = 20;

/// End-of-sequence marker appended to a continuation that stopped on EOS, so that stopping
/// at the same place counts as agreeing and stopping elsewhere as differing.
const STOP: i64 = -1;

#[test]
fn greedy_continuations_agree_with_llama_cpp() {
    let model = smollm2();
    let refs = llamacpp_refs();
    let sampling = Sampling {
        max_tokens: LLAMACPP_GEN_TOKENS,
        temperature: 0.0,
        seed: 0,
    };
    let mut lines = Vec::new();
    let (mut prefix_ok, mut all_ok) = (0, 0);
    let mut text_failures = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let mut streamed = Vec::new();
        let generation = model
            .generate(&r.prompt_ids, &sampling, |id| streamed.push(id))
            .unwrap();
        assert_eq!(
            streamed, generation.ids,
            "prompt {i}: streamed ids differ from the result"
        );
        assert_eq!(generation.truncated_tokens, 0);
        assert_eq!(generation.prompt_tokens, r.prompt_ids.len());
        let with_stop = |ids: &[u32], stopped: bool| -> Vec<i64> {
            let mut v: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
            if stopped {
                v.push(STOP);
            }
            v
        };
        // llama.cpp's run stopped only on EOS before its token limit.
        let theirs = with_stop(&r.ids, r.ids.len() < LLAMACPP_GEN_TOKENS);
        let ours = with_stop(&generation.ids, generation.stopped);
        let common = theirs.iter().zip(&ours).take_while(|(a, b)| a == b).count();
        let need = PREFIX.min(theirs.len());
        let prefix_agrees = common >= need;
        let all_agree = ours == theirs;
        prefix_ok += prefix_agrees as usize;
        all_ok += all_agree as usize;
        if all_agree && generation.text != r.text {
            text_failures.push(format!(
                "prompt {i}: same ids, text {:?} vs llama.cpp's {:?}",
                generation.text, r.text
            ));
        }
        lines.push(format!(
            "{:>2} {} agree {:>2}/{:<2} {} {}",
            i,
            if prefix_agrees { "ok  " } else { "DIFF" },
            common.min(theirs.len()),
            theirs.len(),
            preview(&r.prompt),
            if all_agree {
                String::new()
            } else {
                format!(
                    "\n     llama.cpp {:?}\n     ours      {:?}",
                    r.text, generation.text
                )
            }
        ));
    }
    let report = format!(
        "{prefix_ok}/{} prompts agree with llama.cpp on the first {PREFIX} tokens (need {MIN_AGREEING}), \
         {all_ok}/{} on the whole continuation (24 tokens or up to EOS; STOP = EOS)\n{}",
        refs.len(),
        refs.len(),
        lines.join("\n")
    );
    eprintln!("{report}");
    assert!(text_failures.is_empty(), "{}", text_failures.join("\n"));
    assert!(prefix_ok >= MIN_AGREEING, "{report}");
}
