//! Ghost queues: bounded FIFOs of page keys that have left the cache, with O(1) lookup and
//! removal by key and no allocation after construction.
//!
//! Layout, chosen for the miss path (S3-FIFO's replay spends one ghost insertion per eviction
//! from the small queue and one ghost lookup per miss):
//! * a table of `4 * capacity` slots in buckets of 8, each slot a 32-bit key fingerprint (never
//!   0; 0 marks a free slot) and the low 32 bits of the entry's 64-bit insertion sequence
//!   number. A bucket is one 64-byte cache line: the 8 fingerprints, then the 8 sequence
//!   numbers, so a lookup is one load of 32 bytes compared 8 at a time (the loops below
//!   vectorise to SSE2 compares and a move-mask);
//! * a ring of `2 * capacity` table indices in insertion order: entry `seq` sits at ring
//!   position `tail_pos + (seq - tail_seq)`.
//!
//! Invariant: a slot is non-zero exactly while the entry it names is live. Every way an entry
//! dies clears its slot at once: removal by key (the lookup found the slot), the early drop
//! below (the insertion chose the slot), and expiry of the oldest ring position, which reads the
//! slot index from the ring and clears the slot if it still names that entry (its sequence
//! number matches; otherwise the entry was removed earlier and the position is a hole). So no
//! per-position live bits are needed and a bucket scan never has to check a slot's age.
//!
//! A lookup or removal reads one bucket; an insertion reads and writes one bucket, one ring
//! position and, when the oldest entry expires, that entry's slot. Semantics: a FIFO of
//! `capacity` live keys where removing a key frees its place, as libCacheSim's FIFO ghost, with
//! two approximations: (1) when a bucket holds 8 live ghosts (load is at most 25%, so rarely)
//! the oldest of them is dropped early, and so is the oldest ghost when half the ring is holes
//! left by removals; (2) two keys with the same bucket and 32-bit fingerprint are confused
//! (about one lookup in 10^8). On the reference CloudPhysics trace every policy's miss ratios
//! equal those with an exact ghost to 4 decimals. (The previous layout, 64-bit slots validated
//! through a live bit per ring position, had exactly these semantics; this one gives identical
//! miss counts on that trace at every size checked by `examples/miss_counts.rs`.)
//!
//! Memory: 32 bytes of table and 8 bytes of ring per entry of capacity, 40 bytes in all.

use std::hash::{BuildHasher, BuildHasherDefault};

use super::hash::KeyHasher;
use super::PageKey;

const BUCKET: usize = 8;

/// One cache line of the table: 8 fingerprints (0 = free) and their entries' sequence numbers.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket {
    fp: [u32; BUCKET],
    seq: [u32; BUCKET],
}

impl Bucket {
    /// Bit `j` set where `fp[j] == x`: two SSE2 compares and move-masks on x86-64.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn mask_eq(&self, x: u32) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_ps,
            _mm_set1_epi32,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline; `fp` is 32 bytes at the start of a
        // 64-byte-aligned `Bucket`, so both 16-byte loads are in bounds and aligned.
        unsafe {
            let p = self.fp.as_ptr() as *const __m128i;
            let k = _mm_set1_epi32(x as i32);
            let lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_load_si128(p), k)));
            let hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
                _mm_load_si128(p.add(1)),
                k,
            )));
            (lo | (hi << 4)) as u32
        }
    }

    /// Bit `j` set where `fp[j] == x`.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn mask_eq(&self, x: u32) -> u32 {
        let mut m = 0;
        for (j, &f) in self.fp.iter().enumerate() {
            m |= ((f == x) as u32) << j;
        }
        m
    }
}

#[derive(Debug)]
pub(crate) struct Ghost {
    /// Table index (`bucket * 8 + slot`) of each ring entry.
    ring: Box<[u32]>,
    /// Sequence number of the oldest ring entry (live or hole) and its ring position.
    tail_seq: u64,
    tail_pos: usize,
    /// Ring entries in use, holes included (`head_seq - tail_seq`).
    used: usize,
    /// Live entries (non-zero slots).
    live: usize,
    capacity: usize,
    table: Box<[Bucket]>,
}

