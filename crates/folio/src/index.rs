//! The page index: page number → frame, with lock-free lookups.
//!
//! An open-addressing table with linear probing over `AtomicU64` slots (0 = empty, otherwise
//! `fingerprint << 32 | frame id + 1`, where the fingerprint is the high 32 bits of the key's
//! hash). The key itself is not stored in the slot: it is the `tag` of the frame it names, so the
//! table never holds more entries than there are frames (it is sized at twice the frame count, so
//! probes stay short and it can never fill).
//!
//! The fingerprint is there for the hit path: a probe that passes over another page's slot is
//! rejected from the slot alone, without touching (and missing in the CPU cache on) that page's
//! frame metadata, and the frame of the matching slot is known one cache miss earlier, so the
//! caller can prefetch its bytes while the tag is being checked.
//!
//! - Lookups take no lock. They may miss an entry that a concurrent removal is shifting backwards
//!   (a false negative), never return a wrong frame as right: the caller validates by locking the
//!   frame and re-checking its tag. A caller that misses falls back to [`PageIndex::lock`] and
//!   looks again, so a false negative costs time, never correctness.
//! - Inserts and removals hold the writer mutex ([`PageIndex::lock`]); they happen on misses and
//!   evictions, which do I/O anyway. While it is held, the tags of indexed frames do not change
//!   (a frame is retagged only after its removal, and tagged before its insertion).
//! - Removal uses backward-shift deletion, so there are no tombstones and no rebuilds.

use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

use crate::page::FrameMeta;
use crate::policy::FrameId;

/// The index. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct PageIndex {
    slots: Box<[AtomicU64]>,
    mask: usize,
    writer: Mutex<usize>,
}

/// Proof that the caller holds the writer lock; derefs to the number of entries.
pub(crate) type IndexGuard<'a> = MutexGuard<'a, usize>;

#[inline]
fn hash(key: u64) -> u64 {
    // splitmix64 finaliser: consecutive page numbers spread over the table.
    let mut z = key.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The slot value of `key` in `frame`: the hash's high half (the table has at most 2^32 slots,
/// so its home slot uses only the low half) and the frame id + 1 (never 0).
#[inline]
fn slot_value(h: u64, frame: FrameId) -> u64 {
    (h & !0xFFFF_FFFF) | (frame as u64 + 1)
}

impl PageIndex {
    /// An index for `frames` frames.
    pub(crate) fn new(frames: usize) -> PageIndex {
        let capacity = (frames * 2).max(16).next_power_of_two();
        PageIndex {
            slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            mask: capacity - 1,
            writer: Mutex::new(0),
        }
    }

    /// Bytes of index per frame (for the overhead figure).
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i <= self.mask);
        // SAFETY: every caller masks `i` with `self.mask`, which is `slots.len() - 1`.
        unsafe { self.slots.get_unchecked(i & self.mask) }
    }

    /// Lock-free lookup; may return a false negative during a concurrent removal.
    #[inline]
    pub(crate) fn lookup(&self, key: u64, frames: &[FrameMeta]) -> Option<FrameId> {
        self.lookup_then(key, frames, |_| {})
    }

    /// As [`lookup`](Self::lookup), calling `candidate` with the frame of each slot whose
    /// fingerprint matches, before that frame's tag is read (the hit path prefetches its bytes).
    #[inline]
    pub(crate) fn lookup_then(
        &self,
        key: u64,
        frames: &[FrameMeta],
        mut candidate: impl FnMut(FrameId),
    ) -> Option<FrameId> {
        let h = hash(key);
        let fp = h >> 32;
        let mut i = h as usize & self.mask;
        for _ in 0..=self.mask {
            let v = self.slot(i).load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if v >> 32 == fp {
                let frame = (v as u32).wrapping_sub(1);
                candidate(frame);
                if frames.get(frame as usize).is_some_and(|m| m.tag() == key) {
                    return Some(frame);
                }
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
        let h = hash(key);
        let mut i = h as usize & self.mask;
        loop {
            if self.slot(i).load(Ordering::Relaxed) == 0 {
                self.slot(i).store(slot_value(h, frame), Ordering::Release);
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
        let h = hash(key);
        let mut i = h as usize & self.mask;
        let mut found = false;
        for _ in 0..self.slots.len() {
            let v = self.slot(i).load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            if v == slot_value(h, frame) {
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
            let v = self.slot(j).load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            let home = hash(frames[(v as u32 - 1) as usize].tag()) as usize & self.mask;
            // Can the entry at j move to `hole`? Only if its home is not in (hole, j].
            let between = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !between {
                self.slot(hole).store(v, Ordering::Release);
                hole = j;
            }
        }
        self.slot(hole).store(0, Ordering::Release);
        **guard -= 1;
        true
    }
}

// Unit tests run on std's atomics only; `folio_model` is set by the model-checking crate,
// which compiles this file against shuttle's (usable only inside a shuttle test).
#[cfg(all(test, not(folio_model)))]
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
