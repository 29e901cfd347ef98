//! Retries of store requests: a per-attempt timeout, exponential back-off with jitter, and a
//! bounded number of attempts; for writes, the lease fence (`fence.rs`) and a deadline gate
//! each attempt.
//!
//! Owns: which store errors are worth retrying ([`transient`]), the retry loop
//! ([`Retrier::run`]), and the record of when requests that changed the store without an answer
//! may still take effect (`settle_by_ms`). Timeouts, 5xx answers, connection errors and S3's
//! `409 ConditionalRequestConflict` are transient; "not found", "precondition failed", "already
//! exists" and permission errors are answers, returned at once for the caller to interpret.
//! object_store's own HTTP retries are turned off (`s3.rs`) so there is one retry budget, this
//! one, and the fault-injection tests exercise it.
//!
//! **Deadlines and a dead store**: a write's attempts are sent only before its deadline
//! (`chunk.rs` gives each rewrite round two retry budgets from when it got its PUT slot, so a
//! healthy but slow store with thousands of dirty chunks is waited for, however long the queue).
//! A write that gives up without an answer marks the store *known down* (`health.rs`); until an
//! attempt is answered again, writes are not retried: one probes the store with one attempt, at
//! most once per attempt timeout, and the others fail without a request. So against a store
//! that does not answer, the first rewrites in flight spend their budget and every rewrite
//! queued behind them fails at once: a sync of N dirty chunks returns its error after about one
//! budget whatever N is (not N / (rewrites in flight) budgets), and reads, which a rewrite
//! excludes from its chunk, wait no longer.
//!
//! The assumption every timing argument of this crate rests on: **a request the client gave up
//! on takes effect within its attempt timeout of being sent, or never** (choose the timeout
//! above the store's own request deadline). A writer's requests are sent only while its fence is
//! open and abandoned when it closes; a newcomer waits for the old lease plus the old writer's
//! attempt timeout (`lease.rs`).
//!
//! Does not own: what an answer means for an image (`chunk.rs`, `rewrite.rs`, `lease.rs`).
//!
//! May block: sleeps between attempts (on the backend's runtime, never on a cache thread).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::ObjectError;
use crate::fence::{Clock, Fence};
use crate::health::{Down, Health};

/// How hard to try before giving up on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts_max: u32,
    /// Wait after the first failure; doubled after each.
    pub backoff_initial: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
    /// A single attempt that takes longer is abandoned and counts as a transient failure.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts, 100 ms doubling to 2 s between them (about 3 s of back-off in all), 10 s
    /// per attempt: a 4 MiB PUT at 0.5 MB/s, and a third of the default lease (30 s), which
    /// [`OpenOptions`](crate::OpenOptions) requires.
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 6,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The longest one request can take: every attempt timing out, with the longest waits
    /// between them.
    pub fn budget(&self) -> Duration {
        let n = self.attempts_max.max(1);
        let mut backoff = self.backoff_initial;
        let mut waits = Duration::ZERO;
        for _ in 1..n {
            waits += backoff;
            backoff = (backoff * 2).min(self.backoff_max);
        }
        self.attempt_timeout * n + waits
    }
}

/// How a request ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The store answered with something a retry will not change (not found, precondition
    /// failed, already exists, denied...). `sent` attempts were sent, the answered one
    /// included: `sent > 1` means an earlier one may have taken effect (a PUT whose answer was
    /// lost).
    Answer {
        error: object_store::Error,
        sent: u32,
    },
    /// No answer: transient failures until the budget ran out, the deadline passed, or the
    /// lease fence closed (`fence.rs`). `sent` attempts were sent, and any of them may still
    /// take effect.
    GaveUp { error: ObjectError, sent: u32 },
}

impl Failed {
    /// As an [`ObjectError`]: answers become [`ObjectError::Store`].
    pub(crate) fn into_error(self, op: &'static str, key: &str) -> ObjectError {
        match self {
            Failed::Answer { error, .. } => ObjectError::Store {
                op,
                key: key.to_string(),
                source: error,
            },
            Failed::GaveUp { error, .. } => error,
        }
    }

    /// True if a request that changes the store may have taken effect although it failed.
    pub(crate) fn uncertain(&self) -> bool {
        match self {
            Failed::Answer { sent, .. } => *sent > 1,
            Failed::GaveUp { sent, .. } => *sent > 0,
        }
    }
}

