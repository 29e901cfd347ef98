//! FIFO: evict the page that entered the cache first; hits change nothing.
//!
//! Source: L. A. Belady, "A study of replacement algorithms for a virtual-storage computer",
//! IBM Systems Journal 5(2), 1966 (FIFO as a baseline). Reproduces libCacheSim's `FIFO` exactly.
//!
//! An intrusive list over frame ids in insertion order. `on_hit` does nothing at all (no lock, no
//! store), which makes FIFO the cheapest policy on the hit path. A candidate the cache refuses
//! (pinned) keeps its place; the next-oldest page is offered instead, each resident page at most
//! once per call.
//!
//! Metadata: 8 bytes of links + 1 byte resident flag per frame.
//!
//! When not to use it: whenever there is any reuse worth keeping: FIFO ignores hits, so hot pages
//! are evicted on schedule, and a scan flushes the cache like LRU. It is a baseline and the
//! building block of S3-FIFO, not a policy to deploy.

use crate::sync::Mutex;

use super::list::{ResidentList, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// First-in, first-out. See the [module docs](self).
#[derive(Debug)]
pub struct Fifo {
    capacity: usize,
    inner: Mutex<ResidentList>,
}

impl Fifo {
    /// FIFO over `capacity` frames.
    pub fn new(capacity: usize) -> Fifo {
        Fifo {
            capacity,
            inner: Mutex::new(ResidentList::new(capacity)),
        }
    }
}

impl EvictionPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn len(&self) -> usize {
        self.inner.lock().list.len
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.inner.lock().contains(frame)
    }

    fn on_hit(&self, _frame: FrameId) {}

    fn on_insert(&self, frame: FrameId, _page: PageKey, _admission: Admission) {
        self.inner.lock().insert(frame);
    }

    fn on_remove(&self, frame: FrameId) {
        self.inner.lock().remove(frame);
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let mut cand = inner.list.tail;
        while cand != NIL {
            if claim(cand) {
                inner.remove(cand);
                return Some(cand);
            }
            cand = inner.links.newer(cand);
        }
        None
    }

    fn metadata_bytes_per_page(&self) -> usize {
        ResidentList::BYTES_PER_FRAME
    }
}
