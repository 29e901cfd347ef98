//! Adaptive read-around for random reads with locality (`Advice::Clustered`).
//!
//! Owns: the size of the cluster a miss outside any sequential stream loads, and how it
//! adapts. A miss at page `p` loads the aligned cluster around it: `p` to the cluster's end
//! with the miss's own read (one I/O instead of one per page), and the cluster's start up to
//! `p` in the background, the first of those pages marked. A reader that reaches a marked page
//! proves the cluster's neighbours were wanted (hits never reach the readahead code otherwise);
//! a marker still unreached once the clusters loaded after it add up to the cache's capacity
//! has most likely been evicted unused. Every 32 clusters so judged decide: at least half of
//! them reached, the cluster doubles (up to 64 KiB, nbdkit's cache block); under an eighth, it
//! halves, down to a single page (read-around off), where every 32nd miss still probes a
//! 4-page cluster so that locality coming back is seen. Truly random access over more than the
//! cache can hold reaches few markers, so it soon stops reading around.
//!
//! Does not own: sequential streams or the background workers (`readahead/`), loading
//! (the engine). Never blocks beyond its own short mutex.

use std::collections::{HashSet, VecDeque};
use std::ops::Range;

use crate::sync::Mutex;

/// Largest cluster in bytes.
const CLUSTER_MAX_BYTES: usize = 64 << 10;
/// Clusters between two decisions.
const EPOCH: u32 = 32;
/// Markers remembered at most (about 100 KiB): a cache of more than this many largest
/// clusters judges a marker unreached a little early.
const RECENT_MAX: usize = 4096;
/// Markers remembered at least, so that a tiny cache still judges by more than a few.
const RECENT_MIN: usize = 64;
/// Cluster tried now and then while read-around is off.
const PROBE_PAGES: usize = 4;

struct State {
    /// Current cluster in pages (1: off).
    pages: usize,
    /// Clusters judged in this epoch: markers reached, and markers that aged out unreached.
    reached: u32,
    wasted: u32,
    /// Misses while off, for probing.
    off_misses: u32,
    /// Marked pages of recent clusters, oldest first, and the same as a set.
    order: VecDeque<u64>,
    marks: HashSet<u64>,
}

/// The read-around state of one cache.
pub(crate) struct ReadAround {
    max_pages: usize,
    /// Markers remembered: about a cache's capacity of clusters.
    recent: usize,
    state: Mutex<State>,
}

/// What a miss should load.
pub(crate) struct Cluster {
    /// Pages to read from the missed page on, with the miss's own read.
    pub(crate) run: usize,
    /// Pages before the missed page to load in the background (the first one marked).
    pub(crate) before: Option<Range<u64>>,
}

impl ReadAround {
    /// Clusters of at most `max_pages` (further capped to 64 KiB of `page_size` pages), in a
    /// cache of `capacity_pages`.
    pub(crate) fn new(page_size: usize, max_pages: usize, capacity_pages: usize) -> ReadAround {
        let max_pages = (CLUSTER_MAX_BYTES / page_size.max(1)).min(max_pages).max(1);
        let recent = (capacity_pages / max_pages).clamp(RECENT_MIN, RECENT_MAX);
        ReadAround {
            max_pages,
            recent,
            state: Mutex::new(State {
                pages: max_pages,
                reached: 0,
                wasted: 0,
                off_misses: 0,
                order: VecDeque::with_capacity(recent),
                marks: HashSet::with_capacity(recent),
            }),
        }
    }

    /// The cluster for a miss at `p` of `req` pages in a file of `npages` pages, or `None` to
    /// load just the request.
    pub(crate) fn on_miss(&self, p: u64, req: usize, npages: u64) -> Option<Cluster> {
        let mut st = self.state.lock();
        let pages = if st.pages > 1 {
            st.pages
        } else {
            st.off_misses += 1;
            if st.off_misses % EPOCH != 0 || self.max_pages < PROBE_PAGES {
                return None;
            }
            PROBE_PAGES
        };
        debug_assert!(pages <= self.max_pages.max(PROBE_PAGES));
        let start = p / pages as u64 * pages as u64;
        let end = (start + pages as u64).min(npages);
        let run = req.max(end.saturating_sub(p) as usize);
        let before = (start < p).then_some(start..p);
        if before.is_some() {
            // Only clusters with a marker can be judged.
            if st.order.len() == self.recent {
                let old = st.order.pop_front().expect("full");
                if st.marks.remove(&old) {
                    st.wasted += 1; // a cache's worth loaded since, and never reached
                    self.decide(&mut st);
                }
            }
            if st.marks.insert(start) {
                st.order.push_back(start);
            }
        }
        Some(Cluster { run, before })
    }

    /// A reader reached the marked page `m`: true if it was a read-around marker (then counted).
    pub(crate) fn on_marker(&self, m: u64) -> bool {
        let mut st = self.state.lock();
        // Left in `order` until it ages out; the set says whether it still counts.
        if !st.marks.remove(&m) {
            return false;
        }
        st.reached += 1;
        self.decide(&mut st);
        true
    }

    /// After every `EPOCH` judged clusters: grow, shrink or keep the cluster.
    fn decide(&self, st: &mut State) {
        let judged = st.reached + st.wasted;
        if judged < EPOCH {
            return;
        }
        if st.reached * 2 >= judged {
            st.pages = (st.pages.max(PROBE_PAGES / 2) * 2).min(self.max_pages);
        } else if st.reached * 8 < judged {
            st.pages = (st.pages / 2).max(1);
        }
        st.reached = 0;
        st.wasted = 0;
        debug_assert!((1..=self.max_pages.max(1)).contains(&st.pages));
    }

    /// The current cluster in pages (1: off), for tests.
    #[cfg(all(test, not(folio_model)))]
    fn pages(&self) -> usize {
        self.state.lock().pages
    }
}

#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    #[test]
    fn clusters_are_aligned_and_bounded_by_the_file() {
        let ra = ReadAround::new(4096, 256, 1024);
        let c = ra.on_miss(37, 1, 1000).unwrap();
        assert_eq!((c.run, c.before), (11, Some(32..37)));
        let c = ra.on_miss(995, 1, 1000).unwrap();
        assert_eq!((c.run, c.before), (5, Some(992..995)));
        let c = ra.on_miss(48, 1, 1000).unwrap();
        assert_eq!((c.run, c.before), (16, None));
    }

    #[test]
    fn unreached_markers_turn_it_off_and_reached_ones_bring_it_back() {
        let ra = ReadAround::new(4096, 256, 1024);
        assert_eq!(ra.pages(), 16);
        // Random misses far apart whose neighbours nobody reads: it shrinks to one page.
        let mut p = 1u64;
        for _ in 0..10 * EPOCH {
            p = ((p * 7919 + 13) % 1_000_000) | 1;
            ra.on_miss(p, 1, 1 << 20);
        }
        assert_eq!(ra.pages(), 1);
        assert!(
            ra.on_miss(12345, 1, 1 << 20).is_none(),
            "off: just the request"
        );
        // Locality returns (every probe's marker is reached): it grows back to 64 KiB.
        for _ in 0..EPOCH * EPOCH * 8 {
            p = ((p * 7919 + 13) % 1_000_000) | 1;
            if let Some(c) = ra.on_miss(p, 1, 1 << 20) {
                if let Some(b) = c.before {
                    assert!(ra.on_marker(b.start));
                }
            }
        }
        assert_eq!(ra.pages(), 16);
        assert!(!ra.on_marker(3), "not a read-around marker");
    }
}
