//! The key/value cache changes nothing: scoring continuations over a shared prompt (computed
//! once, rewound per continuation) and greedy generation (one token per forward) give what one
//! full forward of the whole sequence gives.

use taskbench::models::causal::{CausalLm, Sampling};
use taskbench::models::Message;

use crate::{argmax_margin, log_softmax, smollm2, tiny};

const SCORE_TOLERANCE: f64 = 1e-3;
/// Logit gap under which two candidates count as tied (either may win).
const TIE_MARGIN: f32 = 1e-3;

/// Sum of log-softmax of each continuation token from one forward of prompt + continuation.
fn full_forward_score(model: &CausalLm, prompt: &[u32], cont: &[u32]) -> f64 {
    if cont.is_empty() {
        return 0.0;
    }
    let vocab = model.config().vocab;
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(cont);
    let logits = model.logits(&seq);
    assert_eq!(logits.len(), seq.len() * vocab);
    cont.iter()
        .enumerate()
        .map(|(j, &next)| {
            let row = prompt.len() - 1 + j;
            log_softmax(&logits[row * vocab..(row + 1) * vocab])[next as usize]
        })
        .sum()
}

fn check_scores(name: &str, model: &CausalLm, prompt: &[u32], conts: &[Vec<u32>]) {
    let lens: Vec<usize> = conts.iter().map(Vec::len).collect();
    assert!(
        lens.iter().any(|&n| n > 2) && lens.contains(&1),
        "{name}: continuations should differ in length, got {lens:?}"
    );
    let shared = model.score_continuations(prompt, conts).unwrap();
    assert_eq!(shared.len(), conts.len());
    let mut worst = 0.0f64;
    for (k, cont) in conts.iter().enumerate() {
        let full = full_forward_score(model, prompt, cont);
        worst = worst.max((shared[k] - full).abs());
        let alone = model
            .score_continuations(prompt, std::slice::from_ref(cont))
            .unwrap()[0];
        assert!(
            (shared[k] - full).abs() <= SCORE_TOLERANCE,
            "{name}: continuation {k} {cont:?}: score over the shared prompt {} vs full forward {full} (diff {:e})",
            shared[k],
            (shared[k] - full).abs()
        );
        assert!(
            (shared[k] - alone).abs() <= 1e-9,
            "{name}: continuation {k}: {} scored with the others, {alone} alone: the rewound cache leaked",
            shared[k]
        );
        assert!(
            shared[k] <= 0.0 && shared[k].is_finite(),
            "{name}: {}",
            shared[k]
        );
    }
    eprintln!("{name}: scores {shared:?}, worst diff from full forward {worst:e}");
}

#[test]
fn scoring_over_the_shared_prompt_equals_full_forward_smollm2() {
    let model = smollm2();
    let text = model
        .prompt_text(
            &[Message::user(
                "Classify the sentiment of this review as positive, negative or neutral.\n\
                 Review: The food was cold but the staff were lovely.",
            )],
            false,
        )
        .unwrap();
    let prompt = model.encode(&text).unwrap();
    let conts: Vec<Vec<u32>> = [
        "positive",
        "negative",
        "neutral, with mixed feelings overall",
        "",
    ]
    .iter()
    .map(|c| model.encode_continuation(c).unwrap())
    .collect();
    assert!(conts[3].is_empty());
    check_scores("smollm2", model, &prompt, &conts);
    // The longest continuation first: shorter ones after it must not see its cached positions.
    let reordered = vec![conts[2].clone(), conts[0].clone(), conts[1].clone()];
    check_scores("smollm2 (longest first)", model, &prompt, &reordered);
}

#[test]
fn scoring_over_the_shared_prompt_equals_full_forward_tiny_models() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = tiny(name);
        let prompt = model.encode("The capital of France is").unwrap();
        let conts = vec![vec![7u32, 120, 33, 250, 5], vec![42], vec![299, 3], vec![]];
        check_scores(name, &model, &prompt, &conts);
    }
}

/// Greedy generation's tokens are the argmax of full-forward logits at each position (teacher
/// forcing), except where the top two logits are within `TIE_MARGIN`.
fn check_teacher_forcing(name: &str, model: &CausalLm, prompt: &[u32], max_tokens: usize) {
    let sampling = Sampling {
        max_tokens,
        temperature: 0.0,
        seed: 0,
    };
    let generation = model.generate(prompt, &sampling, |_| {}).unwrap();
    assert!(!generation.ids.is_empty(), "{name}: nothing generated");
    let vocab = model.config().vocab;
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&generation.ids);
    let logits = model.logits(&seq);
    let mut checked = 0;
    let mut ties = 0;
    for (i, &token) in generation.ids.iter().enumerate() {
        let row = prompt.len() - 1 + i;
        let (best, margin) = argmax_margin(&logits[row * vocab..(row + 1) * vocab]);
        if margin < TIE_MARGIN {
            ties += 1;
            // A near-tie may flip; everything after it still must follow the generated prefix.
            continue;
        }
        checked += 1;
        assert_eq!(
            token, best,
            "{name}: generated token {i} is {token}, but the full forward's argmax is {best} (margin {margin})\n generated {:?}",
            generation.ids
        );
    }
    if generation.stopped {
        let row = seq.len() - 1;
        let (best, margin) = argmax_margin(&logits[row * vocab..(row + 1) * vocab]);
        assert!(
            margin < TIE_MARGIN || model.special_tokens().eos.contains(&best),
            "{name}: generation stopped on EOS but the full forward's argmax after it is {best}"
        );
    }
    assert!(
        checked * 2 >= generation.ids.len(),
        "{name}: {ties} of {} tokens were near-ties; the check checked too little",
        generation.ids.len()
    );
    eprintln!(
        "{name}: {} generated tokens, {checked} checked against teacher forcing, {ties} near-ties",
        generation.ids.len()
    );
}

#[test]
fn greedy_generation_equals_teacher_forcing_smollm2() {
    let model = smollm2();
    let prompt = model.encode("The capital of France is").unwrap();
    check_teacher_forcing("smollm2", model, &prompt, 20);
}

#[test]
fn greedy_generation_equals_teacher_forcing_tiny_models() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let model = tiny(name);
        let prompt = model.encode("Classify the sentiment").unwrap();
        check_teacher_forcing(name, &model, &prompt, 24);
    }
}

/// A one-token decode step (the team path that generation and `serve` use) gives the logits
/// one batched forward over the whole sequence gives, bit for bit: the decode and prefill
/// kernels sum in one order. Before they did, activation quantization turned last-bit
/// differences into up to 0.7 logits on SmolLM2.
#[test]
fn decode_steps_equal_the_batched_forward_bit_for_bit() {
    use taskbench::models::causal::llama::{KvCache, Logits};
    let model = smollm2();
    let lm = model.model();
    let prompt = model
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();
    let next = model
        .encode(" Berlin, and the capital of Italy is Rome")
        .unwrap();
    let mut cache = KvCache::new(model.config(), 128);
    lm.forward(&prompt, &mut cache, Logits::Last);
    let mut seq = prompt.clone();
    for (step, &token) in next.iter().enumerate() {
        let decoded = lm.forward(&[token], &mut cache, Logits::Last);
        seq.push(token);
        let batched = lm.forward(&seq, &mut KvCache::new(model.config(), 128), Logits::Last);
        let differ = decoded
            .iter()
            .zip(&batched)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differ, 0,
            "step {step}: {differ} logits differ from the batched pass"
        );
    }
}
