//! The simulator's page→frame map: a flat open-addressing table specialised for its three
//! operations per miss (a failed lookup, removing the victim's page, inserting the new page).
//!
//! Profile (callgrind, S3-FIFO at 10% of the CloudPhysics trace): the general-purpose
//! `HashMap<PageKey, FrameId>` it replaces cost ~120 instructions per access, a quarter of the
//! replay once the ghost was made cheap.
//!
//! Layout: a power-of-two array of 8-byte slots, at least twice the frame count (load ≤ 50%),
//! linear probing, backward-shift deletion (no tombstones). A slot is `tag << 32 | (frame + 1)`,
//! 0 when empty, where `tag` is the high 32 bits of the key's hash and the key's home slot is
//! `tag & mask`; so a slot's home is known without its key (for deletion), and the key itself is
//! not stored: a tag match is confirmed against the simulator's frame→page array. Frames are
//! `< u32::MAX`, so `frame + 1` never overflows and a full slot is never 0.

use std::hash::{BuildHasher, BuildHasherDefault};

use crate::policy::hash::KeyHasher;
use crate::policy::{FrameId, PageKey};

#[derive(Debug)]
pub(crate) struct FrameMap {
    slots: Box<[u64]>,
    mask: usize,
}

/// A key's hash tag (its home slot is `tag & mask`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tag(u32);

impl FrameMap {
    /// A map for at most `frames` entries (frame ids `< frames`).
    pub(crate) fn new(frames: usize) -> FrameMap {
        assert!(frames < u32::MAX as usize, "too many frames");
        let len = (2 * frames).next_power_of_two().max(8);
        assert!(len <= 1 << 32, "frame map too large");
        FrameMap {
            slots: vec![0; len].into_boxed_slice(),
            mask: len - 1,
        }
    }

    #[inline]
    pub(crate) fn tag(key: PageKey) -> Tag {
        Tag((BuildHasherDefault::<KeyHasher>::default().hash_one(key) >> 32) as u32)
    }

    /// The frame holding `key`; `page_of(frame)` must give the page in a mapped frame.
    #[inline]
    pub(crate) fn get(
        &self,
        key: PageKey,
        tag: Tag,
        page_of: impl Fn(FrameId) -> PageKey,
    ) -> Option<FrameId> {
        let mut i = tag.0 as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == tag.0 {
                let frame = (s as u32).wrapping_sub(1);
                if page_of(frame) == key {
                    return Some(frame);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Hints the CPU to fetch the home slot of `tag` (the simulator knows its trace ahead).
    #[inline]
    pub(crate) fn prefetch(&self, tag: Tag) {
        crate::policy::prefetch(&self.slots[tag.0 as usize & self.mask]);
    }

    /// Maps a key (absent) with hash `tag` to `frame`.
    #[inline]
    pub(crate) fn insert(&mut self, tag: Tag, frame: FrameId) {
        let mut i = tag.0 as usize & self.mask;
        while self.slots[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = ((tag.0 as u64) << 32) | (frame as u64 + 1);
    }

    /// Unmaps the key with hash `tag`, which is mapped to `frame`.
    #[inline]
    pub(crate) fn remove(&mut self, tag: Tag, frame: FrameId) {
        let want = ((tag.0 as u64) << 32) | (frame as u64 + 1);
        let mut hole = tag.0 as usize & self.mask;
        while self.slots[hole] != want {
            debug_assert!(self.slots[hole] != 0, "removing an unmapped frame");
            hole = (hole + 1) & self.mask;
        }
        // Backward shift: pull later entries of the probe run into the hole unless their home
        // lies cyclically in (hole, j].
        let mut j = hole;
        loop {
            j = (j + 1) & self.mask;
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & self.mask;
            if (j.wrapping_sub(home) & self.mask) >= (j.wrapping_sub(hole) & self.mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = 0;
    }

    /// Bytes of the table.
    #[allow(dead_code)]
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against `HashMap` with random inserts and removals, including colliding homes.
    #[test]
    fn matches_hashmap() {
        let frames = 50usize;
        let mut m = FrameMap::new(frames);
        let mut page: Vec<Option<PageKey>> = vec![None; frames];
        let mut model = std::collections::HashMap::new();
        let mut x = 7u64;
        for _ in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 33) % 300;
            let frame = ((x >> 20) % frames as u64) as FrameId;
            let got = m.get(key, FrameMap::tag(key), |f| page[f as usize].unwrap());
            assert_eq!(got, model.get(&key).copied());
            if got.is_none() {
                if let Some(old) = page[frame as usize].take() {
                    m.remove(FrameMap::tag(old), frame);
                    model.remove(&old);
                }
                m.insert(FrameMap::tag(key), frame);
                page[frame as usize] = Some(key);
                model.insert(key, frame);
            }
        }
    }
}
