//! Ghost queues: bounded FIFOs of 32-bit page-key fingerprints that have left the cache, with
//! O(1) lookup, insertion and removal (insertion amortised), no allocation after construction,
//! and about 11 bytes per entry of capacity.
//!
//! Keys are known only by [`fingerprint`] (32 bits of their hash), which is all a ghost needs to
//! answer "was this page evicted recently?": two keys with the same fingerprint are confused, a
//! false "yes" for about one lookup in `2^32 / len` (one in 4,300 for a million live entries).
//! S3-FIFO keeps one fingerprint per frame instead of the 8-byte key for exactly this reason.
//!
//! Layout:
//! * a ring of `1.25 * capacity` fingerprints in insertion order (0 marks a free position or a
//!   hole: an entry removed before it expired);
//! * a table of about `1.5 * capacity` 32-bit slots in buckets of 16 (one 64-byte cache line),
//!   each slot `tag | ring position + 1` (0 = free), where the tag is the fingerprint's low bits
//!   (those the position leaves). A fingerprint's entry sits in its home bucket (from the
//!   fingerprint's high bits) or the next one, whichever had more free slots when it arrived;
//! * scratch for compaction: a bit per ring position and a count per 64 positions.
//!
//! A lookup compares the tags of two adjacent buckets (16 slots at a time; the loops vectorise)
//! and reads the ring only for a slot whose tag matches, to compare the whole fingerprint: for
//! an absent key that is rare (one slot in 2^tag bits). Removal clears the slot and leaves a
//! hole in the ring; expiring the oldest entry reads its fingerprint from the ring and clears the
//! slot naming its position. At load factor 2/3, a key whose two buckets are both full (32 live
//! entries where 21 are expected) essentially never arrives; if one does, it is not remembered.
//!
//! Semantics: exactly a FIFO of at most `capacity` live keys where removing a key frees its
//! place, as libCacheSim's FIFO ghost. Holes are what makes that costly: on the CloudPhysics
//! trace, ghost hits remove up to two thirds of the entries before they expire (pages evicted
//! and read again soon), so the span from the oldest live entry to the newest can reach three
//! times `capacity`, and a ring that merely skipped holes would have to be that long (the
//! previous layout's ring of `2 * capacity` dropped the oldest keys early instead). So when the
//! ring is full but fewer than `capacity` entries are live, it is compacted: the live entries
//! move down in order and every table slot is rewritten to its entry's new position, computed
//! from the rank of the old one among the live positions. That is three sequential passes
//! (ring, table, ring) at most once per `capacity / 4` insertions, a few word reads per
//! insertion amortised; the insertion that runs it pauses for it: 0.2 ms for 24,000 entries,
//! 9 ms for 900,000 (a 4 GiB cache of 4 KiB pages) on the development VM.

use std::hash::{BuildHasher, BuildHasherDefault};

use super::hash::KeyHasher;
use super::PageKey;

/// Slots per bucket.
const BUCKET: usize = 16;

/// One cache line of the table.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
struct Bucket([u32; BUCKET]);

impl Bucket {
    /// Bit `j` set where `slot[j] & mask == value`, and bit `16 + j` where `slot[j] == 0`:
    /// per four slots a load, an and and two compares, packed into one move-mask (SSE2, the
    /// x86-64 baseline). With `value != 0` a free slot never matches.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    fn scan(&self, mask: u32, value: u32) -> u32 {
        use std::arch::x86_64::{
            __m128i, _mm_and_si128, _mm_cmpeq_epi32, _mm_load_si128, _mm_movemask_epi8,
            _mm_packs_epi16, _mm_packs_epi32, _mm_set1_epi32, _mm_setzero_si128,
        };
        // SAFETY: SSE2 is part of the x86-64 baseline; `Bucket` is 64 bytes aligned to 64, so
        // the four 16-byte loads are in bounds and aligned.
        unsafe {
            let p = self.0.as_ptr() as *const __m128i;
            let (mask, value, zero) = (
                _mm_set1_epi32(mask as i32),
                _mm_set1_epi32(value as i32),
                _mm_setzero_si128(),
            );
            let v = [0, 1, 2, 3].map(|q| _mm_load_si128(p.add(q)));
            let hit = v.map(|v| _mm_cmpeq_epi32(_mm_and_si128(v, mask), value));
            let free = v.map(|v| _mm_cmpeq_epi32(v, zero));
            // 32-bit lanes of all ones or zeros pack to bytes of all ones or zeros, in order.
            let pack = |x: [__m128i; 4]| {
                _mm_movemask_epi8(_mm_packs_epi16(
                    _mm_packs_epi32(x[0], x[1]),
                    _mm_packs_epi32(x[2], x[3]),
                )) as u32
            };
            pack(hit) | pack(free) << 16
        }
    }

    /// Bit `j` set where `slot[j] & mask == value`, and bit `16 + j` where `slot[j] == 0`.
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    fn scan(&self, mask: u32, value: u32) -> u32 {
        let mut m = 0;
        for (j, &s) in self.0.iter().enumerate() {
            m |= ((s & mask == value) as u32) << j | ((s == 0) as u32) << (16 + j);
        }
        m
    }
}

