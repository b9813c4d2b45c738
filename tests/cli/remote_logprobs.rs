//! Label probabilities from log-probabilities, end to end: `eval --model openai:smol` against
//! `taskbench serve` of the real SmolLM2-135M-Instruct GGUF, checked against the same
//! probabilities computed in this process from the model's logits.
//!
//! The local side shares only the label-probability function with the API path (unit-tested
//! on its own in `prompt::label_probs`); everything else is independent: the prompt is
//! rendered here, the logits come from one batched forward pass over prompt + answer (serve
//! decodes one token at a time), and log-softmax and the top-20 are computed here in f64. So
//! agreement means the served log-probabilities are the model's, they survive the wire (both
//! streamed and whole), the cache and the report, and the API path reads every token.

use taskbench::models::causal::{CausalLm, Sampling};
use taskbench::models::remote::{GeneratedToken, TokenLogprob, MAX_TOP_LOGPROBS};
use taskbench::prompt::label_probs::label_probabilities;
use taskbench::prompt::{LabelInfo, PromptTemplate};

use crate::common::*;
use crate::remote::{Server, CLAIMS, KEY};

/// Largest difference allowed between a reported label probability and the one computed
/// here from the same decode steps' logits: only rounding separates them (serve sends f32
/// log-probabilities, results hold f32 probabilities; here it is all f64).
const TOLERANCE: f64 = 1e-5;

/// The same against logits from one batched forward pass: the one-token decode step gives
/// the batched pass's logits bit for bit (the decode and prefill kernels sum in one order), so
/// the same bound holds.
const BATCHED_TOLERANCE: f64 = TOLERANCE;

/// `eval`'s default `--max-tokens` for classification.
const MAX_TOKENS: usize = 16;

