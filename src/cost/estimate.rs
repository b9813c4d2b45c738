//! Dry-run estimate: what an API run would cost before a single request is sent.
//!
//! Input tokens are counted by the caller: with the model's own tokenizer when taskbench has it,
//! else estimated as characters / 4 (OpenAI's rule of thumb for English; other languages and
//! code usually run more tokens per character). The estimate says which was used, because the
//! chars/4 figure can be off by tens of percent.
//!
//! The cost is a range. The low end assumes every answer is `expected_output_tokens` long
//! (e.g. the longest label plus a token to stop); the high end that every answer runs to
//! `max_output_tokens`, which bounds the bill because providers stop there (reasoning models
//! count hidden reasoning tokens against the same limit, so their real cost sits nearer the
//! high end). Both ends assume no cached input, which only lowers a real bill.

use std::fmt;

use serde::Serialize;

use crate::cost::error::CostError;
use crate::cost::pricing::{ModelPrice, TokenUsage};
use crate::cost::usd::Usd;

/// How the prompt-token counts were obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenCounting {
    /// The model's tokenizer, by name (e.g. `o200k_base`).
    Tokenizer(String),
    /// [`estimate_tokens_from_chars`]: characters / 4, rounded up.
    CharsOver4,
}

impl fmt::Display for TokenCounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenCounting::Tokenizer(name) => write!(f, "counted with the {name} tokenizer"),
            TokenCounting::CharsOver4 => f.write_str("estimated as characters / 4, no tokenizer"),
        }
    }
}

/// ceil(Unicode scalar values / 4): the fallback token count when no tokenizer is available.
/// An empty text is 0 tokens.
pub fn estimate_tokens_from_chars(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// A dry run's totals. Invariants: `output_tokens_min <= output_tokens_max`,
/// `cost_min <= cost_max`; both costs are exact for the token counts they state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DryRunEstimate {
    pub model: String,
    pub items: u64,
    pub counting: TokenCounting,
    pub input_tokens: u64,
    pub output_tokens_min: u64,
    pub output_tokens_max: u64,
    pub cost_min: Usd,
    pub cost_max: Usd,
}

impl DryRunEstimate {
    /// (low, high) cost per 1,000 queries; `None` for an empty run.
    pub fn per_thousand(&self) -> Option<(Usd, Usd)> {
        Some((
            Usd::per_thousand(self.cost_min, self.items)?,
            Usd::per_thousand(self.cost_max, self.items)?,
        ))
    }
}

/// Estimates a run of one request per entry of `prompt_tokens` against `price`.
/// Errors when `expected_output_tokens > max_output_tokens`.
pub fn dry_run(
    price: &ModelPrice,
    prompt_tokens: &[u64],
    counting: TokenCounting,
    expected_output_tokens: u64,
    max_output_tokens: u64,
) -> Result<DryRunEstimate, CostError> {
    if expected_output_tokens > max_output_tokens {
        return Err(CostError::EstimateRange {
            expected: expected_output_tokens,
            max: max_output_tokens,
        });
    }
    let items = prompt_tokens.len() as u64;
    let input_tokens = prompt_tokens.iter().fold(0u64, |a, &t| a.saturating_add(t));
    let output_tokens_min = items.saturating_mul(expected_output_tokens);
    let output_tokens_max = items.saturating_mul(max_output_tokens);
    Ok(DryRunEstimate {
        model: price.model.clone(),
        items,
        counting,
        input_tokens,
        output_tokens_min,
        output_tokens_max,
        cost_min: price.cost(TokenUsage::new(input_tokens, output_tokens_min)),
        cost_max: price.cost(TokenUsage::new(input_tokens, output_tokens_max)),
    })
}

impl fmt::Display for DryRunEstimate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESTIMATE, nothing sent: {} on {} items: {} input tokens ({}), {} to {} output tokens; \
             {} to {}",
            self.model,
            thousands(self.items),
            thousands(self.input_tokens),
            self.counting,
            thousands(self.output_tokens_min),
            thousands(self.output_tokens_max),
            self.cost_min,
            self.cost_max,
        )?;
        if let Some((low, high)) = self.per_thousand() {
            write!(f, " ({low} to {high} per 1,000 queries)")?;
        }
        f.write_str(". Low end: answers of the expected length; high end: every answer at max_tokens; no cached input assumed")
    }
}

