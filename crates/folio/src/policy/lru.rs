//! LRU: evict the page whose last use is oldest.
//!
//! Source: the classic stack algorithm; R. L. Mattson, J. Gecsei, D. R. Slutz, I. L. Traiger,
//! "Evaluation techniques for storage hierarchies", IBM Systems Journal 9(2), 1970. Reproduces
//! libCacheSim's `LRU` exactly (see the reference table in `shared/traces/README.md`).
//!
//! An intrusive doubly linked list over frame ids (two `u32` per frame). A hit moves the frame to
//! the head, so **`on_hit` takes the policy's mutex**: every hit on every thread serialises on
//! one lock and writes shared list nodes. That is why it is not Folio's default.
//!
//! A candidate the cache refuses (pinned) is treated as just used: it moves to the head and the
//! next-oldest page is offered; each call offers every resident page at most once.
//!
//! Metadata: 8 bytes of links + 1 byte resident flag per frame.
//!
//! When not to use it: concurrent hit-heavy workloads (the lock), and any workload with scans
//! or loops larger than the cache (a scan flushes the whole hot set; see the scan test).

use crate::sync::Mutex;

use super::list::{ResidentList, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// Least-recently-used. See the [module docs](self).
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    inner: Mutex<ResidentList>,
}

impl Lru {
    /// LRU over `capacity` frames.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            inner: Mutex::new(ResidentList::new(capacity)),
        }
    }
}

impl EvictionPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
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

    fn on_hit(&self, frame: FrameId) {
        self.inner.lock().touch(frame);
    }

    fn on_insert(&self, frame: FrameId, _page: PageKey, _admission: Admission) {
        self.inner.lock().insert(frame);
    }

    fn on_remove(&self, frame: FrameId) {
        self.inner.lock().remove(frame);
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for _ in 0..inner.list.len {
            let cand = inner.list.tail;
            if cand == NIL {
                break;
            }
            if claim(cand) {
                inner.remove(cand);
                return Some(cand);
            }
            // Pinned: it is in use, so it is the most recently used page.
            inner.links.move_to_head(&mut inner.list, cand);
        }
        None
    }

    fn metadata_bytes_per_page(&self) -> usize {
        ResidentList::BYTES_PER_FRAME
    }
}
