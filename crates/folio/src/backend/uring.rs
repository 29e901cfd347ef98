//! [`UringBackend`]: a regular file or a block device through io_uring.
//!
//! # Design
//! One ring per backend, `queue_depth` entries. Any thread may submit; one *reaper* thread
//! waits for completions and completes the [`IoWaiter`]s it handed out.
//!
//! - **Submission.** A submitter reserves a slot in the in-flight table (blocking while
//!   `queue_depth` operations are in flight) and queues its SQE there, under one short lock; if
//!   the ring thread is asleep in the kernel it writes an eventfd that the ring thread always has
//!   a read pending on. The ring thread moves every queued SQE into the ring and submits them with
//!   one `io_uring_enter`, so when many threads submit at once, many SQEs go per system call.
//!   Reads from [`start_read_pages`](PageCacheBackend::start_read_pages) (a batch) are queued
//!   without the wake-up, which [`unplug`](PageCacheBackend::unplug) (or a submitter that has
//!   to wait for a slot) then does once for all of them.
//! - **Completion.** The same `io_uring_enter` waits for at least one completion
//!   (`GETEVENTS`). The ring thread takes each CQE's operation out of the in-flight table,
//!   finishes it (zero-fill past the end of the file, the rare short transfer completed
//!   synchronously) and completes its waiter. Being the only issuer, the ring is set up
//!   `SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has it (6.1+): completion work runs in the
//!   ring thread's own `io_uring_enter`, instead of waking each submitting thread to run it (a
//!   first version that let every thread submit measured 0.76x fio's random-read IOPS, mostly in
//!   those wake-ups).
//! - **Buffer ownership.** The frames of an operation (and its `iovec` array) live in the
//!   in-flight table from before the SQE is queued until the ring thread has taken its CQE.
//!   Dropping the waiter does not cancel anything and frees nothing; the memory behind frames is
//!   reference-counted besides.
//! - **Shutdown.** Dropping the backend stops new submissions, wakes the ring thread, lets it
//!   drain every operation still in flight, and joins it: no leaked thread, no freed buffer under
//!   a live I/O.
//! - **Batched reads on the caller's own ring.** Reads from
//!   [`start_read_pages`](PageCacheBackend::start_read_pages) (a thread keeping many misses in
//!   flight, [`PageCache::read_exact_many`](crate::PageCache::read_exact_many)) go to a second
//!   ring that belongs to the calling thread (one per thread, up to [`BATCH_RINGS_MAX`]
//!   threads; beyond that, the shared ring). No other thread reaps it: the waiters it hands out
//!   are [driven](IoWaiter::driven), so the thread that waits submits what is queued and reaps
//!   completions in its own `io_uring_enter`, as `fio --iodepth` does. Through the shared ring
//!   each of those reads cost two wake-ups (ring thread, then caller) and measured 0.73x fio's
//!   IOPS at the same depth. The same ownership rule holds: an op's buffers stay in that ring's
//!   table until its CQE is reaped, and the ring drains before it is dropped.
//! - **Rings only their thread enters.** The `_local` methods
//!   ([`start_read_pages_local`](PageCacheBackend::start_read_pages_local), which the cache's
//!   batched misses use, and [`start_write_pages_local`](PageCacheBackend::start_write_pages_local),
//!   which its flushes use) hand out [`LocalIoWaiter`]s, which cannot leave the thread. Their ops
//!   go to a third kind of ring, one per thread, set up `SINGLE_ISSUER | DEFER_TASKRUN |
//!   COOP_TASKRUN` as `fio` sets up its own: completion work then runs in the waiting thread's
//!   `io_uring_enter` instead of interrupting it, which measured 1.06x to 1.11x the random-read
//!   IOPS of the plain per-thread ring. Only the owner may enter such a ring, and only the owner
//!   holds its waiters, so only it ever waits. A thread's rings drain on that thread when it
//!   exits. If one is dropped on another thread instead (the backend dropped there while the
//!   owner lives) with ops still in it (waiters dropped unwaited), the drop takes the
//!   completions the kernel has posted and leaks the buffers of the rest: leaking is the only
//!   safe choice for memory the kernel may still write.
//! - **Small reads inline.** Reads of at most [`UringBackend::inline_read_pages`] pages (default
//!   1) are plain `preadv` on the calling thread: see that method for the measurement.
//! - **Geometry** is [`FileBackend`]'s (it is used for the file descriptors, the length,
//!   `set_len`, `sync` and hole punching): reads past the end of the file are zero-filled, writes
//!   are clipped at the end (the file never grows), and with [`IoMode::Direct`] the unaligned tail
//!   of a file whose length is not a multiple of 512 goes through a buffered descriptor.
//!
//! Where io_uring is unavailable (old kernel, seccomp, `kernel.io_uring_disabled`),
//! [`UringBackend::open`] fails with the I/O error of `io_uring_setup` (or
//! [`Error::Unsupported`] when the environment variable `FOLIO_DISABLE_URING` is set, which
//! stands in for those hosts in tests), [`uring_support`] says why, and
//! [`open_best`](super::open_best) falls back to [`FileBackend`].

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::file::{preadv_full, pwritev_full, DIRECT_ALIGN};
use super::LocalIoWaiter;
use super::{io_geometry, FileBackend, Frame, FrameMut, IoCompleter, IoDriver, IoMode, IoWaiter};
use super::{Extent, PageCacheBackend, Result};
use crate::error::{Error, IoOp};

