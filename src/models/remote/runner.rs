//! Runs a batch of requests against one client: cache first, then admission by the limiter,
//! then attempts with retries. The invariant every caller relies on: each dispatched index
//! reaches `on_outcome` exactly once, answered or failed with its last error, as soon as it
//! finishes; indices never dispatched because of cancellation are listed in
//! [`RunSummary::not_started`]. The callback runs on the caller's task, in completion order,
//! so it may persist results without locks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{mpsc, Notify};

use crate::models::remote::cache::{Cache, CacheError};
use crate::models::remote::client::ApiClient;
use crate::models::remote::error::ApiError;
use crate::models::remote::limiter::{Limiter, Permit, RateLimits};
use crate::models::remote::request::{Answer, ChatRequest};
use crate::models::remote::retry::RetryPolicy;

/// How the response cache is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Answer from the cache when possible; store new answers.
    #[default]
    Use,
    /// Ignore what is stored, ask again, overwrite (`--refresh`).
    Refresh,
    /// Neither read nor write (`--no-cache`).
    Off,
}

/// Stops a run from outside (Ctrl-C). Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<CancelInner>);

#[derive(Debug, Default)]
struct CancelInner {
    stop: AtomicBool,
    abort: AtomicBool,
    changed: Notify,
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Dispatch nothing new and retry nothing; requests in flight finish and are reported.
    pub fn cancel(&self) {
        self.0.stop.store(true, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }

    /// As `cancel`, and drop requests in flight too; they are reported failed with
    /// [`ApiError::Cancelled`] (a second Ctrl-C).
    pub fn abort(&self) {
        self.0.abort.store(true, Ordering::SeqCst);
        self.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.stop.load(Ordering::SeqCst)
    }

    pub fn is_aborted(&self) -> bool {
        self.0.abort.load(Ordering::SeqCst)
    }

    /// Resolves once `cancel` (or `abort`) has been called.
    pub async fn cancelled(&self) {
        self.wait(|t| t.is_cancelled()).await
    }

    /// Resolves once `abort` has been called.
    pub async fn aborted(&self) {
        self.wait(|t| t.is_aborted()).await
    }

    async fn wait(&self, done: impl Fn(&CancelToken) -> bool) {
        loop {
            let notified = self.0.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if done(self) {
                return;
            }
            notified.await;
        }
    }
}

/// Everything about a batch run besides the client and the requests.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub limits: RateLimits,
    pub retry: RetryPolicy,
    pub cache_mode: CacheMode,
    pub cancel: CancelToken,
}

/// An item that ended without an answer.
#[derive(Debug, Error)]
#[error("item {index} failed after {attempts} attempt(s)")]
pub struct ItemError {
    pub index: usize,
    pub attempts: u32,
    #[source]
    pub source: ApiError,
}

impl ItemError {
    /// The error with its causes, `: `-joined as anyhow prints a chain (`item 4 failed after
    /// 3 attempt(s): HTTP 500: ...`): the cause is what the user needs, and `{:#}` on a
    /// thiserror type prints only the first line. A cause whose text the previous one
    /// already holds is left out.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut last = text.clone();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            let part = e.to_string();
            if !last.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            last = part;
            cause = e.source();
        }
        text
    }
}

/// How one item ended.
#[derive(Debug)]
pub struct ItemOutcome {
    /// Position in the `requests` given to [`run_all`].
    pub index: usize,
    /// Requests sent for it: 0 for a cache hit.
    pub attempts: u32,
    pub result: Result<Answer, ItemError>,
}

impl ItemOutcome {
    pub fn from_cache(&self) -> bool {
        matches!(&self.result, Ok(a) if a.from_cache)
    }
}

/// Counts for the run as a whole.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub answered: usize,
    pub failed: usize,
    pub from_cache: usize,
    /// Requests that reached the network, retries included.
    pub requests_sent: u64,
    /// Items never dispatched because the run was cancelled, in order.
    pub not_started: Vec<usize>,
    /// Cache reads or writes that failed; those items were asked or answered anyway.
    pub cache_errors: Vec<CacheError>,
    /// The adaptive share of the configured limits at the end (below 1.0 after 429s).
    pub final_rate_factor: f64,
}

/// What a task sends back to the dispatcher.
struct Finished {
    outcome: ItemOutcome,
    cache_error: Option<CacheError>,
}

/// What a task needs besides its own request; shared by all tasks of a run.
struct Shared {
    client: Arc<ApiClient>,
    cache: Option<Arc<Cache>>,
    limiter: Arc<Limiter>,
    options: RunOptions,
}

