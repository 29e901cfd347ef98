//! [`PageCache`]: byte-addressed reads and writes over a backend, within a fixed memory budget.
//!
//! This is the facade: the public API, its argument checks and its documentation. The work is
//! done by the engine (`crate::engine`), which this module drives and which never calls back up.

mod guards;
mod resident;
mod sync_handle;

pub use crate::config::{Budget, CacheConfig, FRAMES_MAX, PAGE_SIZE_MAX, PAGE_SIZE_MIN};
pub use guards::{PageReadGuard, PageWriteGuard, PinnedPage};
pub use sync_handle::SyncHandle;

use std::ops::Range;
use std::sync::Arc;

use crate::backend::PageCacheBackend;
use crate::engine::{checked_end, in_file, prefetch, Engine, Fill, Probe};
use crate::error::{Error, Result};
use crate::page::{FrameMeta, PageState};
use crate::page_no::PageNo;
use crate::readahead::Advice;
use crate::stats::Stats;
use crate::sync::Ordering;
use crate::writeback::Writeback;

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
    engine: Arc<Engine>,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageCache")
            .field("len", &self.len())
            .field("page_size", &self.engine.page_size)
            .field("frames", &self.engine.frames.len())
            .field("policy", &self.engine.policy.name())
            .finish()
    }
}

impl PageCache {
    /// A cache over `backend` with the given configuration. Allocates every frame up front.
    pub fn new(backend: Arc<dyn PageCacheBackend>, config: CacheConfig) -> Result<PageCache> {
        Ok(PageCache {
            engine: Engine::new(backend, config)?,
        })
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The page size in bytes.
    pub fn page_size(&self) -> usize {
        self.engine.page_size
    }

    /// The number of frames (the budget in pages).
    pub fn capacity_pages(&self) -> usize {
        self.engine.frames.len()
    }

    /// The logical length in bytes.
    pub fn len(&self) -> u64 {
        self.engine.len.load(Ordering::Acquire)
    }

    /// True if the length is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn PageCacheBackend> {
        &self.engine.backend
    }

