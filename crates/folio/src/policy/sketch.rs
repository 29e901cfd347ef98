//! Frequency sketches for TinyLFU admission: how often a page key was seen recently, in a few
//! bits per cached page, with periodic aging so that old popularity fades.
//!
//! Two sketches, one per reference design:
//! * [`CountMin4`]: the count-min sketch of TinyLFU (G. Einziger, R. Friedman, B. Manes,
//!   "TinyLFU: A Highly Efficient Cache Admission Policy", ACM ToS 13(4), 2017) as Caffeine lays
//!   it out: 4-bit counters, four of them per key (one per row, the estimate is their minimum),
//!   all four in one 64-byte block so an update touches one cache line; every `period`
//!   increments each counter is halved ("reset", the paper's aging). In front of it an optional
//!   **doorkeeper** (the paper's Section 3.4.2): a Bloom filter that absorbs a key's first
//!   occurrence in each period, so one-hit wonders never reach the counters; the estimate adds
//!   one for a key the doorkeeper holds; a reset clears it.
//! * [`CountingBloom`]: libCacheSim 0.3.5's `minimalIncrementCBF` as its W-TinyLFU uses it, to
//!   reproduce its rows: `ceil(14.38 * entries)` 32-bit counters (a 0.001 false-positive
//!   design), ten hash functions by double hashing, an estimate that is the minimum of the ten,
//!   an increment that adds one to all ten, and an aging that halves every counter when the
//!   owner says so. About 58 bytes per entry: a reference, not for production.
//!
//! Keys are 32-bit fingerprints ([`fingerprint`](super::ghost::fingerprint)); each sketch mixes
//! them again for its own indices. Nothing here is shared between threads: the owner holds it
//! under its lock.

/// Golden-ratio multiplier, to derive further hashes from a fingerprint.
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix64(x: u64) -> u64 {
    let m = (x as u128).wrapping_mul(MIX as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// `x` scaled to `0 .. n` (Lemire's multiply-shift range reduction).
#[inline]
fn reduce(x: u32, n: usize) -> usize {
    ((x as u64 * n as u64) >> 32) as usize
}

/// A Bloom filter of `bits` bits and `hashes` probes (double hashing), cleared in one pass.
#[derive(Debug, Clone)]
pub(crate) struct Doorkeeper {
    words: Box<[u64]>,
    hashes: u32,
}

impl Doorkeeper {
    /// A filter of about `bits` bits (at least 64) probed `hashes` times per key.
    pub(crate) fn new(bits: usize, hashes: u32) -> Doorkeeper {
        Doorkeeper {
            words: vec![0; bits.div_ceil(64).max(1)].into_boxed_slice(),
            hashes: hashes.max(1),
        }
    }

    /// The bits of `fp`: `(a + i * b) mod bits` for `i < hashes`.
    #[inline]
    fn probe_params(&self, fp: u32) -> (u32, u32, usize) {
        let h = mix64(fp as u64 ^ 0x5bd1_e995);
        (h as u32, (h >> 32) as u32 | 1, self.words.len() * 64)
    }

    /// True if `fp` may have been put since the last clear.
    pub(crate) fn contains(&self, fp: u32) -> bool {
        let (a, b, bits) = self.probe_params(fp);
        (0..self.hashes).all(|i| {
            let bit = reduce(a.wrapping_add(i.wrapping_mul(b)), bits);
            self.words[bit / 64] & (1 << (bit % 64)) != 0
        })
    }

    /// Puts `fp`; true if it was (probably) there already.
    pub(crate) fn put(&mut self, fp: u32) -> bool {
        let (a, b, bits) = self.probe_params(fp);
        let mut present = true;
        for i in 0..self.hashes {
            let bit = reduce(a.wrapping_add(i.wrapping_mul(b)), bits);
            let w = &mut self.words[bit / 64];
            present &= *w & (1 << (bit % 64)) != 0;
            *w |= 1 << (bit % 64);
        }
        present
    }

    pub(crate) fn clear(&mut self) {
        self.words.fill(0);
    }

    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.words)
    }
}

/// Counters per 64-byte block of [`CountMin4`].
const BLOCK_WORDS: usize = 8;

/// TinyLFU's count-min sketch with 4-bit counters and an optional doorkeeper. See the
/// [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct CountMin4 {
    /// Blocks of eight 64-bit words (sixteen 4-bit counters each).
    table: Box<[[u64; BLOCK_WORDS]]>,
    doorkeeper: Option<Doorkeeper>,
    /// Increments since the last reset that changed a counter.
    additions: usize,
    /// Reset after this many.
    period: usize,
}

