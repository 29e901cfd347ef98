//! [`PageCache`]: byte-addressed reads and writes over a backend, within a fixed memory budget.
//!
//! # Layers
//! `PageCache` (this file: byte ranges, page runs, write-back, eviction) → `PageIndex`
//! (page → frame, lock-free lookups) → `FrameMeta` (one atomic state word per frame; see
//! `page.rs` for the states) → [`EvictionPolicy`] (victim choice) → [`PageCacheBackend`] (I/O).
//!
//! # Which operations may run concurrently, and what protects each pair
//! Every public method takes `&self` and may be called from any number of threads.
//!
//! | pair | protection |
//! |---|---|
//! | hit / hit (any pages) | `read_at` hits are optimistic (see `page.rs`): they write nothing shared, only read the state word; `on_hit` is a relaxed store for CLOCK-like policies; counters go to a stripe the thread owns |
//! | optimistic hit / writer, loader, evictor | the sequence in the state word, moved by every acquisition of `EXCLUSIVE`: the hit re-reads the word after copying and falls back to a reader hold if it moved or the tag or kind changed |
//! | read / write of one page | the page's state word: readers share, a writer is exclusive; bytes are written only by the exclusive holder |
//! | miss / miss on one page | the index writer lock: the first inserts the page as *uninitialised* (held exclusive), the second finds it and parks until it is valid — one backend read |
//! | write / write-back of one page | write-back holds a reader count and clears `DIRTY` before the I/O; a writer waits for the I/O (stable pages) and re-dirties the page after it, so nothing is lost |
//! | hit / eviction | eviction claims a frame only with no holder (CAS); a locked hit's CAS and the claim exclude each other, and a hit that loses re-validates the page tag; an optimistic hit reads the tag after the state word, and the claim moves the sequence |
//! | pin, guard / eviction | pins and guards are holders: pinned pages are never claimed |
//! | discard, resize / holders | the page leaves the index at once and becomes an orphan; the last holder frees the frame; writes re-zero bytes past the end |
//! | extending write / resize | the size mutex (only extending writes and resizes take it) |
//! | flush / flush | a page under write-back is written by one flusher; the other waits for it and writes it again if it is dirty again |
//! | multi-page load / anyone | every page of the run is inserted *uninitialised* (`LOADING`, exclusive) before the one backend read and published `VALID` only after it; others park; a failed read removes them all (nothing cached) |
//! | flush with many runs in flight / writers | each run's pages stay under write-back from its submission until its own completion; the flusher waits for its runs before it waits for anything else |
//! | readahead worker / reader | the worker loads like a miss (pages `LOADING` until valid; the marker bit set while still exclusive); readers of those pages park on them as on any load; see `readahead.rs` |
//! | background flusher / anything | the flusher is a flush that skips busy pages instead of waiting for them, and holds only a `Weak` to the cache; writers meet it only through the dirty counter and a condvar (throttling), never while holding a page (see `writeback.rs`) |
//!
//! No thread holds two page holds while it waits for a third, and no lock is held across a wait,
//! so there is no lock-order cycle.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut, Range};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Mutex, Ordering};

use crate::backend::{Commit, Frame, FrameMut, IoWaiter, LocalIoWaiter, PageCacheBackend, Region};
use crate::error::{Error, Result};
use crate::index::PageIndex;
use crate::page::{
    kind, readers, Acquire, FrameMeta, PageState, Released, DIRTY, EXCLUSIVE, FREE, LOADING,
    NO_PAGE, READAHEAD, READERS_MASK, VALID, WRITEBACK,
};
use crate::policy::{Admission, EvictionPolicy, FrameId, PolicyKind};
use crate::readahead::{Advice, Readahead, Waited};
use crate::stats::{Counter, Counters, Stats};
use crate::writeback::{self, Writeback, WritebackConfig};

/// The smallest and largest page sizes.
pub const PAGE_SIZE_MIN: usize = 512;
/// See [`PAGE_SIZE_MIN`].
pub const PAGE_SIZE_MAX: usize = 64 * 1024;

/// How big the cache may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// At most this many bytes of page data (rounded down to whole pages).
    Bytes(u64),
    /// At most this many pages.
    Pages(usize),
}

/// Configuration of a [`PageCache`]. The memory budget is mandatory.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    budget: Budget,
    page_size: usize,
    policy: PolicyKind,
    max_io_bytes: usize,
    frame_wait_max: Duration,
    readahead_max_bytes: usize,
    readahead_workers: usize,
    commit: Commit,
    pub(crate) writeback: WritebackConfig,
}

impl CacheConfig {
    /// A cache of at most `budget_bytes` bytes of pages, 4 KiB pages, the default policy.
    pub fn new(budget_bytes: u64) -> CacheConfig {
        CacheConfig::with_budget(Budget::Bytes(budget_bytes))
    }

    /// A cache of at most `pages` pages.
    pub fn with_budget_pages(pages: usize) -> CacheConfig {
        CacheConfig::with_budget(Budget::Pages(pages))
    }

    fn with_budget(budget: Budget) -> CacheConfig {
        CacheConfig {
            budget,
            page_size: 4096,
            policy: PolicyKind::default(),
            max_io_bytes: 1 << 20,
            frame_wait_max: Duration::from_secs(1),
            readahead_max_bytes: 2 << 20,
            readahead_workers: 4,
            commit: Commit::default(),
            writeback: WritebackConfig::default(),
        }
    }

    /// Page size in bytes: a power of two from 512 to 64 KiB (default 4096).
    pub fn page_size(mut self, page_size: usize) -> CacheConfig {
        self.page_size = page_size;
        self
    }

    /// The eviction policy.
    pub fn policy(mut self, policy: PolicyKind) -> CacheConfig {
        self.policy = policy;
        self
    }

    /// The largest single backend I/O (default 1 MiB); runs of pages are split at this size.
    pub fn max_io_bytes(mut self, bytes: usize) -> CacheConfig {
        self.max_io_bytes = bytes;
        self
    }

    /// How long a miss may wait for a frame when every frame is held (default 1 s), before it
    /// fails with [`Error::NoFreeFrame`].
    pub fn frame_wait_max(mut self, wait: Duration) -> CacheConfig {
        self.frame_wait_max = wait;
        self
    }

    /// The largest readahead window (default 2 MiB; twice that in ranges advised
    /// [`Advice::Sequential`]; never more than 1/16 of the cache). 0 turns readahead off.
    /// See [`readahead`](crate::readahead).
    pub fn readahead_max_bytes(mut self, bytes: usize) -> CacheConfig {
        self.readahead_max_bytes = bytes;
        self
    }

    /// Threads that load readahead and `WillNeed` pages in the background (default 4, started on
    /// first use). 0 turns readahead off.
    pub fn readahead_workers(mut self, workers: usize) -> CacheConfig {
        self.readahead_workers = workers;
        self
    }

    /// When the frame memory (the whole budget) is committed: [`Commit::UpFront`] (default) at
    /// creation, or [`Commit::Lazy`] as frames are first used.
    pub fn memory(mut self, commit: Commit) -> CacheConfig {
        self.commit = commit;
        self
    }

    fn frames(&self) -> Result<usize> {
        let ps = self.page_size;
        if !ps.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&ps) {
            return Err(Error::InvalidConfig(format!(
                "page size {ps} is not a power of two from {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX}"
            )));
        }
        let frames = match self.budget {
            Budget::Bytes(b) => usize::try_from(b / ps as u64).unwrap_or(usize::MAX),
            Budget::Pages(p) => p,
        };
        if frames == 0 {
            return Err(Error::InvalidConfig(format!(
                "the budget {:?} holds no page of {ps} bytes",
                self.budget
            )));
        }
        if frames >= u32::MAX as usize / 2 {
            return Err(Error::InvalidConfig(format!("{frames} frames is too many")));
        }
        Ok(frames)
    }
}

/// The record of write-back failures (Linux's `errseq`): a counter of failures and the latest
/// one. Each observer keeps the count it has seen; a check reports a failure newer than that
/// once and moves the observer forward.
#[derive(Debug, Default)]
pub(crate) struct ErrSeq {
    count: AtomicU64,
    /// The highest count some observer has been told about.
    reported: AtomicU64,
    last: Mutex<Option<Error>>,
}

impl ErrSeq {
    pub(crate) fn record(&self, e: &Error) {
        *self.last.lock() = Some(e.clone());
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Failures recorded so far.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }

    /// Where a new observer starts: after the failures somebody has seen, so one nobody has
    /// seen is reported to it (Linux's `errseq_sample`).
    pub(crate) fn sample(&self) -> u64 {
        self.reported.load(Ordering::Acquire)
    }

    pub(crate) fn check(&self, seen: &AtomicU64) -> Result<()> {
        let now = self.count.load(Ordering::Acquire);
        let before = seen.fetch_max(now, Ordering::AcqRel);
        if before >= now {
            return Ok(());
        }
        self.reported.fetch_max(now, Ordering::AcqRel);
        let last = self.last.lock().clone();
        Err(Error::WritebackFailed {
            seq: now,
            source: Box::new(last.unwrap_or(Error::Closed)),
        })
    }
}

