//! Real-threaded engine: structural assertions only (no wall-clock bounds).

use crate::common::{CountingSut, StepClock};
use std::time::Duration;
use taskbench::runtime::load::*;

#[test]
fn server_smoke_every_query_completes_exactly_once() {
    let sut = CountingSut::new(200, 4, Duration::from_micros(300));
    let s = ServerSettings {
        workers: 3,
        max_batch: 4,
        warmup: 0,
        min_queries: 200,
        min_duration: Duration::ZERO,
        ..ServerSettings::new(200, 500.0, 1e6)
    };
    let r = server(&sut, &s, &RealClock::new()).unwrap();
    assert_eq!(
        (r.queries, r.issued, r.completed, r.errors),
        (200, 200, 200, 0)
    );
    assert!(sut.counts().iter().all(|&c| c == 1), "{:?}", sut.counts());
    assert!(r.batches >= 50 && r.batches <= 200 && !r.cycled_queries);
}

#[test]
fn offline_smoke_every_query_completes_exactly_once() {
    let sut = CountingSut::new(300, 8, Duration::from_micros(100));
    let s = OfflineSettings {
        workers: 2,
        warmup: 0,
        ..OfflineSettings::new(300)
    };
    let r = offline(&sut, &s, &RealClock::new()).unwrap();
    assert_eq!((r.completed, r.errors), (300, 0));
    assert!(sut.counts().iter().all(|&c| c == 1));
    assert!(r.batches >= 38);
}

#[test]
fn single_stream_smoke() {
    let sut = CountingSut::new(50, 1, Duration::ZERO);
    let s = SingleStreamSettings {
        warmup: 0,
        ..SingleStreamSettings::new(50)
    };
    let r = single_stream(&sut, &s, &RealClock::new()).unwrap();
    assert_eq!(r.completed, 50);
    assert!(sut.counts().iter().all(|&c| c == 1));
}

#[test]
fn sut_panic_becomes_an_error() {
    let mut sut = CountingSut::new(100, 1, Duration::ZERO);
    sut.panic_on = Some(5);
    let s = OfflineSettings {
        workers: 2,
        warmup: 0,
        ..OfflineSettings::new(100)
    };
    let r = offline(&sut, &s, &RealClock::new()).unwrap();
    assert_eq!((r.errors, r.completed), (1, 99));
    assert!(r.first_error.unwrap().contains("panicked"));
}

#[test]
fn dispatcher_lag_is_reported_and_invalidates() {
    // Every now() call jumps 10 ms while arrivals are ~1 ms apart, so the
    // dispatcher is necessarily late.
    let sut = CountingSut::new(100, 1, Duration::ZERO);
    let s = ServerSettings {
        percentile: 0.90,
        warmup: 0,
        min_queries: 100,
        min_duration: Duration::ZERO,
        ..ServerSettings::new(100, 1000.0, 1e9)
    };
    let r = server(&sut, &s, &StepClock::new(Duration::from_millis(10))).unwrap();
    assert!(r.dispatcher_behind && r.dispatcher_lag_ms_p99 > 5.0);
    assert_eq!(r.passed, Some(false));
    assert!(
        r.verdict.contains("dispatcher fell behind"),
        "{}",
        r.verdict
    );
    assert_eq!(r.completed, 100);
}
