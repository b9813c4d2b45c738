//! Label probabilities from an API's per-token log-probabilities.
//!
//! An OpenAI-compatible server reports, for every generated token, the token chosen and the
//! top-N tokens it could have chosen there, each with its log-probability: one path through
//! the tree of possible answers, plus one step off it at every position. This module gives
//! the probability those branches carry to the task's labels:
//!
//! - The **chosen path** goes to the label the whole answer parses to ([`parse_label`]), with
//!   the product of the chosen tokens' probabilities up to the token where that label is
//!   decided: its text is spelled out and no other label can still follow (`card` is not
//!   decided while `card_arrival` could continue it; `card.` is). Nothing after that point
//!   can change the label, so later alternatives are not looked at. When the answer parses
//!   to no label, the chosen path gives nothing.
//! - An **alternative** at position i (a top token other than the chosen one) carries the
//!   chosen prefix's probability times its own. The prefix plus the alternative is compared
//!   with the labels under parse_label's own normalisation (case, runs of spaces, `_` and
//!   `-`, quotes, markdown, an answer prefix, trailing punctuation): it reaches the labels
//!   whose key starts with it, or, once it ends the answer (`.`, a newline, a closing quote),
//!   the label it parses to. The label's remaining tokens are counted as certain, because
//!   nothing beyond one step off the path is known: for that branch this is an upper-bound
//!   style estimate.
//! - **Shared prefixes**: a branch that several labels could still become (`card` for
//!   `card`, `card_arrival` and `card_payment`; `card_` for the last two) is split equally
//!   among them. Every branch is a disjoint event (it leaves the chosen path at a different
//!   position or with a different token) and its mass is given out once, so the masses add
//!   up to at most the probability of the branches seen, never more than 1, whatever the
//!   labels' prefixes. An equal split is the neutral choice: one step off the path says
//!   nothing about which of those labels would follow.
//!
//! The masses are then normalised over the labels. [`LabelProbabilities::covered`] keeps
//! their sum before normalising: how much of the model's probability the tree put on any
//! label. When nothing reaches a label, there are no probabilities and the answer stays what
//! text parsing makes of it.

use crate::models::remote::GeneratedToken;
use crate::prompt::labels::{answer_key, label_key, parse_label};

/// Characters after which an answer is over: what follows cannot extend the label.
const ENDS_ANSWER: &[char] = &[
    '\n', '.', ',', ';', ':', '!', '?', '"', '\u{201D}', ')', ']', '}', '>', '*', '`',
];

/// Probabilities of the labels, from one answer's token tree.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelProbabilities {
    /// One per label, in the order given; they sum to 1.
    pub probs: Vec<f64>,
    /// The probability the tree gave to any label before normalising, in (0, 1] (a little
    /// above 1 only through the API's rounding of log-probabilities).
    pub covered: f64,
}

/// The labels' probabilities from `tokens` by the rules in the module doc; `None` when no
/// branch reaches a label.
pub fn label_probabilities(
    tokens: &[GeneratedToken],
    labels: &[String],
) -> Option<LabelProbabilities> {
    let keys = LabelKeys::new(labels);
    let answer: String = tokens.iter().map(|t| t.token.as_str()).collect();
    let chosen_label = parse_label(&answer, labels).index();
    let mut mass = vec![0.0; labels.len()];
    let mut prefix = String::new();
    let mut prefix_logprob = 0.0;
    for token in tokens {
        for alternative in token.top_logprobs.iter().filter(|a| a.token != token.token) {
            let branch = format!("{prefix}{}", alternative.token);
            let reached = keys.reachable(&branch);
            share(
                &mut mass,
                &reached,
                (prefix_logprob + alternative.logprob).exp(),
            );
        }
        prefix.push_str(&token.token);
        prefix_logprob += token.logprob;
        if chosen_label.is_some_and(|label| keys.decided(&prefix, label)) {
            break;
        }
    }
    // Either decided above, or the answer ended with the label still open (`card` then the
    // end of the text, with `card_arrival` a label): the whole answer is the evidence.
    if let Some(label) = chosen_label {
        mass[label] += prefix_logprob.exp();
    }
    normalise(mass)
}

/// Gives `probability` to `labels` in equal parts (the shared-prefix rule).
fn share(mass: &mut [f64], labels: &[usize], probability: f64) {
    if labels.is_empty() {
        return;
    }
    let part = probability / labels.len() as f64;
    for &label in labels {
        mass[label] += part;
    }
}

fn normalise(mass: Vec<f64>) -> Option<LabelProbabilities> {
    let covered: f64 = mass.iter().sum();
    if !(covered > 0.0 && covered.is_finite()) {
        return None;
    }
    Some(LabelProbabilities {
        probs: mass.iter().map(|m| m / covered).collect(),
        covered,
    })
}

/// The labels with their comparison keys.
struct LabelKeys<'a> {
    labels: &'a [String],
    keys: Vec<String>,
}

