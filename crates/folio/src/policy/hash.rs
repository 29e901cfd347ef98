//! A tiny, fast, non-cryptographic hasher for [`PageKey`](super::PageKey)-keyed maps (ghost
//! queues, the simulator's page table).
//!
//! One 64x64→128-bit multiply folded to 64 bits (the "folded multiply" of wyhash/foldhash) per
//! `u64`: all output bits depend on all input bits, so hashbrown's use of both the low bits
//! (bucket) and the top 7 bits (tag) is well served. It has no per-process random seed, so it is
//! not flood-resistant: page keys come from the storage software itself, not from an adversary.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let m = (a as u128).wrapping_mul(b as u128);
    (m as u64) ^ ((m >> 64) as u64)
}

/// A [`Hasher`] for integer keys. See the [module docs](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u64(&mut self, x: u64) {
        self.0 = folded_multiply(self.0 ^ x ^ SEED, MUL);
    }

    #[inline]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// `BuildHasher` for [`KeyHasher`].
pub type BuildKeyHasher = BuildHasherDefault<KeyHasher>;

/// A `HashMap` keyed by page keys with [`KeyHasher`].
pub type KeyMap<V> = HashMap<super::PageKey, V, BuildKeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn spreads_sequential_keys() {
        let b = BuildKeyHasher::default();
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for k in 0u64..1024 {
            let h = b.hash_one(k);
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        assert!(low.len() > 600, "low bits poorly spread: {}", low.len());
        assert_eq!(top.len(), 128);
    }
}
