//! Scenario results on a virtual clock: exact, machine-independent numbers.

use crate::common::SimSut;
use std::time::Duration;
use taskbench::runtime::load::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn server_settings(qps: f64, slo_ms: f64, min_queries: usize) -> ServerSettings {
    ServerSettings {
        min_queries,
        min_duration: Duration::ZERO,
        warmup: 4,
        max_batch: 1,
        seed: 11,
        ..ServerSettings::new(500, qps, slo_ms)
    }
}

#[test]
fn single_stream_latency_is_exactly_the_service_time() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let s = SingleStreamSettings {
        min_queries: 100,
        ..SingleStreamSettings::new(40)
    };
    let r = single_stream(&sut, &s, &clock).unwrap();
    let lat = r.latency.clone().unwrap();
    for v in [
        lat.p50_ms,
        lat.p90_ms,
        lat.p99_ms,
        lat.max_ms,
        lat.mean_ms,
        r.percentile_ms.unwrap(),
    ] {
        assert!(close(v, 10.0), "{v}");
    }
    assert_eq!((r.queries, r.completed, r.errors), (100, 100, 0));
    assert!(close(r.duration_s, 1.0) && close(r.achieved_qps, 100.0));
    assert!(r.cycled_queries && r.reliable && r.passed.is_none());
}

#[test]
fn offline_throughput_is_items_over_batches_times_service() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 20.0, 0.0, 8);
    let r = offline(&sut, &OfflineSettings::new(100), &clock).unwrap();
    assert_eq!((r.batches, r.completed, r.settings.max_batch), (13, 100, 8));
    assert!(
        close(r.items_per_s, 100.0 / (13.0 * 0.020)),
        "{}",
        r.items_per_s
    );
    assert!(close(r.mean_batch, 100.0 / 13.0));
    assert!(!r.cycled_queries);
}

#[test]
fn offline_workers_run_in_parallel_in_simulation() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 20.0, 0.0, 8);
    let s = OfflineSettings {
        workers: 2,
        ..OfflineSettings::new(100)
    };
    let r = offline(&sut, &s, &clock).unwrap();
    // 13 batches over 2 workers: 7 rounds of 20 ms.
    assert!(close(r.duration_s, 0.140), "{}", r.duration_s);
}

#[test]
fn server_at_half_load_passes() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let r = server(&sut, &server_settings(50.0, 100.0, 2000), &clock).unwrap();
    assert_eq!(r.passed, Some(true), "{}", r.verdict);
    let p99 = r.percentile_ms.unwrap();
    assert!((10.0..100.0).contains(&p99), "{p99}");
    assert_eq!((r.issued, r.completed, r.errors), (r.queries, r.queries, 0));
    assert!(r.queries >= 2000 && r.reliable && r.cycled_queries);
    assert!(
        (r.achieved_qps / 50.0 - 1.0).abs() < 0.1,
        "{}",
        r.achieved_qps
    );
    assert_eq!((r.dispatcher_lag_ms_p99, r.dispatcher_behind), (0.0, false));
}

#[test]
fn server_overload_fails_and_throughput_caps_at_capacity() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let r = server(&sut, &server_settings(150.0, 100.0, 2000), &clock).unwrap();
    assert_eq!(r.passed, Some(false));
    assert!(r.verdict.starts_with("fail: p99"), "{}", r.verdict);
    assert!(
        r.percentile_ms.unwrap() > 1000.0,
        "queue should grow without bound"
    );
    assert!(r.achieved_qps <= 100.0 + 1e-6, "{}", r.achieved_qps);
    assert_eq!(r.completed, r.queries);
}

#[test]
fn extra_workers_absorb_the_overload() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 0.0, 1);
    let s = ServerSettings {
        workers: 2,
        ..server_settings(150.0, 100.0, 2000)
    };
    assert_eq!(server(&sut, &s, &clock).unwrap().passed, Some(true));
}

#[test]
fn too_few_queries_is_invalid_never_a_pass() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 1.0, 0.0, 1);
    let r = server(&sut, &server_settings(10.0, 1000.0, 100), &clock).unwrap();
    assert_eq!((r.reliable, r.passed), (false, Some(false)));
    assert_eq!(r.min_queries_for_percentile, 662);
    assert!(
        r.verdict.starts_with("invalid: too few queries"),
        "{}",
        r.verdict
    );
    // The same 100 queries are enough when judged on p90 (needs 64).
    let p90 = ServerSettings {
        percentile: 0.90,
        ..server_settings(10.0, 1000.0, 100)
    };
    let r = server(&sut, &p90, &clock).unwrap();
    assert_eq!((r.reliable, r.passed), (true, Some(true)));
}