/// The ghost's 32-bit fingerprint of `key`: the high half of its [`KeyHasher`] hash, never 0.
#[inline]
pub(crate) fn fingerprint(key: PageKey) -> u32 {
    let h = BuildHasherDefault::<KeyHasher>::default().hash_one(key);
    ((h >> 32) as u32).max(1)
}

/// See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Ghost {
    /// Fingerprints in insertion order, 0 for a hole.
    ring: Box<[u32]>,
    /// Ring position of the oldest entry (live or hole).
    tail: usize,
    /// Ring positions in use, holes included.
    used: usize,
    /// Live entries (non-zero ring positions in use, one table slot each).
    live: usize,
    capacity: usize,
    /// `tag | ring position + 1`, 0 = free.
    table: Box<[Bucket]>,
    /// The ring-position bits of a slot (`2^pos_bits > ring.len()`).
    pos_bits: u32,
    pos_mask: u32,
    /// Compaction scratch: live ring positions (one bit each) and, per 64 positions, the live
    /// positions before them.
    live_bits: Box<[u64]>,
    live_before: Box<[u32]>,
}

impl Ghost {
    pub(crate) fn new(capacity: usize) -> Ghost {
        let (ring_len, buckets) = Self::lengths(capacity);
        let pos_bits = usize::BITS - ring_len.leading_zeros();
        assert!(pos_bits < 31, "ghost too large");
        Ghost {
            ring: vec![0; ring_len].into_boxed_slice(),
            tail: 0,
            used: 0,
            live: 0,
            capacity,
            table: vec![Bucket::default(); buckets].into_boxed_slice(),
            pos_bits,
            pos_mask: (1 << pos_bits) - 1,
            live_bits: vec![0; ring_len.div_ceil(64)].into_boxed_slice(),
            live_before: vec![0; ring_len.div_ceil(64)].into_boxed_slice(),
        }
    }

    /// Ring length and table buckets for `capacity` live entries: a quarter more ring positions
    /// than entries (room for holes) and half more slots (load factor 2/3), at least two buckets.
    fn lengths(capacity: usize) -> (usize, usize) {
        if capacity == 0 {
            return (0, 0);
        }
        let slots = capacity + capacity / 2;
        (
            capacity + capacity.div_ceil(4),
            slots.div_ceil(BUCKET).max(2),
        )
    }

    /// Bytes used by a ghost of `capacity` entries, whatever its fill level.
    pub(crate) fn bytes_for(capacity: usize) -> usize {
        let (ring, buckets) = Self::lengths(capacity);
        ring * std::mem::size_of::<u32>()
            + buckets * std::mem::size_of::<Bucket>()
            + ring.div_ceil(64) * (std::mem::size_of::<u64>() + std::mem::size_of::<u32>())
    }