/// Runs `requests` and hands each finished item to `on_outcome` as soon as it completes.
/// Cache hits cost no request and no rate-limit budget. Must be awaited inside a tokio
/// runtime (it spawns one task per request in flight); a CLI wires Ctrl-C to
/// `options.cancel.cancel()` and a second Ctrl-C to `abort()`.
pub async fn run_all<F>(
    client: Arc<ApiClient>,
    cache: Option<Arc<Cache>>,
    requests: Vec<ChatRequest>,
    options: &RunOptions,
    mut on_outcome: F,
) -> RunSummary
where
    F: FnMut(ItemOutcome),
{
    let cache = cache.filter(|_| options.cache_mode != CacheMode::Off);
    let shared = Arc::new(Shared {
        client,
        cache,
        limiter: Limiter::new(options.limits.clone()),
        options: options.clone(),
    });
    let cancel = &options.cancel;
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let mut summary = RunSummary::default();
    let mut deliver = |f: Finished, summary: &mut RunSummary| {
        record(summary, &f);
        if let Some(e) = f.cache_error {
            summary.cache_errors.push(e);
        }
        on_outcome(f.outcome);
    };
    let mut pending = 0usize;
    let mut items = requests.into_iter().enumerate();
    for (index, req) in items.by_ref() {
        while let Ok(f) = rx.try_recv() {
            pending -= 1;
            deliver(f, &mut summary);
        }
        if cancel.is_cancelled() {
            summary.not_started.push(index);
            break;
        }
        let job = Job::new(&shared, index, &req);
        match job.lookup(&shared) {
            Ok(Some(hit)) => {
                deliver(hit, &mut summary);
                continue;
            }
            Ok(None) => {}
            Err(e) => summary.cache_errors.push(e),
        }
        // Wait for admission, handing over outcomes that finish meanwhile.
        let permit = loop {
            tokio::select! {
                biased;
                Some(f) = rx.recv() => { pending -= 1; deliver(f, &mut summary); }
                _ = cancel.cancelled() => break None,
                p = shared.limiter.acquire(job.cost) => break Some(p),
            }
        };
        let Some(permit) = permit else {
            summary.not_started.push(index);
            break;
        };
        pending += 1;
        let (shared, tx) = (Arc::clone(&shared), tx.clone());
        tokio::spawn(async move {
            let finished = job.run(&shared, permit).await;
            let _ = tx.send(finished);
        });
    }
    summary.not_started.extend(items.map(|(i, _)| i));
    while pending > 0 {
        let f = rx.recv().await.expect("every task sends before it ends");
        pending -= 1;
        deliver(f, &mut summary);
    }
    summary.final_rate_factor = shared.limiter.factor();
    summary
}

fn record(summary: &mut RunSummary, f: &Finished) {
    summary.requests_sent += u64::from(f.outcome.attempts);
    match &f.outcome.result {
        Ok(a) if a.from_cache => {
            summary.answered += 1;
            summary.from_cache += 1;
        }
        Ok(_) => summary.answered += 1,
        Err(_) => summary.failed += 1,
    }
}

/// One item: its exact body, cache key and token estimate, computed once for all attempts.
struct Job {
    index: usize,
    body: Vec<u8>,
    key: String,
    cost: u64,
}

impl Job {
    fn new(shared: &Shared, index: usize, req: &ChatRequest) -> Job {
        let body = shared.client.body(req);
        let ep = shared.client.endpoint();
        let key = Cache::key(ep.spec.provider, &ep.base_url, &ep.spec.model, &body);
        Job {
            index,
            body,
            key,
            cost: req.estimated_tokens(),
        }
    }

    /// A cache hit as a finished outcome. A failed read is a miss: a broken cache must not
    /// stop the benchmark, nor hide, so the item goes to the network and the error is
    /// reported in the summary.
    fn lookup(&self, shared: &Shared) -> Result<Option<Finished>, CacheError> {
        if shared.options.cache_mode != CacheMode::Use {
            return Ok(None);
        }
        let Some(cache) = shared.cache.as_ref() else {
            return Ok(None);
        };
        Ok(cache.get(&self.key)?.map(|answer| Finished {
            outcome: ItemOutcome {
                index: self.index,
                attempts: 0,
                result: Ok(answer),
            },
            cache_error: None,
        }))
    }

    async fn run(self, shared: &Shared, first: Permit) -> Finished {
        let retry = &shared.options.retry;
        let cancel = &shared.options.cancel;
        let mut permit = Some(first);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = tokio::select! {
                r = shared.client.send_body(self.body.clone()) => r,
                _ = cancel.aborted() => Err(ApiError::Cancelled),
            };
            drop(permit.take());
            let err = match result {
                Ok(answer) => return self.answered(shared, attempts, answer),
                Err(e) => e,
            };
            if err.is_rate_limited() {
                shared.limiter.on_rate_limited(err.retry_after());
            }
            if !err.is_retryable() || attempts >= retry.max_attempts || cancel.is_cancelled() {
                return self.failed(attempts, err);
            }
            let delay = retry.delay_for(attempts, err.retry_after());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return self.failed(attempts, err),
            }
            tokio::select! {
                p = shared.limiter.acquire(self.cost) => permit = Some(p),
                _ = cancel.cancelled() => return self.failed(attempts, err),
            }
        }
    }

    fn answered(&self, shared: &Shared, attempts: u32, answer: Answer) -> Finished {
        let actual = answer.usage.map(|u| u.input_tokens + u.output_tokens);
        shared.limiter.on_success(self.cost, actual);
        let cache_error = shared.cache.as_ref().and_then(|c| {
            let ep = shared.client.endpoint();
            c.put(&self.key, ep.spec.provider, &ep.spec.model, &answer)
                .err()
        });
        Finished {
            outcome: ItemOutcome {
                index: self.index,
                attempts,
                result: Ok(answer),
            },
            cache_error,
        }
    }

    fn failed(&self, attempts: u32, source: ApiError) -> Finished {
        Finished {
            outcome: ItemOutcome {
                index: self.index,
                attempts,
                result: Err(ItemError {
                    index: self.index,
                    attempts,
                    source,
                }),
            },
            cache_error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_error_describes_its_cause() {
        let e = ItemError {
            index: 4,
            attempts: 3,
            source: ApiError::Status {
                status: 500,
                body: "overloaded".into(),
                retry_after: None,
            },
        };
        assert_eq!(
            e.describe(),
            "item 4 failed after 3 attempt(s): HTTP 500: overloaded"
        );
    }
}
