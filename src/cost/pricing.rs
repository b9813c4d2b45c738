//! API prices: the built-in `pricing.toml`, a user's `--pricing FILE` laid over it, and lookup of
//! a `provider:model` id to its price.
//!
//! Prices change, so every entry carries the date it was checked (`as_of`) and the page it was
//! checked on (`source`), and the report prints both beside the cost. A user's file replaces
//! built-in entries whole, model by model: mixing a new input price with an old output price
//! would be a price nobody published.
//!
//! Lookup rule, in order (first match wins):
//! 1. the exact key, `openai:gpt-4o-mini`;
//! 2. an alias listed in an entry (`aliases = ["gpt-4o-mini-2024-07-18"]`, same provider);
//! 3. the id with one trailing snapshot date removed (`-YYYY-MM-DD` or `-YYYYMMDD`, a real
//!    calendar date), then steps 1 and 2 again: `gpt-4.1-mini-2025-04-14` -> `gpt-4.1-mini`.
//!
//! Step 3 is deliberately narrower than "longest known prefix": a bare prefix match would price
//! `gpt-4o-audio-preview` as `gpt-4o` and `claude-opus-4-5` (at $5) as `claude-opus-4` (at $15).
//! Stripping only a date leaves one candidate, which is therefore also the longest known prefix
//! that ends where the date begins. A snapshot priced differently from its family needs its own
//! entry (`openai:gpt-4o-2024-05-13`), which step 1 finds first.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::cost::error::CostError;
use crate::cost::usd::Usd;
use crate::data::line_at;

/// The built-in price list, compiled in. In taskbench this is `models/pricing.toml`.
pub const EMBEDDED_PRICING_TOML: &str = include_str!("../../models/pricing.toml");

/// How errors name the built-in file.
const EMBEDDED_NAME: &str = "built-in pricing.toml";

/// Where a price came from, so a report can say "your file" or "built-in".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceOrigin {
    Embedded,
    File(PathBuf),
}

impl fmt::Display for PriceOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceOrigin::Embedded => f.write_str(EMBEDDED_NAME),
            PriceOrigin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Tokens billed for one request, split so that no token is counted twice.
///
/// `input_tokens` excludes the cached ones (Anthropic's `input_tokens` convention). OpenAI's
/// `prompt_tokens` includes `cached_tokens`: build those with [`TokenUsage::from_openai`].
/// `output_tokens` includes reasoning tokens, which both providers bill as output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUsage {
    /// Usage with no cached input.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            cached_input_tokens: 0,
            output_tokens,
        }
    }

    /// From OpenAI's `usage`: `prompt_tokens` (cached included), `prompt_tokens_details.
    /// cached_tokens` and `completion_tokens` (reasoning included). A cached count above the
    /// prompt count (never sent by OpenAI) is clamped to it rather than billed twice.
    pub fn from_openai(prompt_tokens: u64, cached_tokens: u64, completion_tokens: u64) -> Self {
        let cached = cached_tokens.min(prompt_tokens);
        Self {
            input_tokens: prompt_tokens - cached,
            cached_input_tokens: cached,
            output_tokens: completion_tokens,
        }
    }

    /// All input tokens, cached or not.
    pub fn total_input(&self) -> u64 {
        self.input_tokens.saturating_add(self.cached_input_tokens)
    }
}

impl std::ops::Add for TokenUsage {
    type Output = TokenUsage;
    fn add(self, rhs: TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens.saturating_add(rhs.input_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_add(rhs.cached_input_tokens),
            output_tokens: self.output_tokens.saturating_add(rhs.output_tokens),
        }
    }
}

impl std::iter::Sum for TokenUsage {
    fn sum<I: Iterator<Item = TokenUsage>>(iter: I) -> TokenUsage {
        iter.fold(TokenUsage::default(), std::ops::Add::add)
    }
}

/// The price of one model, as its pricing file gave it.
///
/// Invariants (checked at load): prices finite and >= 0; `model` is `provider:id` with neither
/// part empty; `source` is an http(s) URL. Rates are kept to 10^-6 $/MTok (1 picodollar a
/// token), finer than any published price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelPrice {
    /// `provider:id`, the table key.
    pub model: String,
    pub input_per_mtok: f64,
    /// `None`: cached input is billed at the input price.
    pub cached_input_per_mtok: Option<f64>,
    pub output_per_mtok: f64,
    #[serde(serialize_with = "serialize_date")]
    pub as_of: NaiveDate,
    pub source: String,
    /// Other ids of the same provider, without the `provider:` part.
    pub aliases: Vec<String>,
    pub note: Option<String>,
    pub origin: PriceOrigin,
    #[serde(skip)]
    rates: Rates,
}