/// Default number of operations in flight per ring.
pub const DEFAULT_QUEUE_DEPTH: usize = 64;

/// Threads that may each have their own ring for batched reads (see the module docs).
pub const BATCH_RINGS_MAX: usize = 16;

/// Default of [`UringBackend::inline_read_pages`].
pub const DEFAULT_INLINE_READ_PAGES: usize = 1;

/// Whether queuing an SQE wakes the ring thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wake {
    /// At once: the submitter may wait for it next.
    Now,
    /// At the next `unplug` (or whenever the ring thread wakes for something else): the
    /// submitter queues more first.
    Deferred,
}

/// `user_data` of the eventfd read that wakes the ring thread.
const WAKE: u64 = u64::MAX;

/// `IORING_ENTER_GETEVENTS` from `<linux/io_uring.h>` (the io-uring crate keeps its `sys` module
/// private).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// The buffers of one operation, owned by the in-flight table until its CQE is reaped.
enum Buffers {
    Read(Vec<FrameMut>),
    Write(Vec<Frame>),
}

/// The `iovec`s of one operation. They point into the frames of the same operation.
struct Iovecs {
    _keep: Box<[libc::iovec]>,
}

// SAFETY: the raw pointers in the iovecs point into frames owned by the same `Op` (which are
// `Send`); they are only dereferenced by the kernel while the op is in flight.
unsafe impl Send for Iovecs {}

/// The SQE of a read or write of the buffers `iovecs` describes, at `offset` of `fd`, and the
/// `iovec`s it points to, to keep with the op. One buffer is a plain `READ`/`WRITE` (what
/// `fio` submits): no `iovec` array to import, nothing to keep.
fn rw_sqe(
    fd: types::Fd,
    iovecs: Box<[libc::iovec]>,
    offset: u64,
    dir: IoOp,
) -> (squeue::Entry, Iovecs) {
    let sqe = match (&*iovecs, dir) {
        ([one], IoOp::Read) => opcode::Read::new(fd, one.iov_base.cast(), one.iov_len as u32)
            .offset(offset)
            .build(),
        ([one], _) => opcode::Write::new(fd, one.iov_base.cast(), one.iov_len as u32)
            .offset(offset)
            .build(),
        (many, IoOp::Read) => opcode::Readv::new(fd, many.as_ptr(), many.len() as u32)
            .offset(offset)
            .build(),
        (many, _) => opcode::Writev::new(fd, many.as_ptr(), many.len() as u32)
            .offset(offset)
            .build(),
    };
    let keep = if iovecs.len() == 1 {
        Box::default()
    } else {
        iovecs
    };
    (sqe, Iovecs { _keep: keep })
}

/// An SQE waiting for the ring thread. `squeue::Entry` holds raw pointers in its union, so it is
/// not `Send` by itself.
struct QueuedSqe(squeue::Entry);

// SAFETY: the entry's pointers point into buffers owned by the in-flight table (see `Op`), which
// outlive the entry; the entry is only copied into the ring by the ring thread.
unsafe impl Send for QueuedSqe {}

/// A read ready to go to a ring, or already done.
enum Prepared {
    Done(IoWaiter),
    Op(Op, squeue::Entry, IoWaiter),
}

/// One operation in flight.
struct Op {
    buffers: Buffers,
    _iovecs: Iovecs,
    offset: u64,
    /// Bytes the SQE asked for.
    submitted: usize,
    /// Bytes that must come back (reads: up to the end of the file; writes: all).
    expected: usize,
    completer: IoCompleter,
}

#[derive(Default)]
struct Table {
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    in_flight: usize,
    /// SQEs handed to the ring thread, not yet in the ring.
    queued: Vec<QueuedSqe>,
    /// The ring thread is (about to be) blocked in the kernel: a submitter must wake it.
    sleeping: bool,
    shutdown: bool,
    /// The ring kept failing and its thread gave it up: every op was failed, new ones fail.
    broken: bool,
}

struct Inner {
    file: FileBackend,
    queue_depth: usize,
    table: Mutex<Table>,
    slot_freed: Condvar,
    /// Written to wake the ring thread (it always has a read of it in flight).
    wake_fd: std::os::fd::OwnedFd,
    /// A ring was given up with writes in it: the kernel may still carry them out, late, over
    /// anything written since. From then on every write, sync and length change fails, so no
    /// newer data can be overwritten by them and no sync can claim the file is durable; the
    /// cache keeps the pages dirty. Reopening the file is the way back.
    writes_lost: AtomicBool,
}

