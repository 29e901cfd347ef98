//! [`UringBackend`]: a regular file or a block device through io_uring.
//!
//! # Owns
//! - the io_uring rings of one backend: one shared ring that a thread of its own enters, and,
//!   for each thread that batches I/O, a ring that any thread may wait on and one that only
//!   that thread enters;
//! - every operation from the moment its SQE is prepared until its CQE is reaped: its frames
//!   and `iovec`s stay in the in-flight table of its ring until then, whatever happens to its
//!   waiter;
//! - finishing an operation: zeros past the end of the file, short transfers completed with
//!   positional I/O, errors typed with the operation and the offset;
//! - giving up a ring that keeps failing: its operations fail, their buffers are leaked (never
//!   freed under a kernel that may still use them), and after a lost write every later write,
//!   sync and resize fails.
//!
//! # Does not own
//! - the file: opening it, its length, `set_len`, `sync`, hole punching, `O_DIRECT` checks
//!   and small reads done inline are [`FileBackend`]'s;
//! - which pages are read or written, and when, and the state of a page: the cache's;
//! - the waiter and frame types ([`IoWaiter`], [`LocalIoWaiter`], [`Frame`], [`FrameMut`]):
//!   [`backend`](super)'s.
//!
//! # May block
//! - [`read_pages`](PageCacheBackend::read_pages) and
//!   [`write_pages`](PageCacheBackend::write_pages), while `queue_depth` operations are in
//!   flight on the shared ring (until one completes; [`Error::Closed`] once the backend drops),
//!   and reads of at most [`inline_read_pages_max`](UringBackend::inline_read_pages_max) pages (`preadv`
//!   on the calling thread);
//! - the batched `start_*` methods, while the calling thread's ring is full: they reap it in
//!   `io_uring_enter` until a slot is free;
//! - waiting on a waiter of a batch ring: the waiting thread enters the ring itself;
//! - a direct write whose end is not 512-byte aligned (the tail is written with `pwritev`
//!   before the rest is queued), and a short transfer (finished with positional I/O by
//!   whichever thread reaps it);
//! - dropping the backend (the ring thread drains every operation in flight, then is joined)
//!   and the exit of a thread that has batch rings (they drain on it).
//!
//! # Files
//! - `mod.rs`: the backend type, opening it, [`uring_support`];
//! - `op.rs`: one operation (buffers, `iovec`s, SQE) and preparing reads and writes;
//! - `shared.rs`: the shared ring, its in-flight table, its thread and the backend's shutdown;
//! - `batch.rs`: the per-thread batch rings, the table of them and their drain at thread exit;
//! - `complete.rs`: from a CQE to the waiter's result (short transfers, zero-fill) and failing
//!   the operations of a ring that is given up;
//! - `dispatch.rs`: the [`PageCacheBackend`] impl, which sends each call its way.
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
//! - **Small reads inline.** Reads of at most [`UringBackend::inline_read_pages_max`] pages (default
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

mod batch;
mod complete;
mod dispatch;
mod op;
mod shared;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::IoUring;
use parking_lot::Mutex;

use super::{FileBackend, IoMode, PageCacheBackend, Result};
use crate::error::Error;
use batch::RingTable;
use shared::Inner;

// Named by the module docs only.
#[cfg(doc)]
use super::{Frame, FrameMut, IoWaiter, LocalIoWaiter};

/// Default number of operations in flight per ring.
pub const QUEUE_DEPTH_DEFAULT: usize = 64;

/// The old name of [`QUEUE_DEPTH_DEFAULT`].
#[deprecated(note = "renamed to `QUEUE_DEPTH_DEFAULT` (qualifiers last)")]
pub const DEFAULT_QUEUE_DEPTH: usize = QUEUE_DEPTH_DEFAULT;

/// Threads that may each have their own ring for batched reads (see the module docs).
pub const BATCH_RINGS_MAX: usize = 16;

/// Default of [`UringBackend::inline_read_pages_max`].
pub const INLINE_READ_PAGES_MAX_DEFAULT: usize = 1;

/// The old name of [`INLINE_READ_PAGES_MAX_DEFAULT`].
#[deprecated(note = "renamed to `INLINE_READ_PAGES_MAX_DEFAULT` (qualifiers last)")]
pub const DEFAULT_INLINE_READ_PAGES: usize = INLINE_READ_PAGES_MAX_DEFAULT;

/// A file or block device driven through io_uring. See the [module docs](self).
pub struct UringBackend {
    inner: Arc<Inner>,
    ring_thread: Option<JoinHandle<()>>,
    inline_read_pages_max: usize,
    /// Rings for batched I/O, up to one of each use per live thread that has made some. A
    /// thread's rings leave the table (and drain, on that thread) when it exits.
    batch_rings: Arc<RingTable>,
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

impl UringBackend {
    /// Opens (creating if missing) the file at `path` with [`QUEUE_DEPTH_DEFAULT`].
    pub fn open(path: impl AsRef<Path>, mode: IoMode) -> Result<UringBackend> {
        UringBackend::open_with_depth(path, mode, QUEUE_DEPTH_DEFAULT)
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
        let (inner, ring_thread) = Inner::start_ring_thread(file, queue_depth)?;
        Ok(UringBackend {
            inner,
            ring_thread: Some(ring_thread),
            inline_read_pages_max: INLINE_READ_PAGES_MAX_DEFAULT,
            batch_rings: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Reads of at most `pages` pages are done with `preadv` on the calling thread instead of
    /// through the ring (default [`INLINE_READ_PAGES_MAX_DEFAULT`]; 0 sends every read to the ring).
    ///
    /// Why: the cache waits for a demand read at once, so a small read gains nothing from the
    /// ring but pays a hand-off to the ring thread and a wake-up back. With 32 threads doing
    /// cold random 4 KiB reads on a 2-core machine this measured about 59k IOPS inline against
    /// 27k to 48k through the ring (the ring thread competes for the CPU with the readers it
    /// wakes). Multi-page reads (readahead, runs) and every write still use the ring, where many
    /// in flight at once pay off.
    pub fn inline_read_pages_max(mut self, pages: usize) -> UringBackend {
        self.inline_read_pages_max = pages;
        self
    }

    /// The old name of [`inline_read_pages_max`](Self::inline_read_pages_max).
    #[deprecated(note = "renamed to `inline_read_pages_max` (qualifiers last)")]
    pub fn inline_read_pages(self, pages: usize) -> UringBackend {
        self.inline_read_pages_max(pages)
    }

    /// The I/O mode.
    pub fn mode(&self) -> IoMode {
        self.inner.file.mode()
    }

    /// The most operations in flight at once.
    pub fn queue_depth(&self) -> usize {
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
