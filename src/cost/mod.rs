//! What each model costs: API prices with their dates and sources, exact cost arithmetic, the
//! `--max-cost` guard, dry-run estimates, and local models priced in the same unit.
//!
//! - [`pricing`]: the built-in `models/pricing.toml`, `--pricing FILE` overrides, lookup of a
//!   `provider:model` id (aliases, dated snapshots) and the cost of a request's [`TokenUsage`].
//! - [`usd`]: [`Usd`], dollars as whole picodollars, so sums and budget checks are exact.
//! - [`tracker`]: [`CostTracker`], which reserves each request's worst case before it is sent so
//!   concurrent requests cannot overshoot `--max-cost`.
//! - [`estimate`]: [`dry_run`], the token and cost range of a run before it is sent.
//! - [`local`]: [`local_cost`] ($ per 1,000 queries from `--hourly-cost` and measured
//!   throughput at a stated utilisation) and [`break_even`] against an API.
//!
//! API and local rows share one unit, $ per 1,000 queries ([`Usd::per_thousand`]).
//! Everything here is pure arithmetic on numbers the caller measured; nothing does I/O except
//! [`Pricing::load`].

pub mod cascade;
pub mod error;
pub mod estimate;
pub mod local;
pub mod mistakes;
pub mod pricing;
pub mod tracker;
pub mod usd;

pub use error::CostError;
pub use estimate::{dry_run, estimate_tokens_from_chars, DryRunEstimate, TokenCounting};
pub use local::{break_even, local_cost, BreakEven, BreakEvenInputs, LocalCost, Utilisation};
pub use pricing::{
    ModelPrice, PriceOrigin, Pricing, Resolution, ResolvedPrice, TokenUsage, EMBEDDED_PRICING_TOML,
};
pub use tracker::{CostTracker, Ledger, Reservation, Settlement};
pub use usd::Usd;
