//! The shuttle build of `crates/folio/src/sync.rs`: the same names over shuttle's primitives.

use std::time::Duration;

pub(crate) use shuttle::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
pub(crate) use shuttle::sync::MutexGuard;

/// `parking_lot::Mutex`'s interface (no poisoning) over shuttle's mutex.
#[derive(Default)]
pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(shuttle::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex")
    }
}

/// Waiting is a yield to the scheduler: if `validate()` (which publishes the waiter, as in the
/// real build) says the caller must wait, another thread runs first. Callers re-check their
/// condition in a loop, exactly as after the real build's bounded park. This models every
/// interleaving of the state word; it does not check the wake-ups themselves (a missed
/// `unpark_all` would cost the real build one 20 ms re-check, not correctness).
pub(crate) fn park(_key: usize, validate: impl FnOnce() -> bool, _timeout: Duration) {
    if validate() {
        shuttle::thread::yield_now();
    }
}

/// Nothing to do: waiters only yield.
pub(crate) fn unpark_all(_key: usize) {}

pub(crate) fn yield_now() {
    shuttle::thread::yield_now();
}

pub(crate) fn sleep(_d: Duration) {
    shuttle::thread::yield_now();
}
