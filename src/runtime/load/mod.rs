//! MLPerf-LoadGen-style load scenarios (SingleStream, Offline, Server) and a
//! max-QPS search, over any [`Sut`] (local encoder, local generative model,
//! HTTP API).
//!
//! Design: every scenario turns its settings into a *plan* (when each query is
//! due, which item it carries) and hands it to one of two engines that share
//! the same queue, batching and latency bookkeeping ([`ledger`]):
//! - a threaded engine (dispatcher thread + `workers` worker threads) for real
//!   clocks, and
//! - a deterministic discrete-event engine for virtual clocks
//!   ([`Clock::is_virtual`]), so tests get exact, machine-independent numbers.

mod clock;
mod engine;
mod ledger;
mod offline;
mod result;
mod schedule;
mod search;
mod server;
mod sim;
mod single_stream;
mod stats;
mod threaded;
mod validate;

pub use clock::{Clock, RealClock, VirtualClock};
pub use offline::{offline, OfflineSettings};
pub use result::{RecordedSettings, Scenario, ScenarioResult};
pub use schedule::{
    arrival_times, cycle_items, server_schedule, Arrival, ArrivalStream, MAX_SCHEDULE,
};
pub use search::{find_max_qps, MaxQpsResult, SearchSettings, Trial};
pub use server::{server, ServerSettings};
pub use single_stream::{single_stream, SingleStreamSettings};
pub use stats::{min_queries_for_percentile, LatencySummary};

/// The System Under Test: whatever answers classification queries.
pub trait Sut: Sync {
    /// Runs a batch of queries (indices into the query set) and returns when all are answered.
    /// A local encoder batches; an HTTP API gets one item per call (max_batch 1).
    fn run_batch(&self, items: &[usize]) -> Result<(), String>;
    /// Largest batch run_batch accepts (1 = no batching).
    fn max_batch(&self) -> usize;
}

/// Why a scenario could not be run at all (as opposed to running and failing).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadgenError {
    /// A knob is out of range; running anyway would give a meaningless result.
    #[error("invalid setting `{name}`: {reason}")]
    InvalidSetting { name: &'static str, reason: String },
    /// The schedule would not fit in memory (e.g. huge qps × long min_duration).
    #[error("schedule would exceed {cap} queries; lower qps, min_queries or min_duration")]
    ScheduleTooLong { cap: usize },
}