/// How a newly allocated frame gets its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fill {
    /// From the backend.
    Read,
    /// Zeros: the caller writes the start of the page, the rest lies past the end of the file.
    Zero,
    /// Nothing: the caller overwrites every byte of the page before releasing it, so the stale
    /// bytes of the frame's previous page are never seen (no read, no zeroing).
    Overwrite,
}

/// A run of pages under write-back whose write has been submitted.
struct SubmittedRun {
    pages: Vec<(u64, FrameId)>,
    waiter: Result<LocalIoWaiter>,
}

/// How [`Shared::begin_load`] hands its read to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Submit {
    /// `read_pages`: the caller waits for it next.
    Now,
    /// `start_read_pages_local`: the caller submits more reads before it waits.
    Queued,
}

/// A run of pages whose load [`Shared::begin_load`] started: the frames are in the index, held
/// `EXCLUSIVE` in state `LOADING`, until [`Shared::finish_load`].
struct Loading {
    p: u64,
    frames: Vec<FrameId>,
    fill: Fill,
    waiter: Result<LocalIoWaiter>,
}

/// Something in flight with an I/O to wait for: a load, a run under write-back.
trait InFlight {
    /// The I/O's waiter, or `None` if it failed to start (finishing it will not block).
    fn waiter(&self) -> Option<&LocalIoWaiter>;
}

impl<T> InFlight for (Loading, T) {
    fn waiter(&self) -> Option<&LocalIoWaiter> {
        self.0.waiter.as_ref().ok()
    }
}

impl InFlight for SubmittedRun {
    fn waiter(&self) -> Option<&LocalIoWaiter> {
        self.waiter.as_ref().ok()
    }
}

/// Removes an entry of `in_flight` whose I/O has completed, blocking until one has: the first
/// completed one in submission order, waiting (on the oldest, which on a self-reaped ring also
/// completes others) while none has. Finishing the oldest instead, whatever else completed
/// first, left slots idle behind a slow I/O (head-of-line blocking). `None` if empty.
fn take_completed<T: InFlight>(in_flight: &mut VecDeque<T>) -> Option<T> {
    // Bounded: each `wait_progress` completes at least one I/O of the window (or the oldest).
    loop {
        let done = in_flight
            .iter()
            .position(|e| e.waiter().is_none_or(|w| w.is_complete()));
        if let Some(i) = done {
            return in_flight.remove(i);
        }
        in_flight.front()?.waiter()?.wait_progress();
    }
}

/// One page's part of one read of [`PageCache::read_exact_many`].
#[derive(Clone, Copy, Debug)]
struct Piece {
    /// Index of the read.
    read: usize,
    /// Offset of the piece in the read's buffer.
    at: usize,
    /// Byte position in the file.
    pos: u64,
    /// Length (within one page).
    n: usize,
}

/// What [`Shared::try_shared`] found.
enum Probe {
    /// A hit: the caller holds the frame shared.
    Held(FrameId),
    /// The page is in this frame, held exclusively (being loaded or written).
    Busy(FrameId),
    /// Not cached.
    Absent,
}

enum Loaded {
    /// The first page of the run is loaded and held exclusive by the caller.
    Exclusive(FrameId),
    /// Somebody else has the page; look it up again.
    Present,
}

pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn PageCacheBackend>,
    page_size: usize,
    page_shift: u32,
    frames: Box<[FrameMeta]>,
    region: Arc<Region>,
    index: PageIndex,
    free: Mutex<Vec<FrameId>>,
    policy: Box<dyn EvictionPolicy>,
    len: AtomicU64,
    size_lock: Mutex<()>,
    pub(crate) errseq: ErrSeq,
    errors_seen: AtomicU64,
    pub(crate) counters: Counters,
    pub(crate) dirty_pages: AtomicU64,
    pub(crate) max_io_pages: usize,
    frame_wait_max: Duration,
    readahead: Readahead,
    pub(crate) wb: Writeback,
}

/// A bounded page cache over a [`PageCacheBackend`]. See the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use folio::{CacheConfig, MemoryBackend, PageCache};
///
/// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
/// cache.write_all_at(b"hello", 4090)?; // spans two pages, grows the file
/// let mut buf = [0u8; 5];
/// cache.read_exact_at(&mut buf, 4090)?;
/// assert_eq!(&buf, b"hello");
/// cache.sync()?; // written back and durable
/// # Ok::<(), folio::Error>(())
/// ```
pub struct PageCache {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("len", &self.len())
            .field("page_size", &self.shared.page_size)
            .field("frames", &self.shared.frames.len())
            .field("policy", &self.shared.policy.name())
            .finish()
    }
}

impl PageCache {
    /// A cache over `backend` with the given configuration. Allocates every frame up front.
    pub fn new(backend: Arc<dyn PageCacheBackend>, config: CacheConfig) -> Result<PageCache> {
        let frames = config.frames()?;
        config.validate_writeback()?;
        let page_size = config.page_size;
        let align = backend.alignment();
        if align > 1 && page_size % align != 0 {
            return Err(Error::Misaligned {
                offset: 0,
                len: page_size,
                align,
            });
        }
        let region_len = frames.checked_mul(page_size).ok_or_else(|| {
            Error::InvalidConfig(format!("{frames} frames of {page_size} bytes overflow"))
        })?;
        let region = Region::new(region_len, config.commit)?;
        let max_io_pages = (config.max_io_bytes / page_size)
            .clamp(1, backend.max_io_pages().max(1))
            .min(frames);
        let shared = Arc::new_cyclic(|weak| Shared {
            readahead: Readahead::new(
                weak.clone(),
                page_size,
                frames,
                config.readahead_max_bytes,
                config.readahead_workers,
                max_io_pages,
            ),
            len: AtomicU64::new(backend.len()),
            page_size,
            page_shift: page_size.trailing_zeros(),
            frames: (0..frames).map(|_| FrameMeta::default()).collect(),
            region,
            index: PageIndex::new(frames),
            free: Mutex::new((0..frames as FrameId).rev().collect()),
            policy: config.policy.build(frames),
            size_lock: Mutex::new(()),
            errseq: ErrSeq::default(),
            errors_seen: AtomicU64::new(0),
            counters: Counters::default(),
            dirty_pages: AtomicU64::new(0),
            max_io_pages,
            frame_wait_max: config.frame_wait_max,
            wb: Writeback::new(&config, frames),
            backend,
        });
        writeback::start(&shared)?;
        Ok(PageCache { shared })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> usize {
        self.shared.page_size
    }

    /// The number of frames (the budget in pages).
    pub fn capacity_pages(&self) -> usize {
        self.shared.frames.len()
    }

    /// The logical length in bytes.
    pub fn len(&self) -> u64 {
        self.shared.len.load(Ordering::Acquire)
    }

    /// True if the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn PageCacheBackend> {
        &self.shared.backend
    }

