//! ARC: Adaptive Replacement Cache. Two LRU lists of resident pages — T1 (seen once recently) and
//! T2 (seen at least twice) — and two ghost lists of keys — B1 and B2 — recently evicted from
//! each; a ghost hit in B1 grows T1's target `p`, one in B2 shrinks it.
//!
//! Source: N. Megiddo, D. S. Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache",
//! FAST 2003 (Fig. 4). Differences forced by Folio's interface, where the victim is chosen before
//! the missing page's key is known: REPLACE takes from T1 when `|T1| > p` (the paper also does
//! when `|T1| = p` and the key is in B2), and `p` adapts when the page is inserted, just after
//! the eviction rather than before it. The directory bounds are kept (`|T1| + |B1| <= c`,
//! total `<= 2c`) by trimming ghosts on insertion. libCacheSim's ARC differs in details too; its
//! reference row is not reproduced exactly.
//!
//! **`on_hit` takes the policy's mutex** (a hit moves the page to T2's head).
//!
//! A candidate the cache refuses (pinned) moves to the head of its list; each call offers every
//! resident page at most once.
//!
//! Metadata per frame: 8 bytes of links, 1 list tag, 8 bytes of key; plus two ghost lists of up
//! to `c` key fingerprints each at about 11 bytes per entry (see `ghost.rs`): 40 bytes per page
//! in all.
//!
//! When not to use it: concurrent hit-heavy workloads (the lock on every hit); and small caches
//! on block traces, where its adaptation is slow and it loses to LRU (1% row of the reference
//! table). ARC is also encumbered by an IBM patent in some jurisdictions (US 6,996,676, expired
//! 2024): check before shipping it elsewhere.

use crate::sync::Mutex;

use super::ghost::{fingerprint, Ghost};
use super::list::{Links, List, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

const NONE: u8 = 0;
const T1: u8 = 1;
const T2: u8 = 2;

/// ARC. See the [module docs](self).
#[derive(Debug)]
pub struct Arc {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    links: Links,
    t1: List,
    t2: List,
    tag: Box<[u8]>,
    keys: Box<[PageKey]>,
    b1: Ghost,
    b2: Ghost,
    /// Target size of T1.
    p: usize,
}

impl Arc {
    /// ARC over `capacity` frames.
    pub fn new(capacity: usize) -> Arc {
        Arc {
            capacity,
            inner: Mutex::new(Inner {
                links: Links::new(capacity),
                t1: List::new(),
                t2: List::new(),
                tag: vec![NONE; capacity].into_boxed_slice(),
                keys: vec![0; capacity].into_boxed_slice(),
                b1: Ghost::new(capacity),
                b2: Ghost::new(capacity),
                p: 0,
            }),
        }
    }
}

impl Inner {
    fn unlink(&mut self, frame: FrameId) {
        match self.tag[frame as usize] {
            T1 => self.links.unlink(&mut self.t1, frame),
            T2 => self.links.unlink(&mut self.t2, frame),
            _ => return,
        }
        self.tag[frame as usize] = NONE;
    }

    fn push(&mut self, frame: FrameId, which: u8) {
        let list = if which == T1 {
            &mut self.t1
        } else {
            &mut self.t2
        };
        self.links.push_head(list, frame);
        self.tag[frame as usize] = which;
    }

    fn insert(&mut self, c: usize, frame: FrameId, page: PageKey, admission: Admission) {
        if frame as usize >= self.tag.len() {
            return;
        }
        self.unlink(frame);
        self.keys[frame as usize] = page;
        let demand = admission == Admission::Demand;
        let (b1, b2) = (self.b1.len().max(1), self.b2.len().max(1));
        if demand && self.b1.remove(fingerprint(page)) {
            self.p = (self.p + (b2 / b1).max(1)).min(c);
            self.push(frame, T2);
        } else if demand && self.b2.remove(fingerprint(page)) {
            self.p = self.p.saturating_sub((b1 / b2).max(1));
            self.push(frame, T2);
        } else {
            self.push(frame, T1);
            while self.t1.len + self.b1.len() > c && self.b1.pop_oldest() {}
        }
        while self.t1.len + self.t2.len + self.b1.len() + self.b2.len() > 2 * c {
            if !self.b2.pop_oldest() && !self.b1.pop_oldest() {
                break;
            }
        }
    }

    fn choose(&mut self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let first = if self.t1.len > 0 && (self.t1.len > self.p || self.t2.len == 0) {
            T1
        } else {
            T2
        };
        let second = if first == T1 { T2 } else { T1 };
        self.try_list(first, claim)
            .or_else(|| self.try_list(second, claim))
    }

    /// Offers the pages of one list, oldest first; refused ones move to its head.
    fn try_list(&mut self, which: u8, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let n = if which == T1 {
            self.t1.len
        } else {
            self.t2.len
        };
        for _ in 0..n {
            let list = if which == T1 {
                &mut self.t1
            } else {
                &mut self.t2
            };
            let cand = list.tail;
            if cand == NIL {
                break;
            }
            if claim(cand) {
                self.unlink(cand);
                let key = self.keys[cand as usize];
                if which == T1 {
                    self.b1.insert(fingerprint(key));
                } else {
                    self.b2.insert(fingerprint(key));
                }
                return Some(cand);
            }
            self.links.move_to_head(list, cand);
        }
        None
    }
}

impl EvictionPolicy for Arc {
    fn name(&self) -> &'static str {
        "arc"
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.t1.len + inner.t2.len
    }

    fn contains(&self, frame: FrameId) -> bool {
        let inner = self.inner.lock();
        inner.tag.get(frame as usize).is_some_and(|&t| t != NONE)
    }

    fn on_hit(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        match inner.tag.get(frame as usize).copied() {
            Some(T1) => {
                inner.unlink(frame);
                inner.push(frame, T2);
            }
            Some(T2) => {
                let Inner { links, t2, .. } = &mut *inner;
                links.move_to_head(t2, frame);
            }
            _ => {}
        }
    }

    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission) {
        self.inner
            .lock()
            .insert(self.capacity, frame, page, admission);
    }

    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        let victim = inner.choose(claim)?;
        inner.insert(self.capacity, victim, page, admission);
        Some(victim)
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        if frame as usize >= inner.tag.len() {
            return;
        }
        inner.unlink(frame);
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        self.inner.lock().choose(claim)
    }

    fn metadata_bytes_per_page(&self) -> usize {
        let capacity = self.capacity.max(1);
        <Links>::BYTES_PER_FRAME + 1 + 8 + (2 * Ghost::bytes_for(self.capacity)).div_ceil(capacity)
    }
}
