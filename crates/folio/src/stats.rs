//! Counters and the [`Stats`] snapshot.
//!
//! Counters that every hit touches are striped over cache-line-sized slots, one per thread: a
//! thread owns a stripe number for its life (up to 64 threads at once; more share one stripe
//! with atomic adds), so two threads never write the same cache line for bookkeeping and an
//! owner counts with a plain load and store.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the cache's counters (monotonic) and gauges (current values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Page lookups that found the page resident.
    pub hits: u64,
    /// Page lookups that had to load the page (one per run loaded).
    pub misses: u64,
    /// Pages evicted to make room.
    pub evictions: u64,
    /// Evicted pages that were still dirty, so the eviction path wrote them back itself: one
    /// write of one page each, which the thread that needed the frame waited for (the
    /// background write-back had not reached them). Failed attempts count too.
    pub eviction_writebacks: u64,
    /// Dirty pages the eviction path tried to write back after each of those victims
    /// (write-behind: the dirty pages that follow it, up to one I/O's worth, which would be the
    /// next victims; busy ones are skipped), again on the thread that needed the frame.
    pub write_behind_pages: u64,
    /// Backend read calls.
    pub read_ios: u64,
    /// Backend write calls (a run of pages is one).
    pub writeback_ios: u64,
    /// Pages written back.
    pub writeback_pages: u64,
    /// Failed write-back calls.
    pub writeback_errors: u64,
    /// Backend syncs.
    pub syncs: u64,
    /// Bytes read from the backend.
    pub read_bytes: u64,
    /// Bytes written back to the backend.
    pub writeback_bytes: u64,
    /// `read_at` calls.
    pub read_calls: u64,
    /// `write_at` calls.
    pub write_calls: u64,
    /// Gauge: dirty pages now.
    pub dirty_pages: u64,
    /// Gauge: frames holding a page now.
    pub resident_pages: u64,
    /// Gauge: frames in all (the budget in pages).
    pub capacity_pages: u64,
    /// Gauge: pages whose write-back is in flight now.
    pub writeback_pages_in_flight: u64,
    /// Nanoseconds writers spent waiting for the flusher (dirty throttling).
    pub throttled_ns: u64,
    /// Write calls that were throttled.
    pub throttle_waits: u64,
    /// Rounds of the background flusher.
    pub flusher_rounds: u64,
    /// Setting: dirty pages at which writers are throttled.
    pub dirty_limit_pages: u64,
    /// Setting: dirty pages over which the flusher starts writing back, at most.
    pub dirty_background_pages: u64,
    /// Gauge: dirty pages over which the flusher starts writing back now: the setting, or,
    /// while eviction has recently met dirty victims, half the free frames plus the policy's
    /// eviction window if that is less (see
    /// [`dirty_background_percent`](crate::CacheConfig::dirty_background_percent)).
    pub dirty_background_now_pages: u64,
    /// Frames taken out of use for good because a backend did not give back the buffer it was
    /// lent for a read (it may still write into it): see the `backend` module docs.
    pub quarantined_frames: u64,
    /// Readahead and `WillNeed` jobs dropped because their queue was full.
    pub readahead_dropped: u64,
    /// The old name of [`read_bytes`](Self::read_bytes), with the same value.
    #[deprecated(note = "renamed to `read_bytes` (units last)")]
    pub bytes_read: u64,
    /// The old name of [`writeback_bytes`](Self::writeback_bytes), with the same value.
    #[deprecated(note = "renamed to `writeback_bytes` (units last)")]
    pub bytes_written: u64,
}

impl Stats {
    /// Copies the renamed counters into their deprecated old names, so code that still reads
    /// those gets the same values.
    #[allow(deprecated)]
    pub(crate) fn with_old_names(mut self) -> Stats {
        self.bytes_read = self.read_bytes;
        self.bytes_written = self.writeback_bytes;
        self
    }

