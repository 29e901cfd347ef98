//! Fences: page ranges whose content is being replaced behind the cache (`zero_range` punching
//! a hole in the backend), which no load may read and no write-back may write meanwhile.
//!
//! Why: a page read from the backend before the hole is punched, or a dirty page that still
//! holds bytes from before it, must not reach the backend after it: its old bytes would come
//! back (found by the simulation, seed 254 as it drew policies before the adaptive default;
//! pinned since by the deterministic tests in docs/design.md's fence row: a partial write loaded page 1, the hole was punched,
//! then the page's eviction wrote the old bytes back). While a range is fenced, loads of its
//! pages wait, write-backs of its pages wait (a flush) or skip them (the background flusher,
//! eviction), and the fence's owner, once the loads and write-backs already in flight have
//! ended, can replace the content and drop the cached pages.
//!
//! Owns the list of fenced ranges (at most one per concurrent `zero_range` call) and the
//! condition variable its waiters block on. May block: `wait` (until the fence lifts).

use std::ops::Range;

use crate::sync::{AtomicU64, Condvar, Mutex, Ordering};

/// The fenced ranges of one cache.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    /// How many ranges are fenced: the fast path of every check is one load of this.
    active: AtomicU64,
    ranges: Mutex<Vec<Range<u64>>>,
    lifted: Condvar,
}

/// A fence over a page range; lifted on drop.
pub(crate) struct Fence<'a> {
    fences: &'a Fences,
    pages: Range<u64>,
}

impl Fences {
    /// Fences `pages` until the returned guard drops.
    pub(crate) fn raise(&self, pages: Range<u64>) -> Fence<'_> {
        let mut ranges = self.ranges.lock();
        ranges.push(pages.clone());
        self.active.fetch_add(1, Ordering::AcqRel);
        Fence {
            fences: self,
            pages,
        }
    }

    /// True if page `p` is fenced now.
    #[inline]
    pub(crate) fn covers(&self, p: u64) -> bool {
        if self.active.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ranges.lock().iter().any(|r| r.contains(&p))
    }

    /// Waits until page `p` is no longer fenced.
    pub(crate) fn wait(&self, p: u64) {
        let mut ranges = self.ranges.lock();
        // Bounded: each fence is lifted when its owner's I/O ends.
        while ranges.iter().any(|r| r.contains(&p)) {
            ranges = self.lifted.wait(ranges);
        }
    }
}

impl Drop for Fence<'_> {
    fn drop(&mut self) {
        let mut ranges = self.fences.ranges.lock();
        let i = ranges
            .iter()
            .position(|r| *r == self.pages)
            .expect("a raised fence is in the list");
        ranges.swap_remove(i);
        self.fences.active.fetch_sub(1, Ordering::AcqRel);
        drop(ranges);
        self.fences.lifted.notify_all();
    }
}
