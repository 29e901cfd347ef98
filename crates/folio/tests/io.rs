//! The fast I/O path: the io_uring backend, multi-page I/O states, parallel flush, readahead and
//! access hints. Tests that need io_uring (and O_DIRECT, the recommended configuration) skip
//! visibly where the machine lacks it, and fail under `FOLIO_REQUIRE_ALL=1` (see
//! `folio-testkit`).
//!
//! The background flusher is off in these tests: they check the shape of the I/O (runs, page
//! states under write-back, bytes read), and the flusher would add writes of its own
//! (`tests/writeback.rs` covers it).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    direct_io_dir, pattern, uring_available, wait_for, wait_until_named_threads_asleep, TestBackend,
};
use folio::{
    Advice, CacheConfig, Error, Frame, FrameMut, IoMode, IoOp, IoWaiter, MemoryBackend, PageCache,
    PageCacheBackend, PageCacheBackendExt, PageState, Result, UringBackend,
};

const PS: usize = 4096;

/// A temporary directory for the io_uring files: one that accepts O_DIRECT where there is one.
fn uring_dir() -> tempfile::TempDir {
    direct_io_dir().unwrap_or_else(|| tempfile::tempdir().unwrap())
}

/// Drops `backend`, which must drain what it has in flight and join its threads in bounded
/// time, not hang.
fn drops_within_bounds(backend: UringBackend) {
    let started = Instant::now();
    drop(backend);
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A uring backend over a temp file holding `bytes`, with O_DIRECT (falling back to buffered
/// I/O with a visible skip, or failing under `FOLIO_REQUIRE_ALL=1`).
fn uring_file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (UringBackend, IoMode) {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    match UringBackend::open_with_depth(&path, IoMode::Direct, 8) {
        Ok(b) => (b, IoMode::Direct),
        Err(e) => {
            folio_testkit::require("O_DIRECT", Err(e.to_string()));
            (
                UringBackend::open_with_depth(&path, IoMode::Buffered, 8).unwrap(),
                IoMode::Buffered,
            )
        }
    }
}

#[test]
fn uring_reads_and_writes_runs_and_zero_fills_past_the_end() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let len = 5 * PS + 300;
    let data = pattern(1, 1, len);
    let (b, _) = uring_file(&dir, "a.img", &data);
    // An 8-page read of a 5.07-page file completes (the frames belong to the I/O).
    let frames: Vec<FrameMut> = (0..8).map(|_| FrameMut::alloc(PS).unwrap()).collect();
    b.read_pages(0, frames).unwrap().wait().unwrap();
    let mut got = vec![0u8; len];
    let cache = PageCache::new(
        Arc::new(b),
        CacheConfig::with_budget_pages(16).background_writeback(false),
    )
    .unwrap();
    cache.read_exact_at(&mut got, 0).unwrap();
    assert_eq!(got, data);
    {
        let last = cache.read_page(5).unwrap();
        assert!(last[300..].iter().all(|&x| x == 0), "zero-filled past EOF");
    }
    // Multi-page write back, never growing the file.
    cache.write_all_at(&vec![7u8; 5 * PS + 300], 0).unwrap();
    cache.close().unwrap();
    let on_disk = std::fs::read(dir.path().join("a.img")).unwrap();
    assert_eq!(on_disk.len(), len, "the file did not grow");
    assert!(on_disk.iter().all(|&x| x == 7));
}

#[test]
fn uring_dropped_waiters_keep_buffers_and_drop_joins_cleanly() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let (b, _) = uring_file(&dir, "d.img", &pattern(2, 2, 64 * PS));
    // Many reads whose waiters are dropped at once: the frames stay with the in-flight ops.
    for i in 0..200u64 {
        let frames = vec![FrameMut::alloc(PS).unwrap(), FrameMut::alloc(PS).unwrap()];
        drop(b.read_pages(i % 60, frames).unwrap());
    }
    let w = b
        .write_pages(3, vec![FrameMut::alloc(PS).unwrap().freeze()])
        .unwrap();
    drop(w);
    // The same on this thread's own ring (batched I/O, reaped only by whoever waits): some
    // submitted by `unplug`, the last ones never submitted before the backend goes.
    for i in 0..100u64 {
        let frames = vec![FrameMut::alloc(PS).unwrap()];
        drop(b.start_read_pages(i % 60, frames).unwrap());
        if i == 50 {
            b.unplug();
        }
    }
    let w = b
        .start_write_pages(5, vec![FrameMut::alloc(PS).unwrap().freeze()])
        .unwrap();
    drop(w);
    // A batched read waited for by another thread: that thread reaps the ring.
    let w = b
        .start_read_pages(7, vec![FrameMut::alloc(PS).unwrap()])
        .unwrap();
    thread::spawn(move || w.wait()).join().unwrap().unwrap();
    // Drains in-flight ops (of both rings) and joins the reaper.
    drops_within_bounds(b);
}

