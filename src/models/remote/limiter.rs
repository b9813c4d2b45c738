//! Client-side admission: a concurrency cap, requests-per-minute and tokens-per-minute token
//! buckets, and an adaptive factor that halves all three on a 429 and recovers slowly, plus
//! a shared pause when the server says `Retry-After`. One lock guards it all so a permit is
//! taken from every limit at once or from none (no slot held while waiting on a bucket).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The limits a run starts with; a 429 lowers them for a while.
#[derive(Debug, Clone)]
pub struct RateLimits {
    /// Requests in flight at once (`--concurrency`, default 8).
    pub concurrency: usize,
    pub requests_per_minute: Option<f64>,
    /// Counted as prompt characters / 4 + `max_tokens` up front, corrected by the reported
    /// usage once the answer comes, as providers count it.
    pub tokens_per_minute: Option<f64>,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            concurrency: 8,
            requests_per_minute: None,
            tokens_per_minute: None,
        }
    }
}

/// The lowest the adaptive factor goes: 1/64 of the configured limits.
const MIN_FACTOR: f64 = 1.0 / 64.0;
/// Recovery per successful answer, as a share of the configured limits.
const RECOVERY_STEP: f64 = 0.02;
/// 429s arriving within this window of a cut are the same overload, not a new one.
const CUT_WINDOW: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(per_minute: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity(per_minute / 60.0),
            last: now,
        }
    }

    fn refill(&mut self, per_sec: f64, now: Instant) {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * per_sec).min(capacity(per_sec));
        self.last = now;
    }

    /// How long until `cost` may be taken (0 = now). A cost above the capacity only needs a
    /// full bucket and then drives it negative, so one big request is slow, not stuck.
    fn wait_for(&self, per_sec: f64, cost: f64) -> Duration {
        let need = cost.min(capacity(per_sec));
        if self.tokens >= need {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((need - self.tokens) / per_sec)
        }
    }
}

/// One second's worth: providers enforce per-minute limits over shorter windows, so a full
/// minute's burst at start would itself draw 429s.
fn capacity(per_sec: f64) -> f64 {
    per_sec.max(1.0)
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    factor: f64,
    last_cut: Option<Instant>,
    paused_until: Option<Instant>,
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
}

#[derive(Debug)]
pub(crate) struct Limiter {
    limits: RateLimits,
    state: Mutex<State>,
    changed: Notify,
}

/// A slot in flight; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<Limiter>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.lock().in_flight -= 1;
        self.limiter.changed.notify_waiters();
    }
}

