//! The memory overhead bound of issue 6: at most 64 bytes of metadata per cached page, measured
//! with a counting global allocator (the bytes the heap really holds), not with the figure the
//! code reports about itself. The page data is an anonymous mapping outside the heap, so every
//! heap byte a cache holds is metadata: frame table, index, policy, free list, write-back clock,
//! and a fixed part (threads' bookkeeping, readahead table, statistics stripes) of about 10 KiB.
//!
//! Measured on the development VM (2026-11-30, after the per-frame lent counts went from four
//! bytes to one and into `metadata_bytes()`): 61.9 heap bytes per page with the default policy
//! and 43.1 with CLOCK at a million frames, where `metadata_bytes()` reports 62 and 43 (the heap
//! now matches the report). With the fixed part (about 12 KiB): 62.1 and 43.4 at 65,536 frames,
//! 64.9 and 46.0 at 4,096, 201 and 167 at 100. So the 64-byte target holds for CLOCK from 4,096
//! frames (a 16 MiB cache of 4 KiB pages) up and for the default from 65,536 frames (256 MiB)
//! up; below that the fixed part dominates, and it is bounded separately.
//!
//! The adaptive default (`s3fifo-adaptive`, 2026-11-30) adds its chooser's six shadow
//! S3-FIFOs, 1% of the frames each (2.2 bytes per page in all), and a frequency sketch of 2
//! bytes per page; the free list went from a `u32` per frame to a bitmap (0.13 bytes) to make
//! room: 62.5 heap bytes per page at 65,536 frames, 62.1 at a million. The shadows keep at
//! least 160 frames each, a fixed 38 KiB or so below 16,000 frames, so its fixed part is
//! larger: 48 KiB over 64 bytes per page at 1,000 frames (against 10 KiB for CLOCK), 37 KiB at
//! 100, 35 KiB at 4,096; the bound on the fixed part is 52 KiB (40 KiB with four shadows and no
//! sketch, 32 KiB before the chooser).
//!
//! The tests in this file serialise on one lock: the allocator counts every thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};

use folio::{CacheConfig, MemoryBackend, PageCache, PolicyKind};

/// The system allocator, counting the bytes it holds.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: every method forwards to `System` with the same arguments; the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Heap bytes held by a cache of `frames` pages with `policy`, while it exists.
fn cache_heap_bytes(frames: usize, policy: PolicyKind) -> (isize, usize) {
    let backend = Arc::new(MemoryBackend::new());
    let before = live();
    let cache = PageCache::new(
        backend,
        CacheConfig::with_budget_pages(frames)
            .page_size(512)
            .policy(policy),
    )
    .expect("cache");
    let held = live() - before;
    let reported = cache.metadata_bytes();
    drop(cache);
    (held, reported)
}

#[test]
fn metadata_is_at_most_64_bytes_per_page() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for policy in [PolicyKind::default(), PolicyKind::Clock] {
        // Fixed costs (threads, tables of a fixed size) are part of the figure.
        for frames in [100usize, 101, 1000, 4096, 4097, 65_536, 65_537, 1 << 20] {
            let (held, reported) = cache_heap_bytes(frames, policy);
            let per_page = held as f64 / frames as f64;
            println!(
                "{policy} {frames}: {per_page:.2} heap bytes per page (the cache reports {:.2})",
                reported as f64 / frames as f64
            );
            let bound = 64.0;
            // Where the fixed part stops mattering (see the module docs).
            let at_scale = if policy == PolicyKind::Clock {
                4096
            } else {
                65_536
            };
            if frames >= at_scale && std::env::var_os("OVERHEAD_REPORT").is_none() {
                assert!(
                    per_page <= bound,
                    "{frames} frames, {policy}: {per_page:.1} heap bytes of metadata per page"
                );
            }
            let fixed = held - (bound * frames as f64) as isize;
            assert!(
                fixed <= 52 << 10 || std::env::var_os("OVERHEAD_REPORT").is_some(),
                "{frames} frames, {policy}: {fixed} bytes over 64 per page"
            );
        }
    }
}

/// Bytes per page that `policy` over `frames` allocates when built, and that it states
/// (`metadata_bytes_per_page`). The policy object itself (a few hundred bytes) rides on top of
/// the per-page figure: the check allows 1 KiB for it. The median of three builds: the test
/// harness's own thread allocates when the previous test ends (its result, its captured
/// output), which the lock does not serialise, and it landed in the first build's window now
/// and then (LRU, 9.0 bytes "over" its 9).
fn allocated_and_stated(policy: PolicyKind, frames: usize) -> (f64, f64, bool) {
    let mut builds = [0f64; 3];
    let mut stated = 0.0;
    for held in builds.iter_mut() {
        let before = live();
        let p = policy.build(frames);
        *held = (live() - before) as f64 / frames as f64;
        stated = p.metadata_bytes_per_page() as f64;
        drop(p);
    }
    builds.sort_by(f64::total_cmp);
    let held = builds[1];
    println!("{policy} {frames}: allocates {held:.2} bytes per page, states {stated}");
    (held, stated, held <= stated + 1024.0 / frames as f64)
}

#[test]
fn every_policy_allocates_only_what_it_states() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for &policy in PolicyKind::ALL {
        let (held, stated, ok) = allocated_and_stated(policy, 65_537);
        assert!(
            ok,
            "{policy}: allocates {held:.1} bytes per page but states {stated}"
        );
    }
}

/// The same statement at the sizes where the adaptive default's fixed part dominates (its
/// shadows keep 160 frames each below 16,000 frames): what `metadata_bytes_per_page` states
/// must cover what the policy allocates there too, beside the fixed S3-FIFO and CLOCK.
#[test]
fn small_policies_allocate_only_what_they_state() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut over = Vec::new();
    for policy in [
        PolicyKind::S3FifoAdaptive,
        PolicyKind::S3Fifo5,
        PolicyKind::Clock,
    ] {
        for frames in [1usize, 100, 1000, 4096] {
            let (held, stated, ok) = allocated_and_stated(policy, frames);
            if !ok {
                over.push(format!("{policy} {frames}: {held:.1} > {stated}"));
            }
        }
    }
    assert!(over.is_empty(), "allocates more than it states: {over:?}");
}
