//! Range operations: resize, zero, discard, and dropping clean pages.
//!
//! Owns the rules that keep data right when a range leaves the cache while other operations
//! run, in particular against write-backs already in flight (a write-back's extent is fixed when
//! it is submitted, and its bytes land whenever the device gets to it):
//! - a page leaves the index (becomes an orphan) only when no write-back of it is in flight,
//!   and none can start afterwards (write-back begins only on a `VALID` page), so no write of a
//!   dropped page lands after the operation returns (`FrameMeta::orphan`);
//! - a shrink cuts the backend *after* the write-backs of the pages it drops have landed, so a
//!   late write cannot bring truncated bytes back, and loads zero every byte past the cache's
//!   length, so a page read while the backend still held them is zeros there;
//! - a shrink keeps the new partial last page in the cache while it cuts (`keep_tail`): marked
//!   under write-back, so a discard waits for it instead of dropping it and letting a reader
//!   load the bytes being cut again;
//! - ranges are cut at the length the call started with: pages appended meanwhile are outside.
//!
//! May block: on loads and write-backs in flight (I/O, which never waits for anything here),
//! and `resize` on the holders of the partial last page, before it takes any lock.

use std::ops::Range;

use crate::sync::Ordering;

use super::{DirtyCount, Engine, ExclusiveHold, Extend, Fill, Took};
use crate::error::{Error, Result};
use crate::page::{kind, Orphaned, DIRTY, FREE, LOADING, VALID, WRITEBACK};
use crate::policy::FrameId;

impl Engine {
    /// Sets the length. A shrink drops the pages past the new end and zeroes the rest of the
    /// partial last page; a growth reads as zeros.
    pub(crate) fn resize(&self, new_len: u64) -> Result<()> {
        // Bounded: a pass ends the call unless the length changed between its two looks (an
        // extending write or another resize won the size lock), and then it plans again.
        loop {
            let planned = self.len();
            if new_len >= planned {
                let _g = self.size_lock.lock();
                if self.len() != planned {
                    continue;
                }
                if new_len > planned {
                    self.grow_locked(new_len)?;
                }
                return Ok(());
            }
            // The partial last page is held first, with no lock: its holders (a guard held
            // across an append, say) must be able to finish. While we hold it, nobody can
            // read its stale tail nor write it back.
            let mut tail = if new_len & self.page_mask() != 0 {
                Some(self.get_exclusive(new_len >> self.page_shift, Fill::Read, 1)?)
            } else {
                None
            };
            let g = self.size_lock.lock();
            if self.len() != planned || !self.keep_tail(tail.as_ref()) {
                // The length changed, or a discard dropped the tail page we hold while we
                // waited for the lock (and someone may have loaded it again): plan again.
                // Nothing was changed yet. (Each pass that starts over lost to an operation
                // that completed.)
                continue;
            }
            let result = self.shrink_locked(new_len, tail.as_mut());
            if let Some(t) = &tail {
                t.set_writeback(false);
            }
            drop(g);
            return result;
        }
    }

    /// Under the size lock: makes sure the shrink's hold on the new partial last page is the
    /// page in the cache, and keeps it there until the shrink is over. The page is marked
    /// under write-back (the shrink is about to cut the backend under it, and zero its tail),
    /// so that a discard or a hole punched over it waits as for any write-back instead of
    /// dropping it; both marks and drops are read-modify-writes of its state word, so either the
    /// drop came first and we see it here (false: start over), or it waits for us. Without
    /// this a page read again after such a drop, still holding the bytes past the new end,
    /// would stay cached while the shrink zeroed the tail of the dropped copy.
    fn keep_tail(&self, tail: Option<&ExclusiveHold<'_>>) -> bool {
        let Some(t) = tail else {
            return true;
        };
        t.set_writeback(true);
        if kind(t.state()) == VALID {
            return true;
        }
        t.set_writeback(false);
        false
    }

    /// Grows the file to `end` (the caller holds the size lock).
    pub(crate) fn grow_locked(&self, end: u64) -> Result<()> {
        let len = self.len();
        debug_assert!(end > len);
        if self.truncate_pending.load(Ordering::Acquire) {
            // A shrink left stale bytes past `len` in the backend: cut them before they would
            // become readable.
            self.backend.set_len(len)?;
            self.truncate_pending.store(false, Ordering::Release);
        }
        self.backend.set_len(end)?;
        self.len.store(end, Ordering::Release);
        Ok(())
    }