    /// The name of the eviction policy in use.
    pub fn policy_name(&self) -> &'static str {
        self.shared.policy.name()
    }

    /// Reads up to `buf.len()` bytes at `offset`, like [`std::os::unix::fs::FileExt::read_at`]:
    /// fewer at the end of the file, 0 at or past it.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.shared.read_at(buf, offset)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with [`Error::OutOfRange`].
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = checked_end(offset, buf.len())?;
        in_file(offset, end, self.len())?;
        let n = self.shared.read_at(buf, offset)?;
        if n < buf.len() {
            // Truncated concurrently.
            return Err(Error::OutOfRange {
                start: offset,
                end,
                size: self.len(),
            });
        }
        Ok(())
    }

    /// Reads each `(offset, buf)` exactly, as [`read_exact_at`](Self::read_exact_at) would,
    /// with the misses of all of them in flight at once (up to the backend's
    /// [`queue_depth`](PageCacheBackend::queue_depth), and at most half the frames): one thread
    /// gets the device's queue depth, as `fio --iodepth` does, without a thread per read.
    ///
    /// Every range is checked before any I/O ([`Error::OutOfRange`] for the first one past the
    /// end). On a failed read the error of the first failure is returned; the buffers of other
    /// reads may or may not have been filled. Pages loaded here enter the policy as demanded and
    /// do not drive readahead (the caller says what it wants).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let backend = Arc::new(MemoryBackend::from_bytes((0..=255u8).cycle().take(1 << 16).collect()));
    /// let cache = PageCache::new(backend, CacheConfig::new(1 << 20))?;
    /// let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
    /// cache.read_exact_many(&mut [(8192, &mut a[..]), (1, &mut b[..])])?;
    /// assert_eq!((a, b), ([0, 1, 2, 3], [1, 2, 3, 4]));
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn read_exact_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<()> {
        let size = self.len();
        for (offset, buf) in reads.iter() {
            in_file(*offset, checked_end(*offset, buf.len())?, size)?;
        }
        self.shared.read_many(reads)
    }

    /// Writes all of `buf` at `offset`, growing the file if it ends past the end. Returns
    /// `buf.len()`.
    ///
    /// The file is grown before the bytes are copied in. If the call then fails part-way (no
    /// frame can be had, or evicting one failed to write a dirty page back), the file keeps its
    /// new length and the bytes not written read as zeros; the error says the write did not
    /// happen as a whole. (Shrinking back could cut off a concurrent writer's bytes in the
    /// grown range, so Folio does not.)
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.shared.write_at(buf, offset)
    }

    /// Writes all of `buf` at `offset` (the same as [`write_at`](Self::write_at), which never
    /// writes less).
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.shared.write_at(buf, offset).map(|_| ())
    }

    /// Sets the length: shrinking drops cached pages past the end and zeroes the tail of the last
    /// partial page; growing reads as zeros.
    pub fn resize(&self, new_len: u64) -> Result<()> {
        self.shared.resize(new_len)
    }

    /// Writes back the dirty pages that overlap `range` (bytes) and keeps them cached: the seed's
    /// `evict_range`. Reports a write-back failure since the last check (see [`sync`](Self::sync)).
    pub fn flush_range(&self, range: Range<u64>) -> Result<()> {
        self.shared
            .flush_pages(self.shared.pages_overlapping(&range));
        self.shared.check_errors()
    }

    /// Writes back the pages overlapping `range`, then drops those nobody holds.
    pub fn evict_range(&self, range: Range<u64>) -> Result<()> {
        let pages = self.shared.pages_overlapping(&range);
        self.shared.flush_pages(pages.clone());
        self.shared.drop_clean(pages);
        self.shared.check_errors()
    }

    /// Drops the pages that lie wholly inside `range` without writing them back: their unsaved
    /// changes are lost and the next read sees the backend's bytes. Partial pages at the edges are
    /// left alone. Pages still held by a guard leave the cache at once and are freed on release.
    pub fn discard_range(&self, range: Range<u64>) -> Result<()> {
        let pages = self.shared.pages_inside(&range);
        self.shared.discard_pages(pages);
        Ok(())
    }

    /// Makes `range` read as zeros: partial pages are zeroed in the cache, whole pages are dropped
    /// and zeroed in the backend (hole punching where it can, zero pages otherwise).
    pub fn zero_range(&self, range: Range<u64>) -> Result<()> {
        self.shared.zero_range(range)
    }

    /// Writes back every dirty page and makes the backend durable (`fdatasync`). Returns an error
    /// if this or any earlier write-back failed since the last `flush_range`/`sync` reported one:
    /// each failure is reported once (Linux's errseq), and the failed pages stay dirty for a retry.
    pub fn sync(&self) -> Result<()> {
        self.sync_range(0..u64::MAX)
    }

    /// Writes back the dirty pages overlapping `range`, then makes the backend durable.
    pub fn sync_range(&self, range: Range<u64>) -> Result<()> {
        let s = &self.shared;
        s.sync_with(&range, &s.errors_seen)
    }

    /// An access hint on the byte range, after `posix_fadvise(2)`: [`Advice::Sequential`] reads
    /// ahead from the first miss with a larger window, [`Advice::Random`] never reads ahead,
    /// [`Advice::Normal`] detects streams again, [`Advice::WillNeed`] loads the range in the
    /// background now (up to the cache's capacity) and [`Advice::DontNeed`] writes it back and
    /// drops it ([`evict_range`](Self::evict_range)).
    pub fn advise(&self, range: Range<u64>, advice: Advice) -> Result<()> {
        let s = &*self.shared;
        let end = range.end.min(s.len());
        if range.start >= end {
            return Ok(());
        }
        let pages = s.pages_overlapping(&(range.start..end));
        match advice {
            Advice::Normal | Advice::Sequential | Advice::Random => {
                s.readahead.set_hint(pages, advice);
                Ok(())
            }
            Advice::WillNeed => {
                let cap = (s.frames.len() as u64).min(pages.end - pages.start);
                let mut jobs = Vec::new();
                let mut p = pages.start;
                while p < pages.start + cap {
                    let len = ((pages.start + cap - p) as usize).min(s.max_io_pages);
                    jobs.push(crate::readahead::Job {
                        start: p,
                        len,
                        mark: false,
                        stream: false,
                    });
                    p += len as u64;
                }
                s.readahead.dispatch(jobs, true);
                Ok(())
            }
            Advice::DontNeed => self.evict_range(range),
        }
    }

    /// Flushes, syncs, stops the flusher thread and closes the cache, returning any error not
    /// yet reported through this cache's own methods.
    pub fn close(self) -> Result<()> {
        let s = &self.shared;
        s.close_with(&s.errors_seen)
    }

    /// A read guard on page `idx` (loading it if needed): zero-copy access to its bytes. While it
    /// lives the page is not evicted and not written.
    pub fn read_page(&self, idx: u64) -> Result<PageReadGuard<'_>> {
        let s = &*self.shared;
        s.check_page(idx)?;
        let frame = s.get_shared(idx, 1)?;
        Ok(PageReadGuard {
            shared: s,
            frame,
            bytes: s.frame_ptr(frame),
            len: s.page_size,
        })
    }

    /// A zero-copy read guard on the `len` bytes at `offset` (loading their page if needed): it
    /// derefs to exactly those bytes, which must lie within one page
    /// ([`Error::CrossesPage`]) and within the file ([`Error::OutOfRange`]). Knowing which bytes
    /// are wanted, the cache asks the CPU to fetch them while it takes the page's hold, as
    /// `read_at` does; a whole-page guard ([`read_page`](Self::read_page)) cannot, so for small
    /// reads from random pages this is the faster guard.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
    /// cache.write_all_at(b"header:record-42", 5000)?;
    /// let record = cache.read_slice(5007, 9)?;
    /// assert_eq!(&*record, b"record-42");
    /// assert!(cache.read_slice(4090, 8).is_err()); // crosses a page boundary
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn read_slice(&self, offset: u64, len: usize) -> Result<PageReadGuard<'_>> {
        let s = &*self.shared;
        let end = s.check_slice(offset, len, s.len())?;
        let in_page = (offset & s.page_mask()) as usize;
        let frame = s.get_shared_prefetch(offset >> s.page_shift, 1, in_page..in_page + len)?;
        // As in `read_at`: a truncation may have run since the length was checked.
        if let Err(e) = in_file(offset, end, s.len()) {
            s.unlock_shared(frame);
            return Err(e);
        }
        Ok(PageReadGuard {
            shared: s,
            frame,
            bytes: s.frame_ptr(frame).wrapping_add(in_page),
            len,
        })
    }

    /// Zero-copy read guards on many byte ranges at once, in order: as
    /// [`read_slice`](Self::read_slice) for each `(offset, len)`, but the lookups are pipelined.
    /// Each group of up to 16 first has its index slots fetched, then its frames' state words and
    /// bytes, and only then takes its holds, so the cache misses of different ranges overlap
    /// instead of following one another ("group prefetching", Chen, Ailamaki, Gibbons and Mowry,
    /// *Improving Hash Join Performance through Prefetching*, ICDE 2004). Worth it for
    /// independent small reads from random pages (a multi-get, a batch of index probes); a
    /// chain of dependent reads, where each offset comes from the previous bytes, cannot batch.
    ///
    /// Misses load as in `read_slice`, one at a time. On an error no guard is returned (those
    /// taken are released). Holding many guards holds many pages: they cannot be evicted or
    /// written until released, and a batch over more distinct pages than the cache has frames
    /// fails at once with [`Error::NoFreeFrame`]. As with any guards held together, a thread
    /// that also takes write guards must take them in a consistent order with its readers.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
    /// cache.write_all_at(b"alpha", 0)?;
    /// cache.write_all_at(b"omega", 40_000)?;
    /// let got = cache.read_slices(&[(40_000, 5), (0, 5)])?;
    /// assert_eq!((&*got[0], &*got[1]), (&b"omega"[..], &b"alpha"[..]));
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn read_slices(&self, slices: &[(u64, usize)]) -> Result<Vec<PageReadGuard<'_>>> {
        const GROUP: usize = 16;
        let s = &*self.shared;
        let size = s.len();
        for &(offset, len) in slices {
            s.check_slice(offset, len, size)?;
        }
        // More pages than frames can never be held at once: fail now rather than wait for a
        // frame that only this call's own guards could free.
        if slices.len() > s.frames.len() {
            let mut pages: Vec<u64> = slices.iter().map(|&(o, _)| o >> s.page_shift).collect();
            pages.sort_unstable();
            pages.dedup();
            if pages.len() > s.frames.len() {
                return Err(Error::NoFreeFrame {
                    frames: s.frames.len(),
                });
            }
        }
        let mut guards = Vec::with_capacity(slices.len());
        for group in slices.chunks(GROUP) {
            for &(offset, _) in group {
                s.index.prefetch_home(offset >> s.page_shift);
            }
            let mut candidates = [None; GROUP];
            for (c, &(offset, len)) in candidates.iter_mut().zip(group) {
                // Slots only ever name frames of this cache, but check rather than trust.
                *c = s
                    .index
                    .candidate(offset >> s.page_shift)
                    .filter(|&f| (f as usize) < s.frames.len());
                if let Some(f) = *c {
                    let meta: *const crate::page::FrameMeta = &s.frames[f as usize];
                    prefetch(meta.cast(), 1);
                    let in_page = (offset & s.page_mask()) as usize;
                    prefetch(s.frame_ptr(f).wrapping_add(in_page), len);
                }
            }
            for (c, &(offset, len)) in candidates.iter().zip(group) {
                let (p, in_page) = (offset >> s.page_shift, (offset & s.page_mask()) as usize);
                let frame = match c.map(|f| s.hold_found(f, p)) {
                    Some(Probe::Held(f)) => f,
                    // Busy, gone, or not there: the usual path waits or loads.
                    _ => s.get_shared_prefetch(p, 1, in_page..in_page + len)?,
                };
                // Held from here on: released with the guard, also on an error below.
                guards.push(PageReadGuard {
                    shared: s,
                    frame,
                    bytes: s.frame_ptr(frame).wrapping_add(in_page),
                    len,
                });
                // As in `read_at`: a truncation may have run since the length was checked.
                in_file(offset, checked_end(offset, len)?, s.len())?;
            }
        }
        Ok(guards)
    }

    /// A write guard on page `idx` (loading it if needed); the page is dirty when it is dropped.
    pub fn write_page(&self, idx: u64) -> Result<PageWriteGuard<'_>> {
        let s = &*self.shared;
        s.check_page(idx)?;
        let frame = s.get_exclusive(idx, Fill::Read, 1)?;
        Ok(PageWriteGuard {
            shared: s,
            frame,
            page: idx,
            bytes: s.frame_ptr(frame),
        })
    }

    /// Pins page `idx` (loading it if needed): it stays resident until the pin is dropped.
    pub fn pin_page(&self, idx: u64) -> Result<PinnedPage<'_>> {
        let s = &*self.shared;
        s.check_page(idx)?;
        let frame = s.get_pinned(idx)?;
        Ok(PinnedPage {
            shared: s,
            frame,
            page: idx,
        })
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// The state of page `idx` if it is resident (for tests and debugging).
    pub fn page_state(&self, idx: u64) -> Option<PageState> {
        let s = &*self.shared;
        let _g = s.index.lock();
        let f = s.index.lookup(idx, &s.frames)?;
        Some(PageState::from_word(s.frames[f as usize].state()))
    }

    /// Bytes of metadata the cache keeps beside the page data (frame table, index, policy, free
    /// list), for the memory-overhead figure.
    pub fn metadata_bytes(&self) -> usize {
        let s = &*self.shared;
        let frames = s.frames.len();
        frames * std::mem::size_of::<FrameMeta>()
            + s.index.bytes()
            + frames * s.policy.metadata_bytes_per_page()
            + frames * std::mem::size_of::<FrameId>()
            + frames * Writeback::BYTES_PER_PAGE
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        // Best effort flush and sync, stop and join the flusher; logs what could not be written.
        let s = &self.shared;
        s.readahead.shutdown();
        s.drop_with(&s.errors_seen);
    }
}