/// Picodollars per token ($/MTok x 10^6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rates {
    input: u128,
    cached_input: u128,
    output: u128,
}

/// $/MTok -> picodollars per token. Callers have checked `per_mtok` is finite and >= 0.
fn picos_per_token(per_mtok: f64) -> u128 {
    (per_mtok * 1e6).round() as u128
}

impl ModelPrice {
    /// The provider part of the key (`openai`).
    pub fn provider(&self) -> &str {
        self.model.split_once(':').map_or("", |(p, _)| p)
    }

    /// The model part of the key (`gpt-4o-mini`).
    pub fn model_id(&self) -> &str {
        self.model.split_once(':').map_or(&self.model, |(_, m)| m)
    }

    /// Exact cost of one request's usage. Zero tokens cost zero.
    pub fn cost(&self, usage: TokenUsage) -> Usd {
        let r = self.rates;
        let picos = u128::from(usage.input_tokens)
            .saturating_mul(r.input)
            .saturating_add(u128::from(usage.cached_input_tokens).saturating_mul(r.cached_input))
            .saturating_add(u128::from(usage.output_tokens).saturating_mul(r.output));
        Usd::from_picos(picos)
    }

    /// The most a request can cost: every prompt token uncached and the answer running to
    /// `max_output_tokens`. What [`crate::cost::CostTracker`] reserves before sending.
    pub fn worst_case(&self, prompt_tokens: u64, max_output_tokens: u64) -> Usd {
        // Cached input is never dearer than input in any published price, but take the larger
        // rate so a user's file that says otherwise cannot break the bound.
        let input_rate = self.rates.input.max(self.rates.cached_input);
        Usd::from_picos(
            u128::from(prompt_tokens)
                .saturating_mul(input_rate)
                .saturating_add(u128::from(max_output_tokens).saturating_mul(self.rates.output)),
        )
    }
}

fn serialize_date<S: Serializer>(date: &NaiveDate, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&date.format("%Y-%m-%d"))
}

/// How a requested id was matched (the report says so next to a price).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Exact,
    Alias,
    /// The id minus a trailing snapshot date, exactly or through an alias.
    DatedSnapshot,
}

/// A looked-up price: what was asked for and what answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedPrice<'a> {
    pub requested: String,
    pub price: &'a ModelPrice,
    pub via: Resolution,
}

impl fmt::Display for ResolvedPrice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.price;
        write!(
            f,
            "{}: ${}/MTok input, ${}/MTok output",
            self.requested, p.input_per_mtok, p.output_per_mtok
        )?;
        if let Some(cached) = p.cached_input_per_mtok {
            write!(f, ", ${cached}/MTok cached input")?;
        }
        match self.via {
            Resolution::Exact => {}
            Resolution::Alias => write!(f, " (alias of {})", p.model)?,
            Resolution::DatedSnapshot => write!(f, " (dated snapshot, priced as {})", p.model)?,
        }
        write!(f, "; as of {} from {} ({})", p.as_of, p.source, p.origin)
    }
}

/// A price list: built-in, loaded, or built-in with a user's file laid over it.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    /// Keyed `provider:id`.
    entries: BTreeMap<String, ModelPrice>,
    /// `provider:alias` -> key of `entries`.
    aliases: BTreeMap<String, String>,
}

/// The file as written; spans let errors name file lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    #[serde(default)]
    models: BTreeMap<Spanned<String>, EntryFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    input_per_mtok: Spanned<f64>,
    cached_input_per_mtok: Option<Spanned<f64>>,
    output_per_mtok: Spanned<f64>,
    as_of: Spanned<String>,
    source: Spanned<String>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    note: Option<String>,
}

impl Pricing {
    /// The built-in price list. Panics only if the compiled-in file is invalid, which a unit
    /// test rules out.
    pub fn embedded() -> Pricing {
        Self::from_toml_str(EMBEDDED_PRICING_TOML, PriceOrigin::Embedded)
            .unwrap_or_else(|e| panic!("the built-in pricing.toml is invalid: {e}"))
    }

