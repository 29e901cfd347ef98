//! LIRS: Low Inter-reference Recency Set. Pages re-referenced at short distances (LIR, 99% of
//! the frames) are kept; the rest (HIR, a 1% queue) are evicted first, while the recency stack
//! remembers recently evicted HIR pages (non-resident entries) so that one coming back soon
//! becomes LIR at once. Loops and scans larger than the cache, where LRU keeps nothing, keep
//! the LIR set.
//!
//! Source: S. Jiang, X. Zhang, "LIRS: An Efficient Low Inter-reference Recency Set Replacement
//! Policy to Improve Buffer Cache Performance", SIGMETRICS 2002. The semantics follow libCacheSim
//! 0.3.5's `LIRS` (stack S of LIR, resident HIR and non-resident HIR entries; queue Q of
//! resident HIR pages; HIR share 1% with at least one page; S bounded to twice the cache by
//! dropping the oldest non-resident entries), to reproduce its reference rows, including its
//! quirks:
//! * a hit on a resident HIR page that has left S (only in Q) demotes S's bottom LIR page to Q,
//!   which evicts Q's oldest page *during the hit*, and puts the page back in S as HIR, leaving
//!   the LIR set one short until the next new page;
//! * a miss on a non-resident HIR page moves its entry to the top of S before anything else.
//!
//! The frame interface forces one difference in form: the victim is chosen before the missing
//! page is known, so the eviction always takes Q's oldest page, and the LIR demotion a
//! returning non-resident page causes runs at its insertion; libCacheSim does the demotion
//! first, but the demoted page goes to Q's newest end, so Q's oldest page (the victim) is the
//! same. A page evicted during a hit cannot free its frame then: it leaves the policy and waits
//! in `pending` for the next miss, whose frame it becomes (libCacheSim's next miss finds a free
//! slot and evicts nothing, so the state is the same). Only hits on such a page before that
//! differ (libCacheSim: a miss; here: a hit, after which the states agree again). With a
//! one-page Q (caches under 200 pages) libCacheSim can evict the very page being hit and keep it
//! in S as resident; here it is evicted: the 1% rows differ there (see the tests).
//!
//! # Concurrency
//! Hits go through hit buffers (`hitbuf.rs`) (no lock, no locked instruction), drained in order under the
//! mutex by every other operation, as for W-TinyLFU.
//!
//! Metadata per frame: key 8, flags 1, Q links 8, S links 8; non-resident entries (up to about
//! one per frame) cost their links, key and a hash-map slot, about 40 bytes each: about 65 bytes
//! per page. A reference policy, not Folio's default.
//!
//! When not to use it: concurrent hit-heavy workloads where list maintenance under the lock
//! shows (hits are buffered but still applied under it), and memory-tight caches (its
//! non-resident entries).

use std::collections::VecDeque;

use crate::sync::{Mutex, MutexGuard};

use super::hash::KeyMap;
use super::hitbuf::HitBuffers;
use super::list::{Links, List, NIL};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// Frame flags.
const IN_S: u8 = 1;
const IN_Q: u8 = 2;
const LIR: u8 = 4;

/// A growable doubly linked list over node ids (`[newer, older]` per node), for stack S (frames
/// and non-resident entries) and the non-resident list.
#[derive(Debug)]
struct Chain {
    link: Vec<[u32; 2]>,
    head: u32,
    tail: u32,
    len: usize,
}