/// A file or block device driven through io_uring. See the [module docs](self).
pub struct UringBackend {
    inner: Arc<Inner>,
    ring_thread: Option<JoinHandle<()>>,
    inline_read_pages: usize,
    /// Rings for batched I/O, up to one of each use per live thread that has made some. A
    /// thread's rings leave the table (and drain, on that thread) when it exits.
    batch_rings: Arc<RingTable>,
}

/// The batch rings of one backend: (thread, use, ring).
type RingTable = Mutex<Vec<(std::thread::ThreadId, RingUse, Arc<BatchRing>)>>;

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
struct BatchRing {
    inner: Arc<Inner>,
    depth: usize,
    /// The thread that alone may enter the ring (set up `SINGLE_ISSUER | DEFER_TASKRUN`), or
    /// `None` if any thread may.
    owner: Option<std::thread::ThreadId>,
    state: Mutex<BatchState>,
}

/// The calling thread's id, without `std::thread::current`'s reference-count round trip (it is
/// looked up for every batched I/O).
fn this_thread() -> std::thread::ThreadId {
    thread_local! {
        static ME: std::thread::ThreadId = std::thread::current().id();
    }
    // While the thread's locals are being destroyed `ME` may be gone already.
    ME.try_with(|me| *me)
        .unwrap_or_else(|_| std::thread::current().id())
}

/// Which threads may wait for the ops of a batch ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RingUse {
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
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    /// Ops pushed into the ring (submitted or not) whose CQE has not been reaped.
    in_flight: usize,
    /// `io_uring_enter` failures in a row (other than interruptions).
    failures: u32,
    /// Set after `RING_FAILURES_MAX` failures in a row: every op in flight was failed and
    /// its buffers leaked, and new ops fail at once.
    broken: bool,
}

/// Failures of `io_uring_enter` in a row (about 1 ms apart) after which a ring (a batch ring or
/// the shared one) is given up.
const RING_FAILURES_MAX: u32 = 100;

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
                ops: Vec::with_capacity(depth),
                free: Vec::new(),
                in_flight: 0,
                failures: 0,
                broken: false,
            }),
        })
    }

    /// Puts `op` in the table and its SQE in the ring, unsubmitted; reaps first while the ring
    /// is full.
    fn push(&self, op: Op, sqe: squeue::Entry) {
        let mut st = self.state.lock();
        // Bounded: each round reaps at least one op, or counts a failure towards `broken`.
        while st.in_flight >= self.depth && !st.broken {
            self.reap(&mut st);
        }
        if st.broken {
            let e = ring_broken(&op.buffers, op.offset);
            op.completer.complete(Err(e));
            return;
        }
        let slot = match st.free.pop() {
            Some(s) => {
                st.ops[s] = Some(op);
                s
            }
            None => {
                st.ops.push(Some(op));
                st.ops.len() - 1
            }
        };
        st.in_flight += 1;
        // SAFETY: the op's buffers stay in the table until its CQE is reaped (`reap`), and the
        // ring drains before it is dropped (`Drop`). Fewer than `depth` ops are in flight, and
        // the submission queue (`depth` entries) only holds ops in flight: the push cannot fail.
        let pushed = unsafe { st.ring.submission().push(&sqe.user_data(slot as u64)) };
        debug_assert!(pushed.is_ok(), "batch ring submission queue full");
    }

    /// Submits what is queued, without waiting.
    fn submit(&self) {
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
        debug_assert!(st.in_flight > 0);
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
        while st.in_flight > 0 {
            self.reap(st);
        }
    }

    /// Completes every op whose CQE the kernel has posted, without entering the ring.
    fn reap_posted(&self, st: &mut BatchState) {
        let BatchState {
            ring,
            ops,
            free,
            in_flight,
            ..
        } = st;
        for cqe in ring.completion() {
            let slot = cqe.user_data() as usize;
            // The kernel is done with the op's buffers: it may now leave the table.
            if let Some(op) = ops.get_mut(slot).and_then(Option::take) {
                free.push(slot);
                *in_flight -= 1;
                self.inner.finish(op, cqe.result());
            }
        }
    }

    /// After `RING_FAILURES_MAX` failures in a row: fails every op in flight, so nobody
    /// waits for the ring forever, and leaks their buffers, since the kernel may still own them.
    fn give_up(&self, st: &mut BatchState) {
        tracing::error!(
            ops = st.in_flight,
            "giving up an io_uring that keeps failing"
        );
        st.broken = true;
        fail_and_leak(&self.inner, &mut st.ops);
        st.in_flight = 0;
    }
}

