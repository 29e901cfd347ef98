//! The page index: page number → frame, with lock-free lookups.
//!
//! An open-addressing table with linear probing over `AtomicU32` slots (0 = empty, otherwise
//! frame id + 1). The key of a slot is not stored in it: it is the `tag` of the frame it names, so
//! a slot is one word and the table never holds more entries than there are frames (it is sized
//! at twice the frame count, so probes stay short and it can never fill).
//!
//! - Lookups take no lock. They may miss an entry that a concurrent removal is shifting backwards
//!   (a false negative), never return a wrong frame as right: the caller validates by locking the
//!   frame and re-checking its tag. A caller that misses falls back to [`PageIndex::lock`] and
//!   looks again, so a false negative costs time, never correctness.
//! - Inserts and removals hold the writer mutex ([`PageIndex::lock`]); they happen on misses and
//!   evictions, which do I/O anyway. While it is held, the tags of indexed frames do not change
//!   (a frame is retagged only after its removal, and tagged before its insertion).
//! - Removal uses backward-shift deletion, so there are no tombstones and no rebuilds.

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::page::FrameMeta;
use crate::policy::FrameId;

/// The index. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct PageIndex {
    slots: Box<[AtomicU32]>,
    mask: usize,
    writer: Mutex<usize>,
}

/// Proof that the caller holds the writer lock; derefs to the number of entries.
pub(crate) type IndexGuard<'a> = MutexGuard<'a, usize>;

fn hash(key: u64) -> usize {
    // splitmix64 finaliser: consecutive page numbers spread over the table.
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as usize
}

impl PageIndex {
    /// An index for `frames` frames.
    pub(crate) fn new(frames: usize) -> PageIndex {
        let capacity = (frames * 2).max(16).next_power_of_two();
        PageIndex {
            slots: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            mask: capacity - 1,
            writer: Mutex::new(0),
        }
    }

    /// Bytes of index per frame (for the overhead figure).
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU32>()
    }

    /// Lock-free lookup; may return a false negative during a concurrent removal.
    #[inline]
    pub(crate) fn lookup(&self, key: u64, frames: &[FrameMeta]) -> Option<FrameId> {
        let mut i = hash(key) & self.mask;
        for _ in 0..self.slots.len() {
            let v = self.slots[i].load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            let frame = v - 1;
            if frames[frame as usize].tag() == key {
                return Some(frame);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Takes the writer lock.
    pub(crate) fn lock(&self) -> IndexGuard<'_> {
        self.writer.lock()
    }

    /// Inserts `key → frame`. The caller holds the lock, has checked the key is absent, and has
    /// already set the frame's tag to `key`.
    pub(crate) fn insert(&self, guard: &mut IndexGuard<'_>, key: u64, frame: FrameId) {
        debug_assert!(**guard < self.slots.len() / 2 + 1, "index over-full");
        let mut i = hash(key) & self.mask;
        loop {
            if self.slots[i].load(Ordering::Relaxed) == 0 {
                self.slots[i].store(frame + 1, Ordering::Release);
                **guard += 1;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Removes `key → frame` if present. The caller holds the lock. Returns whether it was there.
    pub(crate) fn remove(
        &self,
        guard: &mut IndexGuard<'_>,
        key: u64,
        frame: FrameId,
        frames: &[FrameMeta],
    ) -> bool {
        let mut i = hash(key) & self.mask;
        let mut found = false;
        for _ in 0..self.slots.len() {
            let v = self.slots[i].load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            if v == frame + 1 {
                found = true;
                break;
            }
            i = (i + 1) & self.mask;
        }
        if !found {
            return false;
        }
        // Backward-shift deletion: pull later entries of the cluster into the hole when their
        // home slot allows it.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let v = self.slots[j].load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            let home = hash(frames[(v - 1) as usize].tag()) & self.mask;
            // Can the entry at j move to `hole`? Only if its home is not in (hole, j].
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                self.slots[hole].store(v, Ordering::Release);
                hole = j;
            }
        }
        self.slots[hole].store(0, Ordering::Release);
        **guard -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::EXCLUSIVE;

    fn frames(n: usize) -> Vec<FrameMeta> {
        (0..n).map(|_| FrameMeta::default()).collect()
    }

    fn tag(frames: &[FrameMeta], f: usize, key: u64) {
        frames[f].set_owned_state_for_test(EXCLUSIVE);
        frames[f].set_tag(key);
    }

    #[test]
    fn insert_lookup_remove_many() {
        let n = 64;
        let fr = frames(n);
        let idx = PageIndex::new(n);
        let mut g = idx.lock();
        // Keys chosen to collide a lot: multiples of the table size.
        let keys: Vec<u64> = (0..n as u64).map(|k| k * 1024 + 3).collect();
        for (f, &k) in keys.iter().enumerate() {
            tag(&fr, f, k);
            idx.insert(&mut g, k, f as FrameId);
        }
        for (f, &k) in keys.iter().enumerate() {
            assert_eq!(idx.lookup(k, &fr), Some(f as FrameId));
        }
        for (f, &k) in keys.iter().enumerate().step_by(2) {
            assert!(idx.remove(&mut g, k, f as FrameId, &fr));
            assert!(!idx.remove(&mut g, k, f as FrameId, &fr));
        }
        for (f, &k) in keys.iter().enumerate() {
            let expect = (f % 2 == 1).then_some(f as FrameId);
            assert_eq!(idx.lookup(k, &fr), expect, "key {k}");
        }
        assert_eq!(*g, n / 2);
    }
}
