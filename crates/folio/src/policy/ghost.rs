//! Ghost queues: bounded FIFOs of page keys that have left the cache, with O(1) lookup and
//! removal by key and no allocation after construction.
//!
//! Layout, chosen for the miss path (measured with perf: the first design, a slab with an
//! intrusive list and a `HashMap<key, slot>`, spent 40% of S3-FIFO's replay time in ghost
//! upkeep, three or four hash-map probes per eviction):
//! * a ring of `2 * capacity` keys in insertion order, with a live bit per position; entries
//!   are numbered by a 64-bit insertion sequence number;
//! * a table of `4 * capacity` 64-bit slots in buckets of 8 (one cache line), each slot a 32-bit
//!   key fingerprint and the low 32 bits of the entry's sequence number. A slot counts only
//!   while its entry is inside the ring window and live, so expiring the oldest ghost or
//!   removing one is a bit flip, and stale slots are simply reused.
//!
//! A lookup or removal reads one bucket; an insertion reads and writes one bucket plus
//! sequential ring work. Semantics: a FIFO of `capacity` live keys where removing a key frees
//! its place, as libCacheSim's FIFO ghost, with two approximations: (1) when a bucket holds 8
//! live ghosts (load is at most 25%, so rarely) the oldest of them is dropped early, and so is
//! the oldest ghost when half the ring is holes left by removals; (2) two keys with the same
//! bucket and 32-bit fingerprint are confused (about one lookup in 10^8). On the reference
//! CloudPhysics trace every policy's miss ratios equal those with an exact ghost to 4 decimals.

use std::hash::{BuildHasher, BuildHasherDefault};

use super::hash::KeyHasher;
use super::PageKey;

const BUCKET: usize = 8;

#[derive(Debug)]
pub(crate) struct Ghost {
    ring: Box<[PageKey]>,
    live_bits: Box<[u64]>,
    /// Sequence number of the oldest ring entry (live or hole) and its ring position.
    tail_seq: u64,
    tail_pos: usize,
    /// Ring entries in use, holes included (`head_seq - tail_seq`).
    used: usize,
    /// Live entries.
    live: usize,
    capacity: usize,
    table: Box<[u64]>,
    buckets: usize,
}

impl Ghost {
    pub(crate) fn new(capacity: usize) -> Ghost {
        let ring_len = 2 * capacity;
        let buckets = (4 * capacity).div_ceil(BUCKET).max(1);
        Ghost {
            ring: vec![0; ring_len].into_boxed_slice(),
            live_bits: vec![0; ring_len.div_ceil(64)].into_boxed_slice(),
            tail_seq: 0,
            tail_pos: 0,
            used: 0,
            live: 0,
            capacity,
            table: vec![0; buckets * BUCKET].into_boxed_slice(),
            buckets,
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

    /// First table index of `key`'s bucket and its fingerprint (never 0, so a slot is never 0).
    #[inline]
    fn locate(&self, key: PageKey) -> (usize, u64) {
        let h = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
        let bucket = (((h as u32) as u64 * self.buckets as u64) >> 32) as usize;
        (bucket * BUCKET, (h >> 32) | 1)
    }

    /// Ring position of the live entry a slot names, if it still names one.
    #[inline]
    fn slot_pos(&self, slot: u64) -> Option<usize> {
        if slot == 0 {
            return None;
        }
        let offset = (slot as u32).wrapping_sub(self.tail_seq as u32) as usize;
        if offset >= self.used {
            return None;
        }
        let mut pos = self.tail_pos + offset;
        if pos >= self.ring.len() {
            pos -= self.ring.len();
        }
        self.is_live(pos).then_some(pos)
    }

    /// Table index and ring position of `key`'s live entry.
    #[inline]
    fn find(&self, key: PageKey) -> Option<(usize, usize)> {
        let (start, fp) = self.locate(key);
        (start..start + BUCKET).find_map(|i| {
            let s = self.table[i];
            if s >> 32 == fp {
                self.slot_pos(s).map(|pos| (i, pos))
            } else {
                None
            }
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    #[allow(dead_code)]
    pub(crate) fn contains(&self, key: PageKey) -> bool {
        self.find(key).is_some()
    }

    /// Drops the oldest ring position (a hole, or a live key, which is returned).
    fn pop_tail(&mut self) -> Option<PageKey> {
        debug_assert!(self.used > 0);
        let pos = self.tail_pos;
        let key = if self.is_live(pos) {
            self.set_live(pos, false);
            self.live -= 1;
            Some(self.ring[pos])
        } else {
            None
        };
        self.tail_pos = if pos + 1 == self.ring.len() {
            0
        } else {
            pos + 1
        };
        self.tail_seq += 1;
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
        // One pass over the bucket: is the key present, and which slot to take (a free or stale
        // one, else the bucket's oldest live ghost, which is dropped).
        let (start, fp) = self.locate(key);
        let mut free = None;
        let mut oldest = (start, usize::MAX);
        for i in start..start + BUCKET {
            let s = self.table[i];
            if self.slot_pos(s).is_none() {
                free.get_or_insert(i);
                continue;
            }
            if s >> 32 == fp {
                return; // present: keeps its place
            }
            let offset = (s as u32).wrapping_sub(self.tail_seq as u32) as usize;
            if offset < oldest.1 {
                oldest = (i, offset);
            }
        }
        let pick = match free {
            Some(i) => i,
            None => {
                let pos = self.slot_pos(self.table[oldest.0]).expect("live slot");
                self.set_live(pos, false);
                self.live -= 1;
                oldest.0
            }
        };
        let mut pos = self.tail_pos + self.used;
        if pos >= self.ring.len() {
            pos -= self.ring.len();
        }
        let seq = self.tail_seq + self.used as u64;
        self.ring[pos] = key;
        self.set_live(pos, true);
        self.used += 1;
        self.live += 1;
        self.table[pick] = (fp << 32) | (seq as u32 as u64);
    }

    /// Forgets `key`; true if it was present.
    #[inline]
    pub(crate) fn remove(&mut self, key: PageKey) -> bool {
        match self.find(key) {
            Some((i, pos)) => {
                self.table[i] = 0;
                self.set_live(pos, false);
                self.live -= 1;
                true
            }
            None => false,
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

    /// Bytes used, whatever the fill level.
    #[allow(dead_code)]
    pub(crate) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity)
    }

    /// Bytes used by a ghost of `capacity` keys: ring (2 keys per entry, 16 B), live bits, and
    /// table (4 slots per entry, 32 B).
    pub(crate) fn bytes_for(capacity: usize) -> usize {
        let buckets = (4 * capacity).div_ceil(BUCKET).max(1);
        2 * capacity * 8 + (2 * capacity).div_ceil(64) * 8 + buckets * BUCKET * 8
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
        }
        assert!(early < 700, "{early} divergences in ~67,000 removals");
    }
}