impl Ghost {
    pub(crate) fn new(capacity: usize) -> Ghost {
        let ring_len = 2 * capacity;
        let buckets = Self::buckets_for(capacity);
        assert!(buckets * BUCKET <= u32::MAX as usize, "ghost too large");
        Ghost {
            ring: vec![0; ring_len].into_boxed_slice(),
            tail_seq: 0,
            tail_pos: 0,
            used: 0,
            live: 0,
            capacity,
            table: vec![Bucket::default(); buckets].into_boxed_slice(),
        }
    }

    fn buckets_for(capacity: usize) -> usize {
        (4 * capacity).div_ceil(BUCKET).max(1)
    }

    /// `key`'s bucket and its fingerprint (never 0).
    #[inline]
    fn locate(&self, key: PageKey) -> (usize, u32) {
        let h = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
        let bucket = (((h as u32) as u64 * self.table.len() as u64) >> 32) as usize;
        (bucket, ((h >> 32) | 1) as u32)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    #[allow(dead_code)]
    pub(crate) fn contains(&self, key: PageKey) -> bool {
        let (b, fp) = self.locate(key);
        self.table[b].mask_eq(fp) != 0
    }

    /// Drops the oldest ring position; true if it held a live key.
    #[inline]
    fn pop_tail(&mut self) -> bool {
        debug_assert!(self.used > 0);
        let pos = self.tail_pos;
        let idx = self.ring[pos] as usize;
        let bucket = &mut self.table[idx / BUCKET];
        let live = bucket.fp[idx % BUCKET] != 0 && bucket.seq[idx % BUCKET] == self.tail_seq as u32;
        if live {
            bucket.fp[idx % BUCKET] = 0;
            self.live -= 1;
        }
        self.tail_pos = if pos + 1 == self.ring.len() {
            0
        } else {
            pos + 1
        };
        self.tail_seq += 1;
        self.used -= 1;
        live
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
        let (b, fp) = self.locate(key);
        let tail_seq = self.tail_seq as u32;
        let bucket = &mut self.table[b];
        if bucket.mask_eq(fp) != 0 {
            return; // present: keeps its place
        }
        let free = bucket.mask_eq(0);
        let slot = if free != 0 {
            free.trailing_zeros() as usize
        } else {
            // Full bucket: drop its oldest live ghost early (the smallest distance from the
            // ring's tail; every slot is live, so every distance is inside the ring).
            let mut oldest = (0, u32::MAX);
            for (j, &s) in bucket.seq.iter().enumerate() {
                let offset = s.wrapping_sub(tail_seq);
                if offset < oldest.1 {
                    oldest = (j, offset);
                }
            }
            self.live -= 1;
            oldest.0
        };
        let seq = self.tail_seq + self.used as u64;
        bucket.fp[slot] = fp;
        bucket.seq[slot] = seq as u32;
        let mut pos = self.tail_pos + self.used;
        if pos >= self.ring.len() {
            pos -= self.ring.len();
        }
        self.ring[pos] = (b * BUCKET + slot) as u32;
        self.used += 1;
        self.live += 1;
        // The next insertion usually expires the oldest entry: start fetching its slot.
        let next = self.ring[self.tail_pos] as usize / BUCKET;
        super::prefetch(&self.table[next]);
    }

    /// Forgets `key`; true if it was present.
    #[inline]
    pub(crate) fn remove(&mut self, key: PageKey) -> bool {
        let (b, fp) = self.locate(key);
        let bucket = &mut self.table[b];
        let m = bucket.mask_eq(fp);
        if m == 0 {
            return false;
        }
        // Live slots never share a fingerprint within a bucket (insertion checks), so `m` has
        // one bit. The ring position becomes a hole, skipped when it expires.
        bucket.fp[m.trailing_zeros() as usize] = 0;
        self.live -= 1;
        true
    }

    /// Forgets the oldest key; false if there was none.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        while self.used > 0 {
            if self.pop_tail() {
                return true;
            }
        }
        false
    }

    /// Bytes used, whatever the fill level.
    #[allow(dead_code)]
    pub(crate) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity)
    }

    /// Bytes used by a ghost of `capacity` keys: ring (2 table indices per entry, 8 B) and table
    /// (4 slots per entry, 32 B).
    pub(crate) fn bytes_for(capacity: usize) -> usize {
        2 * capacity * 4 + Self::buckets_for(capacity) * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The previous layout (64-bit slots validated through ring offsets and live bits), kept
    /// verbatim as the reference the current one must match operation for operation.
    #[allow(dead_code)]
    mod reference {
        use std::hash::{BuildHasher, BuildHasherDefault};

        use super::super::KeyHasher;
        use crate::policy::PageKey;

        const BUCKET: usize = 8;

        #[derive(Debug)]
        pub(super) struct OldGhost {
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

        impl OldGhost {
            pub(super) fn new(capacity: usize) -> OldGhost {
                let ring_len = 2 * capacity;
                let buckets = (4 * capacity).div_ceil(BUCKET).max(1);
                OldGhost {
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

            pub(super) fn len(&self) -> usize {
                self.live
            }

            #[allow(dead_code)]
            pub(super) fn contains(&self, key: PageKey) -> bool {
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
            pub(super) fn insert(&mut self, key: PageKey) {
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
            pub(super) fn remove(&mut self, key: PageKey) -> bool {
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
            pub(super) fn pop_oldest(&mut self) -> Option<PageKey> {
                while self.used > 0 {
                    if let Some(key) = self.pop_tail() {
                        return Some(key);
                    }
                }
                None
            }

            /// Bytes used, whatever the fill level.
            #[allow(dead_code)]
            pub(super) fn bytes(&self) -> usize {
                Self::bytes_for(self.capacity)
            }

            /// Bytes used by a ghost of `capacity` keys: ring (2 keys per entry, 16 B), live bits, and
            /// table (4 slots per entry, 32 B).
            pub(super) fn bytes_for(capacity: usize) -> usize {
                let buckets = (4 * capacity).div_ceil(BUCKET).max(1);
                2 * capacity * 8 + (2 * capacity).div_ceil(64) * 8 + buckets * BUCKET * 8
            }
        }
    }

    /// Same answers as the previous layout for every operation, with small tables so that
    /// full buckets (early drops), holes and ring wrap-around are all exercised.
    #[test]
    fn matches_previous_layout() {
        for (cap, keys) in [(1, 4), (5, 40), (16, 100), (100, 2000), (1000, 3000)] {
            let mut g = Ghost::new(cap);
            let mut r = reference::OldGhost::new(cap);
            let mut x = cap as u64;
            for step in 0..100_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (x >> 33) % keys;
                match (x >> 20) % 8 {
                    0..=3 => {
                        g.insert(k);
                        r.insert(k);
                    }
                    4 | 5 => assert_eq!(g.remove(k), r.remove(k), "cap {cap} step {step}"),
                    6 => assert_eq!(g.contains(k), r.contains(k), "cap {cap} step {step}"),
                    _ => assert_eq!(g.pop_oldest(), r.pop_oldest().is_some()),
                }
                assert_eq!(g.len(), r.len(), "cap {cap} step {step}");
            }
        }
    }

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
        assert!(g.pop_oldest());
        assert!(!g.contains(4) && g.contains(7) && g.contains(8));
        assert_eq!(g.len(), 2);
        let mut z = Ghost::new(0);
        z.insert(1);
        assert!(!z.contains(1) && !z.pop_oldest());
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