impl<'a> LabelKeys<'a> {
    fn new(labels: &'a [String]) -> Self {
        LabelKeys {
            labels,
            keys: labels.iter().map(|l| label_key(l)).collect(),
        }
    }

    /// The labels an answer that starts with `text` can still become; once `text` ends the
    /// answer, or no label starts with it, the label it parses to (if any).
    fn reachable(&self, text: &str) -> Vec<usize> {
        let key = answer_key(text);
        let ended = !key.is_empty() && text.trim_end_matches([' ', '\t']).ends_with(ENDS_ANSWER);
        if !ended {
            let open = self.open(text, &key);
            if !open.is_empty() {
                return open;
            }
        }
        parse_label(text, self.labels).index().into_iter().collect()
    }

    /// Labels whose key starts with `key`. After a separator a new word begins: `card ` can
    /// become `card arrival` (or stay `card`), not `cards`.
    fn open(&self, text: &str, key: &str) -> Vec<usize> {
        let at_separator = text.ends_with(|c: char| c.is_whitespace() || c == '_' || c == '-');
        let wanted = if at_separator && !key.is_empty() {
            format!("{key} ")
        } else {
            key.to_string()
        };
        (0..self.keys.len())
            .filter(|&i| self.keys[i].starts_with(&wanted) || self.keys[i] == key)
            .collect()
    }

