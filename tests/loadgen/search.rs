//! find_max_qps on a virtual clock, against analytically known limits.

use crate::common::SimSut;
use std::time::Duration;
use taskbench::runtime::load::*;

fn base(slo_ms: f64, max_batch: usize) -> ServerSettings {
    ServerSettings {
        min_queries: 1000,
        min_duration: Duration::ZERO,
        warmup: 0,
        max_batch,
        seed: 3,
        ..ServerSettings::new(1000, 1.0, slo_ms)
    }
}

#[test]
fn uniform_arrivals_find_the_exact_capacity() {
    // D/D/1, 10 ms service: latency stays 10 ms up to 100 qps; above it the
    // backlog grows ~990 × (10 ms − 1/qps) by the p99 query, so with a 20 ms
    // SLO the limit is ≈100.1 qps.
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let s = ServerSettings {
        arrival: Arrival::Uniform,
        ..base(20.0, 1)
    };
    let r = find_max_qps(&sut, &s, &SearchSettings::new(10.0), &clock).unwrap();
    let best = r.best.unwrap();
    let qps = best.settings.qps.unwrap();
    assert!(
        (95.0..=100.2).contains(&qps),
        "best {qps}, tried {:?}",
        r.tried
    );
    assert!(r.converged && best.passed == Some(true));
    let lowest_fail = r
        .tried
        .iter()
        .filter(|t| !t.passed)
        .map(|t| t.qps)
        .fold(f64::INFINITY, f64::min);
    assert!(lowest_fail > qps && lowest_fail <= qps * 1.05 + 1e-9);
    assert!(r.tried.len() <= 20);
}

#[test]
fn poisson_limit_lies_between_known_bounds() {
    // M/D/1 with 10 ms service: p99 at 50% load is ~45 ms (< 100 ms SLO);
    // above 100 qps the queue grows without bound.
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let s = ServerSettings {
        min_queries: 3000,
        ..base(100.0, 1)
    };
    let r = find_max_qps(&sut, &s, &SearchSettings::new(20.0), &clock).unwrap();
    let qps = r.best.as_ref().and_then(|b| b.settings.qps).unwrap();
    assert!(
        (50.0..100.0).contains(&qps),
        "best {qps}, tried {:?}",
        r.tried
    );
    assert!(r.converged);
    assert!(r.tried.iter().any(|t| t.passed) && r.tried.iter().any(|t| !t.passed));
}

#[test]
fn dynamic_batching_raises_max_qps() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 1.0, 32);
    let search = SearchSettings::new(20.0);
    let plain = find_max_qps(&sut, &base(200.0, 1), &search, &clock).unwrap();
    let batched = find_max_qps(&sut, &base(200.0, 32), &search, &clock).unwrap();
    let q = |r: &MaxQpsResult| r.best.as_ref().and_then(|b| b.settings.qps).unwrap();
    assert!(
        q(&plain) < 1.0 / 0.011,
        "unbatched can't beat 1/11 ms: {}",
        q(&plain)
    );
    assert!(
        q(&batched) > 2.0 * q(&plain),
        "{} vs {}",
        q(&batched),
        q(&plain)
    );
}

#[test]
fn hopeless_sut_gives_no_best_and_stops() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 50.0, 0.0, 1);
    let search = SearchSettings {
        max_runs: 6,
        ..SearchSettings::new(10.0)
    };
    let r = find_max_qps(&sut, &base(10.0, 1), &search, &clock).unwrap();
    assert!(r.best.is_none() && !r.converged);
    assert_eq!(r.tried.len(), 6);
    assert!(
        r.tried.windows(2).all(|w| w[1].qps < w[0].qps),
        "should shrink while failing"
    );
}

#[test]
fn bad_search_settings_are_errors() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 1.0, 0.0, 1);
    for s in [
        SearchSettings {
            growth: 1.0,
            ..SearchSettings::new(10.0)
        },
        SearchSettings {
            max_runs: 0,
            ..SearchSettings::new(10.0)
        },
        SearchSettings::new(f64::NAN),
    ] {
        assert!(find_max_qps(&sut, &base(10.0, 1), &s, &clock).is_err());
    }
}
