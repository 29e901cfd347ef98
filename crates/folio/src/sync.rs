//! The concurrency primitives of the page state machine, in one place.
//!
//! `page.rs`, `index.rs`, `cache.rs` and the CLOCK policy take their atomics, mutex, parking and
//! yielding from here and nowhere else. The model-checking crate (`crates/folio-shuttle`)
//! compiles those same source files against its own `sync` module, built on shuttle's atomics,
//! mutex and threads, with parking replaced by a yield to shuttle's scheduler. This module is the
//! normal build: plain re-exports and `#[inline]` wrappers, so it costs nothing.
//!
//! What is deliberately not here: the statistics counters (`stats.rs`, relaxed counts that
//! synchronise nothing) and the backends' I/O completion (not part of the state machine).

use std::time::{Duration, Instant};

pub(crate) use parking_lot::{Mutex, MutexGuard};
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};

/// Parks the calling thread on `key` (an address that identifies what it waits for) if
/// `validate()` returns true, until [`unpark_all`] on the same key or until `timeout` passes.
/// `validate` runs under the parking lot's bucket lock, so an `unpark_all` cannot slip between
/// it and the sleep.
#[inline]
pub(crate) fn park(key: usize, validate: impl FnOnce() -> bool, timeout: Duration) {
    // SAFETY: `parking_lot_core::park` requires that the key is not used with other parking
    // primitives in a conflicting way and that the callbacks do not panic or call into the
    // parking lot. Keys are addresses of frame state words (used only here), and `validate`
    // is an atomic read-modify-write plus a pure predicate.
    unsafe {
        parking_lot_core::park(
            key,
            validate,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            Some(Instant::now() + timeout),
        );
    }
}

/// Wakes every thread parked on `key`.
#[inline]
pub(crate) fn unpark_all(key: usize) {
    // SAFETY: as in `park`: the key is only an address to hash.
    unsafe {
        parking_lot_core::unpark_all(key, parking_lot_core::DEFAULT_UNPARK_TOKEN);
    }
}

/// Gives up the CPU while spinning for a frame.
#[inline]
pub(crate) fn yield_now() {
    std::thread::yield_now();
}

/// Sleeps while spinning for a frame, after yielding did not help.
#[inline]
pub(crate) fn sleep(d: Duration) {
    std::thread::sleep(d);
}