impl Chain {
    fn new(nodes: usize) -> Chain {
        Chain {
            link: vec![[NIL, NIL]; nodes],
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    fn ensure(&mut self, node: u32) {
        if node as usize >= self.link.len() {
            self.link.resize(node as usize + 1, [NIL, NIL]);
        }
    }

    fn push_head(&mut self, i: u32) {
        self.ensure(i);
        self.link[i as usize] = [NIL, self.head];
        if self.head != NIL {
            self.link[self.head as usize][0] = i;
        } else {
            self.tail = i;
        }
        self.head = i;
        self.len += 1;
    }

    fn unlink(&mut self, i: u32) {
        let [n, o] = self.link[i as usize];
        if n != NIL {
            self.link[n as usize][1] = o;
        } else {
            self.head = o;
        }
        if o != NIL {
            self.link[o as usize][0] = n;
        } else {
            self.tail = n;
        }
        self.link[i as usize] = [NIL, NIL];
        self.len -= 1;
    }

    fn move_to_head(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_head(i);
        }
    }

    /// Puts `new` (in no list) in `old`'s place; `old` leaves.
    fn replace(&mut self, old: u32, new: u32) {
        self.ensure(new);
        let [n, o] = self.link[old as usize];
        self.link[new as usize] = [n, o];
        if n != NIL {
            self.link[n as usize][1] = new;
        } else {
            self.head = new;
        }
        if o != NIL {
            self.link[o as usize][0] = new;
        } else {
            self.tail = new;
        }
        self.link[old as usize] = [NIL, NIL];
    }

    fn newer(&self, i: u32) -> u32 {
        self.link[i as usize][0]
    }
}

/// LIRS. See the [module docs](self).
#[derive(Debug)]
pub struct Lirs {
    capacity: usize,
    hits: HitBuffers,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    lirs_limit: usize,
    hirs_limit: usize,
    lirs_count: usize,
    hirs_count: usize,
    flags: Box<[u8]>,
    keys: Box<[PageKey]>,
    /// Stack S over node ids: frames `0 .. capacity`, non-resident entries above.
    s: Chain,
    /// Queue Q of resident HIR frames.
    q_links: Links,
    q: List,
    /// Non-resident entries: node id by key, key by node id (minus `capacity`), their list in
    /// the order they became non-resident (`nh`), and free node ids.
    ghost_of: KeyMap<u32>,
    ghost_key: Vec<PageKey>,
    nh: Chain,
    free_ghosts: Vec<u32>,
    /// Frames evicted during hits, to hand out at the next misses.
    pending: VecDeque<FrameId>,
}

/// The resident HIR queue's limit for a cache of `capacity` frames: 1% of them, at least one.
fn hirs_limit(capacity: usize) -> usize {
    ((0.01 * capacity as f64) as usize).max(1)
}

impl Lirs {
    /// LIRS over `capacity` frames with libCacheSim's 1% HIR share.
    pub fn new(capacity: usize) -> Lirs {
        assert!(
            capacity < (NIL as usize) / 4,
            "LIRS manages fewer than 2^30 frames"
        );
        let hirs_limit = hirs_limit(capacity);
        Lirs {
            capacity,
            hits: HitBuffers::new(capacity),
            inner: Mutex::new(Inner {
                capacity,
                lirs_limit: capacity.saturating_sub(hirs_limit),
                hirs_limit,
                lirs_count: 0,
                hirs_count: 0,
                flags: vec![0; capacity].into_boxed_slice(),
                keys: vec![0; capacity].into_boxed_slice(),
                s: Chain::new(capacity),
                q_links: Links::new(capacity),
                q: List::new(),
                ghost_of: KeyMap::default(),
                ghost_key: Vec::new(),
                nh: Chain::new(0),
                free_ghosts: Vec::new(),
                pending: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        self.drain(&mut inner);
        inner
    }

    fn drain(&self, inner: &mut Inner) {
        self.hits.drain(|f| {
            inner.hit(f);
            #[cfg(debug_assertions)]
            inner.check("hit");
        });
    }
}

impl Inner {
    fn is_ghost(&self, node: u32) -> bool {
        node as usize >= self.capacity
    }

    #[cfg(debug_assertions)]
    fn check(&self, at: &str) {
        let n = self
            .flags
            .iter()
            .filter(|&&f| f & (IN_S | IN_Q) != 0)
            .count();
        assert_eq!(
            n + self.pending.len(),
            self.resident(),
            "{at}: {:?}",
            self.flags
        );
    }

    /// Resident pages: LIR, resident HIR (all in Q) and pending.
    fn resident(&self) -> usize {
        self.lirs_count + self.hirs_count + self.pending.len()
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.flags
            .get(frame as usize)
            .is_some_and(|&f| f & (IN_S | IN_Q) != 0)
            || self.pending.contains(&frame)
    }

    fn new_ghost(&mut self, key: PageKey) -> u32 {
        let node = match self.free_ghosts.pop() {
            Some(n) => {
                self.ghost_key[n as usize - self.capacity] = key;
                n
            }
            None => {
                self.ghost_key.push(key);
                (self.capacity + self.ghost_key.len() - 1) as u32
            }
        };
        self.ghost_of.insert(key, node);
        node
    }

    fn free_ghost(&mut self, node: u32) {
        let key = self.ghost_key[node as usize - self.capacity];
        self.ghost_of.remove(&key);
        self.free_ghosts.push(node);
    }

    /// Drops HIR entries from the bottom of S until its bottom is LIR (never the top entry).
    fn prune(&mut self) {
        while self.s.tail != NIL && self.s.tail != self.s.head {
            let t = self.s.tail;
            if self.is_ghost(t) {
                self.nh.unlink(t);
                self.s.unlink(t);
                self.free_ghost(t);
            } else {
                if self.flags[t as usize] & LIR != 0 {
                    break;
                }
                self.s.unlink(t);
                self.flags[t as usize] &= !IN_S;
            }
        }
    }

    /// Q's page `f` (claimed) leaves the cache; its S entry, if any, becomes non-resident.
    fn evict_hir(&mut self, f: FrameId) {
        debug_assert!(self.flags[f as usize] & IN_Q != 0);
        self.q_links.unlink(&mut self.q, f);
        self.hirs_count -= 1;
        if self.flags[f as usize] & IN_S != 0 {
            let g = self.new_ghost(self.keys[f as usize]);
            self.s.replace(f, g);
            self.nh.push_head(g);
        }
        self.flags[f as usize] = 0;
    }

    /// S's bottom LIR page becomes resident HIR at Q's newest end (evicting Q's oldest into
    /// `pending` if Q is full); then S is pruned.
    fn evict_lir(&mut self) {
        // S's bottom is LIR after a prune, except when the top entry alone is HIR; then the
        // lowest LIR page goes (libCacheSim would take whatever is at the bottom, even a
        // non-resident entry, which a frame cannot model).
        self.prune();
        let mut f = self.s.tail;
        while f != NIL && (self.is_ghost(f) || self.flags[f as usize] & LIR == 0) {
            f = self.s.newer(f);
        }
        if f == NIL {
            debug_assert_eq!(self.lirs_count, 0);
            return;
        }
        self.s.unlink(f);
        self.lirs_count -= 1;
        self.flags[f as usize] = 0;
        while self.hirs_count + 1 > self.hirs_limit && self.q.tail != NIL {
            let v = self.q.tail;
            self.evict_hir(v);
            self.pending.push_back(v);
        }
        self.q_links.push_head(&mut self.q, f);
        self.flags[f as usize] = IN_Q;
        self.hirs_count += 1;
        self.prune();
    }

    /// libCacheSim's `limitStack`: S holds at most twice the cache.
    fn limit_stack(&mut self) {
        while self.s.len > 2 * self.capacity {
            let g = self.nh.tail;
            if g == NIL {
                break;
            }
            self.nh.unlink(g);
            self.s.unlink(g);
            self.free_ghost(g);
        }
    }

    fn hit(&mut self, f: FrameId) {
        let Some(&fl) = self.flags.get(f as usize) else {
            return;
        };
        if fl & (IN_S | IN_Q) == 0 {
            if let Some(i) = self.pending.iter().position(|&p| p == f) {
                // Evicted during a hit: libCacheSim's next access to it is a miss that
                // re-inserts it without an eviction (its slot is free).
                self.pending.remove(i);
                let key = self.keys[f as usize];
                self.insert(f, key, Admission::Demand);
            }
            return;
        }
        if fl & IN_S != 0 {
            self.s.move_to_head(f);
            if fl & IN_Q != 0 {
                self.q_links.move_to_head(&mut self.q, f);
            }
            if fl & LIR != 0 {
                self.prune();
            } else {
                // A resident HIR page in S becomes LIR.
                if fl & IN_Q != 0 {
                    self.q_links.unlink(&mut self.q, f);
                    self.hirs_count -= 1;
                    self.flags[f as usize] &= !IN_Q;
                }
                while self.lirs_count + 1 > self.lirs_limit && self.lirs_count > 0 {
                    self.evict_lir();
                }
                self.flags[f as usize] |= LIR;
                self.lirs_count += 1;
            }
        } else {
            // A resident HIR page only in Q: libCacheSim's `hit_RD_HIRinQ`.
            self.q_links.move_to_head(&mut self.q, f);
            while self.lirs_count + 1 > self.lirs_limit && self.lirs_count > 0 {
                self.evict_lir();
            }
            if self.flags[f as usize] & IN_Q != 0 {
                self.s.push_head(f);
                self.flags[f as usize] |= IN_S;
            }
        }
        self.limit_stack();
    }

    fn insert(&mut self, f: FrameId, key: PageKey, admission: Admission) {
        if f as usize >= self.capacity {
            return;
        }
        self.remove(f);
        self.keys[f as usize] = key;
        let ghost = match admission {
            Admission::Demand => self.ghost_of.get(&key).copied(),
            // Readahead does not prove reuse: it enters as resident HIR, S untouched.
            _ => None,
        };
        if let Some(g) = ghost {
            // A non-resident HIR page comes back: to the top of S, room in the LIR set, LIR.
            self.s.move_to_head(g);
            while self.lirs_count + 1 > self.lirs_limit && self.lirs_count > 0 {
                self.evict_lir();
            }
            self.nh.unlink(g);
            self.s.replace(g, f);
            self.free_ghost(g);
            self.flags[f as usize] = IN_S | LIR;
            self.lirs_count += 1;
        } else if admission == Admission::Demand && self.lirs_count < self.lirs_limit {
            self.s.push_head(f);
            self.flags[f as usize] = IN_S | LIR;
            self.lirs_count += 1;
        } else {
            if admission == Admission::Demand {
                self.s.push_head(f);
                self.flags[f as usize] = IN_S | IN_Q;
            } else {
                self.flags[f as usize] = IN_Q;
            }
            self.q_links.push_head(&mut self.q, f);
            self.hirs_count += 1;
        }
        self.limit_stack();
    }

    /// Forgets `f` wherever it is.
    fn remove(&mut self, f: FrameId) {
        let fl = self.flags[f as usize];
        if fl & IN_Q != 0 {
            self.q_links.unlink(&mut self.q, f);
            self.hirs_count -= 1;
        }
        if fl & IN_S != 0 {
            self.s.unlink(f);
            if fl & LIR != 0 {
                self.lirs_count -= 1;
                self.prune();
            }
        }
        self.flags[f as usize] = 0;
        if let Some(i) = self.pending.iter().position(|&p| p == f) {
            self.pending.remove(i);
        }
    }

    fn choose(&mut self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        // Pages libCacheSim evicted during hits first, then Q oldest first, then LIR pages
        // from the bottom of S.
        let mut order: Vec<FrameId> = Vec::new();
        let first = self.pending.front().copied().or_else(|| {
            let t = self.q.tail;
            (t != NIL).then_some(t)
        });
        if let Some(f) = first {
            if claim(f) {
                self.take(f);
                return Some(f);
            }
            order.push(f);
        }
        // Slow path (the first candidate is pinned): every page once.
        let mut cands: Vec<FrameId> = self.pending.iter().copied().collect();
        let mut f = self.q.tail;
        while f != NIL {
            cands.push(f);
            f = self.q_links.newer(f);
        }
        let mut n = self.s.tail;
        while n != NIL {
            if !self.is_ghost(n) && self.flags[n as usize] & IN_Q == 0 {
                cands.push(n);
            }
            n = self.s.newer(n);
        }
        let victim = cands
            .into_iter()
            .filter(|f| !order.contains(f))
            .find(|&f| claim(f))?;
        self.take(victim);
        Some(victim)
    }

    /// Claimed frame `f` leaves: as Q's eviction (its S entry turns non-resident) if it is in
    /// Q, else simply forgotten.
    fn take(&mut self, f: FrameId) {
        if let Some(i) = self.pending.iter().position(|&p| p == f) {
            self.pending.remove(i);
        } else if self.flags[f as usize] & IN_Q != 0 {
            self.evict_hir(f);
        } else {
            self.remove(f);
        }
    }
}

impl EvictionPolicy for Lirs {
    fn name(&self) -> &'static str {
        "lirs"
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    /// A new page is a resident HIR page and leaves with the HIR queue's oldest once more than
    /// its limit (1% of the frames, fixed) are there, unless hit first.
    fn eviction_window(&self) -> usize {
        hirs_limit(self.capacity)
    }

    fn len(&self) -> usize {
        self.inner.lock().resident()
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.inner.lock().contains(frame)
    }

    #[inline]
    fn on_hit(&self, frame: FrameId) {
        self.hits.record_or(frame, || {
            if let Some(mut inner) = self.inner.try_lock() {
                self.drain(&mut inner);
            }
        });
    }

    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission) {
        let mut inner = self.lock();
        #[cfg(debug_assertions)]
        inner.check("before insert");
        inner.insert(frame, page, admission);
        #[cfg(debug_assertions)]
        inner.check("insert");
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.lock();
        if (frame as usize) < self.capacity {
            inner.remove(frame);
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        self.lock().choose(claim)
    }

    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let mut inner = self.lock();
        let victim = inner.choose(claim)?;
        inner.insert(victim, page, admission);
        Some(victim)
    }

    fn metadata_bytes_per_page(&self) -> usize {
        let inner = self.inner.lock();
        let ghosts = inner.ghost_key.capacity().max(self.capacity);
        let bytes = self.capacity * (8 + 1 + <Links>::BYTES_PER_FRAME)
            + inner.s.link.capacity().max(self.capacity + ghosts) * 8
            + ghosts * (8 + 8 + 16)
            + self.hits.bytes();
        bytes.div_ceil(self.capacity.max(1))
    }
}
