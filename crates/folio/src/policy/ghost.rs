//! Ghost queues: bounded FIFOs of page keys that have left the cache, with O(1) lookup and
//! removal by key, and no allocation after construction (but for the map's own, bounded table).
//!
//! Layout, chosen for the miss path (measured: the first design, a slab with an intrusive list
//! and an exact `key → slot` map, spent 40% of S3-FIFO's replay time in ghost upkeep):
//! * a ring of `2 * capacity` keys in insertion order, with a live bit per position;
//! * a [`KeyMap`] from key to ring position, maintained lazily: expiring the oldest ghost just
//!   clears its live bit (no hashing); a map entry counts only if its position is live and
//!   still holds its key; stale entries are purged in one sequential sweep when the map reaches
//!   `2 * capacity` entries.
//!
//! So a ghost lookup or removal is one map probe, an insertion one map probe plus sequential
//! ring work. Semantics: a FIFO of `capacity` live keys where removing a key frees its place,
//! as libCacheSim's FIFO ghost, except that when half the ring is holes left by removals the
//! oldest live key is dropped early (never happens while fewer than `capacity` removals land
//! within one ring's worth of insertions).

use super::hash::{map_bytes_bound, KeyMap};
use super::PageKey;

#[derive(Debug)]
pub(crate) struct Ghost {
    ring: Box<[PageKey]>,
    live_bits: Box<[u64]>,
    /// Ring position of the oldest entry (live or hole).
    tail: usize,
    /// Ring positions in use, holes included.
    used: usize,
    /// Live entries.
    live: usize,
    capacity: usize,
    map: KeyMap<u32>,
}

impl Ghost {
    pub(crate) fn new(capacity: usize) -> Ghost {
        let ring_len = 2 * capacity;
        Ghost {
            ring: vec![0; ring_len].into_boxed_slice(),
            live_bits: vec![0; ring_len.div_ceil(64)].into_boxed_slice(),
            tail: 0,
            used: 0,
            live: 0,
            capacity,
            map: KeyMap::with_capacity_and_hasher(ring_len, Default::default()),
        }
    }

    #[inline]
    fn is_live(&self, pos: usize) -> bool {
        self.live_bits[pos / 64] & (1 << (pos % 64)) != 0
    }

    #[inline]
    fn set_live(&mut self, pos: usize, live: bool) {
        if live {
            self.live_bits[pos / 64] |= 1 << (pos % 64);
        } else {
            self.live_bits[pos / 64] &= !(1 << (pos % 64));
        }
    }

    #[inline]
    fn valid(&self, key: PageKey, pos: u32) -> bool {
        let pos = pos as usize;
        self.is_live(pos) && self.ring[pos] == key
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    #[allow(dead_code)]
    pub(crate) fn contains(&self, key: PageKey) -> bool {
        self.map.get(&key).is_some_and(|&pos| self.valid(key, pos))
    }

    /// Drops the oldest ring position (a hole, or a live key, which is returned).
    fn pop_tail(&mut self) -> Option<PageKey> {
        debug_assert!(self.used > 0);
        let pos = self.tail;
        let key = if self.is_live(pos) {
            self.set_live(pos, false);
            self.live -= 1;
            Some(self.ring[pos])
        } else {
            None
        };
        self.tail = if pos + 1 == self.ring.len() {
            0
        } else {
            pos + 1
        };
        self.used -= 1;
        key
    }

    /// Remembers `key` as the newest entry, forgetting the oldest one if full. A key already
    /// present keeps its place (FIFO semantics).
    pub(crate) fn insert(&mut self, key: PageKey) {
        if self.capacity == 0 {
            return;
        }
        while self.live >= self.capacity || self.used == self.ring.len() {
            self.pop_tail();
        }
        let mut pos = self.tail + self.used;
        if pos >= self.ring.len() {
            pos -= self.ring.len();
        }
        let ring = &self.ring;
        let live_bits = &self.live_bits;
        let valid = |k: PageKey, p: u32| {
            let p = p as usize;
            live_bits[p / 64] & (1 << (p % 64)) != 0 && ring[p] == k
        };
        match self.map.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if valid(key, *o.get()) {
                    return;
                }
                o.insert(pos as u32);
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(pos as u32);
            }
        }
        self.ring[pos] = key;
        self.set_live(pos, true);
        self.used += 1;
        self.live += 1;
        if self.map.len() >= self.ring.len() {
            self.purge();
        }
    }

    /// Drops the map entries that no longer name a live ghost.
    fn purge(&mut self) {
        let ring = &self.ring;
        let live_bits = &self.live_bits;
        self.map.retain(|&k, &mut p| {
            let p = p as usize;
            live_bits[p / 64] & (1 << (p % 64)) != 0 && ring[p] == k
        });
    }

    /// Forgets `key`; true if it was present.
    #[inline]
    pub(crate) fn remove(&mut self, key: PageKey) -> bool {
        match self.map.remove(&key) {
            Some(pos) if self.valid(key, pos) => {
                self.set_live(pos as usize, false);
                self.live -= 1;
                true
            }
            _ => false,
        }
    }

    /// Forgets the oldest key.
    pub(crate) fn pop_oldest(&mut self) -> Option<PageKey> {
        while self.used > 0 {
            if let Some(key) = self.pop_tail() {
                return Some(key);
            }
        }
        None
    }

    /// Upper bound on the bytes used, whatever the fill level.
    #[allow(dead_code)]
    pub(crate) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity)
    }

    pub(crate) fn bytes_for(capacity: usize) -> usize {
        // Ring of 2 * capacity keys and live bits, and a map of at most 2 * capacity entries.
        2 * capacity * 8 + (2 * capacity).div_ceil(64) * 8 + map_bytes_bound::<u32>(2 * capacity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded() {
        let mut g = Ghost::new(3);
        for k in 0..5 {
            g.insert(k);
        }
        assert_eq!(g.len(), 3);
        assert!(!g.contains(1) && g.contains(2) && g.contains(4));
        assert!(g.remove(3));
        assert!(!g.remove(3));
        // The removal freed a place: 2 survives one more insertion.
        g.insert(7);
        assert!(g.contains(2) && g.contains(4) && g.contains(7));
        g.insert(8);
        assert!(!g.contains(2) && g.contains(4) && g.contains(8));
        assert_eq!(g.pop_oldest(), Some(4));
        assert_eq!(g.len(), 2);
        let mut z = Ghost::new(0);
        z.insert(1);
        assert!(!z.contains(1) && z.pop_oldest().is_none());
    }

    /// Against a straightforward model of a FIFO of live keys where removal frees a place.
    #[test]
    fn matches_exact_fifo() {
        let cap = 100;
        let mut g = Ghost::new(cap);
        let mut model: std::collections::VecDeque<u64> = Default::default();
        let mut x = 1u64;
        let mut early = 0;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (x >> 33) % 400;
            match (x >> 20) % 3 {
                0 | 1 => {
                    if !model.contains(&k) {
                        if model.len() == cap {
                            model.pop_front();
                        }
                        model.push_back(k);
                    }
                    g.insert(k);
                }
                _ => {
                    let m = model.iter().position(|&e| e == k).map(|i| model.remove(i));
                    let got = g.remove(k);
                    if m.is_some() != got {
                        // An early drop, or a divergence it caused later (a key dropped early
                        // and re-inserted is newer in the ghost than in the model).
                        early += 1;
                    }
                }
            }
            assert!(g.len() <= cap);
            assert!(g.map.len() <= 2 * cap);
        }
        assert!(early < 700, "{early} divergences in ~67,000 removals");
    }
}