#[test]
fn uring_local_waiters_read_right_and_a_ring_dropped_off_its_thread_leaks_rather_than_hangs() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let data = pattern(3, 3, 64 * PS);
    let (b, _) = uring_file(&dir, "l.img", &data);
    let b = Arc::new(b);
    // More reads than the ring's depth (8), on this thread's owned ring, each waited for here
    // in an order other than submission. (The frames belong to the ops; their bytes are
    // checked through the cache below.)
    let waiters: Vec<_> = (0..40u64)
        .map(|i| {
            b.start_read_pages_local(i, vec![FrameMut::alloc(PS).unwrap()])
                .unwrap()
        })
        .collect();
    b.unplug();
    for w in waiters.into_iter().rev() {
        w.wait().unwrap();
    }
    // Through a cache, whose batched misses come this way: every byte right.
    let cache = PageCache::new(
        b.clone() as Arc<dyn PageCacheBackend>,
        CacheConfig::with_budget_pages(16).background_writeback(false),
    )
    .unwrap();
    let mut bufs = vec![vec![0u8; PS]; 40];
    let mut reads: Vec<(u64, &mut [u8])> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, buf)| (((i as u64 * 7) % 64) * PS as u64, &mut buf[..]))
        .collect();
    cache.read_exact_many(&mut reads).unwrap();
    for (i, buf) in bufs.iter().enumerate() {
        let at = ((i * 7) % 64) * PS;
        assert_eq!(&buf[..], &data[at..at + PS], "read {i}");
    }
    drop(cache);
    // Another thread starts reads on its own ring and drops the waiters (some submitted, some
    // never), lets go of the backend and waits while this thread drops the backend: nobody but
    // that thread may enter its ring, so the drop must neither hang nor free a buffer the
    // kernel may still write (it leaks them). Then that thread exits.
    let b2 = b.clone();
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        for i in 0..20u64 {
            drop(
                b2.start_read_pages_local(i, vec![FrameMut::alloc(PS).unwrap()])
                    .unwrap(),
            );
            if i == 9 {
                b2.unplug();
            }
        }
        drop(b2);
        ready_tx.send(()).unwrap();
        dropped_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    // On this thread: dropped waiters that the owner drains when the backend goes.
    for i in 0..12u64 {
        drop(
            b.start_read_pages_local(i, vec![FrameMut::alloc(PS).unwrap()])
                .unwrap(),
        );
    }
    drops_within_bounds(Arc::into_inner(b).expect("the last reference"));
    dropped_tx.send(()).unwrap();
    owner.join().unwrap();
}

#[test]
fn a_batch_ring_that_keeps_failing_fails_its_ops_instead_of_hanging() {
    if !uring_available() {
        return;
    }
    // On a thread of its own, so that a hang fails the test instead of stalling the suite.
    let (done, finished) = std::sync::mpsc::channel();
    let worker = thread::spawn(move || {
        failing_ring_body();
        let _ = done.send(());
    });
    if finished.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!("waiting on a failing ring hung (or the body panicked: see above)");
    }
    worker.join().unwrap();
}