const ONE_MASK: u64 = 0x1111_1111_1111_1111;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;

impl CountMin4 {
    /// A sketch for a cache of `entries` pages: `counters_per_entry` 4-bit counters per page
    /// (16 is Caffeine's, in blocks of 128), a reset every `period_per_entry * entries` counted
    /// increments (Caffeine: 10), and a doorkeeper of `doorkeeper_bits_per_entry` bits per page
    /// (0: none).
    pub(crate) fn new(
        entries: usize,
        counters_per_entry: usize,
        period_per_entry: usize,
        doorkeeper_bits_per_entry: usize,
    ) -> CountMin4 {
        let entries = entries.max(1);
        let blocks = (entries * counters_per_entry)
            .div_ceil(BLOCK_WORDS * 16)
            .max(1);
        CountMin4 {
            table: vec![[0u64; BLOCK_WORDS]; blocks].into_boxed_slice(),
            doorkeeper: (doorkeeper_bits_per_entry > 0)
                .then(|| Doorkeeper::new(entries * doorkeeper_bits_per_entry, 4)),
            additions: 0,
            period: (period_per_entry * entries).max(10),
        }
    }

    /// The block and, per row, the word and the counter's shift in it.
    #[inline]
    fn cells(&self, fp: u32) -> (usize, [(usize, u32); 4]) {
        let h = mix64(fp as u64);
        let block = reduce(h as u32, self.table.len());
        let c = (h >> 32) as u32;
        let mut cells = [(0usize, 0u32); 4];
        for (i, cell) in cells.iter_mut().enumerate() {
            let h = c >> (i * 8);
            // Row i uses words 2i and 2i+1; 16 counters in each.
            *cell = (2 * i + (h & 1) as usize, ((h >> 1) & 15) * 4);
        }
        (block, cells)
    }

    /// The estimated count of `fp` (0 ..= 15, plus one if the doorkeeper holds it).
    #[inline]
    pub(crate) fn frequency(&self, fp: u32) -> u32 {
        let (block, cells) = self.cells(fp);
        let b = &self.table[block];
        let count = cells
            .iter()
            .map(|&(w, shift)| ((b[w] >> shift) & 15) as u32)
            .min()
            .unwrap_or(0);
        let door = self.doorkeeper.as_ref().is_some_and(|d| d.contains(fp));
        (count + door as u32).min(15)
    }

    /// Counts one occurrence of `fp`.
    #[inline]
    pub(crate) fn increment(&mut self, fp: u32) {
        self.increment_by(fp, 1);
    }

    /// Counts `n` occurrences of `fp` (as `n` calls of [`increment`](Self::increment), hashing
    /// once).
    #[inline]
    pub(crate) fn increment_by(&mut self, fp: u32, n: u32) {
        if n == 0 {
            return;
        }
        let (block, cells) = self.cells(fp);
        for _ in 0..n {
            if let Some(d) = &mut self.doorkeeper {
                if !d.put(fp) {
                    continue;
                }
            }
            let b = &mut self.table[block];
            let mut added = false;
            for (w, shift) in cells {
                if (b[w] >> shift) & 15 != 15 {
                    b[w] += 1 << shift;
                    added = true;
                }
            }
            if added {
                self.additions += 1;
                if self.additions >= self.period {
                    self.reset();
                }
            }
        }
    }

    /// Halves every counter; the count of additions loses the truncated halves (Caffeine's
    /// correction), and the doorkeeper is cleared.
    fn reset(&mut self) {
        let mut odd = 0usize;
        for block in self.table.iter_mut() {
            for w in block.iter_mut() {
                odd += (*w & ONE_MASK).count_ones() as usize;
                *w = (*w >> 1) & RESET_MASK;
            }
        }
        self.additions = (self.additions - (odd / 4).min(self.additions)) / 2;
        if let Some(d) = &mut self.doorkeeper {
            d.clear();
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.table) + self.doorkeeper.as_ref().map_or(0, |d| d.bytes())
    }
}

/// libCacheSim's counting Bloom filter ("minimal increment CBF"). See the [module docs](self).
#[derive(Debug, Clone)]
pub(crate) struct CountingBloom {
    counters: Box<[u32]>,
    hashes: u32,
}