    /// Loads a pricing file on its own (no built-in entries).
    pub fn load(path: impl AsRef<Path>) -> Result<Pricing, CostError> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|source| CostError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&source, PriceOrigin::File(path.to_owned()))
    }

    /// What `--pricing FILE` means: the built-in list with FILE's entries replacing built-in
    /// ones model by model; without a file, the built-in list.
    pub fn embedded_with_overrides(file: Option<&Path>) -> Result<Pricing, CostError> {
        let base = Self::embedded();
        match file {
            Some(path) => Ok(base.merge(Self::load(path)?)),
            None => Ok(base),
        }
    }

    /// Parses pricing TOML; `origin` names it in errors and in each entry.
    pub fn from_toml_str(source: &str, origin: PriceOrigin) -> Result<Pricing, CostError> {
        let file = origin.to_string();
        let parsed: PricingFile = toml::from_str(source).map_err(|e| CostError::Toml {
            file: file.clone(),
            line: e.span().map_or(1, |s| line_at(source, s.start)),
            source: e,
        })?;
        let mut pricing = Pricing::default();
        for (key, entry) in parsed.models {
            let line = line_at(source, key.span().start);
            let model = key.into_inner();
            let price = check_entry(source, &file, line, &model, entry, &origin)?;
            for alias in &price.aliases {
                let full = format!("{}:{alias}", price.provider());
                if let Some(other) = pricing.aliases.get(&full) {
                    return Err(bad_alias(
                        &file,
                        line,
                        &model,
                        alias,
                        format!("is also an alias of {other}"),
                    ));
                }
                pricing.aliases.insert(full, model.clone());
            }
            pricing.entries.insert(model, price);
        }
        // An alias that is also a key would never be reached (step 1 wins); say so.
        for (alias, model) in &pricing.aliases {
            if pricing.entries.contains_key(alias) {
                let price = &pricing.entries[model];
                let line = find_key_line(source, model);
                let short = alias.split_once(':').map_or(alias.as_str(), |(_, a)| a);
                return Err(bad_alias(
                    &file,
                    line,
                    &price.model,
                    short,
                    format!("is also a model of its own ([models.\"{alias}\"])"),
                ));
            }
        }
        Ok(pricing)
    }

    /// `self` with `overrides`' entries replacing its own, model by model. An alias claimed in
    /// both goes to the override's model; an override entry drops the aliases of the entry it
    /// replaces unless it lists them again.
    pub fn merge(mut self, overrides: Pricing) -> Pricing {
        for key in overrides.entries.keys() {
            self.aliases.retain(|_, target| target != key);
        }
        self.entries.extend(overrides.entries);
        self.aliases.extend(overrides.aliases);
        self
    }

    /// Every entry, sorted by key.
    pub fn models(&self) -> impl Iterator<Item = &ModelPrice> {
        self.entries.values()
    }

    /// Looks up `provider:model` by the rule in the module docs.
    pub fn lookup(&self, model: &str) -> Result<ResolvedPrice<'_>, CostError> {
        let Some((provider, id)) = model
            .split_once(':')
            .filter(|(p, m)| !p.is_empty() && !m.is_empty())
        else {
            return Err(CostError::NoProvider {
                model: model.to_owned(),
                suggestions: self.keys_for_bare_id(model),
            });
        };
        let resolved = |price, via| ResolvedPrice {
            requested: model.to_owned(),
            price,
            via,
        };
        if let Some((price, via)) = self.exact_or_alias(model) {
            return Ok(resolved(price, via));
        }
        if let Some(base) = strip_snapshot_date(id) {
            if let Some((price, _)) = self.exact_or_alias(&format!("{provider}:{base}")) {
                return Ok(resolved(price, Resolution::DatedSnapshot));
            }
        }
        Err(self.unknown_model(model, provider, id))
    }

    /// Entries whose `as_of` is more than `max_age_days` before `today`, oldest first, for a
    /// report's "check these prices" line.
    pub fn stale(&self, today: NaiveDate, max_age_days: i64) -> Vec<&ModelPrice> {
        let mut old: Vec<_> = self
            .entries
            .values()
            .filter(|p| (today - p.as_of).num_days() > max_age_days)
            .collect();
        old.sort_by_key(|p| p.as_of);
        old
    }

    fn exact_or_alias(&self, key: &str) -> Option<(&ModelPrice, Resolution)> {
        if let Some(price) = self.entries.get(key) {
            return Some((price, Resolution::Exact));
        }
        let target = self.aliases.get(key)?;
        self.entries.get(target).map(|p| (p, Resolution::Alias))
    }

    fn keys_for_bare_id(&self, id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries
            .keys()
            .chain(self.aliases.keys())
            .filter(|k| k.split_once(':').is_some_and(|(_, m)| m == id))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn unknown_model(&self, model: &str, provider: &str, id: &str) -> CostError {
        let known = self
            .entries
            .values()
            .filter(|p| p.provider() == provider)
            .map(|p| p.model_id().to_owned())
            .collect();
        // Placeholders in <...> make the snippet invalid TOML until filled, so a pasted but
        // unedited snippet fails to load instead of pricing the model at $0.
        let snippet = format!(
            "[models.\"{provider}:{id}\"]\n\
             input_per_mtok = <$ per million input tokens>\n\
             output_per_mtok = <$ per million output tokens>\n\
             cached_input_per_mtok = <$ per million cached input tokens; optional, delete if none>\n\
             as_of = \"<YYYY-MM-DD you checked the price>\"\n\
             source = \"<URL of the provider's price page>\""
        );
        CostError::UnknownModel {
            model: model.to_owned(),
            provider: provider.to_owned(),
            known,
            snippet,
        }
    }
}

