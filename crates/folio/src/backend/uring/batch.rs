//! Rings for batched I/O, one per thread and use, reaped by the thread that waits.
//!
//! # Owns
//! - `BatchRing`: a ring, its in-flight table and its count of failures; pushing an op
//!   (reaping first while the ring is full), submitting at `unplug`, reaping for the waiters it
//!   drives ([`IoDriver`]), draining, and giving up after `RING_FAILURES_MAX` failed
//!   `io_uring_enter`s in a row;
//! - the two uses (`RingUse`): a plain ring that any thread may wait on, and an owned ring set
//!   up `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` that only its thread enters;
//! - the backend's table of them (`RingTable`: at most one of each use for each of
//!   [`BATCH_RINGS_MAX`] threads), and taking a thread's rings out of it when the thread exits
//!   (`ThreadRings`, a thread-local destructor that drains them on their owner);
//! - dropping a ring: drained on its owner; off its owner, the completions already posted are
//!   taken and the buffers of the rest leaked.
//!
//! # Does not own
//! - preparing ops (`op.rs`), finishing them (`complete.rs`), choosing between a batch ring
//!   and the shared ring (`dispatch.rs`).
//!
//! # May block
//! - `push` on a full ring, `drive` (a waiter's wait), `drain` and a thread's exit: in
//!   `io_uring_enter` until a completion, holding the ring's state lock (another thread waiting
//!   on the same plain ring waits for that lock, and the holder reaps its completion too);
//!   after a failed enter, 1 ms before the next try;
//! - finishing an op of a short transfer (positional I/O).
//!
//! The table's lock is never held while a ring is entered.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{squeue, IoUring};
use parking_lot::Mutex;

use super::complete::{fail_and_leak, ring_broken, transient, RING_FAILURES_MAX};
use super::op::{InFlight, Op};
use super::shared::Inner;
use super::{UringBackend, BATCH_RINGS_MAX};
use crate::backend::IoDriver;

// Named by the docs of `RingUse` only.
#[cfg(doc)]
use crate::backend::{IoWaiter, LocalIoWaiter, PageCacheBackend};

/// The batch rings of one backend: (thread, use, ring).
pub(super) type RingTable = Mutex<Vec<(std::thread::ThreadId, RingUse, Arc<BatchRing>)>>;

/// The ring tables the current thread has rings in. When the thread exits its rings leave
/// them, so they drain on the thread that owns them, close their descriptors, and free their
/// slot of the table for another thread: a server that starts a thread per connection keeps
/// getting rings of its own, not the shared ring after its 16th connection.
struct ThreadRings {
    me: std::thread::ThreadId,
    tables: Vec<std::sync::Weak<RingTable>>,
}

impl Drop for ThreadRings {
    fn drop(&mut self) {
        for table in self.tables.drain(..) {
            let Some(table) = table.upgrade() else {
                continue;
            };
            let mine: Vec<Arc<BatchRing>> = {
                let mut rows = table.lock();
                let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut *rows)
                    .into_iter()
                    .partition(|row| row.0 == self.me);
                *rows = others;
                mine.into_iter().map(|row| row.2).collect()
            };
            // Drained here, on the thread that owns them, outside the table's lock. (Not left to
            // their `Drop`, which asks which thread it runs on: this thread's other locals may
            // already be gone.)
            for ring in mine {
                ring.drain();
            }
        }
    }
}

thread_local! {
    static THREAD_RINGS: std::cell::RefCell<Option<ThreadRings>> =
        const { std::cell::RefCell::new(None) };
}

/// Notes that the current thread has a ring in `table` (see [`ThreadRings`]). If the thread
/// is already exiting the ring just stays in the table until the backend drops.
fn register_thread_ring(table: &Arc<RingTable>) {
    let _ = THREAD_RINGS.try_with(|rings| {
        let mut rings = rings.borrow_mut();
        let rings = rings.get_or_insert_with(|| ThreadRings {
            me: this_thread(),
            tables: Vec::new(),
        });
        rings.tables.retain(|t| t.strong_count() > 0);
        if !rings
            .tables
            .iter()
            .any(|t| std::ptr::eq(t.as_ptr(), Arc::as_ptr(table)))
        {
            rings.tables.push(Arc::downgrade(table));
        }
    });
}

/// A ring for one thread's batched reads, reaped by whoever waits for one of its reads.
pub(super) struct BatchRing {
    inner: Arc<Inner>,
    depth: usize,
    /// The thread that alone may enter the ring (set up `SINGLE_ISSUER | DEFER_TASKRUN`), or
    /// `None` if any thread may.
    owner: Option<std::thread::ThreadId>,
    state: Mutex<BatchState>,
}

