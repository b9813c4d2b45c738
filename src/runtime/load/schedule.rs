//! When queries are due (arrival processes) and which item each one carries.

use super::validate;
use super::LoadgenError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Upper bound on queries in one schedule, so a silly qps × duration cannot
/// exhaust memory.
pub const MAX_SCHEDULE: usize = 5_000_000;

/// How arrival times are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Arrival {
    /// Exponential gaps (a Poisson process), as LoadGen's Server scenario uses.
    #[default]
    Poisson,
    /// Evenly spaced gaps of 1/qps: not LoadGen, but useful for diagnosis and
    /// for tests with an exact analytic answer.
    Uniform,
}

/// Infinite, seeded stream of arrival times (offsets from the run start).
#[derive(Debug, Clone)]
pub struct ArrivalStream {
    arrival: Arrival,
    gap: Exp<f64>,
    mean_gap_s: f64,
    rng: ChaCha8Rng,
    t_s: f64,
}

impl ArrivalStream {
    /// Same `seed` and `qps` always give the same times, so runs are repeatable
    /// and different rates in a search see the same random shape.
    pub fn new(arrival: Arrival, qps: f64, seed: u64) -> Result<Self, LoadgenError> {
        validate::positive("qps", qps)?;
        let gap = Exp::new(qps).map_err(|e| LoadgenError::InvalidSetting {
            name: "qps",
            reason: e.to_string(),
        })?;
        let rng = ChaCha8Rng::seed_from_u64(seed);
        Ok(Self {
            arrival,
            gap,
            mean_gap_s: 1.0 / qps,
            rng,
            t_s: 0.0,
        })
    }
}

impl Iterator for ArrivalStream {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.t_s += match self.arrival {
            Arrival::Poisson => self.gap.sample(&mut self.rng),
            Arrival::Uniform => self.mean_gap_s,
        };
        Some(Duration::try_from_secs_f64(self.t_s).unwrap_or(Duration::MAX))
    }
}

/// The first `count` arrival times.
pub fn arrival_times(
    arrival: Arrival,
    qps: f64,
    seed: u64,
    count: usize,
) -> Result<Vec<Duration>, LoadgenError> {
    if count > MAX_SCHEDULE {
        return Err(LoadgenError::ScheduleTooLong { cap: MAX_SCHEDULE });
    }
    Ok(ArrivalStream::new(arrival, qps, seed)?
        .take(count)
        .collect())
}

/// Arrivals until both minimums are met (at least one query), as LoadGen
/// does: a fast rate can't end a run too early, nor a slow one with too few
/// queries for the percentile.
pub fn server_schedule(
    arrival: Arrival,
    qps: f64,
    seed: u64,
    min_queries: usize,
    min_duration: Duration,
) -> Result<Vec<Duration>, LoadgenError> {
    let expected = (qps * min_duration.as_secs_f64()).max(min_queries as f64);
    if expected > MAX_SCHEDULE as f64 {
        return Err(LoadgenError::ScheduleTooLong { cap: MAX_SCHEDULE });
    }
    let mut out: Vec<Duration> = Vec::with_capacity(expected as usize + 1);
    for t in ArrivalStream::new(arrival, qps, seed)? {
        let enough =
            out.len() >= min_queries.max(1) && out.last().is_some_and(|&l| l >= min_duration);
        if enough {
            break;
        }
        if out.len() >= MAX_SCHEDULE {
            return Err(LoadgenError::ScheduleTooLong { cap: MAX_SCHEDULE });
        }
        out.push(t);
    }
    Ok(out)
}

/// Item for each of `count` queries, cycling through a query set of
/// `query_count` (callers record whether `count > query_count`).
pub fn cycle_items(count: usize, query_count: usize) -> Vec<usize> {
    (0..count).map(|i| i % query_count.max(1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_mean_gap_matches_rate() {
        let qps = 250.0;
        let times = arrival_times(Arrival::Poisson, qps, 7, 20_000).unwrap();
        let mean_gap = times.last().unwrap().as_secs_f64() / times.len() as f64;
        let rel = (mean_gap * qps - 1.0).abs();
        assert!(rel < 0.03, "mean gap off by {rel}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn schedule_is_seeded() {
        let a = arrival_times(Arrival::Poisson, 100.0, 42, 500).unwrap();
        let b = arrival_times(Arrival::Poisson, 100.0, 42, 500).unwrap();
        let c = arrival_times(Arrival::Poisson, 100.0, 43, 500).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn server_schedule_meets_both_minimums() {
        let by_count = server_schedule(Arrival::Uniform, 100.0, 0, 50, Duration::ZERO).unwrap();
        assert_eq!(by_count.len(), 50);
        let by_time =
            server_schedule(Arrival::Uniform, 100.0, 0, 5, Duration::from_secs(2)).unwrap();
        assert!(*by_time.last().unwrap() >= Duration::from_secs(2));
        assert!(by_time.len() >= 200);
        assert_eq!(
            server_schedule(Arrival::Poisson, 10.0, 0, 0, Duration::ZERO)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bad_rates_are_errors() {
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(arrival_times(Arrival::Poisson, qps, 0, 10).is_err());
        }
        let huge = server_schedule(Arrival::Poisson, 1e9, 0, 1, Duration::from_secs(3600));
        assert_eq!(
            huge,
            Err(LoadgenError::ScheduleTooLong { cap: MAX_SCHEDULE })
        );
    }

    #[test]
    fn items_cycle_through_the_set() {
        assert_eq!(cycle_items(5, 2), vec![0, 1, 0, 1, 0]);
        assert_eq!(cycle_items(3, 0), vec![0, 0, 0]);
    }
}
