//! Tests of the retry loop (`retry.rs`) against a store known down (`health.rs`) and the lease
//! fence (`fence.rs`): how a write that waits for another write's probe treats the fence.
//!
//! Owns no code of its own: test-only, above the three modules it exercises (nothing depends on
//! it). Nothing here blocks outside its own runtime.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::ObjectError;
use crate::fence::{Clock, Fence};
use crate::health::{Down, Health};
use crate::retry::{Failed, Gate, Retrier, RetryPolicy, Sent};

/// Review 4: a write that found another write probing a store known down waited for the
/// probe's outcome (up to an attempt timeout) after it had checked the lease fence, and did
/// not check it again: a lease lost meanwhile (a renewal found another writer) did not stop
/// it, and a fence that expired meanwhile only shortened its attempt to zero, which still
/// polls (sends) it once.
#[test]
fn a_write_that_waited_for_a_probe_is_not_sent_once_the_lease_is_lost() {
    let (clock, health) = (Clock::new(), Health::default());
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        ..RetryPolicy::default()
    };
    let fence = Fence::new(clock, "p".into(), clock.now_ms() + 60_000);
    health.gave_up(clock.now_ms());
    // Another write probes the store.
    assert_eq!(health.before_write(clock.now_ms()), Down::Probe);
    let sent = AtomicU32::new(0);
    let gate = Gate::Write {
        fence: &fence,
        deadline_ms: u64::MAX,
    };
    let retrier = Retrier {
        policy: &policy,
        clock,
        settle_by_ms: None,
        health: &health,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let r: Result<Sent<()>, _> = rt.block_on(async {
        let write = retrier.run(gate, "PUT", "k", || async {
            sent.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        let meanwhile = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            // A lease renewal is answered: another writer took the image over.
            health.answered();
            fence.lose("taken over".into());
            // Then the probe is answered.
            health.probe_ended(0, clock.now_ms(), Duration::from_millis(200));
        };
        tokio::join!(write, meanwhile).0
    });
    assert_eq!(
        sent.load(Ordering::SeqCst),
        0,
        "a write went out after the lease was lost"
    );
    assert!(matches!(
        r,
        Err(Failed::GaveUp {
            error: ObjectError::LeaseLost { .. },
            ..
        })
    ));
}