/// The most bytes [`prefetch`] asks for. Measured on a 256 MiB hot set (`folio bench --hot`):
/// prefetching a whole 4 KiB page made 4 KiB reads about 15% slower (the hardware prefetcher
/// streams the rest of the page anyway; 64 explicit prefetches only compete with it), while a
/// few lines let a small read's one data miss overlap the miss on the frame's state word.
const PREFETCH_MAX: usize = 256;

/// Hints the CPU to start loading the first bytes (up to [`PREFETCH_MAX`]) of `len` bytes at
/// `ptr` into its caches. Never faults, whatever the address; a no-op where there is no
/// prefetch instruction.
#[inline(always)]
pub(crate) fn prefetch(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut off = 0;
        while off < len.min(PREFETCH_MAX) {
            // SAFETY: `prefetch` is a hint: it does not access memory in the sense of the
            // language, cannot fault and has no observable effect but timing, for any address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(off).cast::<i8>()) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len);
}

/// `Ok` if `start..end` lies within a file of `size` bytes, else [`Error::OutOfRange`].
#[inline]
fn in_file(start: u64, end: u64, size: u64) -> Result<()> {
    if end > size {
        return Err(Error::OutOfRange { start, end, size });
    }
    Ok(())
}

#[inline]
fn checked_end(offset: u64, len: usize) -> Result<u64> {
    offset.checked_add(len as u64).ok_or(Error::Overflow {
        offset,
        len: len as u64,
    })
}

impl Shared {
    fn page_mask(&self) -> u64 {
        self.page_size as u64 - 1
    }

    fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    fn npages(&self) -> u64 {
        self.len().div_ceil(self.page_size as u64)
    }

    fn check_page(&self, idx: u64) -> Result<()> {
        let npages = self.npages();
        if idx >= npages {
            let ps = self.page_size as u64;
            return Err(Error::OutOfRange {
                start: idx.saturating_mul(ps),
                end: idx.saturating_add(1).saturating_mul(ps),
                size: self.len(),
            });
        }
        Ok(())
    }

    /// Pages that overlap the byte range.
    pub(crate) fn pages_overlapping(&self, range: &Range<u64>) -> Range<u64> {
        if range.start >= range.end {
            return 0..0;
        }
        let first = range.start >> self.page_shift;
        let last = (range.end - 1) >> self.page_shift;
        first..last + 1
    }

    /// Pages wholly inside the byte range (a range reaching the end of the file covers the
    /// partial last page, and everything after it).
    fn pages_inside(&self, range: &Range<u64>) -> Range<u64> {
        let ps = self.page_size as u64;
        let first = range.start.div_ceil(ps);
        let end = if range.end >= self.len() {
            u64::MAX
        } else {
            range.end / ps
        };
        if first >= end {
            0..0
        } else {
            first..end
        }
    }

    /// The address of frame `f`'s bytes. Dereferencing it is up to the caller (see `bytes`); a
    /// frame id that is not `< frames` gives a dangling pointer, never undefined behaviour here.
    #[inline]
    fn frame_ptr(&self, f: FrameId) -> *mut u8 {
        self.region
            .base()
            .wrapping_add((f as usize) << self.page_shift)
    }

    /// # Safety
    /// The caller holds the frame (a reader hold or `EXCLUSIVE`).
    unsafe fn bytes(&self, f: FrameId) -> &[u8] {
        // SAFETY: in bounds; the caller's hold excludes writers.
        unsafe { std::slice::from_raw_parts(self.frame_ptr(f), self.page_size) }
    }

    /// # Safety
    /// The caller holds the frame `EXCLUSIVE`, and no other reference to its bytes lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self, f: FrameId) -> &mut [u8] {
        // SAFETY: in bounds; `EXCLUSIVE` excludes every other holder.
        unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(f), self.page_size) }
    }

    /// Returns a frame nobody else holds to the free list.
    fn push_free(&self, f: FrameId) {
        let meta = &self.frames[f as usize];
        meta.clear_tag();
        meta.set_free();
        self.free.lock().push(f);
    }

    fn released(&self, f: FrameId, r: Released) {
        if r == Released::Freed {
            self.push_free(f);
        }
    }

    /// Turns [`Acquire::Stray`] (a mistaken hold whose release freed the frame) into `Absent`,
    /// returning the frame to the free list.
    fn settle(&self, f: FrameId, a: Acquire) -> Acquire {
        if a == Acquire::Stray {
            self.push_free(f);
            return Acquire::Absent;
        }
        a
    }

    fn unlock_shared(&self, f: FrameId) {
        let r = self.frames[f as usize].unlock_shared();
        self.released(f, r);
    }

    fn unlock_exclusive(&self, f: FrameId, dirty: bool) {
        if dirty && self.frames[f as usize].state() & DIRTY == 0 {
            // DIRTY cannot change while we hold the frame exclusive.
            self.wb.on_dirtied(f);
        }
        let (newly_dirty, r) = self.frames[f as usize].unlock_exclusive(dirty);
        if newly_dirty {
            // Wrapping: the counter may be transiently "negative" (see `dirty_now`).
            let n = self
                .dirty_pages
                .fetch_add(1, Ordering::AcqRel)
                .wrapping_add(1);
            self.wb.after_dirtied(crate::writeback::clamp_count(n));
        }
        self.released(f, r);
    }

    // ---- lookups ------------------------------------------------------------------------

    fn wait_for(&self, f: FrameId, key: u64, blocking: u64) {
        let meta = &self.frames[f as usize];
        meta.wait_while(|s| {
            meta.tag() == key && (kind(s) == LOADING || (kind(s) == VALID && s & blocking != 0))
        });
    }

    /// A reader hold on page `p`, loading it (and up to `run` following absent pages) on a miss.
    #[inline]
    fn get_shared(&self, p: u64, run: usize) -> Result<FrameId> {
        self.get_shared_prefetch(p, run, 0..0)
    }

    /// As [`get_shared`](Self::get_shared), prefetching the bytes `want` of the page on a hit
    /// (see [`try_shared`](Self::try_shared)).
    #[inline]
    fn get_shared_prefetch(&self, p: u64, run: usize, want: Range<usize>) -> Result<FrameId> {
        self.get_shared_waited(p, run, want).map(|(f, _)| f)
    }

    /// As [`get_shared_prefetch`](Self::get_shared_prefetch); also says whether the caller
    /// had to wait for the page (a load, its own or another's, was under way or needed).
    fn get_shared_waited(
        &self,
        p: u64,
        run: usize,
        want: Range<usize>,
    ) -> Result<(FrameId, Waited)> {
        let mut waited = Waited::No;
        loop {
            match self.try_shared(p, want.clone()) {
                Probe::Held(f) => return Ok((f, waited)),
                Probe::Busy(f) => {
                    waited = Waited::Yes;
                    self.wait_for(f, p, EXCLUSIVE | READERS_MASK);
                    continue;
                }
                Probe::Absent => {}
            }
            let plan = self.readahead.on_miss(p, run, self.npages());
            waited = Waited::Yes;
            let loaded = self.load(p, plan.run.max(run), Fill::Read, run)?;
            self.readahead.dispatch(plan.jobs, false);
            match loaded {
                Loaded::Exclusive(f) => {
                    self.frames[f as usize].downgrade();
                    return Ok((f, waited));
                }
                Loaded::Present => continue,
            }
        }
    }

    /// The exclusive hold on page `p`; on a miss fills a new frame as `fill` says.
    fn get_exclusive(&self, p: u64, fill: Fill, run: usize) -> Result<FrameId> {
        loop {
            if let Some(f) = self.index.lookup(p, &self.frames) {
                match self.settle(f, self.frames[f as usize].lock_exclusive(p)) {
                    Acquire::Acquired => {
                        self.policy.on_hit(f);
                        self.counters.add(Counter::Hits, 1);
                        return Ok(f);
                    }
                    Acquire::Wait => {
                        self.wait_for(f, p, EXCLUSIVE | READERS_MASK | WRITEBACK);
                        continue;
                    }
                    Acquire::Absent | Acquire::Stray => {}
                }
            }
            match self.load(p, run, fill, usize::MAX)? {
                Loaded::Exclusive(f) => return Ok(f),
                Loaded::Present => continue,
            }
        }
    }

    fn get_pinned(&self, p: u64) -> Result<FrameId> {
        loop {
            if let Some(f) = self.index.lookup(p, &self.frames) {
                match self.settle(f, self.frames[f as usize].pin(p)) {
                    Acquire::Acquired => {
                        self.policy.on_hit(f);
                        self.counters.add(Counter::Hits, 1);
                        return Ok(f);
                    }
                    Acquire::Wait => {
                        self.wait_for(f, p, EXCLUSIVE);
                        continue;
                    }
                    Acquire::Absent | Acquire::Stray => {}
                }
            }
            if let Loaded::Exclusive(f) = self.load(p, 1, Fill::Read, usize::MAX)? {
                self.frames[f as usize].pin_owned();
                self.unlock_exclusive(f, false);
                return Ok(f);
            }
        }
    }

    // ---- loading and eviction -----------------------------------------------------------

    /// A frame held `EXCLUSIVE` in state `FREE`: from the free list, or by evicting a page.
    /// Waits up to `frame_wait_max` while every frame is held.
    fn alloc_frame(&self) -> Result<FrameId> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            while let Some(f) = self.free.lock().pop() {
                if self.frames[f as usize].take_free() {
                    return Ok(f);
                }
                debug_assert!(false, "frame {f} on the free list is not free");
            }
            if let Some(f) = self.evict_one()? {
                return Ok(f);
            }
            if started.elapsed() >= self.frame_wait_max {
                return Err(Error::NoFreeFrame {
                    frames: self.frames.len(),
                });
            }
            attempts += 1;
            if attempts < 16 {
                crate::sync::yield_now();
            } else {
                crate::sync::sleep(Duration::from_micros(200));
            }
        }
    }

    /// Evicts one page chosen by the policy, writing it back first if dirty. `Ok(None)` if no
    /// frame could be claimed; `Err` if the victim's write-back failed (it stays cached, dirty).
    fn evict_one(&self) -> Result<Option<FrameId>> {
        let Some(f) = self
            .policy
            .choose_victim(&mut |f| self.frames[f as usize].claim())
        else {
            return Ok(None);
        };
        let meta = &self.frames[f as usize];
        let key = meta.tag();
        if meta.state() & DIRTY != 0 {
            self.wb.in_flight_add(1);
            let written = self.write_exclusive(key, f);
            self.wb.in_flight_add(-1);
            if let Err(e) = written {
                self.errseq.record(&e);
                self.counters.add(Counter::WritebackErrors, 1);
                {
                    // Re-admit the page, unless a discard orphaned it meanwhile (discard
                    // forgets pages in the policy under the index lock too).
                    let _g = self.index.lock();
                    if kind(meta.state()) == VALID {
                        self.policy.on_insert(f, key, Admission::Demand);
                    }
                }
                self.unlock_exclusive(f, false);
                return Err(e);
            }
            if meta.clear_dirty_owned() {
                self.dirty_pages.fetch_sub(1, Ordering::AcqRel);
            }
        }
        {
            let mut g = self.index.lock();
            self.index.remove(&mut g, key, f, &self.frames);
        }
        meta.set_owned_state(EXCLUSIVE | FREE);
        meta.set_tag(NO_PAGE);
        self.counters.add(Counter::Evictions, 1);
        Ok(Some(f))
    }

    /// Writes back the page `key` in frame `f`, which the caller holds `EXCLUSIVE`.
    fn write_exclusive(&self, key: u64, f: FrameId) -> Result<()> {
        // SAFETY: the caller holds the frame EXCLUSIVE, so nobody writes it during the I/O.
        let frame = unsafe {
            Frame::from_region(&self.region, f as usize * self.page_size, self.page_size)
        };
        let result = self
            .backend
            .write_pages(key, vec![frame])
            .and_then(|w| w.wait());
        self.counters.add(Counter::WritebackIos, 1);
        if result.is_ok() {
            self.counters.add(Counter::WritebackPages, 1);
            self.counters
                .add(Counter::BytesWritten, self.page_size as u64);
        }
        result
    }

    /// Loads page `p` and up to `run - 1` following absent pages with one backend read. Returns
    /// the first page's frame held `EXCLUSIVE` and valid, or `Present` if someone else had
    /// inserted `p` first. The first `demand` pages enter the policy as demanded, the rest as
    /// speculative (readahead).
    fn load(&self, p: u64, run: usize, fill: Fill, demand: usize) -> Result<Loaded> {
        match self.begin_load(p, run, fill, demand, Submit::Now)? {
            Some(loading) => self.finish_load(loading).map(Loaded::Exclusive),
            None => Ok(Loaded::Present),
        }
    }

    /// The first half of [`load`](Self::load): claims frames for the run, publishes them in the
    /// index as loading (held `EXCLUSIVE`, so readers of these pages wait) and starts the read.
    /// `None` if page `p` was inserted by someone else first. The caller must pass the result to
    /// [`finish_load`](Self::finish_load), which releases the frames.
    fn begin_load(
        &self,
        p: u64,
        run: usize,
        fill: Fill,
        demand: usize,
        submit: Submit,
    ) -> Result<Option<Loading>> {
        let npages = self.npages();
        let run = match fill {
            Fill::Zero | Fill::Overwrite => 1,
            Fill::Read => (run as u64)
                .min(npages.saturating_sub(p))
                .clamp(1, self.max_io_pages as u64) as usize,
        };
        let mut frames = Vec::with_capacity(run);
        frames.push(self.alloc_frame()?);
        while frames.len() < run {
            // Extra pages of the run are best effort: stop at the first frame we cannot get.
            let next = self.free.lock().pop();
            match next {
                Some(f) if self.frames[f as usize].take_free() => frames.push(f),
                Some(f) => {
                    debug_assert!(false, "frame {f} on the free list is not free");
                    break;
                }
                None => match self.evict_one() {
                    Ok(Some(f)) => frames.push(f),
                    _ => break,
                },
            }
        }
        let mut n = 0;
        {
            let mut g = self.index.lock();
            for (i, &f) in frames.iter().enumerate() {
                let key = p + i as u64;
                if self.index.lookup(key, &self.frames).is_some() {
                    break;
                }
                let meta = &self.frames[f as usize];
                meta.set_tag(key);
                meta.set_owned_state(EXCLUSIVE | LOADING);
                self.index.insert(&mut g, key, f);
                n += 1;
            }
        }
        for &f in &frames[n..] {
            self.push_free(f);
        }
        if n == 0 {
            return Ok(None);
        }
        frames.truncate(n);
        for (i, &f) in frames.iter().enumerate() {
            let admission = if i < demand {
                Admission::Demand
            } else {
                Admission::Speculative
            };
            self.policy.on_insert(f, p + i as u64, admission);
        }
        let waiter = match fill {
            Fill::Zero => {
                // SAFETY: we hold the frame EXCLUSIVE (LOADING).
                let bytes = unsafe { self.bytes_mut(frames[0]) };
                bytes.fill(0);
                Ok(IoWaiter::ready(Ok(())).into())
            }
            Fill::Overwrite => Ok(IoWaiter::ready(Ok(())).into()),
            Fill::Read => {
                let bufs: Vec<FrameMut> = frames
                    .iter()
                    // SAFETY: each frame is held EXCLUSIVE (LOADING) by us: nobody else touches
                    // its bytes until we publish it as VALID after the I/O, in `finish_load`.
                    .map(|&f| unsafe {
                        FrameMut::from_region(
                            &self.region,
                            f as usize * self.page_size,
                            self.page_size,
                        )
                    })
                    .collect();
                self.counters.add(Counter::ReadIos, 1);
                match submit {
                    Submit::Now => self.backend.read_pages(p, bufs).map(LocalIoWaiter::from),
                    Submit::Queued => self.backend.start_read_pages_local(p, bufs),
                }
            }
        };
        Ok(Some(Loading {
            p,
            frames,
            fill,
            waiter,
        }))
    }

    /// The second half of [`load`](Self::load): waits for the read, then publishes the pages as
    /// valid (the first one stays held `EXCLUSIVE` by the caller) or, if it failed, takes them
    /// out of the index again.
    fn finish_load(&self, loading: Loading) -> Result<FrameId> {
        let Loading {
            p,
            frames,
            fill,
            waiter,
        } = loading;
        let n = frames.len();
        let result = waiter.and_then(|w| w.wait());
        if fill == Fill::Read && result.is_ok() {
            self.counters
                .add(Counter::BytesRead, (n * self.page_size) as u64);
        }
        self.counters.add(Counter::Misses, 1);
        match result {
            Ok(()) => {
                for &f in &frames[1..] {
                    self.frames[f as usize].set_owned_state(EXCLUSIVE | VALID);
                    self.unlock_exclusive(f, false);
                }
                self.frames[frames[0] as usize].set_owned_state(EXCLUSIVE | VALID);
                Ok(frames[0])
            }
            Err(e) => {
                // Undo: nobody saw these pages valid. Waiters wake, find them gone, and retry.
                let mut g = self.index.lock();
                for (i, &f) in frames.iter().enumerate() {
                    self.index.remove(&mut g, p + i as u64, f, &self.frames);
                    self.policy.on_remove(f);
                    self.push_free(f);
                }
                Err(e)
            }
        }
    }

    pub(crate) fn readahead(&self) -> &Readahead {
        &self.readahead
    }

    /// Loads the absent pages from `p` on (at most `run`, stopping at the first resident one) as
    /// speculative pages, with one backend read: readahead and `WillNeed`, on a worker thread.
    /// With `mark`, page `p` carries the `READAHEAD` marker, set before anyone can see it valid.
    pub(crate) fn prefetch(&self, p: u64, run: usize, mark: bool) -> Result<()> {
        if p >= self.npages() || self.index.lookup(p, &self.frames).is_some() {
            return Ok(());
        }
        if let Loaded::Exclusive(f) = self.load(p, run, Fill::Read, 0)? {
            if mark {
                self.frames[f as usize].mark_readahead_owned();
            }
            self.unlock_exclusive(f, false);
        }
        Ok(())
    }

    // ---- byte I/O -----------------------------------------------------------------------

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        checked_end(offset, buf.len())?;
        let size = self.len();
        if buf.is_empty() || offset >= size {
            return Ok(0);
        }
        let total = (size - offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < total {
            let pos = offset + done as u64;
            let p = pos >> self.page_shift;
            let in_page = (pos & self.page_mask()) as usize;
            let n = (self.page_size - in_page).min(total - done);
            if self.try_copy_optimistic(p, in_page, &mut buf[done..done + n]) {
                done += n;
                continue;
            }
            let pages_left = (total - done).div_ceil(self.page_size);
            let (f, waited) = self.get_shared_waited(p, pages_left, in_page..in_page + n)?;
            // A truncation may have run since `size` was read, and the page been loaded again
            // past the new end (as zeros): return nothing past the end as of now, which we read
            // after taking the hold (Linux re-checks i_size after the page is up to date for
            // the same reason). Found by the truncate model in crates/folio-shuttle.
            let now = self.len();
            if pos >= now {
                self.unlock_shared(f);
                break;
            }
            let n = n.min((now - pos) as usize);
            let meta = &self.frames[f as usize];
            if meta.state() & READAHEAD != 0 && meta.take_readahead_mark() {
                // A readahead marker: start the next window in the background.
                let jobs = self.readahead.on_marker(p, self.npages(), waited);
                self.readahead.dispatch(jobs, false);
            }
            // SAFETY: we hold a reader hold on `f`.
            let bytes = unsafe { self.bytes(f) };
            buf[done..done + n].copy_from_slice(&bytes[in_page..in_page + n]);
            self.unlock_shared(f);
            done += n;
        }
        self.counters.add(Counter::ReadCalls, 1);
        Ok(done)
    }

    /// [`PageCache::read_exact_many`], whose caller has checked the ranges.
    fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<()> {
        let depth = self
            .backend
            .queue_depth()
            .min(self.frames.len() / 2)
            .clamp(1, 4096);
        let mut in_flight: VecDeque<(Loading, Piece)> = VecDeque::with_capacity(depth);
        // Pieces for the blocking path: their page is busy (being loaded, by someone else or
        // by this batch), or the file shrank under them.
        let mut deferred: Vec<Piece> = Vec::new();
        let mut failed: Option<Error> = None;
        'reads: for read in 0..reads.len() {
            let (offset, len) = (reads[read].0, reads[read].1.len());
            let mut at = 0;
            while at < len {
                let pos = offset + at as u64;
                let p = pos >> self.page_shift;
                let n = (self.page_size - (pos & self.page_mask()) as usize).min(len - at);
                let piece = Piece { read, at, pos, n };
                at += n;
                let in_page = (pos & self.page_mask()) as usize;
                if self.try_copy_optimistic(p, in_page, &mut reads[read].1[piece.at..at]) {
                    continue;
                }
                match self.try_shared(p, in_page..in_page + n) {
                    Probe::Held(f) => self.copy_piece(f, piece, reads, &mut deferred),
                    Probe::Busy(_) => deferred.push(piece),
                    Probe::Absent => {
                        if in_flight.len() >= depth {
                            // Keep `depth` in flight: finish one load (the first to complete),
                            // then start the next at once. (Finishing half the window at a time,
                            // in bursts, left the device at 16 to 32 outstanding; holding
                            // refills back until this thread would block measured ~10% slower.)
                            self.backend.unplug();
                            if let Some((loading, pc)) = take_completed(&mut in_flight) {
                                if let Err(e) = self.finish_piece(loading, pc, reads, &mut deferred)
                                {
                                    failed = Some(e);
                                    break 'reads;
                                }
                            }
                        }
                        match self.begin_load(p, 1, Fill::Read, 1, Submit::Queued) {
                            Ok(Some(loading)) => in_flight.push_back((loading, piece)),
                            Ok(None) => deferred.push(piece),
                            Err(e) => {
                                failed = Some(e);
                                break 'reads;
                            }
                        }
                    }
                }
            }
        }
        // Every load started is finished, failure or not: its frames are held until then.
        self.backend.unplug();
        for (loading, pc) in in_flight.drain(..) {
            let r = self.finish_piece(loading, pc, reads, &mut deferred);
            if let (Err(e), None) = (r, &failed) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        for pc in deferred {
            let buf = &mut reads[pc.read].1[pc.at..pc.at + pc.n];
            if self.read_at(buf, pc.pos)? < pc.n {
                // Truncated concurrently.
                return Err(Error::OutOfRange {
                    start: pc.pos,
                    end: pc.pos + pc.n as u64,
                    size: self.len(),
                });
            }
        }
        self.counters.add(Counter::ReadCalls, reads.len() as u64);
        Ok(())
    }

    /// A hit without a hold: copies `dst.len()` bytes at `in_page` of page `p` into `dst` if the
    /// page is cached, valid and stays untouched during the copy (an optimistic read, see
    /// [`crate::page`]), and the file still covers them. False if not; `dst` then holds garbage
    /// and the caller takes the locked path, which also handles every rarer case (readahead
    /// markers, a page being loaded or written, a truncation under way).
    #[inline(always)]
    fn try_copy_optimistic(&self, p: u64, in_page: usize, dst: &mut [u8]) -> bool {
        if !crate::page::OPTIMISTIC_READS {
            return false;
        }
        // Callers pass a piece of one page; the copy below relies on it, so check it always.
        debug_assert!(in_page + dst.len() <= self.page_size);
        if in_page + dst.len() > self.page_size {
            return false;
        }
        let found = self.index.lookup_then(p, &self.frames, |f| {
            prefetch(self.frame_ptr(f).wrapping_add(in_page), dst.len());
        });
        let Some(f) = found else {
            return false;
        };
        let meta = &self.frames[f as usize];
        let Some(begin) = meta.optimistic_begin(p) else {
            return false;
        };
        // As in the locked path, the length is read after the page was seen valid: a page
        // loaded again after a truncation may lie past the new end.
        let end = (p << self.page_shift) + (in_page + dst.len()) as u64;
        if end > self.len() {
            return false;
        }
        // SAFETY: frame `f`'s bytes are mapped for the cache's life and `in_page + len` is
        // within the page (checked above).
        unsafe { crate::page::copy_racy(self.frame_ptr(f).wrapping_add(in_page), dst) };
        if !meta.optimistic_end(begin) {
            return false;
        }
        self.policy.on_hit(f);
        self.counters.add(Counter::Hits, 1);
        true
    }

    /// The end of the slice `offset .. offset + len` if it lies within one page and within a
    /// file of `size` bytes (the checks of [`PageCache::read_slice`]).
    fn check_slice(&self, offset: u64, len: usize, size: u64) -> Result<u64> {
        let end = checked_end(offset, len)?;
        if (offset & self.page_mask()) as usize + len > self.page_size {
            return Err(Error::CrossesPage {
                offset,
                len,
                page_size: self.page_size,
            });
        }
        in_file(offset, end, size)?;
        Ok(end)
    }

    /// A reader hold on page `p` if it is cached and nobody holds it exclusively (a hit); never
    /// waits and never loads. The CPU is asked to start loading the bytes `want` of the page as
    /// soon as its frame is known from the index, so that their cache misses overlap the one on
    /// the frame's state word instead of following it. Always inlined: it is the hit path.
    #[inline(always)]
    fn try_shared(&self, p: u64, want: Range<usize>) -> Probe {
        let found = self.index.lookup_then(p, &self.frames, |f| {
            prefetch(self.frame_ptr(f).wrapping_add(want.start), want.len());
        });
        match found {
            Some(f) => self.hold_found(f, p),
            None => Probe::Absent,
        }
    }

    /// A reader hold on page `p` in frame `f`, where a lookup found it (a hit, counted), if the
    /// frame still holds `p` and nobody holds it exclusively. Always inlined: the hit path.
    #[inline(always)]
    fn hold_found(&self, f: FrameId, p: u64) -> Probe {
        match self.settle(f, self.frames[f as usize].lock_shared(p)) {
            Acquire::Acquired => {
                self.policy.on_hit(f);
                self.counters.add(Counter::Hits, 1);
                Probe::Held(f)
            }
            Acquire::Wait => Probe::Busy(f),
            Acquire::Absent | Acquire::Stray => Probe::Absent,
        }
    }

    /// Copies `piece` out of frame `f` (held shared by the caller, released here), or defers
    /// it if the file no longer covers it.
    fn copy_piece(
        &self,
        f: FrameId,
        piece: Piece,
        reads: &mut [(u64, &mut [u8])],
        deferred: &mut Vec<Piece>,
    ) {
        // As in `read_at`: the length is read after the hold is taken.
        if piece.pos + piece.n as u64 > self.len() {
            self.unlock_shared(f);
            deferred.push(piece);
            return;
        }
        let in_page = (piece.pos & self.page_mask()) as usize;
        // SAFETY: we hold a reader hold on `f`.
        let bytes = unsafe { self.bytes(f) };
        reads[piece.read].1[piece.at..piece.at + piece.n]
            .copy_from_slice(&bytes[in_page..in_page + piece.n]);
        self.unlock_shared(f);
    }

    /// Finishes the load of `piece`'s page and copies the piece out.
    fn finish_piece(
        &self,
        loading: Loading,
        piece: Piece,
        reads: &mut [(u64, &mut [u8])],
        deferred: &mut Vec<Piece>,
    ) -> Result<()> {
        let f = self.finish_load(loading)?;
        self.frames[f as usize].downgrade();
        self.copy_piece(f, piece, reads, deferred);
        Ok(())
    }

    fn extend_to(&self, end: u64) -> Result<()> {
        let _g = self.size_lock.lock();
        if end > self.len() {
            self.backend.set_len(end)?;
            self.len.store(end, Ordering::Release);
        }
        Ok(())
    }

    /// Zeroes the bytes of page `p` (held `EXCLUSIVE` in `f`) that lie past the end of the file,
    /// keeping "cached bytes past the end are zero" true under concurrent truncation.
    fn zero_past_end(&self, p: u64, f: FrameId) {
        let len = self.len();
        let start = p << self.page_shift;
        let end = start + self.page_size as u64;
        if end > len {
            let from = len.saturating_sub(start) as usize;
            // SAFETY: the caller holds `f` EXCLUSIVE.
            let bytes = unsafe { self.bytes_mut(f) };
            bytes[from..].fill(0);
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        let end = checked_end(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(0);
        }
        self.balance_dirty();
        if end > self.len() {
            self.extend_to(end)?;
        }
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let p = pos >> self.page_shift;
            let in_page = (pos & self.page_mask()) as usize;
            let n = (self.page_size - in_page).min(buf.len() - done);
            let fill = if n == self.page_size {
                Fill::Overwrite
            } else if in_page == 0 && pos + n as u64 >= self.len() {
                Fill::Zero
            } else {
                Fill::Read
            };
            let f = self.get_exclusive(p, fill, 1)?;
            // SAFETY: we hold `f` EXCLUSIVE.
            let bytes = unsafe { self.bytes_mut(f) };
            bytes[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            self.zero_past_end(p, f);
            self.unlock_exclusive(f, true);
            done += n;
        }
        self.counters.add(Counter::WriteCalls, 1);
        Ok(buf.len())
    }

    fn resize(&self, new_len: u64) -> Result<()> {
        let _g = self.size_lock.lock();
        let old = self.len();
        if new_len == old {
            return Ok(());
        }
        self.backend.set_len(new_len)?;
        self.len.store(new_len, Ordering::Release);
        if new_len < old {
            let first_gone = new_len.div_ceil(self.page_size as u64);
            self.discard_pages(first_gone..u64::MAX);
            if new_len & self.page_mask() != 0 {
                let p = new_len >> self.page_shift;
                self.zero_tail(p);
            }
        }
        Ok(())
    }

    /// Zeroes the part past the end of the resident page `p`, if resident.
    fn zero_tail(&self, p: u64) {
        loop {
            let Some(f) = self.index.lookup(p, &self.frames).or_else(|| {
                let _g = self.index.lock();
                self.index.lookup(p, &self.frames)
            }) else {
                return;
            };
            match self.settle(f, self.frames[f as usize].lock_exclusive(p)) {
                Acquire::Acquired => {
                    self.zero_past_end(p, f);
                    self.unlock_exclusive(f, false);
                    return;
                }
                Acquire::Wait => self.wait_for(f, p, EXCLUSIVE | READERS_MASK | WRITEBACK),
                Acquire::Absent | Acquire::Stray => return,
            }
        }
    }

    fn zero_range(&self, range: Range<u64>) -> Result<()> {
        let end = range.end.min(self.len());
        if range.start >= end {
            return Ok(());
        }
        let ps = self.page_size as u64;
        let whole_start = range.start.div_ceil(ps) * ps;
        let whole_end = if end == self.len() {
            end
        } else {
            end & !self.page_mask()
        };
        if whole_start >= whole_end {
            return self.write_zeroes_through_cache(range.start, end);
        }
        self.write_zeroes_through_cache(range.start, whole_start)?;
        self.write_zeroes_through_cache(whole_end, end)?;
        let pages = self.pages_inside(&(whole_start..whole_end));
        self.discard_pages(pages.clone());
        match self
            .backend
            .write_zeroes(whole_start, whole_end - whole_start)
        {
            Ok(()) => {
                // Drop anything a racing reader loaded between the two steps.
                self.discard_pages(pages);
                Ok(())
            }
            Err(Error::Unsupported(_)) => self.write_zeroes_through_cache(whole_start, whole_end),
            Err(e) => Err(e),
        }
    }

    fn write_zeroes_through_cache(&self, start: u64, end: u64) -> Result<()> {
        let zeros = vec![0u8; self.page_size];
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(self.page_size - (pos & self.page_mask()) as usize);
            self.write_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    // ---- range operations ---------------------------------------------------------------

    /// Resident pages in `pages` whose state word passes `filter`, sorted by page. Walks the
    /// range through the index when it is shorter than the frame table, else the frame table:
    /// the cost is bounded by the smaller of the two, never by the range alone.
    pub(crate) fn resident(
        &self,
        pages: Range<u64>,
        filter: impl Fn(u64) -> bool,
    ) -> Vec<(u64, FrameId)> {
        let mut out = Vec::new();
        if pages.start >= pages.end {
            return out;
        }
        if pages.end - pages.start <= self.frames.len() as u64 {
            let _g = self.index.lock();
            for key in pages {
                if let Some(f) = self.index.lookup(key, &self.frames) {
                    if filter(self.frames[f as usize].state()) {
                        out.push((key, f));
                    }
                }
            }
        } else {
            for (f, meta) in self.frames.iter().enumerate() {
                let key = meta.tag();
                if key != NO_PAGE && pages.contains(&key) && filter(meta.state()) {
                    out.push((key, f as FrameId));
                }
            }
            out.sort_unstable();
        }
        out
    }

    /// Writes back every page in `pages` that is dirty, in runs of contiguous pages. Runs are
    /// submitted without waiting (up to the backend's queue depth at once), so an asynchronous backend has
    /// several in flight; then they are waited for. Failures are recorded in the error sequence
    /// and leave their pages dirty.
    pub(crate) fn flush_pages(&self, pages: Range<u64>) {
        let dirty = self.resident(pages, |s| kind(s) == VALID && s & (DIRTY | WRITEBACK) != 0);
        self.flush_list(&dirty, true);
    }

    /// Writes back the dirty pages of `dirty` (sorted by page) in runs. With `wait`, waits for
    /// pages that are busy (held, or under another write-back) and writes them if still dirty;
    /// without (the background flusher), skips them.
    pub(crate) fn flush_list(&self, dirty: &[(u64, FrameId)], wait: bool) {
        // Runs submitted before the flusher waits for the oldest: the backend's queue depth
        // (at least 1, at most 4096 — which bounds the `in_flight` queue).
        let in_flight_max = self.backend.queue_depth().clamp(1, 4096);
        let mut run: Vec<(u64, FrameId)> = Vec::with_capacity(self.max_io_pages);
        let mut in_flight: VecDeque<SubmittedRun> = Default::default();
        let mut i = 0;
        while i < dirty.len() {
            let (key, f) = dirty[i];
            let contiguous = run.last().is_none_or(|&(k, _)| k + 1 == key);
            if !contiguous || run.len() == self.max_io_pages {
                if in_flight.len() >= in_flight_max {
                    // Keep the queue full: finish whichever run completed first.
                    self.backend.unplug();
                    if let Some(r) = take_completed(&mut in_flight) {
                        self.complete_run(r);
                    }
                }
                in_flight.push_back(self.submit_run(&mut run));
                continue;
            }
            match self.settle(f, self.frames[f as usize].begin_writeback(key)) {
                Acquire::Acquired => {
                    self.dirty_pages.fetch_sub(1, Ordering::AcqRel);
                    self.wb.in_flight_add(1);
                    run.push((key, f));
                    i += 1;
                }
                Acquire::Wait if !wait => {
                    // The background flusher skips busy pages.
                    in_flight.push_back(self.submit_run(&mut run));
                    i += 1;
                }
                Acquire::Wait => {
                    // Never wait while holding pages: write what we have first.
                    in_flight.push_back(self.submit_run(&mut run));
                    self.backend.unplug();
                    for r in in_flight.drain(..) {
                        self.complete_run(r);
                    }
                    self.wait_for(f, key, EXCLUSIVE | WRITEBACK);
                }
                Acquire::Absent | Acquire::Stray => {
                    i += 1;
                }
            }
        }
        in_flight.push_back(self.submit_run(&mut run));
        self.backend.unplug();
        for r in in_flight.drain(..) {
            self.complete_run(r);
        }
    }

    /// Starts writing one run of pages that this thread holds under write-back (they stay under
    /// write-back until [`complete_run`](Self::complete_run)).
    fn submit_run(&self, run: &mut Vec<(u64, FrameId)>) -> SubmittedRun {
        let pages = std::mem::take(run);
        let Some(&(first, _)) = pages.first() else {
            return SubmittedRun {
                pages,
                waiter: Ok(IoWaiter::ready(Ok(())).into()),
            };
        };
        let frames: Vec<Frame> = pages
            .iter()
            // SAFETY: each page is under write-back with our reader hold: no writer touches
            // its bytes until `end_writeback`, which `complete_run` calls only after the I/O.
            .map(|&(_, f)| unsafe {
                Frame::from_region(&self.region, f as usize * self.page_size, self.page_size)
            })
            .collect();
        // Queued: `flush_list` unplugs before it waits for any run.
        let waiter = self.backend.start_write_pages_local(first, frames);
        SubmittedRun { pages, waiter }
    }

    /// Waits for a run started by [`submit_run`](Self::submit_run) and ends its write-back.
    fn complete_run(&self, submitted: SubmittedRun) {
        let SubmittedRun { pages: run, waiter } = submitted;
        if run.is_empty() {
            return;
        }
        let result = waiter.and_then(|w| w.wait());
        self.counters.add(Counter::WritebackIos, 1);
        let ok = result.is_ok();
        if let Err(e) = &result {
            self.errseq.record(e);
            self.counters.add(Counter::WritebackErrors, 1);
        } else {
            self.counters.add(Counter::WritebackPages, run.len() as u64);
            self.counters
                .add(Counter::BytesWritten, (run.len() * self.page_size) as u64);
        }
        for &(_, f) in run.iter() {
            let (redirtied, r) = self.frames[f as usize].end_writeback(ok);
            if redirtied {
                self.dirty_pages.fetch_add(1, Ordering::AcqRel);
            }
            self.released(f, r);
        }
        self.wb.in_flight_add(-(run.len() as i64));
    }

    /// Drops the clean pages in `pages` that nobody holds.
    fn drop_clean(&self, pages: Range<u64>) {
        for (key, f) in self.resident(pages, |s| kind(s) == VALID && s & DIRTY == 0) {
            let meta = &self.frames[f as usize];
            if !meta.claim() {
                continue;
            }
            // The tag is stable only now that we hold the frame.
            if meta.tag() != key || meta.state() & DIRTY != 0 {
                self.unlock_exclusive(f, false);
                continue;
            }
            {
                let mut g = self.index.lock();
                self.index.remove(&mut g, key, f, &self.frames);
                self.policy.on_remove(f);
            }
            self.push_free(f);
        }
    }

    /// Drops the pages in `pages` without writing them back. Held pages become orphans.
    fn discard_pages(&self, pages: Range<u64>) {
        for (key, f) in self.resident(pages, |s| kind(s) != FREE) {
            let meta = &self.frames[f as usize];
            loop {
                let mut g = self.index.lock();
                if self.index.lookup(key, &self.frames) != Some(f) {
                    break;
                }
                if kind(meta.state()) == LOADING {
                    drop(g);
                    self.wait_for(f, key, 0);
                    continue;
                }
                // Forget it in the policy before the frame can be reused.
                self.policy.on_remove(f);
                self.index.remove(&mut g, key, f, &self.frames);
                let (was_dirty, r) = meta.orphan();
                drop(g);
                if was_dirty {
                    self.dirty_pages.fetch_sub(1, Ordering::AcqRel);
                }
                self.released(f, r);
                break;
            }
        }
    }

    fn check_errors(&self) -> Result<()> {
        self.errseq.check(&self.errors_seen)
    }

    fn stats(&self) -> Stats {
        let c = &self.counters;
        let free = self.free.lock().len();
        let mut st = Stats {
            hits: c.get(Counter::Hits),
            misses: c.get(Counter::Misses),
            evictions: c.get(Counter::Evictions),
            read_ios: c.get(Counter::ReadIos),
            writeback_ios: c.get(Counter::WritebackIos),
            writeback_pages: c.get(Counter::WritebackPages),
            writeback_errors: c.get(Counter::WritebackErrors),
            syncs: c.get(Counter::Syncs),
            bytes_read: c.get(Counter::BytesRead),
            bytes_written: c.get(Counter::BytesWritten),
            read_calls: c.get(Counter::ReadCalls),
            write_calls: c.get(Counter::WriteCalls),
            dirty_pages: self.dirty_now(),
            resident_pages: (self.frames.len() - free) as u64,
            capacity_pages: self.frames.len() as u64,
            ..Stats::default()
        };
        self.wb.fill_stats(&mut st);
        st
    }
}

/// A read guard: shared access to a page's bytes. See [`PageCache::read_page`].
pub struct PageReadGuard<'a> {
    shared: &'a Shared,
    frame: FrameId,
    /// The first byte the guard covers, inside the frame.
    bytes: *const u8,
    /// Bytes covered: the page, or a slice of it.
    len: usize,
}

