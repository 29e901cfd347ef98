//! The page index: page number → frame, with lock-free lookups.
//!
//! An open-addressing table with linear probing over `AtomicU64` slots (0 = empty, otherwise
//! `fingerprint << 32 | frame id + 1`, where the fingerprint is the high 32 bits of the key's
//! hash). The key itself is not stored in the slot: it is the `tag` of the frame it names, so the
//! table never holds more entries than there are frames. It has exactly twice as many slots as
//! frames (at least 16), so probes stay short (load factor ≤ 0.5) and it can never fill: 16 bytes
//! per frame at every frame count. The table length need not be a power of two, so a key's home
//! slot is the low 32 bits of its hash scaled to the length by a multiply and a shift
//! ("fastrange": `(low * len) >> 32`, which keeps the home independent of the fingerprint bits),
//! and probes wrap from the last slot to the first.
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
//! - Removal uses backward-shift deletion, so there are no tombstones and no rebuilds. Whether an
//!   entry may move back into the hole is decided by distances along the probe sequence (from its
//!   home slot, modulo the table length), computed with the same home function as lookups.

use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};

use crate::page::FrameMeta;
use crate::policy::FrameId;

/// The index. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct PageIndex {
    slots: Box<[AtomicU64]>,
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
    /// An index for `frames` frames: twice as many slots (at least 16).
    pub(crate) fn new(frames: usize) -> PageIndex {
        let capacity = (frames * 2).max(16);
        assert!(
            capacity <= 1 << 32,
            "the index addresses at most 2^32 slots (2^31 frames)"
        );
        PageIndex {
            slots: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            writer: Mutex::new(0),
        }
    }

    /// The home slot of a key with hash `h`: its low 32 bits scaled to the table length (the high
    /// 32 bits are the fingerprint). Always `< slots.len()`, as `len ≤ 2^32`.
    #[inline]
    fn home(&self, h: u64) -> usize {
        (((h & 0xFFFF_FFFF) * self.slots.len() as u64) >> 32) as usize
    }

    /// The slot after `i` in probe order, wrapping around at the end of the table.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// How many probe steps slot `i` lies after slot `from` (modulo the table length).
    #[inline]
    fn distance(&self, from: usize, i: usize) -> usize {
        if i >= from {
            i - from
        } else {
            i + self.slots.len() - from
        }
    }

    /// Bytes of index per frame (for the overhead figure).
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    #[inline]
    fn slot(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.slots.len());
        // SAFETY: every slot index comes from `home` or `next`, which both return values below
        // `slots.len()` (see their docs), and the slot table is never resized.
        unsafe { self.slots.get_unchecked(i) }
    }

    /// Every `(slot value's frame)` in the table, for the invariant checker (the caller holds the
    /// writer lock, so nothing moves).
    pub(crate) fn frames_indexed(&self, _guard: &IndexGuard<'_>) -> Vec<FrameId> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Acquire))
            .filter(|&v| v != 0)
            .map(|v| ((v & 0xFFFF_FFFF) - 1) as FrameId)
            .collect()
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
        self.probe(key, |frame| {
            candidate(frame);
            frames.get(frame as usize).is_some_and(|m| m.tag() == key)
        })
    }

    /// Walks `key`'s probe sequence up to the first empty slot and returns the first frame,
    /// among the slots whose fingerprint matches, that `accept` takes.
    #[inline]
    fn probe(&self, key: u64, mut accept: impl FnMut(FrameId) -> bool) -> Option<FrameId> {
        let h = hash(key);
        let fp = h >> 32;
        let mut i = self.home(h);
        for _ in 0..self.slots.len() {
            let v = self.slot(i).load(Ordering::Acquire);
            if v == 0 {
                return None;
            }
            if v >> 32 == fp {
                let frame = (v as u32).wrapping_sub(1);
                if accept(frame) {
                    return Some(frame);
                }
            }
            i = self.next(i);
        }
        None
    }

    /// Asks the CPU to fetch `key`'s home slot: the first stage of a pipelined batch of
    /// lookups ([`PageCache::read_slices`](crate::PageCache::read_slices)), whose cache misses
    /// then overlap instead of following one another.
    #[inline]
    pub(crate) fn prefetch_home(&self, key: u64) {
        let slot: *const AtomicU64 = self.slot(self.home(hash(key)));
        crate::cpu::prefetch(slot.cast(), 1);
    }

    /// The frame of the first slot on `key`'s probe sequence whose fingerprint matches, without
    /// reading any frame's tag (the second stage of a pipelined lookup: the caller prefetches
    /// the frame, then checks the tag when it takes its hold). May be another key's frame (the
    /// caller's tag check rejects it and it looks the slow way) or miss during a concurrent
    /// removal, like [`lookup`](Self::lookup).
    #[inline]
    pub(crate) fn candidate(&self, key: u64) -> Option<FrameId> {
        self.probe(key, |_| true)
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
        let mut i = self.home(h);
        loop {
            if self.slot(i).load(Ordering::Relaxed) == 0 {
                self.slot(i).store(slot_value(h, frame), Ordering::Release);
                **guard += 1;
                return;
            }
            i = self.next(i);
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
        let mut i = self.home(h);
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
            i = self.next(i);
        }
        if !found {
            return false;
        }
        // Backward-shift deletion: pull later entries of the cluster into the hole when their
        // home slot allows it.
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            let v = self.slot(j).load(Ordering::Relaxed);
            if v == 0 {
                break;
            }
            let home = self.home(hash(frames[(v as u32 - 1) as usize].tag()));
            // The entry at j may move to `hole` only if the hole is on its probe path, i.e. at
            // least as far from j as its home is (otherwise its home lies in (hole, j] and a
            // lookup starting there would never reach the hole).
            if self.distance(home, j) >= self.distance(hole, j) {
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

    /// A random mix of inserts and removals against a `HashMap`, at table lengths that are not
    /// powers of two, with keys chosen so that clusters wrap from the last slot to the first.
    #[test]
    fn matches_a_map_with_wrap_around() {
        for n in [5usize, 8, 100, 4097] {
            let fr = frames(n);
            let idx = PageIndex::new(n);
            assert_eq!(idx.slots.len(), (2 * n).max(16));
            // Half the keys have their home in the last eight slots, so the table wraps.
            let len = idx.slots.len();
            let tail_keys: Vec<u64> = (0u64..)
                .filter(|&k| idx.home(hash(k)) >= len - 8)
                .take(n)
                .collect();
            let key_of = |x: u64| {
                if x % 2 == 0 {
                    tail_keys[(x / 2) as usize % tail_keys.len()]
                } else {
                    x * 7919
                }
            };
            let mut map = std::collections::HashMap::new();
            let mut free: Vec<FrameId> = (0..n as FrameId).collect();
            let mut g = idx.lock();
            let mut x = n as u64;
            for step in 0..20_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let key = key_of((x >> 33) % (3 * n as u64));
                match map.get(&key).copied() {
                    Some(f) if (x >> 20) % 2 == 0 => {
                        assert!(idx.remove(&mut g, key, f, &fr), "n {n} step {step}");
                        map.remove(&key);
                        free.push(f);
                    }
                    None if !free.is_empty() => {
                        let f = free.pop().unwrap();
                        tag(&fr, f as usize, key);
                        idx.insert(&mut g, key, f);
                        map.insert(key, f);
                    }
                    _ => {}
                }
                assert_eq!(
                    idx.lookup(key, &fr),
                    map.get(&key).copied(),
                    "n {n} step {step}"
                );
                assert_eq!(*g, map.len());
            }
            for (&key, &f) in &map {
                assert_eq!(idx.lookup(key, &fr), Some(f), "n {n}");
            }
        }
    }
}
