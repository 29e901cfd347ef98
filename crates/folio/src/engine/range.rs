use std::ops::Range;

use crate::sync::Ordering;

use super::Engine;
use crate::error::{Error, Result};
use crate::page::{kind, Acquire, DIRTY, EXCLUSIVE, FREE, LOADING, READERS_MASK, VALID, WRITEBACK};

impl Engine {
    pub(crate) fn resize(&self, new_len: u64) -> Result<()> {
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
    pub(crate) fn zero_tail(&self, p: u64) {
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

    pub(crate) fn zero_range(&self, range: Range<u64>) -> Result<()> {
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

    pub(crate) fn write_zeroes_through_cache(&self, start: u64, end: u64) -> Result<()> {
        let zeros = vec![0u8; self.page_size];
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(self.page_size - (pos & self.page_mask()) as usize);
            self.write_at(&zeros[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Drops the clean pages in `pages` that nobody holds.
    pub(crate) fn drop_clean(&self, pages: Range<u64>) {
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
    pub(crate) fn discard_pages(&self, pages: Range<u64>) {
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
}