fn failing_ring_body() {
    let dir = uring_dir();
    let (b, _) = uring_file(&dir, "f.img", &pattern(4, 4, 16 * PS));
    // Ops queued (not yet submitted) on this thread's two batch rings, then every
    // `io_uring_enter` on them fails.
    let local = b
        .start_read_pages_local(0, vec![FrameMut::alloc(PS).unwrap()])
        .unwrap();
    let any = b
        .start_read_pages(1, vec![FrameMut::alloc(PS).unwrap()])
        .unwrap();
    b.break_batch_rings_for_tests().unwrap();
    let started = Instant::now();
    for r in [local.wait(), any.wait()] {
        match r {
            Err(Error::Io { op: IoOp::Read, .. }) => {}
            other => panic!("expected a typed read error, got {other:?}"),
        }
    }
    // A given-up ring fails new ops at once; the shared ring still works.
    let late = b
        .start_read_pages_local(2, vec![FrameMut::alloc(PS).unwrap()])
        .unwrap();
    assert!(matches!(late.wait(), Err(Error::Io { .. })));
    b.read_pages(
        3,
        vec![FrameMut::alloc(PS).unwrap(), FrameMut::alloc(PS).unwrap()],
    )
    .unwrap()
    .wait()
    .unwrap();
    drop(b);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_threads_batch_rings_leave_with_it_so_later_threads_get_their_own() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let (b, _) = uring_file(&dir, "t.img", &pattern(5, 5, 16 * PS));
    let b = Arc::new(b);
    // More short-lived threads than there are ring slots (16): each gets rings of its own.
    for i in 0..40u64 {
        let b2 = b.clone();
        thread::spawn(move || {
            let frame = || vec![FrameMut::alloc(PS).unwrap()];
            b2.start_read_pages_local(i % 16, frame())
                .unwrap()
                .wait()
                .unwrap();
            let any = b2.start_read_pages((i + 1) % 16, frame()).unwrap();
            b2.unplug();
            any.wait().unwrap();
            // One dropped unwaited, in flight when the thread exits: drained on the way out.
            drop(b2.start_read_pages_local((i + 2) % 16, frame()).unwrap());
            b2.unplug();
            assert_eq!(
                b2.batch_rings_for_tests(),
                2,
                "thread {i} has rings of its own"
            );
        })
        .join()
        .unwrap();
        assert_eq!(
            b.batch_rings_for_tests(),
            0,
            "thread {i}'s rings left with it"
        );
    }
    drops_within_bounds(Arc::into_inner(b).expect("the last reference"));
}

/// A cache without readahead or flusher over a uring backend (queue depth 8) on a file of
/// `pages` self-describing pages, holding `budget` pages.
fn patterned_uring_cache(dir: &tempfile::TempDir, pages: u64, budget: usize) -> Arc<PageCache> {
    let (b, _) = uring_file(dir, "patterned.img", &patterned(pages));
    Arc::new(
        PageCache::new(
            Arc::new(b),
            CacheConfig::with_budget_pages(budget)
                .background_writeback(false)
                .readahead_bytes_max(0),
        )
        .unwrap(),
    )
}

/// The next value of a 64-bit LCG, high bits first.
fn lcg(x: &mut u64) -> u64 {
    *x = x
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *x >> 33
}

#[test]
fn uring_many_threads_through_the_cache() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let pages = 256u64;
    let cache = patterned_uring_cache(&dir, pages, 64);
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut x = t * 7919 + 1;
                let mut buf = vec![0u8; PS];
                for _ in 0..400 {
                    let p = lcg(&mut x) % pages;
                    cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
                    assert_eq!(buf, pattern(p, 0, PS));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(
        s.read_bytes,
        s.misses * PS as u64,
        "no readahead on random reads"
    );
}

#[test]
fn batched_reads_keep_many_misses_in_flight_and_read_the_right_pages() {
    // Four threads over a cache that holds under a fifth of the file: hits, misses in flight,
    // pages another thread (or this batch) is loading, evictions.
    batched_reads(4, 48, 40);
}

#[test]
fn batched_reads_from_more_threads_than_batch_rings() {
    // Past `BATCH_RINGS_MAX` threads, batches go through the shared ring instead of a ring of
    // their own; both kinds at once.
    batched_reads(folio::backend::uring::BATCH_RINGS_MAX as u64 + 4, 256, 8);
}

