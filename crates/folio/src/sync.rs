//! The concurrency primitives of the page state machine, in one place.
//!
//! `page/`, `index.rs`, `cache.rs` and the CLOCK policy take their atomics, mutex, parking and
//! yielding from here and nowhere else. The model-checking crate (`crates/folio-shuttle`)
//! compiles those same source files against its own `sync` module, built on shuttle's atomics,
//! mutex and threads, with parking replaced by a yield to shuttle's scheduler. This module is the
//! normal build: plain re-exports and `#[inline]` wrappers, so it costs nothing.
//!
//! What is deliberately not here: the statistics counters (`stats.rs`, relaxed counts that
//! synchronise nothing) and the backends' I/O completion (not part of the state machine).

use std::time::Duration;

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

/// Time, as the cache's background threads and waits see it. The model-checking build
/// replaces it with a logical clock that only waits advance.
pub(crate) use std::time::Instant;

/// A thread the cache runs (the flusher, readahead workers).
pub(crate) use std::thread::JoinHandle;

/// `parking_lot`'s reader-writer lock (the readahead hints).
pub(crate) use parking_lot::RwLock;

/// A condition variable over [`Mutex`], with guards passed by value (the model-checking build
/// wraps a `std`-style condvar, which takes them so).
#[derive(Debug, Default)]
pub(crate) struct Condvar(parking_lot::Condvar);

impl Condvar {
    pub(crate) const fn new() -> Condvar {
        Condvar(parking_lot::Condvar::new())
    }

    /// Waits for a notification.
    #[inline]
    pub(crate) fn wait<'a, T>(&self, mut guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(&mut guard);
        guard
    }

    /// Waits for a notification or until `deadline`; true if it timed out.
    #[inline]
    pub(crate) fn wait_until<'a, T>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Instant,
    ) -> (MutexGuard<'a, T>, bool) {
        let timed_out = self.0.wait_until(&mut guard, deadline).timed_out();
        (guard, timed_out)
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

/// Starts a named thread.
pub(crate) fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

/// `std::thread::scope`, for flushes split over threads.
pub(crate) use std::thread::scope;

/// Thread-local storage (per logical thread in the model build).
pub(crate) use std::thread_local;

/// Starts a named scoped thread.
pub(crate) fn spawn_scoped<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<std::thread::ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn_scoped(scope, f)
}

/// True if `h` is the calling thread (a thread must not join itself).
pub(crate) fn is_current<T>(h: &JoinHandle<T>) -> bool {
    h.thread().id() == std::thread::current().id()
}
