//! SIEVE: one FIFO queue, a visited bit per page and a hand that sweeps from the oldest page
//! toward the newest, clearing visited bits and evicting the first unvisited page.
//!
//! Source: Y. Zhang, J. Yang, Y. Yue, Y. Vigfusson, K. V. Rashmi, "SIEVE is Simpler than LRU: an
//! Efficient Turn-Key Eviction Algorithm for Web Caches", NSDI 2024. Semantics follow
//! libCacheSim's `Sieve` (new pages at the head with the bit clear; the hand survives between
//! evictions and wraps from the head back to the tail); it reproduces libCacheSim's row exactly
//! on the reference trace.
//!
//! Unlike CLOCK, survivors are not moved: new pages enter at the head, behind the hand, so a page
//! that survived a sweep stays among the old pages and a new unvisited page is evicted at the
//! next sweep ("quick demotion"). Hits are one relaxed byte load and, if the bit was clear, one
//! relaxed store: no lock. Eviction, insertion and removal take a mutex.
//!
//! A candidate the cache refuses (pinned) is passed over; each call examines at most
//! `2 * len + 1` candidates (one sweep clears every bit, the second finds any claimable page).
//!
//! Metadata: 8 bytes of links + 1 visited byte + 1 resident byte per frame.
//!
//! When not to use it: it is not scan-resistant in the way a ghost-based policy is (a long scan
//! of new pages evicts unvisited hot pages the hand reaches), and on block traces with small
//! caches it can lose to LRU (1% row of the reference table); prefer S3-FIFO there.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::sync::Mutex;

use super::list::{Links, List, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// SIEVE. See the [module docs](self).
#[derive(Debug)]
pub struct Sieve {
    visited: Box<[AtomicU8]>,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    links: Links,
    list: List,
    resident: Box<[bool]>,
    /// Next candidate; `NIL` means "start from the tail".
    hand: u32,
}

impl Sieve {
    /// SIEVE over `capacity` frames.
    pub fn new(capacity: usize) -> Sieve {
        Sieve {
            visited: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            inner: Mutex::new(Inner {
                links: Links::new(capacity),
                list: List::new(),
                resident: vec![false; capacity].into_boxed_slice(),
                hand: NIL,
            }),
        }
    }
}

impl Inner {
    fn unlink(&mut self, frame: FrameId) {
        if self.hand == frame {
            self.hand = self.links.newer(frame);
        }
        self.links.unlink(&mut self.list, frame);
        self.resident[frame as usize] = false;
    }
}

impl EvictionPolicy for Sieve {
    fn name(&self) -> &'static str {
        "sieve"
    }

    fn capacity(&self) -> usize {
        self.visited.len()
    }

    fn len(&self) -> usize {
        self.inner.lock().list.len
    }

    fn contains(&self, frame: FrameId) -> bool {
        let inner = self.inner.lock();
        inner.resident.get(frame as usize).copied().unwrap_or(false)
    }

    #[inline]
    fn on_hit(&self, frame: FrameId) {
        if let Some(v) = self.visited.get(frame as usize) {
            if v.load(Ordering::Relaxed) == 0 {
                v.store(1, Ordering::Relaxed);
            }
        }
    }

    fn on_insert(&self, frame: FrameId, _page: PageKey, _admission: Admission) {
        let mut inner = self.inner.lock();
        if frame as usize >= inner.resident.len() {
            return;
        }
        if inner.resident[frame as usize] {
            inner.unlink(frame);
        }
        inner.resident[frame as usize] = true;
        let Inner { links, list, .. } = &mut *inner;
        links.push_head(list, frame);
        self.visited[frame as usize].store(0, Ordering::Relaxed);
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        if inner.resident.get(frame as usize).copied().unwrap_or(false) {
            inner.unlink(frame);
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        if inner.list.len == 0 {
            return None;
        }
        let mut cand = if inner.hand == NIL {
            inner.list.tail
        } else {
            inner.hand
        };
        for _ in 0..2 * inner.list.len + 1 {
            if cand == NIL {
                cand = inner.list.tail;
            }
            let v = &self.visited[cand as usize];
            if v.load(Ordering::Relaxed) != 0 {
                v.store(0, Ordering::Relaxed);
            } else if claim(cand) {
                inner.hand = inner.links.newer(cand);
                inner.unlink(cand);
                return Some(cand);
            }
            cand = inner.links.newer(cand);
        }
        inner.hand = cand;
        None
    }

    fn metadata_bytes_per_page(&self) -> usize {
        <Links>::BYTES_PER_FRAME + 2
    }
}
