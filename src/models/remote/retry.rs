//! When to try again and how long to wait: jittered exponential backoff for transient faults,
//! and the server's own `Retry-After` (seconds or an HTTP date) on 429/503. Jitter keeps a
//! batch whose requests failed together from retrying together.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// How hard to try one item.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retries.
    pub max_attempts: u32,
    /// The wait before the second attempt, before jitter; doubles each retry.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A longer `Retry-After` is cut to this, so one odd header cannot stall a run for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1-based): "equal jitter", uniform in
    /// [d/2, d] with d = base * 2^(attempt-1) capped at `max_delay`, so waits still grow but
    /// never collapse to zero.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        let d = self.base_delay.saturating_mul(exp).min(self.max_delay);
        d.mul_f64(0.5 + 0.5 * rand::random::<f64>())
    }

    /// The wait before retrying after `err`: the server's `Retry-After` when it gave one.
    pub fn delay_for(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(ra) => ra.min(self.max_retry_after),
            None => self.backoff(attempt),
        }
    }
}

/// `Retry-After: 7`, `Retry-After: 1.5`, `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`, or
/// OpenAI's `retry-after-ms: 250`. A date in the past means "now".
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return secs(ms / 1000.0);
    }
    let v = header_str(headers, "retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return secs(s);
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, v.parse().unwrap());
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let p = |n, v| parse_retry_after(&headers(n, v), now);
        assert_eq!(p("retry-after", "7"), Some(Duration::from_secs(7)));
        assert_eq!(p("retry-after", "1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(
            p("retry-after", "Wed, 21 Oct 2015 07:28:09 GMT"),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            p("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(p("retry-after-ms", "250"), Some(Duration::from_millis(250)));
        assert_eq!(p("retry-after", "soon"), None);
        assert_eq!(p("retry-after", "-3"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        for _ in 0..100 {
            let d1 = p.backoff(1);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d3 = p.backoff(3);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400));
            assert!(p.backoff(30) <= Duration::from_millis(1000));
        }
        assert_eq!(
            p.delay_for(1, Some(Duration::from_secs(999))),
            p.max_retry_after
        );
    }
}