/// 1234567 -> "1,234,567".
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::pricing::Pricing;

    #[test]
    fn chars_over_four_rounds_up() {
        assert_eq!(estimate_tokens_from_chars(""), 0);
        assert_eq!(estimate_tokens_from_chars("a"), 1);
        assert_eq!(estimate_tokens_from_chars("abcd"), 1);
        assert_eq!(estimate_tokens_from_chars("abcde"), 2);
        // Characters, not bytes: 4 two-byte letters are one token's worth.
        assert_eq!(estimate_tokens_from_chars("éééé"), 1);
    }

    #[test]
    fn range_of_a_known_run() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        // 280 items x 150 prompt tokens = 42,000 input tokens; answers of 4 to 16 tokens.
        let est = dry_run(price, &[150; 280], TokenCounting::CharsOver4, 4, 16).unwrap();
        assert_eq!(
            (
                est.input_tokens,
                est.output_tokens_min,
                est.output_tokens_max
            ),
            (42_000, 1_120, 4_480)
        );
        // 42,000 * 0.15e-6 = 0.0063; + 1,120 * 0.6e-6 = 0.000672; + 4,480 * 0.6e-6 = 0.002688.
        assert_eq!(est.cost_min, "0.006972".parse().unwrap());
        assert_eq!(est.cost_max, "0.008988".parse().unwrap());
        let (low, high) = est.per_thousand().unwrap();
        assert_eq!(
            (low, high),
            ("0.0249".parse().unwrap(), "0.0321".parse().unwrap())
        );
        let text = est.to_string();
        assert_eq!(
            text,
            "ESTIMATE, nothing sent: openai:gpt-4o-mini on 280 items: 42,000 input tokens \
             (estimated as characters / 4, no tokenizer), 1,120 to 4,480 output tokens; \
             $0.00697 to $0.00899 ($0.0249 to $0.0321 per 1,000 queries). Low end: answers of \
             the expected length; high end: every answer at max_tokens; no cached input assumed"
        );
    }

    #[test]
    fn names_the_tokenizer_when_one_was_used() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("anthropic:claude-haiku-4-5").unwrap().price;
        let est = dry_run(
            price,
            &[10, 20],
            TokenCounting::Tokenizer("o200k_base".into()),
            2,
            2,
        )
        .unwrap();
        assert_eq!(est.cost_min, est.cost_max);
        assert!(
            est.to_string()
                .contains("30 input tokens (counted with the o200k_base tokenizer)"),
            "{est}"
        );
    }

    #[test]
    fn zero_items_and_zero_tokens() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("openai:gpt-4.1").unwrap().price;
        let empty = dry_run(price, &[], TokenCounting::CharsOver4, 1, 5).unwrap();
        assert_eq!(
            (empty.cost_min, empty.cost_max, empty.per_thousand()),
            (Usd::ZERO, Usd::ZERO, None)
        );
        assert!(empty.to_string().contains("on 0 items"), "{empty}");
        assert!(!empty.to_string().contains("per 1,000"), "{empty}");
        let silent = dry_run(price, &[0, 0], TokenCounting::CharsOver4, 0, 0).unwrap();
        assert_eq!(silent.cost_max, Usd::ZERO);
    }

    #[test]
    fn expected_above_max_is_an_error() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("openai:gpt-4.1").unwrap().price;
        let err = dry_run(price, &[1], TokenCounting::CharsOver4, 9, 8).unwrap_err();
        assert_eq!(err.to_string(), "expected output of 9 tokens is more than max_tokens 8; the dry run needs expected <= max");
    }

    #[test]
    fn the_high_end_is_what_the_tracker_would_reserve() {
        let pricing = Pricing::embedded();
        let price = pricing.lookup("anthropic:claude-opus-4-5").unwrap().price;
        let prompts = [120, 340, 77];
        let est = dry_run(price, &prompts, TokenCounting::CharsOver4, 3, 32).unwrap();
        let reserved: Usd = prompts.iter().map(|&p| price.worst_case(p, 32)).sum();
        assert_eq!(est.cost_max, reserved);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