    /// The shrink, under the size lock, with the partial last page (if any) held in `tail`.
    fn shrink_locked(&self, new_len: u64, tail: Option<&mut ExclusiveHold<'_>>) -> Result<()> {
        // Fails before anything changed, or cuts the backend now: writes submitted from here on
        // are cut at the new length.
        self.backend.set_len(new_len)?;
        self.len.store(new_len, Ordering::Release);
        // Writes submitted earlier may still land past the end (and extend the backend again):
        // drop the pages past the end once their write-backs have landed, then cut again.
        self.discard_pages(new_len.div_ceil(self.page_size as u64)..u64::MAX);
        match self.backend.set_len(new_len) {
            Ok(()) => {
                self.data_end.fetch_min(new_len, Ordering::AcqRel);
            }
            Err(e) => {
                // The next growth cuts it first (see `grow_locked`), and a sync does or fails
                // (`cut_pending`).
                self.truncate_pending.store(true, Ordering::Release);
                tracing::warn!(error = %e, "could not cut the backend after a shrink; retried by the next sync or growth");
            }
        }
        if let Some(h) = tail {
            self.zero_past_end(new_len >> self.page_shift, h);
        }
        Ok(())
    }

    /// Makes `range` read as zeros (see [`PageCache::zero_range`](crate::PageCache::zero_range)).
    pub(crate) fn zero_range(&self, range: Range<u64>) -> Result<()> {
        let ps = self.page_size as u64;
        // One look at the length: what lies past it was appended meanwhile, outside the range.
        let end = range.end.min(self.len());
        if range.start >= end {
            return Ok(());
        }
        // Whole pages `first..last`; the partial pages at the edges go through the cache.
        let (first, last) = (range.start.div_ceil(ps), end / ps);
        if first >= last {
            return self.zero_through_cache(range.start, end);
        }
        if !self.punch_hole(first..last)? {
            self.zero_through_cache(first * ps, last * ps)?;
        }
        self.zero_through_cache(range.start, first * ps)?;
        self.zero_through_cache(last * ps, end)
    }

    /// Zeroes the whole pages `pages` in the backend and drops them from the cache; false if the
    /// backend cannot (then nothing changed). The range is fenced meanwhile (see `fence.rs`):
    /// no load reads it and no write-back writes it, and the write-backs already in flight
    /// land before the hole is punched, so no byte from before can land after it. If the
    /// backend fails, dirty pages keep their data, clean ones are dropped or, if held, marked
    /// dirty (`drop_clean_after_loads`), and the error is returned.
    fn punch_hole(&self, pages: Range<u64>) -> Result<bool> {
        let ps = self.page_size as u64;
        let _fence = self.fences.raise(pages.clone());
        // A load checks the fences under the index lock: one that checked before the raise is
        // in the index once we have had the lock.
        drop(self.index.lock());
        // Pairs with `fenced_after_writeback_began`: a write-back that began before the raise
        // is seen under write-back below, one that begins after sees the fence.
        crate::sync::fence(Ordering::SeqCst);
        for (key, f) in self.resident(pages.clone(), |s| s & WRITEBACK != 0) {
            let meta = &self.frames[f as usize];
            let busy = |s: u64| meta.tag() == key && s & WRITEBACK != 0;
            // Bounded by the write in flight (`wait_while` returns after a re-check interval).
            while busy(meta.state()) {
                meta.wait_while(busy);
            }
        }
        match self
            .backend
            .write_zeroes(pages.start * ps, (pages.end - pages.start) * ps)
        {
            Ok(()) => {
                // Loads in flight read from before the hole: drop them too, once loaded.
                self.discard_pages(pages);
                Ok(true)
            }
            Err(Error::Unsupported(_)) => Ok(false),
            Err(e) => {
                // The backend may have zeroed part of the range before it failed (an object
                // store's zeroing whose answer was lost): the clean pages cached may no longer
                // be what it holds. Drop them, once the loads in flight have ended, so that
                // every later read shows the backend's bytes; dirty pages keep their data.
                self.drop_clean_after_loads(pages);
                Err(e)
            }
        }
    }

