//! Counters and the [`Stats`] snapshot.
//!
//! Counters that every hit touches are striped over cache-line-sized slots chosen per thread, so
//! two threads hitting the cache never write the same cache line for bookkeeping.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    pub bytes_read: u64,
    /// Bytes written to the backend.
    pub bytes_written: u64,
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
    /// Setting: dirty pages over which the flusher starts writing back.
    pub dirty_background_pages: u64,
}

impl Stats {
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

const COUNTERS: usize = 12;
const STRIPES: usize = 16;
const _: () = assert!(STRIPES.is_power_of_two());

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; COUNTERS]);

pub(crate) struct Counters {
    stripes: Box<[Stripe; STRIPES]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            stripes: Box::new(std::array::from_fn(|_| Stripe::default())),
        }
    }
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// `usize::MAX` until the thread first counts something. A `const` initialiser makes each access
/// a plain thread-local load, without the lazy-initialisation check of a non-const one.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != UNASSIGNED {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        // The mask keeps the index visibly in bounds (no check); `stripe() < STRIPES` anyway.
        self.stripes[stripe() & (STRIPES - 1)].0[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}