    /// Whether the chosen path, at `prefix`, has spelled `label` out and can no longer
    /// become another label.
    fn decided(&self, prefix: &str, label: usize) -> bool {
        answer_key(prefix).contains(&self.keys[label]) && self.reachable(prefix) == [label]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::remote::TokenLogprob;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// A generated token from probabilities: the chosen one first, then its alternatives.
    fn token(chosen: (&str, f64), alternatives: &[(&str, f64)]) -> GeneratedToken {
        let lp = |(token, p): (&str, f64)| TokenLogprob {
            token: token.to_string(),
            logprob: p.ln(),
        };
        let mut top = vec![lp(chosen)];
        top.extend(alternatives.iter().copied().map(lp));
        GeneratedToken {
            token: chosen.0.to_string(),
            logprob: chosen.1.ln(),
            top_logprobs: top,
        }
    }

    /// `masses` normalised, compared with what the function returns.
    #[track_caller]
    fn assert_probs(got: Option<LabelProbabilities>, masses: &[f64]) {
        let got = got.expect("some label is reached");
        let total: f64 = masses.iter().sum();
        assert!((got.covered - total).abs() < 1e-12, "{got:?} vs {masses:?}");
        for (p, m) in got.probs.iter().zip(masses) {
            assert!((p - m / total).abs() < 1e-12, "{got:?} vs {masses:?}");
        }
        assert!((got.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn labels_as_alternatives_of_the_first_token() {
        let tokens = [token(
            ("fire", 0.7),
            &[("water", 0.15), ("Theft", 0.1), (" It", 0.05)],
        )];
        let got = label_probabilities(&tokens, &labels(&["fire", "water", "theft"]));
        assert_probs(got, &[0.7, 0.15, 0.1]);
    }

    #[test]
    fn a_label_spelled_over_several_tokens() {
        // card_arrival as `card` `_arr` `ival`; `_pay` leaves the path for card_payment.
        let tokens = [
            token(("card", 0.8), &[("atm", 0.1)]),
            token(("_arr", 0.6), &[("_pay", 0.3), ("s", 0.05)]),
            token(("ival", 0.9), &[("ange", 0.05)]),
        ];
        let got = label_probabilities(&tokens, &labels(&["card_arrival", "card_payment", "atm"]));
        assert_probs(got, &[0.8 * 0.6 * 0.9, 0.8 * 0.3, 0.1]);
    }

    #[test]
    fn a_label_that_prefixes_another_is_decided_only_when_the_answer_ends() {
        // `card.`: after `card` the answer could still become card_arrival (the `_arrival`
        // branch); only the `.` decides card. ` Card` at the first token could become
        // either label and is split between them.
        let tokens = [
            token(("card", 0.6), &[(" Card", 0.2), ("atm", 0.1)]),
            token((".", 0.7), &[("_arrival", 0.25)]),
        ];
        let got = label_probabilities(&tokens, &labels(&["card", "card_arrival", "atm"]));
        assert_probs(got, &[0.6 * 0.7 + 0.1, 0.1 + 0.6 * 0.25, 0.1]);
    }

    #[test]
    fn a_prefix_of_two_labels_is_split_between_them() {
        // `card_` after `card` could still become any of the three (parse_label reads a
        // bare `card_` as card), so its mass is split in three; `card_arrival` is decided.
        let tokens = [
            token(("card", 0.9), &[]),
            token(("_arrival", 0.5), &[("_", 0.3), ("_pay", 0.15)]),
        ];
        let got = label_probabilities(&tokens, &labels(&["card", "card_arrival", "card_payment"]));
        let third = 0.9 * 0.3 / 3.0;
        assert_probs(got, &[third, 0.9 * 0.5 + third, third + 0.9 * 0.15]);
    }

    #[test]
    fn an_answer_that_stops_on_a_shared_prefix_keeps_the_whole_path() {
        // `card` and the end of the text: no token decided it, the answer is the evidence.
        let tokens = [token(("card", 0.6), &[("atm", 0.3)])];
        let got = label_probabilities(&tokens, &labels(&["card", "card_arrival", "atm"]));
        assert_probs(got, &[0.6, 0.0, 0.3]);
    }

    #[test]
    fn normalisation_is_parse_labels_quotes_case_and_separators() {
        // `"Card Arrival` spells card_arrival, decided before the closing quote; the
        // alternative ` Payment` leaves for card_payment after `"Card`.
        let tokens = [
            token(("\"", 0.5), &[("card", 0.3)]),
            token(("Card", 0.9), &[]),
            token((" Arrival", 0.8), &[(" Payment", 0.1)]),
            token(("\"", 0.9), &[]),
        ];
        let got = label_probabilities(&tokens, &labels(&["card_arrival", "card_payment"]));
        let path = 0.5 * 0.9 * 0.8;
        assert_probs(got, &[path + 0.15, 0.5 * 0.9 * 0.1 + 0.15]);
    }

    #[test]
    fn a_prefixed_answer_reaches_labels_after_the_prefix() {
        // `Label: water` (the zero-shot template's answer prefix echoed back).
        let tokens = [
            token(("Label", 0.5), &[("water", 0.3)]),
            token((":", 1.0), &[]),
            token((" water", 0.6), &[(" fire", 0.4)]),
        ];
        let got = label_probabilities(&tokens, &labels(&["fire", "water"]));
        assert_probs(got, &[0.5 * 0.4, 0.3 + 0.5 * 0.6]);
    }

    #[test]
    fn an_invalid_answer_still_has_the_labels_its_alternatives_reach() {
        let tokens = [
            token(("I", 0.5), &[("fire", 0.2), ("The", 0.1)]),
            token((" don't", 0.9), &[]),
            token((" know", 0.9), &[]),
        ];
        let got = label_probabilities(&tokens, &labels(&["fire", "water"]));
        assert_probs(got, &[0.2, 0.0]);
    }

    #[test]
    fn nothing_matching_gives_no_probabilities() {
        let tokens = [
            token(("I", 0.5), &[("The", 0.3), ("Maybe", 0.1)]),
            token((" don't", 0.9), &[(" cannot", 0.05)]),
        ];
        assert_eq!(
            label_probabilities(&tokens, &labels(&["fire", "water"])),
            None
        );
        assert_eq!(label_probabilities(&[], &labels(&["fire", "water"])), None);
    }

    mod property {
        use proptest::prelude::*;

        use super::*;

        /// Pieces that spell the labels below and things that spell none.
        const PIECES: &[&str] = &[
            "card", "_", "arr", "ival", "_arrival", "_pay", "ment", " Card", "atm", ".", " ", "\"",
            "the", "x", "\n",
        ];
        const LABELS: &[&str] = &["card", "card_arrival", "card_payment", "atm"];

        /// One position: the chosen piece and up to four alternatives, with probabilities
        /// that sum to at most 1, as a real distribution's top entries do.
        fn position() -> impl Strategy<Value = GeneratedToken> {
            (
                prop::collection::hash_set(0..PIECES.len(), 1..=5),
                prop::collection::vec(0.01f64..1.0, 6),
                0.0f64..0.5,
            )
                .prop_map(|(pieces, weights, unseen)| {
                    let pieces: Vec<usize> = pieces.into_iter().collect();
                    let total: f64 = weights[..pieces.len()].iter().sum::<f64>() / (1.0 - unseen);
                    let top: Vec<TokenLogprob> = pieces
                        .iter()
                        .zip(&weights)
                        .map(|(&i, w)| TokenLogprob {
                            token: PIECES[i].to_string(),
                            logprob: (w / total).ln(),
                        })
                        .collect();
                    GeneratedToken {
                        token: top[0].token.clone(),
                        logprob: top[0].logprob,
                        top_logprobs: top,
                    }
                })
        }

        proptest! {
            #[test]
            fn probabilities_sum_to_one_and_never_exceed_the_mass_seen(
                tokens in prop::collection::vec(position(), 0..6)
            ) {
                let labels = labels(LABELS);
                if let Some(got) = label_probabilities(&tokens, &labels) {
                    prop_assert!((got.probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{got:?}");
                    prop_assert!(got.probs.iter().all(|p| (0.0..=1.0 + 1e-12).contains(p)));
                    prop_assert!(got.covered > 0.0 && got.covered <= 1.0 + 1e-9, "{got:?}");
                }
            }
        }
    }
}
