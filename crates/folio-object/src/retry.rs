//! Retries of store requests: a per-attempt timeout, exponential back-off with jitter, and a
//! bounded number of attempts.
//!
//! Owns: which store errors are worth retrying ([`transient`]) and the retry loop ([`retry`]).
//! Timeouts, 5xx answers and connection errors are transient; "not found", "precondition
//! failed", "already exists" and permission errors are answers, returned at once for the caller
//! to interpret. object_store's own HTTP retries are turned off (`store.rs`) so there is one
//! retry budget, this one, and the fault-injection tests exercise it.
//!
//! Does not own: what an answer means for an image (`chunk.rs`, `lease.rs`).
//!
//! May block: sleeps between attempts (on the backend's runtime, never on a cache thread).

use std::future::Future;
use std::time::Duration;

use crate::error::ObjectError;

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
    /// Six attempts, 100 ms doubling to 2 s between them (about 3 s of back-off in all), 30 s
    /// per attempt (a 4 MiB PUT over a slow link).
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 6,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(30),
        }
    }
}

/// How a request ended, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The store answered with something a retry will not change (not found, precondition
    /// failed, already exists, denied...), after `attempts` attempts. `attempts > 1` means an
    /// earlier attempt may have taken effect (a PUT whose answer was lost).
    Answer {
        error: object_store::Error,
        attempts: u32,
    },
    /// Transient failures until the budget ran out.
    Exhausted(ObjectError),
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
            Failed::Exhausted(e) => e,
        }
    }
}

/// True for errors worth retrying: the request may succeed if sent again.
pub(crate) fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    // Generic covers HTTP 5xx, timeouts and connection errors from the S3 client (and what a
    // fault-injecting store reports); JoinError is a client task that died.
    matches!(e, E::Generic { .. } | E::JoinError { .. })
}

/// Runs `attempt` until it succeeds, fails with an answer, or the policy's attempts run out.
pub(crate) async fn retry<T, F, Fut>(
    policy: &RetryPolicy,
    op: &'static str,
    key: &str,
    mut attempt: F,
) -> Result<T, Failed>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = object_store::Result<T>>,
{
    let attempts_max = policy.attempts_max.max(1);
    let mut backoff = policy.backoff_initial;
    let mut last = String::new();
    for n in 1..=attempts_max {
        match tokio::time::timeout(policy.attempt_timeout, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if !transient(&e) => {
                return Err(Failed::Answer {
                    error: e,
                    attempts: n,
                })
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {:?}", policy.attempt_timeout),
        }
        tracing::debug!(op, key, attempt = n, error = %last, "store request failed");
        if n < attempts_max {
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(policy.backoff_max);
        }
    }
    tracing::warn!(op, key, attempts = attempts_max, error = %last, "store request gave up");
    Err(Failed::Exhausted(ObjectError::RetriesExhausted {
        op,
        key: key.to_string(),
        attempts: attempts_max,
        last,
    }))
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
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> RetryPolicy {
        RetryPolicy {
            attempts_max: 4,
            backoff_initial: Duration::from_millis(1),
            backoff_max: Duration::from_millis(4),
            attempt_timeout: Duration::from_millis(200),
        }
    }

    fn generic() -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: "503 Slow Down".into(),
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = rt().block_on(retry(&fast(), "GET", "k", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(generic())
            } else {
                Ok(7)
            }
        }));
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn the_budget_is_bounded_and_the_error_is_typed() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = rt().block_on(retry(&fast(), "PUT", "k", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(generic())
        }));
        match r.unwrap_err().into_error("PUT", "k") {
            ObjectError::RetriesExhausted {
                attempts: 4, last, ..
            } => {
                assert!(last.contains("Slow Down"), "{last}")
            }
            e => panic!("{e}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn answers_are_not_retried_and_hangs_time_out() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = rt().block_on(retry(&fast(), "GET", "k", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(object_store::Error::NotFound {
                path: "k".into(),
                source: "404".into(),
            })
        }));
        assert!(matches!(
            r,
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                attempts: 1
            })
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let t = std::time::Instant::now();
        let r: Result<(), _> = rt().block_on(retry(&fast(), "GET", "k", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }));
        assert!(matches!(r, Err(Failed::Exhausted(_))));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