impl Limiter {
    pub fn new(limits: RateLimits) -> Arc<Limiter> {
        let now = Instant::now();
        let state = State {
            in_flight: 0,
            factor: 1.0,
            last_cut: None,
            paused_until: None,
            requests: limits.requests_per_minute.map(|r| Bucket::full(r, now)),
            tokens: limits.tokens_per_minute.map(|t| Bucket::full(t, now)),
        };
        Arc::new(Limiter {
            limits,
            state: Mutex::new(state),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding this lock leaves plain counters; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until one more request costing `cost` tokens is allowed. Cancel-safe: state
    /// changes only at the moment it returns.
    pub async fn acquire(self: &Arc<Self>, cost: u64) -> Permit {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_acquire(cost as f64, Instant::now()) {
                Ok(()) => {
                    return Permit {
                        limiter: Arc::clone(self),
                    }
                }
                Err(None) => notified.await,
                Err(Some(wait)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// `Err(Some(d))`: try again after `d`; `Err(None)`: wait for a slot to free.
    fn try_acquire(&self, cost: f64, now: Instant) -> Result<(), Option<Duration>> {
        let mut st = self.lock();
        if let Some(until) = st.paused_until {
            if until > now {
                return Err(Some(until - now));
            }
            st.paused_until = None;
        }
        let cap = ((self.limits.concurrency as f64 * st.factor).floor() as usize).max(1);
        if st.in_flight >= cap {
            return Err(None);
        }
        let factor = st.factor;
        let rps = self.limits.requests_per_minute.map(|r| r * factor / 60.0);
        let tps = self.limits.tokens_per_minute.map(|t| t * factor / 60.0);
        let mut wait = Duration::ZERO;
        if let (Some(b), Some(rate)) = (st.requests.as_mut(), rps) {
            b.refill(rate, now);
            wait = wait.max(b.wait_for(rate, 1.0));
        }
        if let (Some(b), Some(rate)) = (st.tokens.as_mut(), tps) {
            b.refill(rate, now);
            wait = wait.max(b.wait_for(rate, cost));
        }
        if wait > Duration::ZERO {
            return Err(Some(wait));
        }
        if let Some(b) = st.requests.as_mut() {
            b.tokens -= 1.0;
        }
        if let Some(b) = st.tokens.as_mut() {
            b.tokens -= cost;
        }
        st.in_flight += 1;
        Ok(())
    }

    /// A 429: pause everyone for `retry_after` and halve the limits, once per overload.
    pub fn on_rate_limited(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(ra) = retry_after {
            let until = now + ra;
            st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
        }
        if st
            .last_cut
            .is_none_or(|t| now.duration_since(t) >= CUT_WINDOW)
        {
            st.factor = (st.factor / 2.0).max(MIN_FACTOR);
            st.last_cut = Some(now);
        }
    }

    /// An answer came: recover a little, and correct the token estimate with the real usage.
    pub fn on_success(&self, estimated: u64, actual: Option<u64>) {
        let now = Instant::now();
        let mut st = self.lock();
        if st
            .last_cut
            .is_none_or(|t| now.duration_since(t) >= CUT_WINDOW)
        {
            st.factor = (st.factor + RECOVERY_STEP).min(1.0);
        }
        if let (Some(b), Some(actual)) = (st.tokens.as_mut(), actual) {
            b.tokens += estimated as f64 - actual as f64;
        }
        drop(st);
        self.changed.notify_waiters();
    }

    /// The current share of the configured limits (1.0 = untouched).
    pub fn factor(&self) -> f64 {
        self.lock().factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_cap_and_halving() {
        let l = Limiter::new(RateLimits {
            concurrency: 4,
            ..RateLimits::default()
        });
        let now = Instant::now();
        for _ in 0..4 {
            l.try_acquire(1.0, now).unwrap();
        }
        assert_eq!(l.try_acquire(1.0, now), Err(None));
        l.on_rate_limited(None);
        l.on_rate_limited(None); // same overload: no second cut
        assert_eq!(l.factor(), 0.5);
        l.lock().in_flight = 1;
        l.try_acquire(1.0, now).unwrap();
        assert_eq!(l.try_acquire(1.0, now), Err(None), "cap is now 2");
    }

    #[test]
    fn rpm_bucket_spaces_requests() {
        let l = Limiter::new(RateLimits {
            concurrency: 100,
            requests_per_minute: Some(120.0), // 2/s, burst 2
            tokens_per_minute: None,
        });
        let now = Instant::now();
        l.try_acquire(1.0, now).unwrap();
        l.try_acquire(1.0, now).unwrap();
        let wait = l.try_acquire(1.0, now).unwrap_err().unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        l.try_acquire(1.0, now + Duration::from_millis(500))
            .unwrap();
    }

    #[test]
    fn tpm_bucket_lets_big_requests_through_slowly() {
        let l = Limiter::new(RateLimits {
            concurrency: 100,
            requests_per_minute: None,
            tokens_per_minute: Some(600.0), // 10/s, capacity 10
        });
        let now = Instant::now();
        l.try_acquire(50.0, now).unwrap(); // bigger than capacity: goes, bucket at -40
        let wait = l.try_acquire(5.0, now).unwrap_err().unwrap();
        assert!((wait.as_secs_f64() - 4.5).abs() < 1e-6, "{wait:?}");
    }

    #[test]
    fn pause_holds_everyone() {
        let l = Limiter::new(RateLimits::default());
        l.on_rate_limited(Some(Duration::from_secs(2)));
        let wait = l.try_acquire(1.0, Instant::now()).unwrap_err().unwrap();
        assert!(wait > Duration::from_millis(1900));
    }
}