/// `threads` threads each read `rounds` batches of 32 random reads (repeats included, some
/// crossing a page boundary) of a 256-page patterned file through a cache of `frames` frames,
/// and check every byte.
fn batched_reads(threads: u64, frames: usize, rounds: usize) {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let pages = 256u64;
    let cache = patterned_uring_cache(&dir, pages, frames); // queue depth 8
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut x = t * 7919 + 3;
                for _ in 0..rounds {
                    let mut offsets = Vec::new();
                    for _ in 0..32 {
                        let p = lcg(&mut x) % (pages - 1);
                        let skew = if x & 1 == 0 { 0 } else { PS as u64 / 2 };
                        offsets.push(p * PS as u64 + skew);
                    }
                    let mut bufs = vec![vec![0u8; PS]; offsets.len()];
                    let mut batch: Vec<(u64, &mut [u8])> = offsets
                        .iter()
                        .zip(bufs.iter_mut())
                        .map(|(&o, b)| (o, &mut b[..]))
                        .collect();
                    cache.read_exact_many(&mut batch).unwrap();
                    for (&o, b) in offsets.iter().zip(&bufs) {
                        let o = o as usize;
                        assert!(b[..] == data_at(o), "read at {o} differs");
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert!(s.misses > 0 && s.hits > 0, "{s:?}");
    // Every frame was released: the whole budget can be held again.
    let held: Vec<_> = (0..frames as u64)
        .map(|p| cache.pin_page(p).unwrap())
        .collect();
    assert_eq!(held.len(), frames);
}

/// The bytes of the patterned image at `offset`, one page long.
fn data_at(offset: usize) -> Vec<u8> {
    let p = (offset / PS) as u64;
    let mut two = pattern(p, 0, PS);
    two.extend(pattern(p + 1, 0, PS));
    two[offset % PS..offset % PS + PS].to_vec()
}

#[test]
fn parallel_flush_through_uring_writes_every_run() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let (b, _) = uring_file(&dir, "f.img", &vec![0u8; 600 * PS]);
    let cache = PageCache::new(
        Arc::new(b),
        CacheConfig::with_budget_pages(600)
            .background_writeback(false)
            .io_bytes_max(16 * PS),
    )
    .unwrap();
    // Runs of 16 pages (the I/O cap) with gaps: many runs in flight at once.
    for p in (0..600u64).filter(|p| p % 50 != 49) {
        cache
            .write_all_at(&pattern(p, 3, PS), p * PS as u64)
            .unwrap();
    }
    cache.sync().unwrap();
    let s = cache.stats();
    assert_eq!(s.dirty_pages, 0);
    assert!(s.writeback_ios >= 36, "runs split at io_bytes_max");
    drop(cache);
    let on_disk = std::fs::read(dir.path().join("f.img")).unwrap();
    for p in 0..600u64 {
        let page = &on_disk[p as usize * PS..(p as usize + 1) * PS];
        if p % 50 == 49 {
            assert!(page.iter().all(|&x| x == 0));
        } else {
            assert_eq!(page, &pattern(p, 3, PS)[..], "page {p}");
        }
    }
}

#[test]
fn pages_of_a_multi_page_io_are_uninit_then_under_writeback() {
    let backend = TestBackend::new(vec![1u8; 32 * PS]);
    backend.read_gate.close();
    let cache = Arc::new(
        PageCache::new(
            backend.clone(),
            CacheConfig::with_budget_pages(32)
                .background_writeback(false)
                .readahead_bytes_max(0),
        )
        .unwrap(),
    );
    let c = cache.clone();
    let reader = thread::spawn(move || c.read_exact_at(&mut vec![0u8; 16 * PS], 0).unwrap());
    // The run's one read is held at the gate: every page of it is loading until it opens.
    assert!(wait_for(Duration::from_secs(60), || backend
        .read_gate
        .waiting
        .load(Ordering::SeqCst)
        == 1));
    for p in 0..16 {
        assert_eq!(cache.page_state(p), Some(PageState::Uninit), "page {p}");
    }
    backend.read_gate.open();
    reader.join().unwrap();
    assert_eq!(
        backend.reads.load(Ordering::SeqCst),
        1,
        "one read for the run"
    );
    for p in 0..16 {
        assert_eq!(cache.page_state(p), Some(PageState::UpToDate));
    }
    // A run under write-back: every page is `Writeback` until the I/O completes.
    cache.write_all_at(&vec![2u8; 16 * PS], 0).unwrap();
    backend.close_gate();
    let c = cache.clone();
    let flusher = thread::spawn(move || c.sync().unwrap());
    while backend.waiting_at_gate() == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    for p in 0..16 {
        assert_eq!(cache.page_state(p), Some(PageState::Writeback), "page {p}");
    }
    backend.open_gate();
    flusher.join().unwrap();
    for p in 0..16 {
        assert_eq!(cache.page_state(p), Some(PageState::UpToDate));
    }
}

fn read_sequentially(cache: &PageCache, from: u64, pages: u64) {
    let mut buf = vec![0u8; PS];
    for p in from..from + pages {
        cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
        assert_eq!(buf, pattern(p, 0, PS), "page {p}");
    }
}

fn patterned(pages: u64) -> Vec<u8> {
    (0..pages).flat_map(|p| pattern(p, 0, PS)).collect()
}

#[test]
fn sequential_reader_triggers_large_reads_and_random_reads_do_not() {
    let pages = 1024u64;
    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(2048).background_writeback(false),
    )
    .unwrap();
    read_sequentially(&cache, 0, pages);
    let reads = backend.reads.load(Ordering::SeqCst);
    let pages_read = backend.pages_read.load(Ordering::SeqCst);
    assert_eq!(
        pages_read, pages,
        "every page read once, nothing past the end"
    );
    assert!(
        reads <= pages / 16,
        "{reads} backend reads for {pages} pages: readahead should batch"
    );
    let s = cache.stats();
    assert!(s.hits >= pages * 9 / 10, "the reader mostly hits: {s:?}");

    // Random 4 KiB reads (never page 0 nor a neighbour of the previous one): one page each.
    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(2048).background_writeback(false),
    )
    .unwrap();
    let mut buf = vec![0u8; PS];
    let mut x = 12345u64;
    let mut distinct = std::collections::HashSet::new();
    for _ in 0..300 {
        let p = 1 + lcg(&mut x) % (pages - 1);
        cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
        distinct.insert(p);
    }
    // Any (wrong) background readahead the reads started has been taken and done.
    wait_until_named_threads_asleep("folio-readahead");
    let pages_read = backend.pages_read.load(Ordering::SeqCst);
    let extra = pages_read - distinct.len() as u64;
    // A random miss may land exactly after a recent one (a candidate stream); allow 1 window.
    assert!(
        extra <= 32,
        "{pages_read} pages read for {} distinct random pages",
        distinct.len()
    );
}

