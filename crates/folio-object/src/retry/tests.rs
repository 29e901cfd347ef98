//! The retry loop's unit tests: budgets, deadlines, fences, conflicts and the store's health.

use super::*;
use std::sync::atomic::AtomicU32;

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

struct Ctx {
    policy: RetryPolicy,
    clock: Clock,
    settle: AtomicU64,
    health: Health,
}

impl Ctx {
    fn new() -> Ctx {
        Ctx {
            policy: fast(),
            clock: Clock::new(),
            settle: AtomicU64::new(0),
            health: Health::default(),
        }
    }

    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            policy: &self.policy,
            clock: self.clock,
            settle_by_ms: Some(&self.settle),
            health: &self.health,
        }
    }
}

#[test]
fn transient_failures_are_retried_until_success() {
    let ctx = Ctx::new();
    let calls = AtomicU32::new(0);
    let r = rt().block_on(ctx.retrier().run(Gate::Open, "GET", "k", || async {
        if calls.fetch_add(1, Ordering::SeqCst) < 2 {
            Err(generic())
        } else {
            Ok(7)
        }
    }));
    assert_eq!(r.unwrap().value, 7);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        ctx.settle.load(Ordering::SeqCst) >= 200,
        "two attempts without an answer"
    );
}

#[test]
fn the_budget_is_bounded_and_the_error_is_typed() {
    let ctx = Ctx::new();
    let calls = AtomicU32::new(0);
    let r: Result<Sent<()>, _> =
        rt().block_on(ctx.retrier().run(Gate::Open, "PUT", "k", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(generic())
        }));
    let f = r.unwrap_err();
    assert!(f.uncertain());
    match f.into_error("PUT", "k") {
        ObjectError::RetriesExhausted {
            attempts: 4, last, ..
        } => {
            assert!(last.contains("Slow Down"), "{last}")
        }
        e => panic!("{e}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(fast().budget() >= Duration::from_millis(800));
}

#[test]
fn answers_are_not_retried_and_hangs_time_out() {
    let ctx = Ctx::new();
    let calls = AtomicU32::new(0);
    let r: Result<Sent<()>, _> =
        rt().block_on(ctx.retrier().run(Gate::Open, "GET", "k", || async {
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
            sent: 1
        })
    ));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let t = std::time::Instant::now();
    let r: Result<Sent<()>, _> =
        rt().block_on(ctx.retrier().run(Gate::Open, "GET", "k", || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }));
    assert!(matches!(r, Err(Failed::GaveUp { sent: 4, .. })));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_write_makes_no_attempt_past_its_deadline() {
    let ctx = Ctx::new();
    let clock = ctx.clock;
    let fence = Fence::new(clock, "p".into(), u64::MAX);
    let calls = AtomicU32::new(0);
    let counted = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        Err::<(), _>(generic())
    };
    // Deadline already passed: nothing is sent, and nothing can land.
    let gate = Gate::Write {
        fence: &fence,
        deadline_ms: clock.now_ms(),
    };
    let r = rt().block_on(ctx.retrier().run(gate, "PUT", "k", counted));
    let f = r.unwrap_err();
    assert!(matches!(f, Failed::GaveUp { sent: 0, .. }), "{f:?}");
    assert!(!f.uncertain());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A deadline inside the budget stops the retries there.
    let slow = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        Err::<(), _>(generic())
    };
    let gate = Gate::Write {
        fence: &fence,
        deadline_ms: clock.now_ms() + 90,
    };
    let r = rt().block_on(ctx.retrier().run(gate, "PUT", "k", slow));
    assert!(matches!(r, Err(Failed::GaveUp { sent: 2, .. })), "{r:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Review 4: a throttled store (503 Slow Down, an HTTP answer) is up, not down: a write that
/// runs out of retries under throttling must not make the whole queue fail fast, and a probe
/// that is answered ends the probe and retries with its whole budget.
#[test]
fn a_throttled_store_is_up_not_down() {
    let ctx = Ctx::new();
    let clock = ctx.clock;
    let fence = Fence::new(clock, "p".into(), u64::MAX);
    let slow_down = || async {
        Err::<(), _>(object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: \
                     <Code>SlowDown</Code>"
                .into(),
        })
    };
    let gate = || Gate::Write {
        fence: &fence,
        deadline_ms: u64::MAX,
    };
    let r = rt().block_on(ctx.retrier().run(gate(), "PUT", "k", slow_down));
    assert!(matches!(r, Err(Failed::GaveUp { sent: 4, .. })), "{r:?}");
    assert!(!ctx.health.is_down(), "throttling marked the store down");
    // Found down by a timeout elsewhere, then a probe is answered by a 503: the store is up
    // again and this write used all its attempts instead of failing after the probe.
    ctx.health.gave_up(clock.now_ms());
    let calls = AtomicU32::new(0);
    let counted = || async {
        calls.fetch_add(1, Ordering::SeqCst);
        slow_down().await
    };
    let r = rt().block_on(ctx.retrier().run(gate(), "PUT", "k", counted));
    assert!(matches!(r, Err(Failed::GaveUp { sent: 4, .. })), "{r:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(!ctx.health.is_down());
    // No status (a timeout, a refused connection): still judged down, as before.
    let r = rt().block_on(
        ctx.retrier()
            .run(gate(), "PUT", "k", || async { Err::<(), _>(generic()) }),
    );
    assert!(r.is_err());
    assert!(ctx.health.is_down(), "a store that does not answer is down");
}

#[test]
fn a_409_conflict_is_retried_but_already_exists_is_an_answer() {
    let conflict = object_store::Error::AlreadyExists {
        path: "k".into(),
        source: "Server returned non-2xx status code: 409 Conflict: \
                 ConditionalRequestConflict"
            .into(),
    };
    assert!(transient(&conflict));
    let exists = object_store::Error::AlreadyExists {
        path: "k".into(),
        source: "Server returned non-2xx status code: 412 Precondition Failed".into(),
    };
    assert!(!transient(&exists));
}

#[test]
fn a_fenced_attempt_ends_when_the_fence_closes() {
    let ctx = Ctx::new();
    let clock = Clock::new();
    let fence = Fence::new(clock, "p".into(), clock.now_ms() + 50);
    let t = std::time::Instant::now();
    let gate = Gate::Write {
        fence: &fence,
        deadline_ms: u64::MAX,
    };
    let r: Result<Sent<()>, _> = rt().block_on(ctx.retrier().run(gate, "PUT", "k", || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }));
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    match r.unwrap_err() {
        Failed::GaveUp {
            error: ObjectError::LeaseLost { .. },
            sent: 1,
        } => {}
        f => panic!("{f:?}"),
    }
}
