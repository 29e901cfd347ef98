//! Background write-back keeps ahead of eviction: pages written once reach the eviction point
//! already written back, so the thread that needs a frame does not write them itself.
//!
//! The tests do not race the flusher: the writer waits for it whenever it is behind its own
//! threshold (bounded at a minute, against hangs), so what is checked is where the threshold
//! lies relative to the policy's eviction order, not how fast the machine is.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pattern;
use folio::{CacheConfig, FileBackend, IoMode, PageCache, PolicyKind, Stats};

const PS: usize = 4096;

/// How long the writer may wait for the flusher before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// Waits until the flusher has nothing left to do for now: the dirty pages are at or under the
/// threshold it starts at, and no write-back is in flight.
fn flusher_caught_up(cache: &PageCache) -> Stats {
    let start = Instant::now();
    loop {
        let st = cache.stats();
        if st.dirty_pages <= st.dirty_background_now_pages && st.writeback_pages_in_flight == 0 {
            return st;
        }
        assert!(
            start.elapsed() < HANG,
            "the flusher did not catch up: {st:?}"
        );
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Writes `pages` pages in order, one call each, through a cache of `budget` pages over a real
/// file, letting the flusher catch up after every call; returns the stats after `close`-like
/// sync and checks every byte of the file.
fn stream(policy: PolicyKind, budget: usize, pages: usize) -> Stats {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len((pages * PS) as u64)
        .unwrap();
    let backend = Arc::new(FileBackend::open(&path, IoMode::Buffered).unwrap());
    let config = CacheConfig::with_budget_pages(budget)
        .policy(policy)
        // Only the writers' kicks start rounds (no interval round writes for them).
        .writeback_interval(Duration::from_secs(3600));
    let cache = PageCache::new(backend, config).unwrap();
    for p in 0..pages as u64 {
        cache
            .write_all_at(&pattern(p, 1, PS), p * PS as u64)
            .unwrap();
        flusher_caught_up(&cache);
    }
    cache.sync().unwrap();
    let st = cache.stats();
    cache.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    for (p, page) in bytes.chunks(PS).enumerate() {
        assert!(page == pattern(p as u64, 1, PS), "page {p} differs");
    }
    st
}

/// A sequential stream of four budgets through the default policy (S3-FIFO, whose victims are
/// the oldest pages of its small queue, 2 to 25% of the frames): the flusher writes them before
/// they get there, at its own depth, so the eviction path writes back almost none. When the
/// flusher started at 10% dirty whatever the policy, more than the small queue at its default
/// share, every victim was still dirty and the writer wrote most pages itself (the victim, then
/// the following pages by write-behind).
/// The other policies whose eviction window is smaller than the frames (S3-FIFO at a fixed 5%,
/// 2Q) or not (CLOCK, LRU) likewise.
#[test]
fn a_stream_through_the_default_policy_is_written_back_before_eviction() {
    const BUDGET: usize = 1024;
    for policy in [
        PolicyKind::default(),
        PolicyKind::S3Fifo5,
        PolicyKind::TwoQ,
        PolicyKind::Clock,
        PolicyKind::Lru,
    ] {
        let st = stream(policy, BUDGET, 4 * BUDGET);
        assert!(st.evictions >= 3 * BUDGET as u64, "{policy}: {st:?}");
        let by_eviction = st.eviction_writebacks + st.write_behind_pages;
        // At most 5% of the pages written back, against most of them before.
        assert!(
            by_eviction * 20 <= st.writeback_pages,
            "{policy}: the eviction path wrote {by_eviction} of {} pages: {st:?}",
            st.writeback_pages
        );
    }
}