    /// Hits over lookups, 0 if there were none.
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum Counter {
    Hits,
    Misses,
    Evictions,
    EvictionWritebacks,
    WriteBehindPages,
    ReadIos,
    WritebackIos,
    WritebackPages,
    WritebackErrors,
    Syncs,
    BytesRead,
    BytesWritten,
    ReadCalls,
    WriteCalls,
}

const COUNTERS: usize = 14;
/// Stripes a thread can own outright; threads beyond this many at once share one more.
const OWNED_STRIPES: usize = 64;
/// The shared stripe, updated with atomic adds.
const SHARED_STRIPE: usize = OWNED_STRIPES;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

pub(crate) struct Counters {
    stripes: Box<[Stripe; OWNED_STRIPES + 1]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: Box::new(std::array::from_fn(|_| Stripe::default())),
        }
    }
}

/// Which of the `OWNED_STRIPES` stripe numbers a live thread owns (one bit each).
static OWNED: AtomicU64 = AtomicU64::new(0);
const _: () = assert!(OWNED_STRIPES == u64::BITS as usize);

/// `usize::MAX` until the thread first counts something.
const UNASSIGNED: usize = usize::MAX;

/// A thread's stripe number, owned until the thread exits (then free for another thread).
struct Claim(Cell<usize>);

impl Drop for Claim {
    fn drop(&mut self) {
        let v = self.0.get();
        if v < OWNED_STRIPES {
            // Release: the next owner's first update reads this thread's last one.
            OWNED.fetch_and(!(1 << v), Ordering::Release);
        }
    }
}

thread_local! {
    static STRIPE: Claim = const { Claim(Cell::new(UNASSIGNED)) };
}

/// The calling thread's stripe: one it owns (the same number in every cache), or
/// `SHARED_STRIPE` when all are owned or the thread is exiting.
#[inline]
fn stripe() -> usize {
    STRIPE
        .try_with(|s| {
            let v = s.0.get();
            if v != UNASSIGNED {
                return v;
            }
            let v = claim_stripe();
            s.0.set(v);
            v
        })
        .unwrap_or(SHARED_STRIPE)
}

#[cold]
fn claim_stripe() -> usize {
    let mut owned = OWNED.load(Ordering::Relaxed);
    // Bounded: each failed attempt saw another thread change the bitmap.
    for _ in 0..OWNED_STRIPES * 4 {
        if owned == u64::MAX {
            return SHARED_STRIPE;
        }
        let v = owned.trailing_ones() as usize;
        // Acquire: pairs with the release of the stripe's previous owner.
        match OWNED.compare_exchange_weak(
            owned,
            owned | 1 << v,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return v,
            Err(now) => owned = now,
        }
    }
    SHARED_STRIPE
}

impl Counters {
    /// Adds `n` to counter `c`. On a stripe the thread owns this is a plain load and store, not
    /// a locked add: a hit must not pay for a full barrier to count itself (see the optimistic
    /// reads in [`crate::page`]).
    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        let i = stripe();
        // `i <= SHARED_STRIPE`, the last index: no bounds check needed, but it stays safe.
        let cell = &self.stripes[i.min(SHARED_STRIPE)].0[c as usize];
        if i < SHARED_STRIPE {
            // Only this thread writes this stripe while it owns the number.
            cell.store(
                cell.load(Ordering::Relaxed).wrapping_add(n),
                Ordering::Relaxed,
            );
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Counts stay exact with more live threads than owned stripes (some share the atomic
    /// stripe) and when exited threads' stripes are reused by new ones.
    #[test]
    fn counts_are_exact_with_more_threads_than_stripes() {
        // Enough that threads sharing a stripe overlap in time on any machine.
        const ADDS: u64 = 100_000;
        let counters = Arc::new(Counters::default());
        for round in 0..2u64 {
            let threads = OWNED_STRIPES + 16;
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (counters, barrier) = (counters.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        // All threads are alive (and hold their stripes) at once.
                        barrier.wait();
                        for _ in 0..ADDS {
                            counters.add(Counter::Hits, 1);
                        }
                        barrier.wait();
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(
                counters.get(Counter::Hits),
                (round + 1) * threads as u64 * ADDS
            );
        }
    }
}
