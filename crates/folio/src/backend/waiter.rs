//! Waiters: the pending result of a backend I/O ([`IoWaiter`], [`LocalIoWaiter`]), the side
//! that completes it ([`IoCompleter`]), and what makes a self-reaped queue progress
//! ([`IoDriver`]).
//!
//! # Owns
//! - the result slot shared by a waiter and its completer (`Completion`), and completing it:
//!   with the backend's result, or with an error if the completer is dropped unfinished, so a
//!   backend bug cannot leave a waiter hanging;
//! - the three kinds of waiter: already complete (synchronous backends), pending (completed
//!   by another thread), driven (the waiting thread completes operations itself);
//! - [`LocalIoWaiter`], which never leaves the thread that started its I/O.
//!
//! # Does not own
//! - the I/O itself, its buffers and its queues (each backend's), nor what the cache does when
//!   an I/O completes.
//!
//! # May block
//! - `wait` and `wait_progress`: until the I/O completes (a driven waiter drives its queue,
//!   which blocks in the backend until an operation completes). Completing a waiter takes its
//!   lock briefly and wakes the waiting threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::sync::{Condvar, Mutex};

use crate::error::{Error, IoOp, Result};

/// The state shared by an [`IoWaiter`] and its [`IoCompleter`].
struct Completion {
    result: Mutex<Option<Result<()>>>,
    /// Set (under the lock, after `result`) once the I/O completed: lets
    /// [`IoWaiter::is_complete`] answer without the lock, as a caller with a window of reads in
    /// flight polls all of them for each one it finishes.
    completed: AtomicBool,
    done: Condvar,
}

/// The seed's `BioWaiter`: the pending result of one backend I/O.
///
/// [`IoWaiter::wait`] blocks until the I/O completes and returns its result. Dropping a waiter
/// does not cancel the I/O: the buffers stay owned by the backend until it completes.
#[must_use = "an I/O's result must be waited for"]
pub struct IoWaiter {
    inner: WaiterInner,
}

enum WaiterInner {
    Ready(Result<()>),
    Pending(Arc<Completion>),
    Driven(Arc<Completion>, Arc<dyn IoDriver>),
}

/// What makes a [driven](IoWaiter::driven) waiter's I/O progress: a queue of operations that no
/// thread of its own completes (an io_uring the waiting thread reaps itself, as `fio` does), so
/// whoever waits does the completing.
pub trait IoDriver: Send + Sync {
    /// Completes at least one outstanding operation, blocking until one finishes; returns at
    /// once if none is outstanding.
    fn drive(&self);
}

/// The completing side of a pending [`IoWaiter`], held by the backend.
///
/// Dropping it without calling [`IoCompleter::complete`] completes the waiter with an error, so a
/// backend bug cannot leave a waiter hanging forever.
pub struct IoCompleter {
    completion: Option<Arc<Completion>>,
    op: IoOp,
    offset: u64,
}

impl IoWaiter {
    /// A waiter that is already complete (synchronous backends).
    pub fn ready(result: Result<()>) -> IoWaiter {
        IoWaiter {
            inner: WaiterInner::Ready(result),
        }
    }

    /// A pending waiter and the completer that finishes it. `op` and `offset` describe the I/O
    /// for the error reported if the completer is dropped unfinished.
    pub fn pending(op: IoOp, offset: u64) -> (IoWaiter, IoCompleter) {
        let completion = Arc::new(Completion {
            result: Mutex::new(None),
            completed: AtomicBool::new(false),
            done: Condvar::new(),
        });
        (
            IoWaiter {
                inner: WaiterInner::Pending(completion.clone()),
            },
            IoCompleter {
                completion: Some(completion),
                op,
                offset,
            },
        )
    }

    /// A pending waiter whose [`wait`](Self::wait) calls `driver` until the I/O completes, and
    /// the completer that the driver completes.
    pub fn driven(op: IoOp, offset: u64, driver: Arc<dyn IoDriver>) -> (IoWaiter, IoCompleter) {
        let (waiter, completer) = IoWaiter::pending(op, offset);
        let WaiterInner::Pending(c) = waiter.inner else {
            unreachable!("IoWaiter::pending returns a pending waiter")
        };
        let waiter = IoWaiter {
            inner: WaiterInner::Driven(c, driver),
        };
        (waiter, completer)
    }

    /// True once the I/O has completed (waiting would not block).
    pub fn is_complete(&self) -> bool {
        match &self.inner {
            WaiterInner::Ready(_) => true,
            WaiterInner::Pending(c) | WaiterInner::Driven(c, _) => {
                c.completed.load(Ordering::Acquire)
            }
        }
    }