impl CountingBloom {
    /// libCacheSim's sizing for `entries` expected entries at a 0.001 error rate: bits per
    /// entry `-ln(0.001) / ln(2)^2`, `ceil(0.693 * bpe)` = 10 hashes, `ceil(bpe * entries)`
    /// counters (at least twice the hashes).
    pub(crate) fn new(entries: usize) -> CountingBloom {
        use std::f64::consts::LN_2;
        let bpe = -(0.001f64.ln()) / (LN_2 * LN_2);
        let hashes = (LN_2 * bpe).ceil() as u32;
        let n = ((bpe * entries as f64).ceil() as usize).max(2 * hashes as usize);
        CountingBloom {
            counters: vec![0; n].into_boxed_slice(),
            hashes,
        }
    }

    /// The filter's two 32-bit hashes of `key`: XXH64 of its eight little-endian bytes with
    /// libCacheSim's seeds 0x12345678 and 0x12344321, truncated, as libCacheSim computes them.
    /// The counters of the key are `(a + i * b) mod counters` for `i < 10`, in 32-bit
    /// arithmetic. The same hash matters: with `14.4` counters per main-region page and every
    /// key of the trace counted, collisions shape the estimates.
    pub(crate) fn hashes(key: u64) -> (u32, u32) {
        (
            xxh64_u64(key, 0x1234_5678) as u32,
            xxh64_u64(key, 0x1234_4321) as u32,
        )
    }

    fn probe(&self, (a, b): (u32, u32), i: u32) -> usize {
        (a.wrapping_add(i.wrapping_mul(b)) % self.counters.len() as u32) as usize
    }

    /// The minimum of the key's counters.
    pub(crate) fn estimate(&self, h: (u32, u32)) -> u32 {
        (0..self.hashes)
            .map(|i| self.counters[self.probe(h, i)])
            .min()
            .unwrap_or(0)
    }

    /// Adds one to each of the key's counters.
    pub(crate) fn add(&mut self, h: (u32, u32)) {
        for i in 0..self.hashes {
            let at = self.probe(h, i);
            self.counters[at] = self.counters[at].saturating_add(1);
        }
    }

    /// Halves every counter.
    pub(crate) fn decay(&mut self) {
        for c in self.counters.iter_mut() {
            *c >>= 1;
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.counters)
    }
}

/// XXH64 (Y. Collet) of the eight little-endian bytes of `x`.
fn xxh64_u64(x: u64, seed: u64) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;
    let mut h = seed.wrapping_add(P5).wrapping_add(8);
    let k = x.wrapping_mul(P2).rotate_left(31).wrapping_mul(P1);
    h ^= k;
    h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_min_counts_saturates_and_ages() {
        let mut s = CountMin4::new(1000, 16, 10, 0);
        for _ in 0..5 {
            s.increment(42);
        }
        assert_eq!(s.frequency(42), 5);
        assert_eq!(s.frequency(43), 0);
        for _ in 0..40 {
            s.increment(7);
        }
        assert_eq!(s.frequency(7), 15);
        // 10 * 1000 counted increments trigger a reset that halves the counters.
        for k in 0..10_000u32 {
            s.increment(1_000_000 + k);
        }
        assert!(s.frequency(7) <= 8, "{}", s.frequency(7));
        assert!(s.frequency(42) <= 3);
    }

    #[test]
    fn doorkeeper_absorbs_first_occurrences() {
        let mut s = CountMin4::new(1000, 16, 10, 16);
        s.increment(5);
        assert_eq!(s.frequency(5), 1, "held by the doorkeeper only");
        s.increment(5);
        s.increment(5);
        assert_eq!(s.frequency(5), 3);
        let mut d = Doorkeeper::new(1 << 12, 4);
        assert!(!d.put(9));
        assert!(d.put(9) && d.contains(9));
        d.clear();
        assert!(!d.contains(9));
    }

    #[test]
    fn counting_bloom_matches_libcachesim_sizing() {
        let mut c = CountingBloom::new(1000);
        assert_eq!(c.hashes, 10);
        assert_eq!(c.counters.len(), 14378);
        let h = CountingBloom::hashes(3);
        c.add(h);
        c.add(h);
        assert_eq!(c.estimate(h), 2);
        c.decay();
        assert_eq!(c.estimate(h), 1);
        // Reference values of XXH64 over eight bytes (python xxhash).
        assert_eq!(xxh64_u64(0, 0), 0x34c9_6acd_cadb_1bbb);
    }
}
