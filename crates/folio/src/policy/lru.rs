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

use parking_lot::Mutex;

use super::list::{Links, List, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// Least-recently-used. See the [module docs](self).
#[derive(Debug)]
pub struct Lru {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    links: Links,
    list: List,
    resident: Box<[bool]>,
}

impl Lru {
    /// LRU over `capacity` frames.
    pub fn new(capacity: usize) -> Lru {
        Lru {
            capacity,
            inner: Mutex::new(Inner {
                links: Links::new(capacity),
                list: List::new(),
                resident: vec![false; capacity].into_boxed_slice(),
            }),
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
        let inner = self.inner.lock();
        inner.resident.get(frame as usize).copied().unwrap_or(false)
    }

    fn on_hit(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        let Inner {
            links,
            list,
            resident,
        } = &mut *inner;
        if resident.get(frame as usize).copied().unwrap_or(false) {
            links.move_to_head(list, frame);
        }
    }

    fn on_insert(&self, frame: FrameId, _page: PageKey, _admission: Admission) {
        let mut inner = self.inner.lock();
        let Inner {
            links,
            list,
            resident,
        } = &mut *inner;
        let Some(r) = resident.get_mut(frame as usize) else {
            return;
        };
        if *r {
            links.move_to_head(list, frame);
        } else {
            *r = true;
            links.push_head(list, frame);
        }
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        let Inner {
            links,
            list,
            resident,
        } = &mut *inner;
        if let Some(r) = resident.get_mut(frame as usize) {
            if *r {
                *r = false;
                links.unlink(list, frame);
            }
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        let Inner {
            links,
            list,
            resident,
        } = &mut *inner;
        for _ in 0..list.len {
            let cand = list.tail;
            if cand == NIL {
                break;
            }
            if claim(cand) {
                links.unlink(list, cand);
                resident[cand as usize] = false;
                return Some(cand);
            }
            // Pinned: it is in use, so it is the most recently used page.
            links.move_to_head(list, cand);
        }
        None
    }

    fn metadata_bytes_per_page(&self) -> usize {
        <Links>::BYTES_PER_FRAME + 1
    }
}