#[test]
fn random_advice_turns_readahead_off_and_sequential_advice_reads_ahead_at_once() {
    let pages = 256u64;
    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(1024).background_writeback(false),
    )
    .unwrap();
    cache.advise(0..pages * PS as u64, Advice::Random).unwrap();
    read_sequentially(&cache, 0, 64);
    assert_eq!(
        backend.reads.load(Ordering::SeqCst),
        64,
        "one read per page"
    );

    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(1024).background_writeback(false),
    )
    .unwrap();
    cache
        .advise(100 * PS as u64..pages * PS as u64, Advice::Sequential)
        .unwrap();
    read_sequentially(&cache, 100, 100);
    assert!(backend.reads.load(Ordering::SeqCst) <= 8);
}

#[test]
fn will_need_loads_in_the_background_and_dont_need_drops() {
    let pages = 128u64;
    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(512).background_writeback(false),
    )
    .unwrap();
    cache
        .advise(10 * PS as u64..50 * PS as u64, Advice::WillNeed)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (10..50).any(|p| cache.page_state(p) != Some(PageState::UpToDate)) {
        assert!(Instant::now() < deadline, "WillNeed did not load the range");
        thread::sleep(Duration::from_millis(2));
    }
    assert!(cache.page_state(9).is_none() && cache.page_state(50).is_none());
    let misses = cache.stats().misses;
    read_sequentially(&cache, 10, 40);
    assert_eq!(cache.stats().misses, misses, "all hits after WillNeed");
    cache.write_all_at(b"dirty", 20 * PS as u64).unwrap();
    cache
        .advise(10 * PS as u64..50 * PS as u64, Advice::DontNeed)
        .unwrap();
    assert!((10..50).all(|p| cache.page_state(p).is_none()));
    assert_eq!(&backend.inner.image()[20 * PS..20 * PS + 5], b"dirty");
}