/// Validates one table and turns it into a [`ModelPrice`].
fn check_entry(
    source: &str,
    file: &str,
    line: usize,
    model: &str,
    entry: EntryFile,
    origin: &PriceOrigin,
) -> Result<ModelPrice, CostError> {
    let valid_key = model
        .split_once(':')
        .is_some_and(|(p, m)| !p.is_empty() && !m.is_empty() && !m.contains(':'))
        && !model.chars().any(char::is_whitespace);
    if !valid_key {
        return Err(CostError::BadKey {
            file: file.to_owned(),
            line,
            key: model.to_owned(),
        });
    }
    let price = |field: &'static str, value: &Spanned<f64>| {
        let v = *value.get_ref();
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(CostError::BadPrice {
                file: file.to_owned(),
                line: line_at(source, value.span().start),
                model: model.to_owned(),
                field,
                value: v,
            })
        }
    };
    let input = price("input_per_mtok", &entry.input_per_mtok)?;
    let output = price("output_per_mtok", &entry.output_per_mtok)?;
    let cached = entry
        .cached_input_per_mtok
        .as_ref()
        .map(|c| price("cached_input_per_mtok", c))
        .transpose()?;
    let as_of = NaiveDate::parse_from_str(entry.as_of.get_ref(), "%Y-%m-%d").map_err(|_| {
        CostError::BadDate {
            file: file.to_owned(),
            line: line_at(source, entry.as_of.span().start),
            model: model.to_owned(),
            value: entry.as_of.get_ref().clone(),
        }
    })?;
    let url = entry.source.get_ref();
    let is_url = ["https://", "http://"].iter().any(|scheme| {
        url.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    });
    if !is_url {
        return Err(CostError::BadSource {
            file: file.to_owned(),
            line: line_at(source, entry.source.span().start),
            model: model.to_owned(),
            value: url.clone(),
        });
    }
    let mut aliases = Vec::with_capacity(entry.aliases.len());
    for alias in entry.aliases {
        let alias_line = line_at(source, alias.span().start);
        let alias = alias.into_inner();
        if alias.is_empty() || alias.contains(':') || alias.contains(char::is_whitespace) {
            return Err(bad_alias(
                file,
                alias_line,
                model,
                &alias,
                "must be a model id of the same provider, without `provider:`".to_owned(),
            ));
        }
        aliases.push(alias);
    }
    Ok(ModelPrice {
        model: model.to_owned(),
        input_per_mtok: input,
        cached_input_per_mtok: cached,
        output_per_mtok: output,
        as_of,
        source: url.clone(),
        aliases,
        note: entry.note,
        origin: origin.clone(),
        rates: Rates {
            input: picos_per_token(input),
            cached_input: picos_per_token(cached.unwrap_or(input)),
            output: picos_per_token(output),
        },
    })
}

