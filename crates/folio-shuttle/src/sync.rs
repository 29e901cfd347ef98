//! The shuttle build of `crates/folio/src/sync.rs`: the same names over shuttle's primitives,
//! and a logical clock.
//!
//! Time: shuttle does not model it, so `Instant` here is a logical clock that only sleeps move
//! (`sleep(d)` advances it by `d` and yields), and a condvar wait with a deadline is a wait for
//! a notification alone. Every such wait in the cache has a notifier: the flusher is kicked by
//! writers past the background threshold and stopped when the cache closes. So the models run
//! the flusher on kicks (not on its interval), and no schedule spins on a timeout that never
//! comes. Dirty throttling is the exception: a throttled writer re-checks in 10 ms slices and
//! may miss the flusher's wake-up between two, so models turn it off (`throttle_wait_max(0)`).

use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

pub(crate) use shuttle::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
pub(crate) use shuttle::sync::MutexGuard;
pub(crate) use shuttle::thread::JoinHandle;

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

    /// The lock if it is free now (the hit buffers' drain, `policy/hitbuf.rs`).
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex")
    }
}

/// `parking_lot::RwLock`'s interface over shuttle's.
#[derive(Default)]
pub(crate) struct RwLock<T>(shuttle::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> RwLock<T> {
        RwLock(shuttle::sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> shuttle::sync::RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> shuttle::sync::RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The logical clock, in nanoseconds. Shared by every execution of a test (only differences
/// matter), and a plain atomic: changing it is not a scheduling point.
static CLOCK_NS: StdAtomicU64 = StdAtomicU64::new(0);

fn advance_to(ns: u64) {
    CLOCK_NS.fetch_max(ns, std::sync::atomic::Ordering::Relaxed);
}

/// A point of the logical clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Instant(u64);

impl Instant {
    pub(crate) fn now() -> Instant {
        Instant(CLOCK_NS.load(std::sync::atomic::Ordering::Relaxed))
    }

    pub(crate) fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    pub(crate) fn duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_nanos().min(u64::MAX as u128) as u64),
        )
    }
}

/// A condition variable over [`Mutex`]; a wait with a deadline waits for a notification only
/// (see the module docs).
#[derive(Default)]
pub(crate) struct Condvar(shuttle::sync::Condvar);

impl std::fmt::Debug for Condvar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Condvar")
    }
}

impl Condvar {
    pub(crate) fn new() -> Condvar {
        Condvar(shuttle::sync::Condvar::new())
    }

    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.0.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn wait_until<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        _deadline: Instant,
    ) -> (MutexGuard<'a, T>, bool) {
        (self.wait(guard), false)
    }

    pub(crate) fn notify_one(&self) {
        self.0.notify_one();
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}

shuttle::lazy_static! {
    /// Threads parked (or about to park) on a frame, with the key they wait on.
    static ref PARKED: shuttle::sync::Mutex<Vec<(usize, shuttle::thread::Thread)>> =
        shuttle::sync::Mutex::new(Vec::new());
}

/// Parks the caller until an `unpark_all` of `key` if `validate()` (which publishes the waiter,
/// as in the real build) says it must wait. The caller registers before it validates, and a
/// thread's park token outlives an unpark that comes first, so a wake-up cannot slip between the
/// validation and the sleep. Unlike the real build there is no re-check interval: a wake-up the
/// cache forgets is a deadlock shuttle reports, and a waiter never spins (which PCT's fixed
/// priorities would turn into a livelock).
pub(crate) fn park(key: usize, validate: impl FnOnce() -> bool, _timeout: Duration) {
    let me = shuttle::thread::current();
    PARKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((key, me.clone()));
    if validate() {
        shuttle::thread::park();
    }
    let mut parked = PARKED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = parked
        .iter()
        .position(|(k, t)| *k == key && t.id() == me.id())
    {
        parked.swap_remove(i);
    }
}

/// Wakes every thread parked on `key`.
pub(crate) fn unpark_all(key: usize) {
    let parked = PARKED.lock().unwrap_or_else(|e| e.into_inner());
    for (_, t) in parked.iter().filter(|(k, _)| *k == key) {
        t.unpark();
    }
}

pub(crate) fn yield_now() {
    shuttle::thread::yield_now();
}

pub(crate) fn sleep(d: Duration) {
    advance_to((Instant::now() + d).0);
    shuttle::thread::yield_now();
}

pub(crate) fn spawn<T: Send + 'static>(
    _name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    Ok(shuttle::thread::spawn(f))
}

pub(crate) use shuttle::thread::scope;

/// Thread-local storage: one per logical thread (std's would be shared by all of them, since
/// shuttle runs them on one OS thread).
pub(crate) use shuttle::thread_local;

/// No scoped threads in the model build: the caller does the work itself (a flush split over
/// threads writes every slice on the calling thread). Shuttle 0.9's scoped threads wake the
/// scope's owner when one of them ends, even while the owner waits on a condition variable,
/// which shuttle then reports as an impossible wake-up (simulation seeds 5114 and 50368).
pub(crate) fn spawn_scoped<'scope, T: Send + 'scope>(
    _scope: &'scope shuttle::thread::Scope<'scope, '_>,
    _name: &str,
    _f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<shuttle::thread::ScopedJoinHandle<'scope, T>> {
    Err(std::io::Error::other(
        "no scoped threads in the model build",
    ))
}

pub(crate) fn is_current<T>(h: &JoinHandle<T>) -> bool {
    h.thread().id() == shuttle::thread::current().id()
}