impl Deref for PageReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold a reader hold on the frame for the guard's lifetime.
        // `bytes .. bytes + len` lies inside the frame (checked where the guard is made).
        unsafe { std::slice::from_raw_parts(self.bytes, self.len) }
    }
}

impl Drop for PageReadGuard<'_> {
    fn drop(&mut self) {
        self.shared.unlock_shared(self.frame);
    }
}

/// A write guard: exclusive access to a page's bytes; the page is dirty when it is dropped. See
/// [`PageCache::write_page`].
pub struct PageWriteGuard<'a> {
    shared: &'a Shared,
    frame: FrameId,
    page: u64,
    bytes: *mut u8,
}

impl Deref for PageWriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the frame EXCLUSIVE for the guard's lifetime.
        unsafe { std::slice::from_raw_parts(self.bytes, self.shared.page_size) }
    }
}

impl DerefMut for PageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: we hold the frame EXCLUSIVE for the guard's lifetime; `&mut self` makes this
        // the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.bytes, self.shared.page_size) }
    }
}

impl Drop for PageWriteGuard<'_> {
    fn drop(&mut self) {
        self.shared.zero_past_end(self.page, self.frame);
        self.shared.unlock_exclusive(self.frame, true);
    }
}

/// A pinned page: resident until dropped, readable and writable through guards. The `Pager`'s
/// committed page.
pub struct PinnedPage<'a> {
    shared: &'a Shared,
    frame: FrameId,
    page: u64,
}