/// The calling thread's id, without `std::thread::current`'s reference-count round trip (it is
/// looked up for every batched I/O).
pub(super) fn this_thread() -> std::thread::ThreadId {
    thread_local! {
        static ME: std::thread::ThreadId = std::thread::current().id();
    }
    // While the thread's locals are being destroyed `ME` may be gone already.
    ME.try_with(|me| *me)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// Which threads may wait for the ops of a batch ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RingUse {
    /// Any thread: the waiters are [`IoWaiter`]s, which may be sent anywhere
    /// ([`start_read_pages`](PageCacheBackend::start_read_pages)). A plain ring.
    AnyThread,
    /// Only the thread that started them: the waiters are [`LocalIoWaiter`]s
    /// ([`start_read_pages_local`](PageCacheBackend::start_read_pages_local)). The ring is set up
    /// `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` where the kernel has it (6.1+).
    ThisThread,
}

struct BatchState {
    ring: IoUring,
    /// Ops pushed into the ring (submitted or not) whose CQE has not been reaped.
    ops: InFlight,
    /// `io_uring_enter` failures in a row (other than interruptions).
    failures: u32,
    /// Set after `RING_FAILURES_MAX` failures in a row: every op in flight was failed and
    /// its buffers leaked, and new ops fail at once.
    broken: bool,
}

impl BatchRing {
    fn new(inner: Arc<Inner>, depth: usize, ring_use: RingUse) -> std::io::Result<BatchRing> {
        let entries = depth as u32;
        let (ring, owner) = match ring_use {
            // Any thread that waits for one of its ops may enter it.
            RingUse::AnyThread => (IoUring::builder().dontfork().build(entries)?, None),
            // Completion work runs in the owner's own `io_uring_enter` (with `GETEVENTS`), never
            // by interrupting it: 1.06x to 1.11x the random-read IOPS of the plain ring in
            // alternating runs at depth 32. Older kernels refuse the flags: a plain ring then.
            RingUse::ThisThread => match IoUring::builder()
                .dontfork()
                .setup_coop_taskrun()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(entries)
            {
                Ok(ring) => (ring, Some(this_thread())),
                Err(_) => (IoUring::builder().dontfork().build(entries)?, None),
            },
        };
        Ok(BatchRing {
            inner,
            depth,
            owner,
            state: Mutex::new(BatchState {
                ring,
                ops: InFlight::with_capacity(depth),
                failures: 0,
                broken: false,
            }),
        })
    }

    /// Puts `op` in the table and its SQE in the ring, unsubmitted; reaps first while the ring
    /// is full.
    pub(super) fn push(&self, op: Op, sqe: squeue::Entry) {
        let mut st = self.state.lock();
        // Bounded: each round reaps at least one op, or counts a failure towards `broken`.
        while st.ops.len() >= self.depth && !st.broken {
            self.reap(&mut st);
        }
        if st.broken {
            let e = ring_broken(&op.buffers, op.offset);
            op.completer.complete(Err(e));
            return;
        }
        let slot = st.ops.insert(op);
        // SAFETY: the op's buffers stay in the table until its CQE is reaped (`reap`), and the
        // ring drains before it is dropped (`Drop`). Fewer than `depth` ops are in flight, and
        // the submission queue (`depth` entries) only holds ops in flight: the push cannot fail.
        let pushed = unsafe { st.ring.submission().push(&sqe.user_data(slot as u64)) };
        debug_assert!(pushed.is_ok(), "batch ring submission queue full");
    }

    /// Submits what is queued, without waiting.
    pub(super) fn submit(&self) {
        let st = self.state.lock();
        if let Err(e) = st.ring.submit() {
            if !transient(&e) {
                tracing::error!(error = %e, "io_uring_enter (batch submit) failed");
            }
        }
    }

