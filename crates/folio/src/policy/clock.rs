//! CLOCK (second chance), with a 1-bit or n-bit reference counter.
//!
//! Source: F. J. Corbató, "A Paging Experiment with the Multics System" (MIT Project MAC, 1968);
//! the n-bit variant ("generalised CLOCK") follows libCacheSim's `Clock` with `n-bit-counter`.
//!
//! The frames form a ring swept by a hand. A hit sets the frame's counter (1-bit: to 1; n-bit:
//! increments it up to `2^n - 1`). To evict, the hand visits frames in order: a frame with a
//! non-zero counter has it decremented and is passed over (a second chance); the first frame with
//! counter zero that the cache can claim is the victim. A new page takes the victim's slot, so it
//! is examined again only after a full revolution, exactly like insertion at the head of a FIFO.
//!
//! Hits are one relaxed load and (only when the counter changes) one relaxed store to a byte per
//! frame: no lock, no shared cache line between unrelated pages. Eviction takes a mutex.
//!
//! Metadata: 1 byte counter + 1 byte resident flag per frame, plus the hand.
//!
//! When not to use it: it is not scan-resistant (a scan of new pages sweeps out a hot set whose
//! pages are not re-referenced within one revolution), and its miss ratio is close to LRU's.

use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;

use super::{Admission, EvictionPolicy, FrameId, PageKey};

/// CLOCK with an n-bit counter (n = 1 is classic second chance). See the [module docs](self).
#[derive(Debug)]
pub struct Clock {
    counters: Box<[AtomicU8]>,
    counter_max: u8,
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    resident: Box<[bool]>,
    resident_count: usize,
    hand: usize,
}

impl Clock {
    /// One-bit CLOCK over `capacity` frames.
    pub fn new(capacity: usize) -> Clock {
        Clock::with_bits(capacity, 1)
    }

    /// CLOCK with a `bits`-bit counter (1 to 8) over `capacity` frames.
    pub fn with_bits(capacity: usize, bits: u32) -> Clock {
        let bits = bits.clamp(1, 8);
        Clock {
            counters: (0..capacity).map(|_| AtomicU8::new(0)).collect(),
            counter_max: ((1u32 << bits) - 1) as u8,
            ring: Mutex::new(Ring {
                resident: vec![false; capacity].into_boxed_slice(),
                resident_count: 0,
                hand: 0,
            }),
        }
    }
}

impl EvictionPolicy for Clock {
    fn name(&self) -> &'static str {
        match self.counter_max {
            1 => "clock",
            3 => "clock2",
            7 => "clock3",
            _ => "clock-n",
        }
    }

    fn capacity(&self) -> usize {
        self.counters.len()
    }

    fn len(&self) -> usize {
        self.ring.lock().resident_count
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.ring
            .lock()
            .resident
            .get(frame as usize)
            .copied()
            .unwrap_or(false)
    }

    fn on_hit(&self, frame: FrameId) {
        if let Some(c) = self.counters.get(frame as usize) {
            let v = c.load(Ordering::Relaxed);
            if v < self.counter_max {
                c.store(v + 1, Ordering::Relaxed);
            }
        }
    }

    fn on_insert(&self, frame: FrameId, _page: PageKey, _admission: Admission) {
        let mut ring = self.ring.lock();
        let Some(slot) = ring.resident.get_mut(frame as usize) else {
            return;
        };
        if !*slot {
            *slot = true;
            ring.resident_count += 1;
        }
        self.counters[frame as usize].store(0, Ordering::Relaxed);
    }

    fn on_remove(&self, frame: FrameId) {
        let mut ring = self.ring.lock();
        if let Some(slot) = ring.resident.get_mut(frame as usize) {
            if *slot {
                *slot = false;
                ring.resident_count -= 1;
            }
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut ring = self.ring.lock();
        let capacity = ring.resident.len();
        if ring.resident_count == 0 {
            return None;
        }
        // Each pass over the ring decrements every counter it passes, so after
        // `counter_max + 1` passes every unclaimable-only ring has been seen at zero once.
        let steps_max = capacity * (self.counter_max as usize + 2);
        for _ in 0..steps_max {
            let frame = ring.hand;
            ring.hand = if ring.hand + 1 == capacity {
                0
            } else {
                ring.hand + 1
            };
            if !ring.resident[frame] {
                continue;
            }
            let counter = &self.counters[frame];
            let v = counter.load(Ordering::Relaxed);
            if v > 0 {
                counter.store(v - 1, Ordering::Relaxed);
                continue;
            }
            if claim(frame as FrameId) {
                ring.resident[frame] = false;
                ring.resident_count -= 1;
                return Some(frame as FrameId);
            }
        }
        None
    }

    fn metadata_bytes_per_page(&self) -> usize {
        2
    }
}