    /// Bytes used, whatever the fill level.
    pub(crate) fn bytes(&self) -> usize {
        Self::bytes_for(self.capacity)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// `fp`'s two buckets (home and the next, chosen by the fingerprint's high bits) and its
    /// tag: its low bits, as many as the position leaves in a slot, shifted above the position
    /// and with the top bit set so that a tag is never 0.
    #[inline]
    fn locate(&self, fp: u32) -> (usize, usize, u32) {
        let n = self.table.len();
        let b = ((fp as u64 * n as u64) >> 32) as usize;
        let tag = ((fp << self.pos_bits) | 1 << 31) & !self.pos_mask;
        (b, if b + 1 == n { 0 } else { b + 1 }, tag)
    }

    #[inline]
    fn ring_pos(&self, offset: usize) -> usize {
        let pos = self.tail + offset;
        if pos >= self.ring.len() {
            pos - self.ring.len()
        } else {
            pos
        }
    }

    /// The slot of bucket `b` holding `fp` (whose tag is `tag`), if any.
    #[inline]
    fn find_in(&self, b: usize, fp: u32, tag: u32) -> Option<usize> {
        let bucket = &self.table[b];
        let mut m = bucket.scan(!self.pos_mask, tag) & 0xFFFF;
        while m != 0 {
            let j = m.trailing_zeros() as usize;
            if self.ring[(bucket.0[j] & self.pos_mask) as usize - 1] == fp {
                return Some(j);
            }
            m &= m - 1;
        }
        None
    }

    /// Bucket, slot and ring position of `fp`'s live entry.
    #[inline]
    fn find(&self, fp: u32) -> Option<(usize, usize, usize)> {
        if self.table.is_empty() {
            return None;
        }
        let (b1, b2, tag) = self.locate(fp);
        let (b, j) = match self.find_in(b1, fp, tag) {
            Some(j) => (b1, j),
            None => (b2, self.find_in(b2, fp, tag)?),
        };
        Some((b, j, (self.table[b].0[j] & self.pos_mask) as usize - 1))
    }

    /// Starts fetching the table lines a lookup of `fp` reads.
    #[inline]
    pub(crate) fn prefetch(&self, fp: u32) {
        if !self.table.is_empty() {
            let (b1, b2, _) = self.locate(fp);
            super::prefetch(&self.table[b1]);
            super::prefetch(&self.table[b2]);
        }
    }

    #[allow(dead_code)]
    pub(crate) fn contains(&self, fp: u32) -> bool {
        self.find(fp).is_some()
    }

    /// Drops the oldest ring position; if it held a live entry, returns the bucket that held
    /// its slot.
    fn pop_tail(&mut self) -> Option<usize> {
        debug_assert!(self.used > 0);
        let pos = self.tail;
        let fp = self.ring[pos];
        self.tail = self.ring_pos(1);
        self.used -= 1;
        if fp == 0 {
            return None;
        }
        self.ring[pos] = 0;
        self.live -= 1;
        let (b1, b2, _) = self.locate(fp);
        for b in [b1, b2] {
            let m = self.table[b].scan(self.pos_mask, pos as u32 + 1) & 0xFFFF;
            if m != 0 {
                self.table[b].0[m.trailing_zeros() as usize] = 0;
                return Some(b);
            }
        }
        unreachable!("live ghost entry without a slot")
    }

    /// Moves the live entries of the ring down to its tail, in order, so that `used == live`,
    /// and rewrites every table slot to its entry's new position. See the [module docs](self).
    #[inline(never)]
    fn compact(&mut self) {
        // Live positions, by raw ring position, and the count before each word.
        let mut count = 0u32;
        for (w, chunk) in self.ring.chunks(64).enumerate() {
            let mut word = 0u64;
            for (b, &fp) in chunk.iter().enumerate() {
                word |= ((fp != 0) as u64) << b;
            }
            self.live_bits[w] = word;
            self.live_before[w] = count;
            count += word.count_ones();
        }
        debug_assert_eq!(count as usize, self.live);
        let rank_raw = |bits: &[u64], before: &[u32], p: usize| {
            before[p / 64] as usize
                + (bits[p / 64] & ((1u64 << (p % 64)) - 1)).count_ones() as usize
        };
        // The entry at raw position p moves to offset `rank` from the tail: the number of live
        // entries between the tail and p (the ring wraps around after its last position).
        let at_tail = rank_raw(&self.live_bits, &self.live_before, self.tail);
        let (tail, live, mask, len) = (self.tail, self.live, self.pos_mask, self.ring.len());
        // Branch-free (free slots and the wrap-around fall at random): a free slot computes a
        // rank for position 0 and stays 0.
        for slot in self.table.iter_mut().flat_map(|b| b.0.iter_mut()) {
            let s = *slot;
            let p = ((s & mask) as usize).saturating_sub(1);
            let rank = rank_raw(&self.live_bits, &self.live_before, p) + live * (p < tail) as usize
                - at_tail;
            let to = tail + rank;
            let to = to - len * (to >= len) as usize;
            let moved = (s & !mask) | (to as u32 + 1);
            *slot = moved & ((s != 0) as u32).wrapping_neg();
        }
        // Live entries move down in order: every entry is written to the next free offset
        // (holes too, overwritten by the next live entry), then the rest is cleared.
        let mut n = 0;
        for o in 0..self.used {
            let fp = self.ring[self.ring_pos(o)];
            let to = self.ring_pos(n);
            self.ring[to] = fp;
            n += (fp != 0) as usize;
        }
        debug_assert_eq!(n, live);
        for o in n..self.used {
            let p = self.ring_pos(o);
            self.ring[p] = 0;
        }
        self.used = live;
    }

    /// Remembers `fp` as the newest entry, forgetting the oldest one if full. A fingerprint
    /// already present keeps its place (FIFO semantics).
    pub(crate) fn insert(&mut self, fp: u32) {
        debug_assert_ne!(fp, 0);
        if self.capacity == 0 {
            return;
        }
        // When full, the oldest entry expires below: start fetching its buckets now.
        if self.used > 0 {
            self.prefetch(self.ring[self.tail]);
        }
        // One pass over each bucket: is `fp` there, and which slots are free.
        let (b1, b2, tag) = self.locate(fp);
        let (s1, s2) = (
            self.table[b1].scan(!self.pos_mask, tag),
            self.table[b2].scan(!self.pos_mask, tag),
        );
        if (s1 | s2) & 0xFFFF != 0 && self.find(fp).is_some() {
            return;
        }
        let (mut free1, mut free2) = (s1 >> 16, s2 >> 16);
        let mut expire = |g: &mut Ghost| {
            // An expired entry in one of `fp`'s buckets frees a slot there.
            match g.pop_tail() {
                Some(b) if b == b1 => free1 = g.table[b1].scan(!0, 0) & 0xFFFF,
                Some(b) if b == b2 => free2 = g.table[b2].scan(!0, 0) & 0xFFFF,
                _ => {}
            }
        };
        while self.live >= self.capacity {
            expire(self);
        }
        while self.used == self.ring.len() && self.ring[self.tail] == 0 {
            expire(self); // a hole: free
        }
        if self.used == self.ring.len() {
            self.compact(); // moves entries, but frees no slot
        }
        let pos = self.ring_pos(self.used);
        self.used += 1;
        // The emptier of the two buckets.
        let (b, free) = if free2.count_ones() > free1.count_ones() {
            (b2, free2)
        } else {
            (b1, free1)
        };
        if free == 0 {
            return; // both full: not remembered, the position stays a hole
        }
        self.table[b].0[free.trailing_zeros() as usize] = tag | (pos as u32 + 1);
        self.ring[pos] = fp;
        self.live += 1;
    }

    /// Forgets `fp`; true if it was present.
    #[inline]
    pub(crate) fn remove(&mut self, fp: u32) -> bool {
        match self.find(fp) {
            Some((b, j, pos)) => {
                self.table[b].0[j] = 0;
                self.ring[pos] = 0;
                self.live -= 1;
                true
            }
            None => false,
        }
    }

    /// Forgets the oldest entry; false if there was none.
    pub(crate) fn pop_oldest(&mut self) -> bool {
        while self.used > 0 {
            if self.pop_tail().is_some() {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_bounded() {
        let mut g = Ghost::new(3);
        for k in 1..=5 {
            g.insert(k);
        }
        assert_eq!(g.len(), 3);
        assert!(!g.contains(2) && g.contains(3) && g.contains(5));
        assert!(g.remove(4));
        assert!(!g.remove(4));
        // The removal freed a place: 3 survives one more insertion.
        g.insert(8);
        assert!(g.contains(3) && g.contains(5) && g.contains(8));
        g.insert(9);
        assert!(!g.contains(3) && g.contains(5) && g.contains(9));
        assert!(g.pop_oldest());
        assert!(!g.contains(5) && g.contains(8) && g.contains(9));
        assert_eq!(g.len(), 2);
        let mut z = Ghost::new(0);
        z.insert(1);
        assert!(!z.contains(1) && !z.pop_oldest() && !z.remove(1));
    }

    /// Against a model of a FIFO of live keys where removal frees a place: the same keys in the
    /// same order after every operation. Fingerprints are chosen to crowd a few home slots (long
    /// clusters, wrap-around at the table's end) or spread out; removals are frequent and hit
    /// recent keys more often, so holes pile up and the ring is compacted again and again, with
    /// its tail anywhere.
    #[test]
    fn matches_exact_fifo() {
        for (cap, keys, crowd) in [
            (1, 4, false),
            (3, 12, true),
            (10, 40, true),
            (100, 400, false),
            (100, 400, true),
            (1000, 3000, true),
        ] {
            let mut g = Ghost::new(cap);
            let mut model: std::collections::VecDeque<u32> = Default::default();
            let mut x = cap as u64;
            for step in 0..50_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (x >> 33) as u32 % keys;
                // Crowded: groups of four keys share a home slot (and the last groups wrap
                // around the table's end).
                let fp = if crowd {
                    ((k / 4) as u64 * (1 << 32) / (keys / 4) as u64) as u32 | (k % 4) | 8
                } else {
                    k.wrapping_mul(0x9E37_79B9) | 1
                };
                match (x >> 20) % 8 {
                    0..=3 => {
                        if !model.contains(&fp) {
                            if model.len() == cap {
                                model.pop_front();
                            }
                            model.push_back(fp);
                        }
                        g.insert(fp);
                    }
                    4 | 5 => {
                        let m = model.iter().position(|&e| e == fp).map(|i| model.remove(i));
                        assert_eq!(g.remove(fp), m.is_some(), "cap {cap} step {step}");
                    }
                    6 => {
                        // One of the newest keys.
                        let back = (x >> 40) as usize % 4;
                        if let Some(i) = model.len().checked_sub(back + 1) {
                            let fp = model.remove(i).unwrap();
                            assert!(g.remove(fp), "cap {cap} step {step}");
                        }
                    }
                    _ => {
                        assert_eq!(g.contains(fp), model.contains(&fp), "cap {cap} step {step}");
                        assert_eq!(g.pop_oldest(), model.pop_front().is_some());
                    }
                }
                assert_eq!(g.len(), model.len(), "cap {cap} step {step}");
                let ring: Vec<u32> = (0..g.used)
                    .map(|o| g.ring[g.ring_pos(o)])
                    .filter(|&f| f != 0)
                    .collect();
                assert!(ring.iter().eq(model.iter()), "cap {cap} step {step}");
            }
        }
    }

    /// More keys with one home bucket than its two buckets hold: the ones that do not fit are
    /// not remembered, the others are, and removing one frees room again.
    #[test]
    fn full_buckets_drop_the_newcomer() {
        let mut g = Ghost::new(1000);
        let fit = 2 * BUCKET;
        // Distinct fingerprints with the same high bits share the home bucket.
        let fps: Vec<u32> = (0..fit as u32 + 10)
            .map(|k| 0x8000_0000 | k << 1 | 1)
            .collect();
        for &fp in &fps {
            g.insert(fp);
        }
        assert_eq!(g.len(), fit);
        assert!(fps[..fit].iter().all(|&fp| g.contains(fp)));
        assert!(!g.contains(fps[fit]));
        assert!(g.remove(fps[0]));
        g.insert(fps[fit + 5]);
        assert!(g.contains(fps[fit + 5]));
        assert_eq!(g.len(), fit);
    }

    /// With random fingerprints at full load (and the table's load factor of 2/3), no key finds
    /// both its buckets full: the ghost stays an exact FIFO.
    #[test]
    fn random_keys_are_never_dropped() {
        for cap in [1000usize, 24_229] {
            let mut g = Ghost::new(cap);
            for i in 0..20 * cap as u64 {
                let before = g.len();
                g.insert(fingerprint(i));
                assert_eq!(g.len(), (before + 1).min(cap), "cap {cap} insertion {i}");
                if i % 3 == 0 {
                    g.remove(fingerprint(i - i / 7));
                }
            }
        }
    }
}