/// Fails every op of a ring being given up and leaks its buffers: the kernel may still own them.
/// The cache sees the read buffers never came back and quarantines their frames; a write that
/// may still land fails every later write of the backend (`Inner::writes_lost`).
fn fail_and_leak(inner: &Inner, ops: &mut [Option<Op>]) {
    for op in ops.iter_mut().filter_map(Option::take) {
        if matches!(op.buffers, Buffers::Write(_)) {
            inner.writes_lost.store(true, Ordering::Release);
        }
        let Op {
            buffers,
            _iovecs,
            offset,
            completer,
            ..
        } = op;
        let e = ring_broken(&buffers, offset);
        std::mem::forget((buffers, _iovecs));
        completer.complete(Err(e));
    }
}

/// The error of an op (with these buffers) on a ring that was given up.
fn ring_broken(buffers: &Buffers, offset: u64) -> Error {
    let op = match buffers {
        Buffers::Read(_) => IoOp::Read,
        Buffers::Write(_) => IoOp::Write,
    };
    Error::io(op, offset, ring_given_up())
}

fn ring_given_up() -> std::io::Error {
    std::io::Error::other("the io_uring kept failing and was given up")
}

impl IoDriver for BatchRing {
    fn drive(&self) {
        // Only the owner holds waiters of an owned ring (they are `LocalIoWaiter`s).
        debug_assert!(self.owner.is_none_or(|t| t == this_thread()));
        let mut st = self.state.lock();
        if st.in_flight > 0 {
            self.reap(&mut st);
        }
    }
}

impl Drop for BatchRing {
    fn drop(&mut self) {
        let mut st = self.state.lock();
        if st.in_flight == 0 {
            return;
        }
        if self.owner.is_some_and(|t| t != this_thread()) {
            // Another thread may not enter an owned ring. Ops are still in flight only if their
            // waiters were dropped unwaited; take what the kernel has posted, and leak the
            // buffers of the rest rather than free them under a kernel that may still use them.
            self.reap_posted(&mut st);
            if st.in_flight > 0 {
                tracing::warn!(
                    ops = st.in_flight,
                    "an io_uring dropped off its thread with ops in flight; leaking their buffers"
                );
                fail_and_leak(&self.inner, &mut st.ops);
                st.in_flight = 0;
            }
            return;
        }
        self.drain_locked(&mut st);
    }
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend")
            .field("mode", &self.inner.file.mode())
            .field("queue_depth", &self.inner.queue_depth)
            .field("len", &self.inner.file.len())
            .finish()
    }
}

/// Builds a ring on the calling thread: single issuer with deferred task work where the kernel
/// has it (6.1+: completions are processed only when the ring thread asks, no cross-thread
/// wake-ups), else a plain ring.
fn build_ring(entries: u32) -> std::io::Result<IoUring> {
    IoUring::builder()
        .dontfork()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::builder().dontfork().build(entries))
}

impl UringBackend {
    /// Opens (creating if missing) the file at `path` with [`DEFAULT_QUEUE_DEPTH`].
    pub fn open(path: impl AsRef<Path>, mode: IoMode) -> Result<UringBackend> {
        UringBackend::open_with_depth(path, mode, DEFAULT_QUEUE_DEPTH)
    }

    /// Opens the file at `path` with at most `queue_depth` operations in flight (1 to 4096).
    pub fn open_with_depth(
        path: impl AsRef<Path>,
        mode: IoMode,
        queue_depth: usize,
    ) -> Result<UringBackend> {
        let file = FileBackend::open(path, mode)?;
        UringBackend::from_file_backend(file, queue_depth)
    }