    /// Submits what is queued, waits for at least one completion (the caller checked one is
    /// in flight) and completes every op whose CQE is there.
    fn reap(&self, st: &mut BatchState) -> bool {
        debug_assert!(st.ops.len() > 0);
        if let Err(e) = st.ring.submit_and_wait(1) {
            if !transient(&e) {
                tracing::error!(error = %e, "io_uring_enter (batch wait) failed");
                st.failures += 1;
                if st.failures >= RING_FAILURES_MAX {
                    self.give_up(st);
                } else {
                    // Do not spin on a failing ring.
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                return false;
            }
        }
        st.failures = 0;
        self.reap_posted(st);
        true
    }

    /// Reaps until no op is in flight; the caller is the ring's owner (or it has none).
    fn drain(&self) {
        self.drain_locked(&mut self.state.lock());
    }

    /// As [`drain`](Self::drain), with the state locked. Bounded: each round reaps at least one
    /// op or counts a failure, and after `RING_FAILURES_MAX` of those the ring gives up (failing
    /// the ops, leaking their buffers rather than freeing them under a kernel that may still
    /// write them).
    fn drain_locked(&self, st: &mut BatchState) {
        while st.ops.len() > 0 {
            self.reap(st);
        }
    }

    /// Completes every op whose CQE the kernel has posted, without entering the ring.
    fn reap_posted(&self, st: &mut BatchState) {
        let BatchState { ring, ops, .. } = st;
        for cqe in ring.completion() {
            // The kernel is done with the op's buffers: it may now leave the table.
            if let Some(op) = ops.take(cqe.user_data() as usize) {
                self.inner.finish(op, cqe.result());
            }
        }
    }

    /// After `RING_FAILURES_MAX` failures in a row: fails every op in flight, so nobody
    /// waits for the ring forever, and leaks their buffers, since the kernel may still own them.
    fn give_up(&self, st: &mut BatchState) {
        tracing::error!(
            ops = st.ops.len(),
            "giving up an io_uring that keeps failing"
        );
        st.broken = true;
        fail_and_leak(&self.inner, st.ops.take_all());
    }
}

impl IoDriver for BatchRing {
    fn drive(&self) {
        // Only the owner holds waiters of an owned ring (they are `LocalIoWaiter`s).
        debug_assert!(self.owner.is_none_or(|t| t == this_thread()));
        let mut st = self.state.lock();
        if st.ops.len() > 0 {
            self.reap(&mut st);
        }
    }
}

impl Drop for BatchRing {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.ops.len() == 0 {
            return;
        }
        if self.owner.is_some_and(|t| t != this_thread()) {
            // Another thread may not enter an owned ring. Ops are still in flight only if their
            // waiters were dropped unwaited; take what the kernel has posted, and leak the
            // buffers of the rest rather than free them under a kernel that may still use them.
            self.reap_posted(&mut st);
            if st.ops.len() > 0 {
                tracing::warn!(
                    ops = st.ops.len(),
                    "an io_uring dropped off its thread with ops in flight; leaking their buffers"
                );
                fail_and_leak(&self.inner, st.ops.take_all());
            }
            return;
        }
        self.drain_locked(&mut st);
    }
}

impl UringBackend {
    /// The calling thread's batch ring for `ring_use`, made on first use; `None` once
    /// [`BATCH_RINGS_MAX`] threads have one (or if the kernel refuses another ring).
    pub(super) fn batch_ring(&self, ring_use: RingUse, create: bool) -> Option<Arc<BatchRing>> {
        let me = this_thread();
        let mut rings = self.batch_rings.lock();
        if let Some((_, _, r)) = rings.iter().find(|(t, u, _)| *t == me && *u == ring_use) {
            return Some(r.clone());
        }
        // A thread may have one ring of each use.
        if !create || rings.len() >= 2 * BATCH_RINGS_MAX {
            return None;
        }
        match BatchRing::new(self.inner.clone(), self.inner.queue_depth, ring_use) {
            Ok(r) => {
                let r = Arc::new(r);
                rings.push((me, ring_use, r.clone()));
                drop(rings);
                register_thread_ring(&self.batch_rings);
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "no io_uring for batched reads; using the shared one");
                None
            }
        }
    }

    /// Batch rings in the table now (a test seam: a thread's rings leave when it exits).
    #[doc(hidden)]
    pub fn batch_rings_for_tests(&self) -> usize {
        self.batch_rings.lock().len()
    }

    /// Test seam: makes every `io_uring_enter` on the batch rings made so far fail from now on
    /// (`EOPNOTSUPP`), as a ring the kernel keeps refusing would, by putting `/dev/null` in
    /// place of their descriptors. Each such ring then gives up after `RING_FAILURES_MAX`
    /// failures and fails its ops with a typed error. Not for use outside tests.
    #[doc(hidden)]
    pub fn break_batch_rings_for_tests(&self) -> std::io::Result<()> {
        let null = std::fs::File::open("/dev/null")?;
        for (_, _, ring) in self.batch_rings.lock().iter() {
            let st = ring.state.lock();
            // SAFETY: `dup2` onto a descriptor the ring owns replaces what it refers to and
            // nothing else; the ring's mappings keep the io_uring itself alive, and the ring
            // closes the descriptor (now `/dev/null`) when it is dropped.
            if unsafe { libc::dup2(null.as_raw_fd(), st.ring.as_raw_fd()) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}