#[test]
fn dynamic_batching_sustains_more_load() {
    let clock = VirtualClock::new();
    // 10 ms + 1 ms per item: unbatched capacity is 1/11 ms ≈ 91 qps.
    let sut = SimSut::new(&clock, 10.0, 1.0, 32);
    let unbatched = server(&sut, &server_settings(150.0, 200.0, 2000), &clock).unwrap();
    assert_eq!(unbatched.passed, Some(false));
    assert!((unbatched.mean_batch - 1.0).abs() < 1e-12);
    let s = ServerSettings {
        max_batch: 32,
        ..server_settings(150.0, 200.0, 2000)
    };
    let batched = server(&sut, &s, &clock).unwrap();
    assert_eq!(batched.passed, Some(true), "{}", batched.verdict);
    assert!(batched.mean_batch > 1.5 && batched.batches < batched.completed);
}

#[test]
fn batch_cap_is_limited_by_the_sut() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 10.0, 1.0, 4);
    let s = ServerSettings {
        max_batch: 64,
        ..server_settings(400.0, 1e6, 700)
    };
    let r = server(&sut, &s, &clock).unwrap();
    assert_eq!(r.settings.max_batch, 4);
    assert!(r.mean_batch <= 4.0 && r.mean_batch > 3.0);
}

#[test]
fn errors_are_counted_and_fail_the_run() {
    let clock = VirtualClock::new();
    let mut sut = SimSut::new(&clock, 1.0, 0.0, 1);
    sut.fail_item = Some(|i| i % 100 == 3);
    let s = ServerSettings {
        query_count: 1000,
        warmup: 0,
        ..server_settings(50.0, 1000.0, 1000)
    };
    let r = server(&sut, &s, &clock).unwrap();
    assert_eq!((r.errors, r.completed, r.issued), (10, 990, 1000));
    assert_eq!(r.first_error.as_deref(), Some("item failed in batch of 1"));
    assert_eq!(r.passed, Some(false));
    assert!(
        r.verdict.starts_with("fail: 10 queries failed"),
        "{}",
        r.verdict
    );
}

#[test]
fn warmup_errors_also_count_but_warmup_is_not_measured() {
    let clock = VirtualClock::new();
    let mut sut = SimSut::new(&clock, 1.0, 0.0, 1);
    sut.fail_item = Some(|i| i == 1);
    let s = ServerSettings {
        query_count: 5000,
        warmup: 3,
        ..server_settings(50.0, 1000.0, 700)
    };
    let r = server(&sut, &s, &clock).unwrap();
    // Item 1 fails once in warm-up and once as measured query 1.
    assert_eq!((r.errors, r.queries, r.completed), (2, 700, 699));
    assert_eq!(r.passed, Some(false));
}

#[test]
fn virtual_runs_are_reproducible() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 3.0, 0.5, 8);
    let s = ServerSettings {
        workers: 3,
        max_batch: 8,
        ..server_settings(400.0, 50.0, 1500)
    };
    assert_eq!(
        server(&sut, &s, &clock).unwrap(),
        server(&sut, &s, &clock).unwrap()
    );
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let clock = VirtualClock::new();
    let sut = SimSut::new(&clock, 1.0, 0.0, 1);
    let bad = [
        ServerSettings {
            qps: 0.0,
            ..server_settings(1.0, 1.0, 1)
        },
        ServerSettings {
            workers: 0,
            ..server_settings(1.0, 1.0, 1)
        },
        ServerSettings {
            percentile: 1.5,
            ..server_settings(1.0, 1.0, 1)
        },
        ServerSettings {
            slo_ms: f64::NAN,
            ..server_settings(1.0, 1.0, 1)
        },
        ServerSettings {
            query_count: 0,
            ..server_settings(1.0, 1.0, 1)
        },
    ];
    for s in bad {
        assert!(matches!(
            server(&sut, &s, &clock),
            Err(LoadgenError::InvalidSetting { .. })
        ));
    }
    let s = SingleStreamSettings {
        percentile: 0.0,
        ..SingleStreamSettings::new(5)
    };
    assert!(single_stream(&sut, &s, &clock).is_err());
    assert!(offline(&sut, &OfflineSettings::new(0), &clock).is_err());
}

#[test]
fn results_are_serde_types() {
    fn is_serde<T: serde::Serialize + serde::de::DeserializeOwned>() {}
    is_serde::<ScenarioResult>();
    is_serde::<MaxQpsResult>();
    is_serde::<ServerSettings>();
}