    /// Drops the clean pages in `pages` that nobody holds, once the loads of them in flight
    /// have ended (the caller fenced the range: no load starts meanwhile), and marks dirty the
    /// clean pages that readers or pins hold: they cannot be dropped (a pin may still write
    /// through its page), and their bytes may no longer be the backend's, so they are written
    /// back once the fence lifts, and reads stay what they were (review 4: a pinned page kept
    /// the old bytes clean, and read zeros once evicted, with no write in between). A page held
    /// `EXCLUSIVE` is being written: its writer leaves it dirty.
    fn drop_clean_after_loads(&self, pages: Range<u64>) {
        for (key, f) in self.resident(pages.clone(), |s| kind(s) == LOADING) {
            let meta = &self.frames[f as usize];
            let busy = |s: u64| meta.tag() == key && kind(s) == LOADING;
            // Bounded by the load in flight (`wait_while` returns after a re-check interval).
            while busy(meta.state()) {
                meta.wait_while(busy);
            }
        }
        self.drop_clean(pages.clone());
        for (key, f) in self.resident(pages, |s| kind(s) == VALID && s & DIRTY == 0) {
            // A reader hold pins the frame to `key`; refused if a writer holds or awaits it.
            if let Took::Held(h) = self.acquire_shared(f, key, false) {
                if self.frames[f as usize].mark_dirty_shared() {
                    self.count_dirty(DirtyCount::Dirtied);
                }
                drop(h);
            }
        }
    }

    /// Writes zeros over `start..end` through the cache, never past the end of the file.
    fn zero_through_cache(&self, start: u64, end: u64) -> Result<()> {
        let zeros = vec![0u8; self.page_size];
        let mut pos = start;
        // Bounded by the range: each pass writes at least one byte or stops at the end of the file.
        while pos < end {
            let n = ((end - pos) as usize).min(self.page_size - (pos & self.page_mask()) as usize);
            if self.write_bytes(&zeros[..n], pos, Extend::No)? == 0 {
                break;
            }
            pos += n as u64;
        }
        Ok(())
    }

    /// Drops the pages wholly inside `range` without writing them back (see
    /// [`PageCache::discard_range`](crate::PageCache::discard_range)).
    pub(crate) fn discard_range(&self, range: Range<u64>) {
        let ps = self.page_size as u64;
        let len = self.len();
        let end = range.end.min(len);
        let (first, last) = (range.start.div_ceil(ps), end / ps);
        if first < last {
            self.discard_pages(first..last);
            // No write-back of them is in flight any more: the backend may forget their
            // failures (the cache's own record of them still reaches the next sync).
            self.backend.discarded(first * ps, (last - first) * ps);
        }
        // The partial last page is wholly inside if the range reaches the end of the file, but
        // only while the file is not grown past it (an append would put bytes there).
        let tail = len / ps;
        if range.end >= len && len % ps != 0 && tail >= first {
            let _g = self.size_lock.lock();
            if self.len() == len {
                self.discard_pages(tail..tail + 1);
                self.backend.discarded(tail * ps, ps);
            }
        }
    }

    /// Drops the clean pages in `pages` that nobody holds.
    pub(crate) fn drop_clean(&self, pages: Range<u64>) {
        for (key, f) in self.resident(pages, |s| kind(s) == VALID && s & DIRTY == 0) {
            let Some(held) = self.acquire_unheld(f) else {
                continue;
            };
            // The tag is stable only now that we hold the frame.
            if self.frames[f as usize].tag() != key || held.state() & DIRTY != 0 {
                continue;
            }
            {
                let mut g = self.index.lock();
                self.index.remove(&mut g, key, f, &self.frames);
                self.policy.on_remove(f);
            }
            held.free();
        }
    }

    /// Drops the pages in `pages` without writing them back. Held pages become orphans (their
    /// holders finish with them; the last one frees the frame). A page being loaded or under
    /// write-back is dropped once that I/O has ended, so no write of it lands afterwards.
    pub(crate) fn discard_pages(&self, pages: Range<u64>) {
        for (key, f) in self.resident(pages, |s| kind(s) != FREE) {
            self.discard_page(key, f);
        }
    }

    fn discard_page(&self, key: u64, f: FrameId) {
        let meta = &self.frames[f as usize];
        let busy = |s: u64| meta.tag() == key && (kind(s) == LOADING || s & WRITEBACK != 0);
        // Bounded: each pass drops the page, finds it gone, or waits for an I/O of it to end.
        loop {
            let mut g = self.index.lock();
            if self.index.lookup(key, &self.frames) != Some(f) {
                return;
            }
            if busy(meta.state()) {
                drop(g);
                meta.wait_while(busy);
                continue;
            }
            match meta.orphan() {
                // A write-back began since we looked: wait for it.
                Orphaned::WritebackInFlight => continue,
                Orphaned::Done {
                    was_dirty,
                    released,
                } => {
                    // Forget it in the policy before the frame can be reused.
                    self.policy.on_remove(f);
                    self.index.remove(&mut g, key, f, &self.frames);
                    drop(g);
                    if was_dirty {
                        self.count_dirty(DirtyCount::Cleaned);
                    }
                    self.released(f, released);
                    return;
                }
            }
        }
    }
}
