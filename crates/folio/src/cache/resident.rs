//! Zero-copy guards on bytes that are in the cache right now, never waiting and never loading:
//! for servers that answer hits inline and send misses elsewhere.
//!
//! Owns: [`PageCache::try_read_range`]. Does not own: loading, waiting, or the guards
//! themselves (`guards.rs`). Never blocks.

use crate::engine::{checked_end, in_file, Probe};
use crate::error::Result;
use crate::page::READAHEAD;
use crate::readahead::Waited;

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
            let Probe::Held(f) = s.try_shared(p, in_page..in_page + n) else {
                return Ok(None); // the guards taken so far are released on return
            };
            let meta = &s.frames[f as usize];
            if meta.state() & READAHEAD != 0 && meta.take_readahead_mark() {
                let jobs = s.readahead.on_marker(p, s.npages(), Waited::No);
                s.readahead.dispatch(jobs, false);
            }
            guards.push(PageReadGuard {
                engine: s,
                frame: f,
                bytes: s.frame_ptr(f).wrapping_add(in_page),
                len: n,
            });
            pos += n as u64;
        }
        // As in `read_at`: a truncation may have run since the length was checked.
        in_file(offset, end, s.len())?;
        Ok(Some(guards))
    }
}