    /// The name of the eviction policy in use.
    pub fn policy_name(&self) -> &'static str {
        self.engine.policy.name()
    }

    /// Reads up to `buf.len()` bytes at `offset`, like [`std::os::unix::fs::FileExt::read_at`]:
    /// fewer at the end of the file, 0 at or past it.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.engine.read_at(buf, offset)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with [`Error::OutOfRange`].
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = checked_end(offset, buf.len())?;
        in_file(offset, end, self.len())?;
        let n = self.engine.read_at(buf, offset)?;
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
    /// [`queue_depth`](crate::backend::Geometry::queue_depth), and at most half the frames):
    /// one thread gets the device's queue depth, as `fio --iodepth` does, without a thread per
    /// read.
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
        self.engine.read_many(reads)
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
        self.engine.write_at(buf, offset)
    }

    /// Writes all of `buf` at `offset` (the same as [`write_at`](Self::write_at), which never
    /// writes less).
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.engine.write_at(buf, offset).map(|_| ())
    }

    /// Sets the length: shrinking drops cached pages past the end and zeroes the tail of the last
    /// partial page; growing reads as zeros.
    pub fn resize(&self, new_len: u64) -> Result<()> {
        self.engine.resize(new_len)
    }

    /// Writes back the dirty pages that overlap `range` (bytes) and keeps them cached: the seed's
    /// `evict_range`. Reports a write-back failure since the last report (see
    /// [`sync`](Self::sync)); a failure reported here is reported again by the next `sync`,
    /// since a flush does not make data durable.
    pub fn flush_range(&self, range: Range<u64>) -> Result<()> {
        // Everyone's failures since the last report, then this call's own (whose report
        // another thread may have taken meanwhile).
        let own = self
            .engine
            .flush_pages(self.engine.pages_overlapping(&range));
        self.engine.check_errors()?;
        own
    }

    /// Writes back the pages overlapping `range`, then drops those nobody holds. Reports
    /// failures as [`flush_range`](Self::flush_range) does; a page that could not be written
    /// back stays cached (dirty).
    pub fn evict_range(&self, range: Range<u64>) -> Result<()> {
        let pages = self.engine.pages_overlapping(&range);
        let own = self.engine.flush_pages(pages.clone());
        self.engine.drop_clean(pages);
        self.engine.check_errors()?;
        own
    }

    /// Drops the pages that lie wholly inside `range` (cut at the length the file has when the
    /// call starts) without writing them back: their unsaved changes are lost and the next read
    /// sees the backend's bytes. Partial pages at the edges are left alone; the partial last
    /// page of the file counts as whole if the range reaches the end and the file is not grown
    /// meanwhile. Pages still held by a guard leave the cache at once and are freed on release.
    /// A page whose write-back is in flight is dropped once that write has landed, so no write
    /// of a dropped page lands after the call.
    pub fn discard_range(&self, range: Range<u64>) -> Result<()> {
        self.engine.discard_range(range);
        Ok(())
    }

    /// Makes `range` (cut at the length the file has when the call starts) read as zeros:
    /// partial pages are zeroed in the cache, whole pages are written back if dirty, zeroed in
    /// the backend (hole punching where it can, zero pages otherwise) and dropped. If it fails,
    /// the whole pages read as before (as far as the backend's own failure allows) and the
    /// error is returned.
    pub fn zero_range(&self, range: Range<u64>) -> Result<()> {
        self.engine.zero_range(range)
    }

    /// Writes back every dirty page and makes the backend durable (`fdatasync`). Returns an error
    /// if this or any earlier write-back failed since the last `flush_range`/`sync` reported one:
    /// each failure is reported once (Linux's errseq), and the failed pages stay dirty for a retry.
    pub fn sync(&self) -> Result<()> {
        self.sync_range(0..u64::MAX)
    }

    /// Writes back the dirty pages overlapping `range`, then makes the backend durable.
    pub fn sync_range(&self, range: Range<u64>) -> Result<()> {
        let s = &self.engine;
        s.sync_with(&range, &s.cursor)
    }

    /// An access hint on the byte range, after `posix_fadvise(2)`: [`Advice::Sequential`] reads
    /// ahead from the first miss with a larger window, [`Advice::Random`] never reads ahead,
    /// [`Advice::Normal`] detects streams again, [`Advice::WillNeed`] loads the range in the
    /// background now (up to the cache's capacity) and [`Advice::DontNeed`] writes it back and
    /// drops it ([`evict_range`](Self::evict_range)).
    pub fn advise(&self, range: Range<u64>, advice: Advice) -> Result<()> {
        let s = &*self.engine;
        let end = range.end.min(s.len());
        if range.start >= end {
            return Ok(());
        }
        let pages = s.pages_overlapping(&(range.start..end));
        match advice {
            Advice::Normal | Advice::Sequential | Advice::Random | Advice::Clustered => {
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
    ///
    /// If writing back or syncing fails, nothing is closed: the [`CloseError`] holds the cache,
    /// with its dirty pages, so the caller can retry (or read the data out) instead of losing it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
    /// cache.write_all_at(b"bytes", 0)?;
    /// let mut cache = Some(cache);
    /// for _attempt in 0..3 {
    ///     match cache.take().map(PageCache::close) {
    ///         Some(Err(failed)) => cache = Some(failed.into_cache()), // retry later
    ///         _ => break,
    ///     }
    /// }
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn close(self) -> std::result::Result<(), CloseError> {
        let s = &self.engine;
        match s.close_with(&s.cursor) {
            Ok(()) => Ok(()),
            Err(error) => Err(CloseError { error, cache: self }),
        }
    }

    /// A read guard on page `page` (loading it if needed): zero-copy access to its bytes. While
    /// it lives the page is not evicted and not written.
    pub fn read_page(&self, page: impl Into<PageNo>) -> Result<PageReadGuard<'_>> {
        let idx = page.into().get();
        let s = &*self.engine;
        s.check_page(idx)?;
        Ok(PageReadGuard::new(s.get_shared(idx, 1)?, 0..s.page_size))
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
        let s = &*self.engine;
        let end = s.check_slice(offset, len, s.len())?;
        let in_page = (offset & s.page_mask()) as usize;
        let held = s.get_shared_prefetch(offset >> s.page_shift, 1, in_page..in_page + len)?;
        // As in `read_at`: a truncation may have run since the length was checked.
        in_file(offset, end, s.len())?;
        Ok(PageReadGuard::new(held, in_page..in_page + len))
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
        let s = &*self.engine;
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
                let held = match c.map(|f| s.hold_found(f, p)) {
                    Some(Probe::Held(h)) => h,
                    // Busy, gone, or not there: the usual path waits or loads.
                    _ => s.get_shared_prefetch(p, 1, in_page..in_page + len)?,
                };
                // Held from here on: released with the guard, also on an error below.
                guards.push(PageReadGuard::new(held, in_page..in_page + len));
                // As in `read_at`: a truncation may have run since the length was checked.
                in_file(offset, checked_end(offset, len)?, s.len())?;
            }
        }
        Ok(guards)
    }

    /// A write guard on page `page` (loading it if needed); the page is dirty when it is
    /// dropped.
    pub fn write_page(&self, page: impl Into<PageNo>) -> Result<PageWriteGuard<'_>> {
        let idx = page.into().get();
        let s = &*self.engine;
        s.check_page(idx)?;
        Ok(PageWriteGuard::new(
            s,
            s.get_exclusive(idx, Fill::Read, 1)?,
            idx,
        ))
    }

    /// Pins page `page` (loading it if needed): it stays resident until the pin is dropped.
    pub fn pin_page(&self, page: impl Into<PageNo>) -> Result<PinnedPage<'_>> {
        let idx = page.into().get();
        let s = &*self.engine;
        s.check_page(idx)?;
        let frame = s.get_pinned(idx)?;
        Ok(PinnedPage {
            engine: s,
            frame,
            page: idx,
        })
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        self.engine.stats().with_old_names()
    }

    /// Checks the cache's invariants (for tests; see docs/design.md): every frame is free (and
    /// on the free list), quarantined, or valid and indexed under its page and known to the
    /// policy; nothing is loading, under write-back or held; the dirty counter counts the dirty
    /// frames; cached bytes past the end of the file are zero. Call it when none of your own
    /// operations is running and no guard or pin is alive: it waits for a flusher round or
    /// readahead job in progress, and holds new ones back while it looks. Returns the
    /// violations found.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.engine
            .check_invariants(crate::engine::Held { holds: false })
    }

    /// The state of page `page` if it is resident (for tests and debugging).
    pub fn page_state(&self, page: impl Into<PageNo>) -> Option<PageState> {
        let idx = page.into().get();
        let s = &*self.engine;
        let _g = s.index.lock();
        let f = s.index.lookup(idx, &s.frames)?;
        Some(PageState::from_word(s.frames[f as usize].state()))
    }

    /// Bytes of metadata the cache keeps beside the page data (frame table, index, policy, free
    /// list), for the memory-overhead figure.
    pub fn metadata_bytes(&self) -> usize {
        let s = &*self.engine;
        let frames = s.frames.len();
        frames * std::mem::size_of::<FrameMeta>()
            + s.index.bytes()
            + frames * s.policy.metadata_bytes_per_page()
            + s.free.lock().bytes()
            + frames * Writeback::BYTES_PER_PAGE
            + frames * crate::backend::Region::LENT_BYTES_PER_SLOT
    }
}