    /// Drives an open [`FileBackend`]'s file through a new ring.
    pub fn from_file_backend(file: FileBackend, queue_depth: usize) -> Result<UringBackend> {
        let queue_depth = queue_depth.clamp(1, 4096);
        if std::env::var_os("FOLIO_DISABLE_URING").is_some_and(|v| v != "0") {
            return Err(Error::Unsupported(
                "io_uring (disabled by FOLIO_DISABLE_URING)",
            ));
        }
        // SAFETY: plain system call; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::io(IoOp::Read, 0, std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let wake_fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let inner = Arc::new(Inner {
            file,
            queue_depth,
            table: Mutex::new(Table::default()),
            slot_freed: Condvar::new(),
            wake_fd,
            writes_lost: AtomicBool::new(false),
        });
        // The ring is created on, owned by and only used from its thread (single issuer).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ring_inner = inner.clone();
        let ring_thread = std::thread::Builder::new()
            .name("folio-uring".into())
            .spawn(move || {
                // The ring has room for every op in flight plus the wake-up read.
                match build_ring(queue_depth as u32 + 1) {
                    Ok(ring) => {
                        let _ = tx.send(Ok(()));
                        ring_inner.run(ring);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::io(IoOp::Read, 0, e))?;
        let started = rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the io_uring thread exited at start")));
        if let Err(e) = started {
            let _ = ring_thread.join();
            return Err(Error::io(IoOp::Read, 0, e));
        }
        Ok(UringBackend {
            inner,
            ring_thread: Some(ring_thread),
            inline_read_pages: DEFAULT_INLINE_READ_PAGES,
            batch_rings: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Reads of at most `pages` pages are done with `preadv` on the calling thread instead of
    /// through the ring (default [`DEFAULT_INLINE_READ_PAGES`]; 0 sends every read to the ring).
    ///
    /// Why: the cache waits for a demand read at once, so a small read gains nothing from the
    /// ring but pays a hand-off to the ring thread and a wake-up back. With 32 threads doing
    /// cold random 4 KiB reads on a 2-core machine this measured about 59k IOPS inline against
    /// 27k to 48k through the ring (the ring thread competes for the CPU with the readers it
    /// wakes). Multi-page reads (readahead, runs) and every write still use the ring, where many
    /// in flight at once pay off.
    pub fn inline_read_pages(mut self, pages: usize) -> UringBackend {
        self.inline_read_pages = pages;
        self
    }

    /// Sends a prepared op to the shared ring, waking its thread now or at `unplug`.
    fn start_shared(&self, prepared: Prepared, wake: Wake) -> Result<IoWaiter> {
        match prepared {
            Prepared::Done(waiter) => Ok(waiter),
            Prepared::Op(op, sqe, waiter) => {
                self.inner.start(op, sqe, wake)?;
                Ok(waiter)
            }
        }
    }

    /// Prepares an op with `prepare` (given the maker of its waiter) and queues it on the
    /// calling thread's batch ring, or the shared ring (woken at `unplug`) if it cannot have
    /// one: the path of [`start_read_pages`](PageCacheBackend::start_read_pages) and
    /// [`start_write_pages`](PageCacheBackend::start_write_pages).
    fn start_batched(
        &self,
        ring_use: RingUse,
        prepare: impl FnOnce(&dyn Fn(IoOp, u64) -> (IoWaiter, IoCompleter)) -> Result<Prepared>,
    ) -> Result<IoWaiter> {
        let ring = self.batch_ring(ring_use, true);
        let make = |op, offset| match &ring {
            Some(r) => IoWaiter::driven(op, offset, r.clone() as Arc<dyn IoDriver>),
            None => IoWaiter::pending(op, offset),
        };
        match (prepare(&make)?, &ring) {
            (Prepared::Op(op, sqe, waiter), Some(r)) => {
                r.push(op, sqe);
                Ok(waiter)
            }
            (prepared, _) => self.start_shared(prepared, Wake::Deferred),
        }
    }

    /// The calling thread's batch ring for `ring_use`, made on first use; `None` once
    /// [`BATCH_RINGS_MAX`] threads have one (or if the kernel refuses another ring).
    fn batch_ring(&self, ring_use: RingUse, create: bool) -> Option<Arc<BatchRing>> {
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

    /// The op, SQE and waiter (made by `waiter`) of a read of `frames` at page `idx`, or a
    /// ready waiter if the read lies wholly past the end of the file (zero-filled here).
    fn prepare_read(
        &self,
        idx: u64,
        mut frames: Vec<FrameMut>,
        waiter: impl FnOnce(IoOp, u64) -> (IoWaiter, IoCompleter),
    ) -> Result<Prepared> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let wanted = page_size * frames.len();
        let len = inner.file.len();
        let expected = len.saturating_sub(offset).min(wanted as u64) as usize;
        if expected == 0 {
            for f in &mut frames {
                f.as_mut_slice().fill(0);
            }
            return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
        }
        let iovecs: Box<[libc::iovec]> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        let fd = types::Fd(inner.file.file().as_raw_fd());
        let (sqe, iovecs) = rw_sqe(fd, iovecs, offset, IoOp::Read);
        let (waiter, completer) = waiter(IoOp::Read, offset);
        let op = Op {
            buffers: Buffers::Read(frames),
            _iovecs: iovecs,
            offset,
            submitted: wanted,
            expected,
            completer,
        };
        Ok(Prepared::Op(op, sqe, waiter))
    }

    /// The op, SQE and waiter (made by `waiter`) of a write of `frames` at page `idx`, or a
    /// ready waiter if nothing is left to write through the ring: past the end of the file
    /// (never grown), or only an unaligned tail (written here, buffered).
    fn prepare_write(
        &self,
        idx: u64,
        frames: Vec<Frame>,
        waiter: impl FnOnce(IoOp, u64) -> (IoWaiter, IoCompleter),
    ) -> Result<Prepared> {
        self.inner.writes_usable(IoOp::Write)?;
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let len = inner.file.len();
        if offset >= len {
            return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
        }
        // Never grow the file: clip the write at its length.
        let mut total = ((len - offset) as usize).min(page_size * frames.len());
        if inner.file.mode() == IoMode::Direct && total % DIRECT_ALIGN != 0 {
            // The unaligned tail of the file goes through the buffered descriptor, now; the
            // aligned prefix through the ring.
            let aligned = total - total % DIRECT_ALIGN;
            let tail = sub_slices(&frames, aligned, total);
            pwritev_full(inner.file.buffered_file(), &tail, offset + aligned as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
            total = aligned;
            if total == 0 {
                return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
            }
        }
        let iovecs: Box<[libc::iovec]> = sub_slices(&frames, 0, total)
            .into_iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
            .collect();
        let fd = types::Fd(inner.file.file().as_raw_fd());
        let (sqe, iovecs) = rw_sqe(fd, iovecs, offset, IoOp::Write);
        let (waiter, completer) = waiter(IoOp::Write, offset);
        let op = Op {
            buffers: Buffers::Write(frames),
            _iovecs: iovecs,
            offset,
            submitted: total,
            expected: total,
            completer,
        };
        Ok(Prepared::Op(op, sqe, waiter))
    }

    /// The I/O mode.
    pub fn mode(&self) -> IoMode {
        self.inner.file.mode()
    }

    /// The most operations in flight at once.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue_depth
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

impl Drop for UringBackend {
    fn drop(&mut self) {
        self.inner.table.lock().shutdown = true;
        // Wake submitters waiting for a slot (they fail with `Closed`) and the ring thread,
        // which drains every op still in flight before it exits.
        self.inner.slot_freed.notify_all();
        self.inner.wake();
        if let Some(h) = self.ring_thread.take() {
            if h.join().is_err() {
                tracing::error!("io_uring thread panicked");
            }
        }
    }
}

fn errno_error(op: IoOp, offset: u64, res: i32) -> Error {
    Error::io(op, offset, std::io::Error::from_raw_os_error(-res))
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

impl Inner {
    /// `Err` once a given-up ring may still carry out writes (see `writes_lost`).
    fn writes_usable(&self, op: IoOp) -> Result<()> {
        if self.writes_lost.load(Ordering::Acquire) {
            return Err(Error::io(
                op,
                0,
                std::io::Error::other(
                    "an io_uring was given up with writes in flight that may still land; \
                     reopen the file",
                ),
            ));
        }
        Ok(())
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our eventfd.
        let n = unsafe { libc::write(self.wake_fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if n != 8 {
            let e = std::io::Error::last_os_error();
            tracing::error!(error = %e, "cannot wake the io_uring thread");
        }
    }

    /// Puts `op` in the in-flight table and hands `sqe` (with the slot as `user_data`) to the
    /// ring thread, waking it now or (`Wake::Deferred`) at the next [`unplug`](Self::unplug).
    /// Blocks while `queue_depth` ops are in flight (after waking the ring thread for the ops
    /// already queued, so the wait cannot be for ops that nobody submits).
    fn start(&self, op: Op, sqe: squeue::Entry, wake: Wake) -> Result<()> {
        let wake_now = {
            let mut t = self.table.lock();
            loop {
                if t.shutdown {
                    return Err(Error::Closed);
                }
                if t.broken {
                    return Err(Error::io(IoOp::Read, 0, ring_given_up()));
                }
                if t.in_flight < self.queue_depth {
                    break;
                }
                if std::mem::replace(&mut t.sleeping, false) {
                    self.wake();
                }
                self.slot_freed.wait(&mut t);
            }
            t.in_flight += 1;
            let slot = match t.free.pop() {
                Some(s) => {
                    t.ops[s] = Some(op);
                    s
                }
                None => {
                    t.ops.push(Some(op));
                    t.ops.len() - 1
                }
            };
            // From here the op (and so its buffers) stays in the table until the ring thread
            // has reaped its CQE.
            t.queued.push(QueuedSqe(sqe.user_data(slot as u64)));
            wake == Wake::Now && std::mem::replace(&mut t.sleeping, false)
        };
        if wake_now {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the ring thread if SQEs are queued for it and it is asleep.
    fn unplug(&self) {
        let wake = {
            let mut t = self.table.lock();
            !t.queued.is_empty() && std::mem::replace(&mut t.sleeping, false)
        };
        if wake {
            self.wake();
        }
    }

    /// Removes the op in `slot` from the table.
    fn take(&self, slot: usize) -> Option<Op> {
        let mut t = self.table.lock();
        let op = t.ops.get_mut(slot).and_then(Option::take);
        if op.is_some() {
            t.free.push(slot);
            t.in_flight -= 1;
            self.slot_freed.notify_one();
        }
        op
    }

    /// The ring thread: submits queued SQEs in batches (one `io_uring_enter` for all that queued
    /// up meanwhile), waits for completions and completes their waiters, until shutdown with
    /// nothing in flight.
    fn run(&self, mut ring: IoUring) {
        let mut wake_buf = Box::new(0u64);
        let mut wake_armed = false;
        let mut batch: Vec<QueuedSqe> = Vec::new();
        let mut done: Vec<(u64, i32)> = Vec::new();
        // `io_uring_enter` failures in a row (other than interruptions); bounded.
        let mut failures = 0;
        loop {
            let block = {
                let mut t = self.table.lock();
                std::mem::swap(&mut batch, &mut t.queued);
                if t.shutdown && t.in_flight == 0 {
                    break;
                }
                // Block only if nothing is queued; then submitters must wake us.
                t.sleeping = batch.is_empty();
                t.sleeping
            };
            {
                let (_, mut sq, _) = ring.split();
                if !wake_armed {
                    let read = opcode::Read::new(
                        types::Fd(self.wake_fd.as_raw_fd()),
                        (&mut *wake_buf as *mut u64).cast(),
                        8,
                    )
                    .build()
                    .user_data(WAKE);
                    // SAFETY: `wake_buf` is a heap allocation owned by this thread that outlives
                    // the read: this loop only returns once the read has completed or the ring
                    // (and with it every request) is gone, and the box is dropped after the ring.
                    if unsafe { sq.push(&read) }.is_ok() {
                        wake_armed = true;
                    }
                }
                for QueuedSqe(sqe) in batch.drain(..) {
                    // SAFETY: the SQE's buffers are owned by the in-flight table until its CQE is
                    // reaped below (see `start`). The ring has room for every op in flight (at
                    // most `queue_depth`) plus the wake-up read, so the push cannot fail.
                    let pushed = unsafe { sq.push(&sqe) };
                    debug_assert!(pushed.is_ok(), "io_uring submission queue full");
                }
            }
            let entered = if block {
                ring.submit_and_wait(1)
            } else {
                let to_submit = ring.submission().len() as u32;
                // SAFETY: a plain `io_uring_enter(to_submit, 0, GETEVENTS)` on our own ring, no
                // argument. GETEVENTS even though we do not wait: with DEFER_TASKRUN, completion
                // work only runs in such an enter, and submitters that keep the queue non-empty
                // must not starve their own completions.
                unsafe {
                    ring.submitter().enter::<libc::sigset_t>(
                        to_submit,
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                }
            };
            match entered {
                Err(e) if !transient(&e) => {
                    tracing::error!(error = %e, "io_uring_enter failed");
                    failures += 1;
                    if failures >= RING_FAILURES_MAX {
                        self.give_up();
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                _ => failures = 0,
            }
            for cqe in ring.completion() {
                done.push((cqe.user_data(), cqe.result()));
            }
            for (data, res) in done.drain(..) {
                if data == WAKE {
                    wake_armed = false;
                    continue;
                }
                // The kernel is done with the op's buffers: it may now leave the table.
                if let Some(op) = self.take(data as usize) {
                    self.finish(op, res);
                }
            }
        }
        drop(ring);
        if wake_armed {
            // The kernel may still hold the wake-up read's buffer while it tears the ring down:
            // leak these 8 bytes rather than free them under it.
            std::mem::forget(wake_buf);
        }
    }

    /// The ring thread, after `RING_FAILURES_MAX` failures in a row: fails every op in
    /// flight and everyone waiting for a slot, leaks the ops' buffers (the kernel may still own
    /// them) and makes later submissions fail, so that nobody waits for the ring forever.
    fn give_up(&self) {
        let mut t = self.table.lock();
        tracing::error!(
            ops = t.in_flight,
            "giving up an io_uring that keeps failing"
        );
        t.broken = true;
        t.queued.clear();
        fail_and_leak(self, &mut t.ops);
        t.in_flight = 0;
        self.slot_freed.notify_all();
    }

    /// Completes an op whose CQE carried `res`.
    fn finish(&self, op: Op, res: i32) {
        let Op {
            buffers,
            offset,
            submitted,
            expected,
            completer,
            ..
        } = op;
        let result = match buffers {
            Buffers::Read(mut frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Read, offset, res))
                } else {
                    self.finish_read(&mut frames, offset, res as usize, expected)
                }
            }
            Buffers::Write(frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Write, offset, res))
                } else {
                    self.finish_write(&frames, offset, res as usize, submitted)
                }
            }
        };
        completer.complete(result);
    }

    fn finish_read(
        &self,
        frames: &mut [FrameMut],
        offset: u64,
        mut done: usize,
        expected: usize,
    ) -> Result<()> {
        if done < expected {
            // A short read inside the file (rare): read the rest synchronously, buffered, since
            // the remainder need not be aligned.
            let mut bufs = sub_slices_mut(frames, done);
            let more = preadv_full(self.file.buffered_file(), &mut bufs, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Read, offset, e))?;
            done += more;
        }
        // Past the end of the file: zeros.
        for b in sub_slices_mut(frames, done) {
            b.fill(0);
        }
        if done < expected {
            return Err(Error::ShortIo {
                op: IoOp::Read,
                offset,
                done,
                wanted: expected,
            });
        }
        Ok(())
    }

    fn finish_write(
        &self,
        frames: &[Frame],
        offset: u64,
        done: usize,
        submitted: usize,
    ) -> Result<()> {
        if done < submitted {
            if done == 0 {
                return Err(Error::io(
                    IoOp::Write,
                    offset,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "write wrote nothing"),
                ));
            }
            let rest: Vec<&[u8]> = sub_slices(frames, done, submitted);
            pwritev_full(self.file.buffered_file(), &rest, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
        }
        Ok(())
    }
}

/// The parts of `frames` from byte `from` (of their concatenation) on.
fn sub_slices_mut(frames: &mut [FrameMut], from: usize) -> Vec<&mut [u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames.iter_mut() {
        let len = f.len();
        if pos + len > from {
            let skip = from.saturating_sub(pos);
            out.push(&mut f.as_mut_slice()[skip..]);
        }
        pos += len;
    }
    out
}

/// The parts of `frames` from byte `from` to byte `to` (of their concatenation).
fn sub_slices(frames: &[Frame], from: usize, to: usize) -> Vec<&[u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames {
        let (start, end) = (pos, pos + f.len());
        pos = end;
        if end <= from || start >= to {
            continue;
        }
        let a = from.max(start) - start;
        let b = to.min(end) - start;
        // SAFETY: the slices serve a write the caller makes and finishes before it completes
        // the op: the cache keeps these frames under write-back until then.
        out.push(unsafe { &f.as_slice()[a..b] });
    }
    out
}

impl PageCacheBackend for UringBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        if frames.len() <= self.inline_read_pages {
            return self.inner.file.read_pages(idx, frames);
        }
        self.start_shared(
            self.prepare_read(idx, frames, IoWaiter::pending)?,
            Wake::Now,
        )
    }

    fn start_read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        // The caller has more reads to submit before it waits: never inline, and not sent
        // before `unplug` or a wait.
        self.start_batched(RingUse::AnyThread, |waiter| {
            self.prepare_read(idx, frames, waiter)
        })
    }

    fn start_read_pages_local(&self, idx: u64, frames: Vec<FrameMut>) -> Result<LocalIoWaiter> {
        self.start_batched(RingUse::ThisThread, |waiter| {
            self.prepare_read(idx, frames, waiter)
        })
        .map(LocalIoWaiter::from)
    }

    fn unplug(&self) {
        // The calling thread's rings (at most one of each use), found in one pass over the
        // table and submitted outside its lock: a batch unplugs once per I/O it starts.
        let me = this_thread();
        let mut mine: [Option<Arc<BatchRing>>; 2] = [None, None];
        for ((_, _, ring), slot) in self
            .batch_rings
            .lock()
            .iter()
            .filter(|(t, _, _)| *t == me)
            .zip(&mut mine)
        {
            *slot = Some(ring.clone());
        }
        for ring in mine.iter().flatten() {
            ring.submit();
        }
        self.inner.unplug();
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.start_shared(
            self.prepare_write(idx, frames, IoWaiter::pending)?,
            Wake::Now,
        )
    }

    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.start_batched(RingUse::AnyThread, |waiter| {
            self.prepare_write(idx, frames, waiter)
        })
    }

    fn start_write_pages_local(&self, idx: u64, frames: Vec<Frame>) -> Result<LocalIoWaiter> {
        self.start_batched(RingUse::ThisThread, |waiter| {
            self.prepare_write(idx, frames, waiter)
        })
        .map(LocalIoWaiter::from)
    }

    fn len(&self) -> u64 {
        self.inner.file.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.writes_usable(IoOp::Resize)?;
        self.inner.file.set_len(len)
    }

    fn sync(&self) -> Result<()> {
        self.inner.writes_usable(IoOp::Sync)?;
        self.inner.file.sync()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.writes_usable(IoOp::Zero)?;
        self.inner.file.write_zeroes(offset, len)
    }

    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> Result<Vec<Extent>> {
        self.inner.file.allocation(offset, len, extents_max)
    }

    fn alignment(&self) -> usize {
        self.inner.file.alignment()
    }

    fn queue_depth(&self) -> usize {
        self.inner.queue_depth
    }
}

/// Whether this process can use io_uring: `Err` with the reason if not. Probed once.
pub fn uring_support() -> std::result::Result<(), String> {
    static PROBE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    if std::env::var_os("FOLIO_DISABLE_URING").is_some_and(|v| v != "0") {
        return Err("disabled by FOLIO_DISABLE_URING".into());
    }
    PROBE
        .get_or_init(|| match IoUring::new(2) {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ENOSYS) => format!("the kernel has no io_uring ({e})"),
                Some(libc::EPERM | libc::EACCES) => {
                    format!("io_uring is not permitted (kernel.io_uring_disabled or seccomp: {e})")
                }
                _ => format!("io_uring_setup failed: {e}"),
            }),
        })
        .clone()
}