#[test]
fn readahead_does_not_evict_the_hot_set() {
    let pages = 4096u64;
    let backend = TestBackend::new(patterned(pages));
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(512).background_writeback(false),
    )
    .unwrap();
    // Hot set: 64 pages at the end of the file, read often.
    let hot: Vec<u64> = (pages - 64..pages).collect();
    let mut buf = vec![0u8; PS];
    for _ in 0..3 {
        for &p in &hot {
            cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
        }
    }
    // A sequential scan of 3000 pages (6x the cache), touching the hot set as it goes.
    for p in 0..3000u64 {
        cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
        if p % 32 == 0 {
            for &h in &hot {
                cache.read_exact_at(&mut buf, h * PS as u64).unwrap();
            }
        }
    }
    let resident = hot
        .iter()
        .filter(|&&p| cache.page_state(p).is_some())
        .count();
    assert_eq!(resident, hot.len(), "the hot set stayed resident");
    assert!(
        backend.pages_read.load(Ordering::SeqCst) <= 3000 + 64 + 512,
        "the scan read ahead only what it used (plus at most a window): {} pages read, {:?}",
        backend.pages_read.load(Ordering::SeqCst),
        cache.stats()
    );
}

/// A backend whose reads fail when issued from a readahead worker, a given number of times.
struct FailingReadahead {
    inner: MemoryBackend,
    failures_left: AtomicU64,
    failed: AtomicU64,
}

impl PageCacheBackend for FailingReadahead {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let on_worker = thread::current().name() == Some("folio-readahead");
        if on_worker
            && self
                .failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5)); // let the reader park on the pages
            return Ok(IoWaiter::ready(Err(Error::io(
                IoOp::Read,
                idx * PS as u64,
                std::io::Error::other("injected readahead failure"),
            ))));
        }
        self.inner.read_pages(idx, frames)
    }
    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.inner.write_pages(idx, frames)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
}

#[test]
fn failed_asynchronous_readahead_is_not_cached_and_does_not_poison_reads() {
    let pages = 1024u64;
    let backend = Arc::new(FailingReadahead {
        inner: MemoryBackend::from_bytes(patterned(pages)),
        failures_left: AtomicU64::new(6),
        failed: AtomicU64::new(0),
    });
    let cache = PageCache::new(
        backend.clone(),
        CacheConfig::with_budget_pages(2048).background_writeback(false),
    )
    .unwrap();
    read_sequentially(&cache, 0, pages);
    assert!(
        backend.failed.load(Ordering::SeqCst) > 0,
        "a readahead failed"
    );
    assert!(cache.sync().is_ok(), "no error left behind");
    // Everything cached is right, and a second pass reads it from the cache.
    let misses = cache.stats().misses;
    read_sequentially(&cache, 0, pages);
    assert_eq!(cache.stats().misses, misses);
}

#[test]
fn uring_short_read_of_a_file_truncated_behind_its_back_is_an_error() {
    if !uring_available() {
        return;
    }
    let dir = uring_dir();
    let (b, _) = uring_file(&dir, "t.img", &pattern(4, 4, 8 * PS));
    // Truncated by someone else: the backend still believes 8 pages.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("t.img"))
        .unwrap()
        .set_len(2 * PS as u64)
        .unwrap();
    let frames: Vec<FrameMut> = (0..4).map(|_| FrameMut::alloc(PS).unwrap()).collect();
    let r = b.read_pages(0, frames).unwrap().wait();
    assert!(matches!(r, Err(Error::ShortIo { .. })), "{r:?}");
    // Through the ring even for one page when inline reads are off.
    let b = b.inline_read_pages_max(0);
    let r = b.read_page(3, FrameMut::alloc(PS).unwrap()).unwrap().wait();
    assert!(matches!(r, Err(Error::ShortIo { .. })), "{r:?}");
    let ok = b.read_page(1, FrameMut::alloc(PS).unwrap()).unwrap().wait();
    assert!(ok.is_ok());
}