fn smollm2() -> std::path::PathBuf {
    root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Label probabilities computed in this process, from the two ways the model can give the
/// logits of the answer's positions.
struct Local {
    /// From the one-token decode steps of the greedy generation: serve's own path.
    decode_steps: Vec<Option<Vec<f64>>>,
    /// From one batched forward pass over prompt + answer.
    batched: Vec<Option<Vec<f64>>>,
}

/// The label probabilities of each row, from the model in this process (`None` where no
/// branch of the answer reaches a label).
fn local_probabilities(rows: &[(String, String)], labels: &[String]) -> Local {
    let lm = CausalLm::load(&smollm2(), None).expect("the SmolLM2 GGUF in models/");
    let template = PromptTemplate::builtin("zero-shot").unwrap();
    let infos = template
        .resolve_labels(&LabelInfo::from_names(labels))
        .unwrap();
    let mut local = Local {
        decode_steps: Vec::new(),
        batched: Vec::new(),
    };
    for (text, _) in rows {
        let messages = template.render(text, &infos, &[]).unwrap();
        let prompt = lm
            .encode(&lm.prompt_text(&messages, false).unwrap())
            .unwrap();
        let (ids, steps, batched) = greedy_logits(&lm, &prompt);
        let probs = |rows: &[Vec<f32>]| {
            label_probabilities(&token_tree(&lm, &ids, rows), labels).map(|p| p.probs)
        };
        local.decode_steps.push(probs(&steps));
        local.batched.push(probs(&batched));
    }
    local
}

/// The greedy answer's ids and, per answer position, the logits from the decode steps and
/// from one batched pass.
fn greedy_logits(lm: &CausalLm, prompt: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let sampling = Sampling {
        max_tokens: MAX_TOKENS,
        temperature: 0.0,
        seed: 0,
    };
    let mut steps = Vec::new();
    let ids = lm
        .generate_with_logits(prompt, &sampling, |_, logits| steps.push(logits.to_vec()))
        .unwrap()
        .ids;
    let all: Vec<u32> = prompt.iter().chain(&ids).copied().collect();
    let logits = lm.logits(&all);
    let vocab = logits.len() / all.len();
    let batched = (0..ids.len())
        .map(|i| logits[(prompt.len() - 1 + i) * vocab..][..vocab].to_vec())
        .collect();
    (ids, steps, batched)
}

/// The answer as OpenAI reports it with `top_logprobs: 20`, from one logits row per token.
fn token_tree(lm: &CausalLm, ids: &[u32], rows: &[Vec<f32>]) -> Vec<GeneratedToken> {
    ids.iter()
        .zip(rows)
        .enumerate()
        .map(|(i, (&id, row))| {
            let log_probs = log_softmax(row);
            let mut top: Vec<u32> = (0..row.len() as u32).collect();
            top.sort_by(|a, b| log_probs[*b as usize].total_cmp(&log_probs[*a as usize]));
            top.truncate(MAX_TOP_LOGPROBS);
            let mut wanted = vec![id];
            wanted.extend(&top);
            let texts = lm.token_texts(&ids[..i], &wanted).unwrap();
            GeneratedToken {
                token: texts[0].clone(),
                logprob: log_probs[id as usize],
                top_logprobs: top
                    .iter()
                    .zip(&texts[1..])
                    .map(|(&t, text)| TokenLogprob {
                        token: text.clone(),
                        logprob: log_probs[t as usize],
                    })
                    .collect(),
            }
        })
        .collect()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = row
        .iter()
        .map(|&v| (v as f64 - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&v| v as f64 - max - log_sum).collect()
}

/// `(text, label)` rows of a CSV without quoting.
fn rows(csv: &str) -> Vec<(String, String)> {
    csv.lines()
        .skip(1)
        .map(|l| {
            let (text, label) = l.rsplit_once(',').unwrap();
            (text.to_string(), label.to_string())
        })
        .collect()
}

/// Each prediction's probabilities in label order; all zero means none.
fn reported(dir: &std::path::Path, labels: &[String]) -> Vec<Vec<f64>> {
    read_jsonl(&dir.join("predictions.jsonl"))
        .iter()
        .map(|p| {
            labels
                .iter()
                .map(|l| p["probabilities"][l].as_f64().unwrap())
                .collect()
        })
        .collect()
}

fn eval_smol(
    server: &Server,
    data: &std::path::Path,
    out: &std::path::Path,
) -> assert_cmd::Command {
    let mut cmd = taskbench();
    cmd.env("OPENAI_API_KEY", KEY)
        .args(["eval", "--model", "openai:smol", "--concurrency", "2"])
        .arg("--base-url")
        .arg(&server.base_url)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out);
    cmd
}

#[test]
fn api_label_probabilities_match_the_models_own_logits() {
    let server = Server::start_model(&smollm2(), "smol");
    let s = Scratch::new();
    let data = s.write("claims.csv", CLAIMS);
    let rows = rows(CLAIMS);
    let labels: Vec<String> = ["fire", "water", "theft"].map(String::from).to_vec();
    let streamed = s.path("streamed");
    let cache = s.path("responses.sqlite");
    let (stdout, _) = succeeds(
        eval_smol(&server, &data, &streamed)
            .arg("--cache")
            .arg(&cache),
    );
    assert!(
        stdout.contains("label probabilities from log-probabilities"),
        "{stdout}"
    );
    let results = read_json(&streamed.join("results.json"));
    assert_eq!(results["api"]["probabilities"], "logprobs", "{results:#}");
    assert_eq!(results["api"]["logprobs_missing"], 0, "{results:#}");
    let whole = s.path("whole");
    succeeds(eval_smol(&server, &data, &whole).args(["--no-stream", "--no-cache"]));
    let cached = s.path("cached");
    succeeds(
        eval_smol(&server, &data, &cached)
            .arg("--cache")
            .arg(&cache),
    );
    assert_eq!(
        read_json(&cached.join("results.json"))["api"]["from_cache"],
        6
    );

    let local = local_probabilities(&rows, &labels);
    for dir in [&streamed, &whole, &cached] {
        let served = reported(dir, &labels);
        let steps = largest_difference(&served, &local.decode_steps);
        let batched = largest_difference(&served, &local.batched);
        eprintln!(
            "{}: largest difference of a label probability: {steps:.1e} from the decode steps' \
             logits, {batched:.1e} from the batched pass's",
            dir.display()
        );
        assert!(
            steps <= TOLERANCE,
            "{}: served {served:?}\nlocal {:?}",
            dir.display(),
            local.decode_steps
        );
        assert!(
            batched <= BATCHED_TOLERANCE,
            "{}: served {served:?}\nbatched {:?}",
            dir.display(),
            local.batched
        );
    }
    // The check must have had something to compare: the model puts probability on labels.
    assert!(
        local.decode_steps.iter().flatten().count() >= 4,
        "most answers reach a label: {:?}",
        local.decode_steps
    );
}

/// The largest absolute difference between reported and local probabilities, a local
/// `None` counting as all zero (how a prediction without probabilities is reported).
fn largest_difference(served: &[Vec<f64>], local: &[Option<Vec<f64>>]) -> f64 {
    assert_eq!(served.len(), local.len());
    served
        .iter()
        .zip(local)
        .flat_map(|(s, l)| {
            let l = l.clone().unwrap_or_else(|| vec![0.0; s.len()]);
            s.iter()
                .zip(l)
                .map(|(a, b)| (a - b).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}
