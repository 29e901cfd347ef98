//! Reads and writes of bytes that are in the cache right now, never waiting and never loading:
//! for servers that carry out hits inline and send everything else to threads that may block.
//!
//! Owns: [`PageCache::try_read_range`] (zero-copy guards) and [`PageCache::try_write_range`].
//! Does not own: loading, waiting, write-back, or the guards themselves (`guards.rs`). Never
//! blocks: every hold is a single compare-and-swap that gives up when the page is busy.

use crate::engine::{checked_end, in_file, Dirty, ExclusiveHold, Probe, Took};
use crate::error::Result;
use crate::page::READAHEAD;
use crate::readahead::Waited;
use crate::stats::Counter;
use crate::sync::Ordering;

use super::{PageCache, PageReadGuard};

impl PageCache {
    /// Zero-copy read guards on the bytes `offset .. offset + len` (one guard per page, in
    /// order), only if every page is cached and up to date right now: never waits and never
    /// loads. `Ok(None)` means some page is absent or busy (being loaded or written), and the
    /// caller should take the blocking path, e.g. on another thread. For servers that answer
    /// hits inline, straight from the cache's memory, and send misses elsewhere. A page that
    /// carries a readahead marker starts the next window, as a `read_at` would.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
    /// cache.write_all_at(&[7u8; 6000], 0)?;
    /// let held = cache.try_read_range(100, 5000)?.expect("written pages are cached");
    /// assert_eq!(held.iter().map(|g| g.len()).sum::<usize>(), 5000);
    /// drop(held); // held pages are never evicted
    /// cache.evict_range(0..8192)?;
    /// assert!(cache.try_read_range(100, 5000)?.is_none());
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn try_read_range(
        &self,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<PageReadGuard<'_>>>> {
        let s = &*self.engine;
        let end = checked_end(offset, len)?;
        in_file(offset, end, s.len())?;
        let mut guards = Vec::with_capacity(len.div_ceil(s.page_size) + 1);
        let mut pos = offset;
        // Bounded: one pass per page of the range.
        while pos < end {
            let (p, in_page) = (pos >> s.page_shift, (pos & s.page_mask()) as usize);
            let n = (s.page_size - in_page).min((end - pos) as usize);
            let Probe::Held(held) = s.try_shared(p, in_page..in_page + n) else {
                return Ok(None); // the guards taken so far are released on return
            };
            let meta = &s.frames[held.frame() as usize];
            if meta.state() & READAHEAD != 0 && meta.take_readahead_mark() {
                let jobs = s.readahead.on_marker(p, s.npages(), Waited::No);
                s.readahead.dispatch(jobs, false);
            }
            guards.push(PageReadGuard::new(held, in_page..in_page + n));
            pos += n as u64;
        }
        // As in `read_at`: a truncation may have run since the length was checked.
        in_file(offset, end, s.len())?;
        Ok(Some(guards))
    }

    /// Writes `buf` at `offset` only if that needs no waiting at all: every page cached and up
    /// to date, nobody holding it, no write-back of it in flight, and the dirty pages below the
    /// limit at which writers are throttled. `Ok(false)` means nothing was written and the
    /// caller should take the blocking path ([`write_all_at`](Self::write_all_at)), e.g. on
    /// another thread. The write is all or nothing: every page's exclusive hold is taken before
    /// any byte is copied. It never grows the file ([`Error::OutOfRange`](crate::Error)).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use folio::{CacheConfig, MemoryBackend, PageCache};
    ///
    /// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
    /// cache.write_all_at(&[0u8; 8192], 0)?;
    /// assert!(cache.try_write_range(b"inline", 4093)?); // two cached pages
    /// let mut got = [0u8; 6];
    /// cache.read_exact_at(&mut got, 4093)?;
    /// assert_eq!(&got, b"inline");
    /// cache.sync()?;
    /// cache.evict_range(0..8192)?;
    /// assert!(!cache.try_write_range(b"x", 0)?); // not cached: nothing written
    /// # Ok::<(), folio::Error>(())
    /// ```
    pub fn try_write_range(&self, buf: &[u8], offset: u64) -> Result<bool> {
        let s = &*self.engine;
        let end = checked_end(offset, buf.len())?;
        in_file(offset, end, s.len())?;
        if buf.is_empty() {
            return Ok(true);
        }
        // A writer at the dirty limit would be throttled (`balance_dirty`): not inline.
        let wb = &s.wb;
        if wb.ctl.running.load(Ordering::Relaxed)
            && s.dirty_now() + wb.in_flight.load(Ordering::Acquire) >= wb.limit_pages
        {
            return Ok(false);
        }
        let (first, last) = (offset >> s.page_shift, (end - 1) >> s.page_shift);
        // Holds taken without waiting (so holding several cannot deadlock); dropping the
        // vector gives them all back untouched.
        let mut held: Vec<ExclusiveHold<'_>> = Vec::with_capacity((last - first + 1) as usize);
        // Bounded: one pass per page of the range.
        for p in first..=last {
            let Some(f) = s.index.lookup(p, &s.frames) else {
                return Ok(false);
            };
            match s.acquire_exclusive(f, p, false) {
                Took::Held(h) => held.push(h),
                Took::Not(_) => return Ok(false),
            }
        }
        // As in `read_at`: a truncation may have run since the length was checked.
        in_file(offset, end, s.len())?;
        let mut done = 0usize;
        let pages = held.len() as u64;
        for (i, mut h) in held.into_iter().enumerate() {
            let p = first + i as u64;
            let pos = offset + done as u64;
            let in_page = (pos & s.page_mask()) as usize;
            let n = (s.page_size - in_page).min(buf.len() - done);
            h.bytes_mut()[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            s.zero_past_end(p, &mut h);
            s.policy.on_hit(h.frame());
            h.release(Dirty::Yes);
            done += n;
        }
        debug_assert_eq!(done, buf.len());
        s.counters.add(Counter::Hits, pages);
        s.counters.add(Counter::WriteCalls, 1);
        Ok(true)
    }
}