fn bad_alias(file: &str, line: usize, model: &str, alias: &str, problem: String) -> CostError {
    CostError::BadAlias {
        file: file.to_owned(),
        line,
        model: model.to_owned(),
        alias: alias.to_owned(),
        problem,
    }
}

/// `gpt-4o-mini-2024-07-18` -> `gpt-4o-mini`, `claude-opus-4-20250514` -> `claude-opus-4`;
/// `None` unless the id ends in `-YYYY-MM-DD` or `-YYYYMMDD` naming a real date and something
/// is left before it.
pub fn strip_snapshot_date(id: &str) -> Option<&str> {
    let is_date = |s: &str, format: &str| {
        s.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            && NaiveDate::parse_from_str(s, format).is_ok()
    };
    for (len, format) in [(10, "%Y-%m-%d"), (8, "%Y%m%d")] {
        if id.len() > len + 1 && id.is_char_boundary(id.len() - len - 1) {
            let (base, suffix) = id.split_at(id.len() - len - 1);
            if let Some(date) = suffix.strip_prefix('-') {
                if date.len() == len && is_date(date, format) {
                    return Some(base);
                }
            }
        }
    }
    None
}

/// Line of `[models."KEY"]`, for errors found after parsing; 1 if not written that way.
fn find_key_line(source: &str, key: &str) -> usize {
    source
        .find(&format!("\"{key}\""))
        .map_or(1, |offset| line_at(source, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Pricing, CostError> {
        Pricing::from_toml_str(toml, PriceOrigin::File("p.toml".into()))
    }

    const ONE: &str = r#"
[models."openai:gpt-4o-mini"]
input_per_mtok = 0.15
cached_input_per_mtok = 0.075
output_per_mtok = 0.60
as_of = "2025-08-07"
source = "https://platform.openai.com/docs/pricing"
aliases = ["gpt-4o-mini-2024-07-18"]
"#;

    #[test]
    fn embedded_file_loads_and_every_entry_is_dated_and_sourced() {
        let pricing = Pricing::embedded();
        assert!(pricing.models().count() >= 20);
        for p in pricing.models() {
            assert!(p.source.starts_with("https://"), "{}", p.model);
            assert!(
                p.as_of >= NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
                "{}",
                p.model
            );
            assert_eq!(p.origin, PriceOrigin::Embedded);
            assert!(
                p.cached_input_per_mtok
                    .is_none_or(|c| c <= p.input_per_mtok),
                "{}",
                p.model
            );
            assert!(p.input_per_mtok <= p.output_per_mtok, "{}", p.model);
        }
    }

    #[test]
    fn embedded_prices_as_written() {
        let pricing = Pricing::embedded();
        let mini = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        assert_eq!(
            (
                mini.input_per_mtok,
                mini.cached_input_per_mtok,
                mini.output_per_mtok
            ),
            (0.15, Some(0.075), 0.60)
        );
        let haiku = pricing.lookup("anthropic:claude-haiku-4-5").unwrap().price;
        assert_eq!((haiku.input_per_mtok, haiku.output_per_mtok), (1.0, 5.0));
        assert_eq!(haiku.as_of, NaiveDate::from_ymd_opt(2025, 10, 15).unwrap());
    }

    #[test]
    fn cost_of_known_usage() {
        let pricing = parse(ONE).unwrap();
        let p = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        // 1M input tokens at $0.15 + 1M output at $0.60.
        assert_eq!(
            p.cost(TokenUsage::new(1_000_000, 1_000_000)),
            "0.75".parse().unwrap()
        );
        // 1,000 input, 200 cached, 10 output: 1000*0.15e-6 + 200*0.075e-6 + 10*0.6e-6.
        let usage = TokenUsage {
            input_tokens: 1_000,
            cached_input_tokens: 200,
            output_tokens: 10,
        };
        assert_eq!(p.cost(usage), "0.000171".parse().unwrap());
        assert_eq!(p.cost(TokenUsage::default()), Usd::ZERO);
        // One token is exact too: $0.15/MTok = 150,000 picodollars.
        assert_eq!(p.cost(TokenUsage::new(1, 0)), Usd::from_picos(150_000));
    }

    #[test]
    fn cached_tokens_bill_as_input_without_a_cached_price() {
        let toml = ONE.replace("cached_input_per_mtok = 0.075\n", "");
        let pricing = parse(&toml).unwrap();
        let p = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        let cached = TokenUsage {
            input_tokens: 0,
            cached_input_tokens: 1_000,
            output_tokens: 0,
        };
        assert_eq!(p.cost(cached), p.cost(TokenUsage::new(1_000, 0)));
    }

    #[test]
    fn openai_usage_is_not_double_counted() {
        let u = TokenUsage::from_openai(1_000, 300, 50);
        assert_eq!(
            (u.input_tokens, u.cached_input_tokens, u.output_tokens),
            (700, 300, 50)
        );
        assert_eq!(u.total_input(), 1_000);
        let clamped = TokenUsage::from_openai(10, 99, 0);
        assert_eq!((clamped.input_tokens, clamped.cached_input_tokens), (0, 10));
        let total: TokenUsage = [u, u].into_iter().sum();
        assert_eq!(total.total_input(), 2_000);
    }

    #[test]
    fn worst_case_is_all_uncached_input_and_max_output() {
        let pricing = Pricing::embedded();
        let p = pricing.lookup("openai:gpt-4.1").unwrap().price;
        // 500 * $2/MTok + 100 * $8/MTok = $0.001 + $0.0008.
        assert_eq!(p.worst_case(500, 100), "0.0018".parse().unwrap());
        assert_eq!(p.worst_case(0, 0), Usd::ZERO);
    }

    #[test]
    fn aliases_and_dated_snapshots_resolve() {
        let pricing = Pricing::embedded();
        let r = pricing.lookup("openai:gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(
            (r.price.model.as_str(), r.via),
            ("openai:gpt-4o-mini", Resolution::Alias)
        );
        // Not listed as an alias: the date is stripped.
        let r = pricing.lookup("openai:gpt-4o-mini-2099-01-31").unwrap();
        assert_eq!(
            (r.price.model.as_str(), r.via),
            ("openai:gpt-4o-mini", Resolution::DatedSnapshot)
        );
        let r = pricing
            .lookup("anthropic:claude-opus-4-1-20991231")
            .unwrap();
        assert_eq!(r.price.model, "anthropic:claude-opus-4-1");
        let r = pricing.lookup("anthropic:claude-3-5-haiku-latest").unwrap();
        assert_eq!(r.price.model, "anthropic:claude-3-5-haiku");
        // A snapshot with its own price is found before the family's.
        let r = pricing.lookup("openai:gpt-4o-2024-05-13").unwrap();
        assert_eq!((r.price.input_per_mtok, r.via), (5.0, Resolution::Exact));
        assert!(r.to_string().contains("as of 2025-08-07 from https://platform.openai.com/docs/pricing (built-in pricing.toml)"), "{r}");
    }

    #[test]
    fn a_prefix_that_is_not_a_date_does_not_resolve() {
        let pricing = parse(ONE).unwrap();
        for model in [
            "openai:gpt-4o-mini-audio",
            "openai:gpt-4o-mini-2024-13-01",
            "openai:gpt-4o-mini-20240230",
            "openai:gpt-4o-mini-0125",
        ] {
            assert!(
                matches!(pricing.lookup(model), Err(CostError::UnknownModel { .. })),
                "{model}"
            );
        }
        assert_eq!(strip_snapshot_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(
            strip_snapshot_date("claude-opus-4-20250514"),
            Some("claude-opus-4")
        );
        assert_eq!(strip_snapshot_date("-2024-08-06"), None);
        assert_eq!(strip_snapshot_date("2024-08-06"), None);
        assert_eq!(strip_snapshot_date("x-2024+08-06"), None);
        assert_eq!(strip_snapshot_date("é-20240806"), Some("é"));
    }

    #[test]
    fn unknown_model_error_shows_what_to_add() {
        let err = Pricing::embedded()
            .lookup("openai:gpt-9-turbo")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("no price for `openai:gpt-9-turbo` (priced openai models: gpt-4.1, "),
            "{text}"
        );
        assert!(
            text.contains("Add it to a pricing file and pass --pricing FILE:"),
            "{text}"
        );
        assert!(text.contains("[models.\"openai:gpt-9-turbo\"]\ninput_per_mtok = <$ per million input tokens>\noutput_per_mtok"), "{text}");
        assert!(text.contains("as_of = \"<YYYY-MM-DD"), "{text}");
        assert!(text.contains("source = \"<URL"), "{text}");
        let err = Pricing::embedded().lookup("mistral:small").unwrap_err();
        assert!(
            err.to_string().contains("(no mistral models are priced)"),
            "{err}"
        );
    }

    #[test]
    fn the_snippet_does_not_load_until_filled_in() {
        let Err(CostError::UnknownModel { snippet, .. }) =
            Pricing::embedded().lookup("openai:gpt-9")
        else {
            panic!("expected UnknownModel");
        };
        assert!(matches!(parse(&snippet), Err(CostError::Toml { .. })));
        let filled = snippet
            .replace("<$ per million input tokens>", "1")
            .replace("<$ per million output tokens>", "2")
            .replace("cached_input_per_mtok = <$ per million cached input tokens; optional, delete if none>\n", "")
            .replace("<YYYY-MM-DD you checked the price>", "2026-11-30")
            .replace("<URL of the provider's price page>", "https://example.com/p");
        let p = parse(&filled).unwrap();
        assert_eq!(p.lookup("openai:gpt-9").unwrap().price.output_per_mtok, 2.0);
    }

    #[test]
    fn a_bare_model_id_suggests_its_provider() {
        let err = Pricing::embedded().lookup("gpt-4o-mini").unwrap_err();
        assert_eq!(err.to_string(), "model `gpt-4o-mini` has no provider; write it as provider:model, i.e. openai:gpt-4o-mini");
        let err = Pricing::embedded().lookup("nothing").unwrap_err();
        assert!(
            err.to_string().ends_with("e.g. openai:gpt-4o-mini"),
            "{err}"
        );
        assert!(matches!(
            Pricing::embedded().lookup("openai:"),
            Err(CostError::NoProvider { .. })
        ));
    }

    #[test]
    fn overrides_replace_whole_entries_and_add_models() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.toml");
        std::fs::write(
            &path,
            r#"
[models."openai:gpt-4o-mini"]
input_per_mtok = 0.10
output_per_mtok = 0.40
as_of = "2026-11-30"
source = "https://example.com/negotiated"

[models."acme:tiny"]
input_per_mtok = 0
output_per_mtok = 1
as_of = "2026-11-30"
source = "https://acme.example/pricing"
"#,
        )
        .unwrap();
        let pricing = Pricing::embedded_with_overrides(Some(&path)).unwrap();
        let p = pricing.lookup("openai:gpt-4o-mini").unwrap().price;
        assert_eq!((p.input_per_mtok, p.output_per_mtok), (0.10, 0.40));
        // Replaced whole: the built-in cached price does not leak into the override.
        assert_eq!(p.cached_input_per_mtok, None);
        assert_eq!(p.origin, PriceOrigin::File(path.clone()));
        // The built-in alias went with the replaced entry; the date rule still finds it.
        let r = pricing.lookup("openai:gpt-4o-mini-2024-07-18").unwrap();
        assert_eq!(
            (r.price.input_per_mtok, r.via),
            (0.10, Resolution::DatedSnapshot)
        );
        // Integer prices are accepted; other built-ins are untouched.
        assert_eq!(
            pricing.lookup("acme:tiny").unwrap().price.input_per_mtok,
            0.0
        );
        assert_eq!(
            pricing.lookup("openai:gpt-4.1").unwrap().price.origin,
            PriceOrigin::Embedded
        );
        assert_eq!(
            Pricing::embedded_with_overrides(None)
                .unwrap()
                .models()
                .count(),
            Pricing::embedded().models().count()
        );
    }

    #[test]
    fn override_alias_wins_over_built_in_alias() {
        let over = parse(
            r#"
[models."anthropic:claude-3-5-haiku-cheap"]
input_per_mtok = 0.5
output_per_mtok = 2
as_of = "2026-01-01"
source = "https://example.com"
aliases = ["claude-3-5-haiku-latest"]
"#,
        )
        .unwrap();
        let pricing = Pricing::embedded().merge(over);
        let r = pricing.lookup("anthropic:claude-3-5-haiku-latest").unwrap();
        assert_eq!(r.price.model, "anthropic:claude-3-5-haiku-cheap");
        assert_eq!(
            pricing
                .lookup("anthropic:claude-3-5-haiku-20241022")
                .unwrap()
                .price
                .model,
            "anthropic:claude-3-5-haiku"
        );
    }

    #[test]
    fn load_errors_name_file_line_and_field() {
        let err =
            parse(&ONE.replace("output_per_mtok = 0.60", "output_per_mtok = -1")).unwrap_err();
        assert_eq!(err.to_string(), "p.toml: line 5: [models.\"openai:gpt-4o-mini\"] output_per_mtok = -1: a price must be a finite number >= 0 (US dollars per million tokens)");
        let err =
            parse(&ONE.replace("output_per_mtok = 0.60", "output_per_mtok = nan")).unwrap_err();
        assert!(
            matches!(
                err,
                CostError::BadPrice {
                    field: "output_per_mtok",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse(&ONE.replace("2025-08-07", "Aug 2025")).unwrap_err();
        assert_eq!(err.to_string(), "p.toml: line 6: [models.\"openai:gpt-4o-mini\"] as_of = \"Aug 2025\": write the date the price was checked as YYYY-MM-DD");
        let err = parse(&ONE.replace("https://platform.openai.com/docs/pricing", "the website"))
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "p.toml: line 7: [models.\"openai:gpt-4o-mini\"] source = \"the website\""
            ),
            "{err}"
        );
        let err = parse(&ONE.replace("openai:gpt-4o-mini\"]", "gpt-4o-mini\"]")).unwrap_err();
        assert_eq!(err.to_string(), "p.toml: line 2: model key `gpt-4o-mini` must be provider:model, e.g. \"openai:gpt-4o-mini\"");
        let err =
            parse(&ONE.replace("input_per_mtok = 0.15", "input_per_mtoken = 0.15")).unwrap_err();
        assert!(matches!(err, CostError::Toml { line: 3, .. }), "{err:?}");
        let err =
            parse(&ONE.replace("[\"gpt-4o-mini-2024-07-18\"]", "[\"openai:x\"]")).unwrap_err();
        assert!(err.to_string().contains("line 8: [models.\"openai:gpt-4o-mini\"] alias `openai:x` must be a model id of the same provider"), "{err}");
        let err = Pricing::load("/nonexistent/prices.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/prices.toml: cannot read the pricing file"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn conflicting_aliases_are_rejected() {
        let twice = format!(
            "{ONE}{}",
            ONE.replace("openai:gpt-4o-mini\"]", "openai:other\"]")
        );
        let err = parse(&twice).unwrap_err();
        assert!(
            err.to_string()
                .contains("alias `gpt-4o-mini-2024-07-18` is also an alias of openai:gpt-4o-mini"),
            "{err}"
        );
        let shadow = format!(
            "{ONE}{}",
            ONE.replace("openai:gpt-4o-mini\"]", "openai:gpt-4o-mini-2024-07-18\"]")
                .replace("aliases = [\"gpt-4o-mini-2024-07-18\"]", "")
        );
        let err = parse(&shadow).unwrap_err();
        assert!(
            err.to_string().contains("is also a model of its own"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_price_list() {
        assert_eq!(parse("").unwrap().models().count(), 0);
    }

    #[test]
    fn stale_entries_oldest_first() {
        let pricing = Pricing::embedded();
        let today = NaiveDate::from_ymd_opt(2025, 12, 1).unwrap();
        let stale = pricing.stale(today, 180);
        assert!(stale.iter().all(|p| (today - p.as_of).num_days() > 180));
        assert!(stale.windows(2).all(|w| w[0].as_of <= w[1].as_of));
        assert!(stale.iter().any(|p| p.model == "anthropic:claude-opus-4"));
        assert!(!stale.iter().any(|p| p.model == "anthropic:claude-opus-4-5"));
    }

    #[test]
    fn prices_serialize_with_date_and_source() {
        let pricing = parse(ONE).unwrap();
        let json =
            serde_json::to_value(pricing.lookup("openai:gpt-4o-mini").unwrap().price).unwrap();
        assert_eq!(json["as_of"], "2025-08-07");
        assert_eq!(json["source"], "https://platform.openai.com/docs/pricing");
        assert_eq!(json["origin"]["file"], "p.toml");
    }
}