/// A request that succeeded, and when its attempts started.
#[derive(Debug)]
pub(crate) struct Sent<T> {
    pub(crate) value: T,
    /// When the attempt that succeeded started (ms on the image's clock).
    pub(crate) started_ms: u64,
}

/// What guards a request's attempts.
#[derive(Clone, Copy)]
pub(crate) enum Gate<'a> {
    /// Reads, and requests at open: attempts as the policy says.
    Open,
    /// A write under the lease: each attempt is sent only while the fence is open and before
    /// `deadline_ms` (on the image's clock), and abandoned when the fence closes.
    Write { fence: &'a Fence, deadline_ms: u64 },
    /// A request on the lock itself (it is what keeps the fence open).
    Lease,
}

/// The context of a request's retries.
pub(crate) struct Retrier<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) clock: Clock,
    /// For requests that change the store: the latest time (ms on `clock`) until which an
    /// attempt that ended without an answer may still take effect (it started then, plus the
    /// attempt timeout: the store applies a request within the client's timeout or never).
    pub(crate) settle_by_ms: Option<&'a AtomicU64>,
    /// Whether the store is known down (`health.rs`).
    pub(crate) health: &'a Health,
}

/// Records, when dropped armed, that an attempt may still take effect until `until_ms`.
struct Unsettled<'a> {
    settle_by_ms: Option<&'a AtomicU64>,
    until_ms: u64,
}

impl Unsettled<'_> {
    fn answered(mut self) {
        self.settle_by_ms = None;
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.settle_by_ms {
            s.fetch_max(self.until_ms, Ordering::AcqRel);
        }
    }
}

/// True for errors worth retrying: the request may succeed if sent again.
pub(crate) fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    // Generic covers HTTP 5xx, timeouts and connection errors from the S3 client (and what a
    // fault-injecting store reports); JoinError is a client task that died.
    matches!(e, E::Generic { .. } | E::JoinError { .. }) || conflict(e)
}

/// True if `e` carries an HTTP status from the store (object_store's "Server returned non-2xx
/// status code: 503 Slow Down" and the like): the store answered, so it is up even though the
/// request failed. Timeouts and connection errors carry no status.
pub(crate) fn server_answered(e: &object_store::Error) -> bool {
    chain_says(e, "status code: ")
}

/// True for S3's `409 ConditionalRequestConflict`: another conditional write of the same key
/// was in flight, and S3 asks to retry. object_store reports every 409 as `AlreadyExists`
/// (with our retries off, `s3.rs`); the status is only in its source's text, so it is told
/// from a real "already exists" (a 412 to `If-None-Match`, whose text says 412) by that.
pub(crate) fn conflict(e: &object_store::Error) -> bool {
    if !matches!(e, object_store::Error::AlreadyExists { .. }) {
        return false;
    }
    chain_says(e, "409 Conflict")
}

/// True if the text of `e` or of one of its sources contains `needle` (object_store keeps the
/// HTTP status only in its sources' text).
fn chain_says(e: &object_store::Error, needle: &str) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    // Bounded: error chains are short; at most 8 links are looked at.
    for _ in 0..8 {
        let Some(s) = source else { break };
        if s.to_string().contains(needle) {
            return true;
        }
        source = s.source();
    }
    false
}