impl Drop for PageCache {
    fn drop(&mut self) {
        // Best effort flush and sync, stop and join the flusher; logs what could not be written.
        let s = &self.engine;
        s.readahead.shutdown();
        s.drop_with(&s.cursor);
        // Debug builds (every test of the workspace) check the whole cache's invariants at
        // the end of its life: no guard or pin can be alive (they borrow the cache), the
        // flusher and readahead are stopped, so it is at rest.
        #[cfg(debug_assertions)]
        if !std::thread::panicking() {
            if let Err(e) = self.check_invariants() {
                panic!("the cache's invariants are broken at drop: {e}");
            }
        }
    }
}

/// A [`PageCache::close`] that failed: the error, and the cache itself, still open with its
/// dirty pages, to retry or to read the data out of.
pub struct CloseError {
    error: Error,
    cache: PageCache,
}

impl CloseError {
    /// What went wrong.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The cache, to retry [`close`](PageCache::close) or to read what it still holds.
    pub fn into_cache(self) -> PageCache {
        self.cache
    }

    /// The error alone; dropping the cache flushes and syncs once more on a best-effort basis
    /// and logs what it still could not write.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl std::fmt::Debug for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for CloseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "closing the cache failed (it is still open): {}",
            self.error
        )
    }
}

impl std::error::Error for CloseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<CloseError> for Error {
    fn from(e: CloseError) -> Error {
        e.into_error()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<PageCache>();
}