impl PinnedPage<'_> {
    /// The page index.
    pub fn index(&self) -> u64 {
        self.page
    }

    /// Shared access to the bytes (waits for a writer). If the page was discarded while pinned,
    /// these are the bytes it had.
    pub fn read(&self) -> PageReadGuard<'_> {
        let meta = &self.shared.frames[self.frame as usize];
        // A pinned frame keeps its tag and is VALID or ORPHAN: it can only be busy.
        while meta.lock_shared_in(self.page, true) != Acquire::Acquired {
            meta.wait_while(|s| s & EXCLUSIVE != 0);
        }
        PageReadGuard {
            shared: self.shared,
            frame: self.frame,
            bytes: self.shared.frame_ptr(self.frame),
            len: self.shared.page_size,
        }
    }

    /// Exclusive access to the bytes (waits for readers and write-back); marks the page dirty.
    pub fn write(&self) -> PageWriteGuard<'_> {
        let meta = &self.shared.frames[self.frame as usize];
        while meta.lock_exclusive_in(self.page, true) != Acquire::Acquired {
            meta.wait_while(|s| s & (EXCLUSIVE | READERS_MASK | WRITEBACK) != 0);
        }
        PageWriteGuard {
            shared: self.shared,
            frame: self.frame,
            page: self.page,
            bytes: self.shared.frame_ptr(self.frame),
        }
    }

    /// Marks the page dirty (the seed's `update_page`).
    pub fn mark_dirty(&self) {
        drop(self.write());
    }
}

impl Drop for PinnedPage<'_> {
    fn drop(&mut self) {
        let r = self.shared.frames[self.frame as usize].unpin();
        self.shared.released(self.frame, r);
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<PageCache>();
    let _ = readers;
    let _ = PageState::Free;
}