impl Retrier<'_> {
    fn gave_up(&self, op: &'static str, key: &str, sent: u32, last: String) -> Failed {
        Failed::GaveUp {
            error: ObjectError::RetriesExhausted {
                op,
                key: key.to_string(),
                attempts: sent,
                last,
            },
            sent,
        }
    }

    /// Runs `attempt` until it succeeds, fails with an answer, or gives up (see [`Failed`]).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        gate: Gate<'_>,
        op: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<Sent<T>, Failed>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let policy = self.policy;
        let attempts_max = policy.attempts_max.max(1);
        let mut backoff = policy.backoff_initial;
        let mut last = String::new();
        let mut sent = 0;
        let mut probe: Option<Probing<'_>> = None;
        // Whether the last attempt got an HTTP answer (see `server_answered`).
        let mut answered = false;
        let health = self.health;
        for n in 1..=attempts_max {
            let mut timeout = policy.attempt_timeout;
            if let Gate::Write { fence, deadline_ms } = gate {
                if let Err(e) = fence.check() {
                    return Err(Failed::GaveUp { error: e, sent });
                }
                if self.clock.now_ms() >= deadline_ms {
                    if sent > 0 {
                        health.gave_up(self.clock.now_ms());
                    }
                    let why = "not sent again: the write's deadline passed (two retry budgets \
                               after it got its slot)";
                    return Err(self.gave_up(op, key, sent, joined(last, why)));
                }
                if probe.is_some() {
                    let why = "not sent again: the store does not answer";
                    return Err(self.gave_up(op, key, sent, joined(last, why)));
                }
                if n > 1 && health.is_down() {
                    let why = "not sent again: the store does not answer (other requests gave up)";
                    return Err(self.gave_up(op, key, sent, joined(last, why)));
                }
                match health.before_write(self.clock.now_ms()) {
                    Down::No => {}
                    Down::Probe => {
                        probe = Some(Probing {
                            health,
                            clock: self.clock,
                            started_ms: self.clock.now_ms(),
                            quiet_max: policy.attempt_timeout,
                        })
                    }
                    Down::AwaitProbe => {
                        if !health.wait_for_probe(policy.attempt_timeout).await {
                            let why = "not sent: the store does not answer (a probe failed)";
                            return Err(self.gave_up(op, key, sent, joined(last, why)));
                        }
                        // The wait (up to an attempt timeout) may have outlived the fence, or
                        // the lease may have been lost meanwhile: look again before sending.
                        if let Err(e) = fence.check() {
                            return Err(Failed::GaveUp { error: e, sent });
                        }
                    }
                    Down::FailFast => {
                        let why = "not sent: the store does not answer (a probe just failed)";
                        return Err(self.gave_up(op, key, sent, joined(last, why)));
                    }
                }
                timeout = timeout.min(fence.left());
            }
            let started_ms = self.clock.now_ms();
            let unsettled = Unsettled {
                settle_by_ms: self.settle_by_ms,
                until_ms: started_ms + policy.attempt_timeout.as_millis() as u64,
            };
            sent = n;
            match tokio::time::timeout(timeout, attempt()).await {
                Ok(Ok(value)) => {
                    unsettled.answered();
                    health.answered();
                    return Ok(Sent { value, started_ms });
                }
                Ok(Err(e)) if !transient(&e) => {
                    unsettled.answered();
                    health.answered();
                    return Err(Failed::Answer { error: e, sent });
                }
                Ok(Err(e)) => {
                    // A 5xx (503 Slow Down under throttling) is an answer: the store is up,
                    // only busy. Retry as usual, but do not judge it down for it.
                    answered = server_answered(&e);
                    last = e.to_string();
                }
                Err(_) if timeout < policy.attempt_timeout => {
                    answered = false;
                    last = format!("abandoned after {timeout:?}: the lease fence closed")
                }
                Err(_) => {
                    answered = false;
                    last = format!("no answer within {timeout:?}")
                }
            }
            drop(unsettled);
            if answered {
                health.answered();
                // A probe that got an answer ends: the store is up and this write retries
                // with its whole budget like any other.
                probe = None;
            } else if probe.is_some() {
                health.gave_up(self.clock.now_ms());
            }
            tracing::debug!(op, key, attempt = n, error = %last, "store request failed");
            if n < attempts_max && probe.is_none() {
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(policy.backoff_max);
            }
        }
        if matches!(gate, Gate::Write { .. }) && !answered {
            // Only writes judge the store: a lock or a read that fails says less about it; and
            // a write whose last attempt was answered (throttled) found the store up.
            health.gave_up(self.clock.now_ms());
        }
        tracing::warn!(op, key, attempts = sent, error = %last, "store request gave up");
        Err(self.gave_up(op, key, sent, last))
    }
}

/// Ends a probe of the store (`health.rs`) however its request ends.
struct Probing<'a> {
    health: &'a Health,
    clock: Clock,
    started_ms: u64,
    quiet_max: Duration,
}

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        let now_ms = self.clock.now_ms();
        self.health
            .probe_ended(self.started_ms, now_ms, self.quiet_max);
    }
}

/// `last` and `why`, joined.
fn joined(last: String, why: &str) -> String {
    if last.is_empty() {
        why.to_string()
    } else {
        format!("{last}; {why}")
    }
}

/// `d` scaled by a factor in [0.5, 1.0), so clients that failed together do not retry together.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let frac = (h.finish() % 1000) as f64 / 2000.0; // 0 .. 0.5
    d.mul_f64(0.5 + frac)
}

#[cfg(test)]
mod tests;
