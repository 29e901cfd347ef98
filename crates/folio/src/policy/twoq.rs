//! 2Q (full version): a FIFO `A1in` for pages seen once, a ghost FIFO `A1out` of keys evicted from
//! it, and an LRU `Am` for pages re-referenced after leaving `A1in`.
//!
//! Source: T. Johnson, D. Shasha, "2Q: A Low Overhead High Performance Buffer Management
//! Replacement Algorithm", VLDB 1994, with the paper's recommended `Kin = 25%` of the frames and
//! `Kout = 50%` of the frames (in keys).
//!
//! A miss whose key is in `A1out` goes to `Am`'s head; any other miss to `A1in`'s head. A hit in
//! `Am` moves the page to `Am`'s head; a hit in `A1in` changes nothing (correlated references).
//! To evict: from `A1in`'s tail (its key enters `A1out`) while `A1in` holds more than `Kin`
//! pages, else from `Am`'s tail.
//!
//! **`on_hit` takes the policy's mutex** (the LRU move in `Am`).
//!
//! A candidate the cache refuses (pinned) moves to the head of its queue; each call offers every
//! resident page at most once.
//!
//! Metadata per frame: 8 bytes of links, 1 queue tag, 8 bytes of key; plus `A1out` (0.5 key
//! fingerprints per frame at about 11 bytes per entry, see `ghost.rs`): 23 bytes per page in all
//! (rounded up).
//!
//! When not to use it: hit-heavy concurrent workloads (lock per hit), and workloads whose
//! re-references come later than `A1in + A1out` can see (they are treated as new every time).

use crate::sync::Mutex;

use super::ghost::{fingerprint, Ghost};
use super::list::{Links, List, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

const NONE: u8 = 0;
const A1IN: u8 = 1;
const AM: u8 = 2;

/// 2Q. See the [module docs](self).
#[derive(Debug)]
pub struct TwoQ {
    capacity: usize,
    kin: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    links: Links,
    a1in: List,
    am: List,
    tag: Box<[u8]>,
    keys: Box<[PageKey]>,
    a1out: Ghost,
}

impl TwoQ {
    /// 2Q over `capacity` frames with `Kin = 25%`, `Kout = 50%`.
    pub fn new(capacity: usize) -> TwoQ {
        TwoQ {
            capacity,
            kin: (capacity / 4).max(1),
            inner: Mutex::new(Inner {
                links: Links::new(capacity),
                a1in: List::new(),
                am: List::new(),
                tag: vec![NONE; capacity].into_boxed_slice(),
                keys: vec![0; capacity].into_boxed_slice(),
                a1out: Ghost::new(capacity / 2),
            }),
        }
    }
}

impl Inner {
    fn unlink(&mut self, frame: FrameId) {
        match self.tag[frame as usize] {
            A1IN => self.links.unlink(&mut self.a1in, frame),
            AM => self.links.unlink(&mut self.am, frame),
            _ => return,
        }
        self.tag[frame as usize] = NONE;
    }

    fn insert(&mut self, frame: FrameId, page: PageKey, admission: Admission) {
        if frame as usize >= self.tag.len() {
            return;
        }
        self.unlink(frame);
        self.keys[frame as usize] = page;
        let Inner {
            links,
            a1in,
            am,
            tag,
            a1out,
            ..
        } = self;
        if admission == Admission::Demand && a1out.remove(fingerprint(page)) {
            links.push_head(am, frame);
            tag[frame as usize] = AM;
        } else {
            links.push_head(a1in, frame);
            tag[frame as usize] = A1IN;
        }
    }

    fn choose(&mut self, kin: usize, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let (first, second) = if self.a1in.len > kin || self.am.len == 0 {
            (A1IN, AM)
        } else {
            (AM, A1IN)
        };
        self.try_list(first, claim)
            .or_else(|| self.try_list(second, claim))
    }

    fn try_list(&mut self, which: u8, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let n = if which == A1IN {
            self.a1in.len
        } else {
            self.am.len
        };
        for _ in 0..n {
            let list = if which == A1IN {
                &mut self.a1in
            } else {
                &mut self.am
            };
            let cand = list.tail;
            if cand == NIL {
                break;
            }
            if claim(cand) {
                self.unlink(cand);
                if which == A1IN {
                    let key = self.keys[cand as usize];
                    self.a1out.insert(fingerprint(key));
                }
                return Some(cand);
            }
            self.links.move_to_head(list, cand);
        }
        None
    }
}

impl EvictionPolicy for TwoQ {
    fn name(&self) -> &'static str {
        "twoq"
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    /// A page enters A1in and leaves it when more than `Kin` pages are there.
    fn eviction_window(&self) -> usize {
        self.kin
    }

    fn len(&self) -> usize {
        let inner = self.inner.lock();
        inner.a1in.len + inner.am.len
    }

    fn contains(&self, frame: FrameId) -> bool {
        let inner = self.inner.lock();
        inner.tag.get(frame as usize).is_some_and(|&t| t != NONE)
    }

    fn on_hit(&self, frame: FrameId) {
        let mut inner = self.inner.lock();
        if inner.tag.get(frame as usize).copied() == Some(AM) {
            let Inner { links, am, .. } = &mut *inner;
            links.move_to_head(am, frame);
        }
    }

    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission) {
        self.inner.lock().insert(frame, page, admission);
    }

    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let mut inner = self.inner.lock();
        let victim = inner.choose(self.kin, claim)?;
        inner.insert(victim, page, admission);
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
        self.inner.lock().choose(self.kin, claim)
    }

    fn metadata_bytes_per_page(&self) -> usize {
        let capacity = self.capacity.max(1);
        <Links>::BYTES_PER_FRAME + 1 + 8 + Ghost::bytes_for(self.capacity / 2).div_ceil(capacity)
    }
}