    /// Blocks until this I/O or, for a [driven](Self::driven) waiter, any other I/O of the same
    /// driver completes, whichever is first (a caller with many reads in flight then finishes
    /// whichever completed, as `fio` refills any free slot). Returns whether this one is
    /// complete.
    pub fn wait_progress(&self) -> bool {
        match &self.inner {
            WaiterInner::Ready(_) => true,
            WaiterInner::Pending(c) => {
                let mut guard = c.result.lock();
                while guard.is_none() {
                    guard = c.done.wait(guard);
                }
                true
            }
            WaiterInner::Driven(c, driver) => {
                if !c.completed.load(Ordering::Acquire) {
                    driver.drive();
                }
                c.completed.load(Ordering::Acquire)
            }
        }
    }

    /// Blocks until the I/O completes; returns its result.
    pub fn wait(self) -> Result<()> {
        match self.inner {
            WaiterInner::Ready(r) => r,
            WaiterInner::Pending(c) => {
                let mut guard = c.result.lock();
                loop {
                    if let Some(r) = guard.take() {
                        return r;
                    }
                    guard = c.done.wait(guard);
                }
            }
            WaiterInner::Driven(c, driver) => loop {
                if let Some(r) = c.result.lock().take() {
                    return r;
                }
                // Our operation is outstanding until its completer runs, so each call completes
                // something or blocks until it can.
                driver.drive();
            },
        }
    }
}

/// An [`IoWaiter`] that never leaves the thread that started its I/O: neither `Send` nor
/// `Sync`, so it can only be waited for, polled or dropped there.
///
/// From [`start_read_pages_local`](super::PageCacheBackend::start_read_pages_local) and
/// [`start_write_pages_local`](super::PageCacheBackend::start_write_pages_local). Knowing that only the
/// starting thread ever waits lets a backend use a queue only that thread may enter (an io_uring
/// set up `SINGLE_ISSUER | DEFER_TASKRUN`, whose completion work runs in the waiter's own
/// `io_uring_enter` instead of interrupting it). Any [`IoWaiter`] converts into one.
#[must_use = "an I/O's result must be waited for"]
pub struct LocalIoWaiter {
    waiter: IoWaiter,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl LocalIoWaiter {
    /// As [`IoWaiter::is_complete`].
    pub fn is_complete(&self) -> bool {
        self.waiter.is_complete()
    }

    /// As [`IoWaiter::wait_progress`].
    pub fn wait_progress(&self) -> bool {
        self.waiter.wait_progress()
    }

    /// As [`IoWaiter::wait`].
    pub fn wait(self) -> Result<()> {
        self.waiter.wait()
    }
}

impl From<IoWaiter> for LocalIoWaiter {
    fn from(waiter: IoWaiter) -> LocalIoWaiter {
        LocalIoWaiter {
            waiter,
            _this_thread: std::marker::PhantomData,
        }
    }
}

impl std::fmt::Debug for LocalIoWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIoWaiter")
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl IoCompleter {
    /// Completes the waiter with `result`.
    pub fn complete(mut self, result: Result<()>) {
        self.finish(result);
    }

    fn finish(&mut self, result: Result<()>) {
        if let Some(c) = self.completion.take() {
            let mut slot = c.result.lock();
            *slot = Some(result);
            c.completed.store(true, Ordering::Release);
            drop(slot);
            c.done.notify_all();
        }
    }
}

impl Drop for IoCompleter {
    fn drop(&mut self) {
        let (op, offset) = (self.op, self.offset);
        self.finish(Err(Error::io(
            op,
            offset,
            std::io::Error::other("the backend abandoned the I/O"),
        )));
    }
}

// The model-checking build's primitives need a shuttle test: these run on std's only.
#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    /// A driver over a queue of completers that completes one per `drive`, counting calls.
    #[derive(Default)]
    struct OneAtATime {
        queue: Mutex<std::collections::VecDeque<IoCompleter>>,
        drives: std::sync::atomic::AtomicUsize,
    }

    impl IoDriver for OneAtATime {
        fn drive(&self) {
            self.drives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(c) = self.queue.lock().pop_front() {
                c.complete(Ok(()));
            }
        }
    }

    #[test]
    fn driven_waiters_complete_by_driving_whoever_waits() {
        let driver = Arc::new(OneAtATime::default());
        let mut waiters = Vec::new();
        for i in 0..3u64 {
            let (w, c) = IoWaiter::driven(IoOp::Read, i, driver.clone());
            driver.queue.lock().push_back(c);
            waiters.push(w);
        }
        let last = waiters.pop().unwrap();
        // Waiting for the last drives the first two to completion on the way.
        assert!(!last.is_complete());
        assert!(!last.wait_progress(), "one drive completes only the first");
        assert!(waiters[0].is_complete() && !waiters[1].is_complete());
        last.wait().unwrap();
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Completed waiters return at once, without driving.
        for w in waiters {
            assert!(w.wait_progress());
            w.wait().unwrap();
        }
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn a_dropped_completer_fails_its_driven_waiter() {
        let driver = Arc::new(OneAtATime::default());
        let (w, c) = IoWaiter::driven(IoOp::Write, 4096, driver.clone());
        drop(c);
        let e = w.wait().unwrap_err();
        assert!(e.to_string().contains("abandoned"), "{e}");
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
