//! Hit buffers: how a list-ordered policy (W-TinyLFU, LIRS) learns of hits without a lock or a
//! locked instruction on the hit path.
//!
//! A hit appends its frame id to a small ring (a *stripe*) picked by the calling thread: a
//! relaxed load of the ring's tail and head, a relaxed store of the id, a release store of the
//! new tail. No read-modify-write, so no locked instruction; each thread keeps to its own stripe
//! (assigned round-robin when the thread first records), so stripes do not bounce between
//! cores. The policy drains every stripe, oldest entry first, under its own lock whenever it
//! takes that lock anyway (an insertion, an eviction, a removal), and applies the hits in order:
//! in a single-threaded replay (the simulator) every hit is therefore applied before the next
//! eviction decision, exactly as if it had been applied at once.
//!
//! When a stripe is full, [`HitBuffers::record`] says so; the policy then *tries* its lock
//! (`try_lock`, the one locked instruction, once per `SLOTS` hits of a thread) and drains. If the
//! lock is busy the hit is dropped: the buffers are lossy, as Caffeine's read buffers are (Ben
//! Manes, "Design of a Modern Cache", and the BP-Wrapper paper: X. Ding, S. Jiang, X. Zhang,
//! "BP-Wrapper: A System Framework Making Any Replacement Algorithms (Almost) Lock Contention
//! Free", ICDE 2009). A policy loses some recency and frequency information under contention,
//! never correctness: a drained id is checked against the policy's own state, and an id whose
//! frame has meanwhile been reused counts for the new page (rare, and harmless).
//!
//! Two threads that share a stripe (more threads than stripes) race on its tail and may
//! overwrite each other's entries: lost hits again, never undefined behaviour (every slot is an
//! atomic).
//!
//! Bounds: `stripes * SLOTS` ids in all; a drain reads at most that many.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Ids per stripe (a power of two).
const SLOTS: usize = 32;

#[derive(Debug)]
#[repr(align(128))]
struct Stripe {
    /// Entries written so far (wrapping), by the stripe's thread.
    tail: AtomicU32,
    /// Entries drained so far (wrapping), by the lock holder.
    head: AtomicU32,
    slots: [AtomicU32; SLOTS],
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            tail: AtomicU32::new(0),
            head: AtomicU32::new(0),
            slots: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

/// Striped, lossy buffers of hit frame ids. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct HitBuffers {
    stripes: Box<[Stripe]>,
}

/// Stripes to allocate on this machine: twice the parallelism, a power of two, at most 64.
fn stripes_for_machine() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        (2 * cores).next_power_of_two().clamp(2, 64)
    })
}

thread_local! {
    /// This thread's stripe number, `usize::MAX` until it first records.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn thread_stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let v = NEXT.fetch_add(1, Ordering::Relaxed);
        s.set(v);
        v
    })
}

impl HitBuffers {
    /// Buffers for a policy over `capacity` frames: as many stripes as the machine wants, but
    /// no more ids than `capacity / 2` (so tiny caches pay little), and at least one stripe.
    pub(crate) fn new(capacity: usize) -> HitBuffers {
        let mut n = stripes_for_machine();
        while n > 1 && n * SLOTS > capacity / 2 {
            n /= 2;
        }
        HitBuffers {
            stripes: (0..n).map(|_| Stripe::new()).collect(),
        }
    }

    /// Appends `frame` to this thread's stripe. False if the stripe is full (nothing recorded):
    /// the caller should drain (if it can take its lock) and record again.
    #[inline]
    pub(crate) fn record(&self, frame: u32) -> bool {
        let s = &self.stripes[thread_stripe() & (self.stripes.len() - 1)];
        let t = s.tail.load(Ordering::Relaxed);
        let h = s.head.load(Ordering::Relaxed);
        if t.wrapping_sub(h) as usize >= SLOTS {
            return false;
        }
        s.slots[t as usize % SLOTS].store(frame, Ordering::Relaxed);
        s.tail.store(t.wrapping_add(1), Ordering::Release);
        true
    }

    /// Records `frame`; if this thread's stripe is full, runs `drain` (which tries the owner's
    /// lock and drains the buffers if it gets it) and records again (dropped if still full).
    #[inline]
    pub(crate) fn record_or(&self, frame: u32, drain: impl FnOnce()) {
        if !self.record(frame) {
            drain();
            self.record(frame);
        }
    }

    /// Hands every buffered id to `f`, stripe by stripe, oldest first, and empties the stripes.
    /// Call only under the owner's lock (one drainer at a time).
    pub(crate) fn drain(&self, mut f: impl FnMut(u32)) {
        for s in self.stripes.iter() {
            let t = s.tail.load(Ordering::Acquire);
            let h = s.head.load(Ordering::Relaxed);
            if t == h {
                continue;
            }
            // More than SLOTS only if two threads raced on the stripe's tail: keep the newest.
            let n = (t.wrapping_sub(h) as usize).min(SLOTS) as u32;
            for i in 0..n {
                let at = t.wrapping_sub(n).wrapping_add(i);
                f(s.slots[at as usize % SLOTS].load(Ordering::Relaxed));
            }
            s.head.store(t, Ordering::Release);
        }
    }

    /// Bytes allocated.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.stripes)
    }
}

#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_until_full_then_drains() {
        let b = HitBuffers::new(1 << 20);
        for i in 0..SLOTS as u32 {
            assert!(b.record(i));
        }
        assert!(!b.record(99), "a full stripe refuses");
        let mut got = Vec::new();
        b.drain(|f| got.push(f));
        assert_eq!(got, (0..SLOTS as u32).collect::<Vec<_>>());
        assert!(b.record(7));
        got.clear();
        b.drain(|f| got.push(f));
        assert_eq!(got, vec![7]);
    }

    #[test]
    fn small_caches_get_one_small_stripe() {
        let b = HitBuffers::new(100);
        assert_eq!(b.stripes.len(), 1);
        assert!(b.bytes() <= 256);
    }

    #[test]
    fn threads_record_concurrently_and_nothing_is_invented() {
        let b = std::sync::Arc::new(HitBuffers::new(1 << 20));
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..10 {
                        ok += b.record(t * 100 + i) as u32;
                    }
                    ok
                })
            })
            .collect();
        let recorded: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let mut got = Vec::new();
        b.drain(|f| got.push(f));
        assert!(got.len() as u32 <= recorded);
        assert!(got.iter().all(|&f| f % 100 < 10 && f / 100 < 4));
    }
}
