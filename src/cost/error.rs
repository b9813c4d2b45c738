//! `CostError`: everything that can go wrong loading prices, looking a model up, or spending
//! against `--max-cost`.
//!
//! One enum for the whole `cost` module. Pricing-file variants carry the file (a path, or
//! `built-in pricing.toml`), the line and the model key, so the message alone says where to look:
//! `prices.toml: line 7: [models."openai:gpt-x"] output_per_mtok = -1: a price must be a finite
//! number >= 0`. Wrapped errors are `#[source]` and not repeated in the message, so `{:#}`
//! (anyhow) prints each cause once.

use std::path::PathBuf;

use thiserror::Error;

use crate::cost::usd::Usd;

/// An error from the `cost` module.
#[derive(Debug, Error)]
pub enum CostError {
    #[error("{}: cannot read the pricing file", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file}: line {line}: not a valid pricing file (one [models.\"provider:model\"] table per model with input_per_mtok, output_per_mtok, as_of, source; optional cached_input_per_mtok, aliases, note)")]
    Toml {
        file: String,
        line: usize,
        #[source]
        source: toml::de::Error,
    },

    #[error("{file}: line {line}: model key `{key}` must be provider:model, e.g. \"openai:gpt-4o-mini\"")]
    BadKey {
        file: String,
        line: usize,
        key: String,
    },

    #[error("{file}: line {line}: [models.\"{model}\"] {field} = {value}: a price must be a finite number >= 0 (US dollars per million tokens)")]
    BadPrice {
        file: String,
        line: usize,
        model: String,
        field: &'static str,
        value: f64,
    },

    #[error("{file}: line {line}: [models.\"{model}\"] as_of = \"{value}\": write the date the price was checked as YYYY-MM-DD")]
    BadDate {
        file: String,
        line: usize,
        model: String,
        value: String,
    },

    #[error("{file}: line {line}: [models.\"{model}\"] source = \"{value}\": give the http(s) URL of the page the price was checked on")]
    BadSource {
        file: String,
        line: usize,
        model: String,
        value: String,
    },

    #[error("{file}: line {line}: [models.\"{model}\"] alias `{alias}` {problem}")]
    BadAlias {
        file: String,
        line: usize,
        model: String,
        alias: String,
        /// What is wrong, e.g. "is also an alias of anthropic:claude-opus-4".
        problem: String,
    },

    #[error("model `{model}` has no provider; write it as provider:model{}", suggestion_text(.suggestions))]
    NoProvider {
        model: String,
        /// Keys under which the bare id is known, e.g. `openai:gpt-4o-mini`.
        suggestions: Vec<String>,
    },

    #[error("no price for `{model}`{}. Add it to a pricing file and pass --pricing FILE:\n\n{snippet}", known_text(.provider, .known))]
    UnknownModel {
        model: String,
        provider: String,
        /// Model ids the price list knows for this provider, sorted.
        known: Vec<String>,
        /// A `[models."..."]` table to fill in; deliberately not valid TOML until filled.
        snippet: String,
    },

    #[error("`{text}` is not an amount of US dollars; write e.g. 5, 0.50 or $12.5")]
    BadAmount { text: String },

    #[error("--max-cost {budget} would be exceeded: {spent} spent and {reserved} held by requests in flight, and the next request could cost up to {requested}. Raise --max-cost or lower --max-tokens (a request holds its worst case until it returns)")]
    BudgetExhausted {
        budget: Usd,
        spent: Usd,
        reserved: Usd,
        requested: Usd,
    },

    #[error("--max-cost {budget}: no new requests after one was refused, so the items sent are not biased toward short prompts")]
    BudgetClosed { budget: Usd },

    #[error("expected output of {expected} tokens is more than max_tokens {max}; the dry run needs expected <= max")]
    EstimateRange { expected: u64, max: u64 },

    #[error("throughput {value} items/s: give a measured throughput > 0")]
    BadThroughput { value: f64 },

    #[error("utilisation {value}: give a fraction in (0, 1] (1 = the machine is busy all the time it is paid for)")]
    BadUtilisation { value: f64 },

    #[error("amortisation over 0 months: spread the one-off cost over at least 1 month")]
    ZeroAmortisation,
}

fn suggestion_text(suggestions: &[String]) -> String {
    match suggestions {
        [] => ", e.g. openai:gpt-4o-mini".to_owned(),
        [one] => format!(", i.e. {one}"),
        many => format!(", one of {}", many.join(", ")),
    }
}

fn known_text(provider: &str, known: &[String]) -> String {
    if known.is_empty() {
        format!(" (no {provider} models are priced)")
    } else {
        format!(" (priced {provider} models: {})", known.join(", "))
    }
}
