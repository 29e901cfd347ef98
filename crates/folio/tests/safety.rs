//! Data safety under concurrency and failure: one deterministic test per way acknowledged data
//! was lost or stale bytes came back (issue 13).
//!
//! Method: a [`Device`] holds a chosen backend call (a write-back in flight, a hole punch, a
//! sync) until the test releases it, so each interleaving is built step by step instead of hoped
//! for. Where the interleaving needs another thread to run *into* a wait of the cache, the test
//! gives it a bounded moment first: that moment decides only whether the old defect shows, never
//! whether the fixed cache passes. Every test is bounded in time: a hang fails it.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::device::{Call, Device};
use folio::{CacheConfig, Commit, ConfigError, Error, PageCache, PageNo, PolicyKind};

const PS: usize = 4096;
const PSU: u64 = PS as u64;

fn page(v: u8) -> Vec<u8> {
    vec![v; PS]
}

/// A cache of `frames` pages over `dev` without a background flusher (the test decides every
/// write-back).
fn cache(dev: &Arc<Device>, frames: usize) -> Arc<PageCache> {
    cache_with(dev, CacheConfig::with_budget_pages(frames))
}

fn cache_with(dev: &Arc<Device>, config: CacheConfig) -> Arc<PageCache> {
    Arc::new(
        PageCache::new(
            dev.clone(),
            config
                .background_writeback(false)
                .readahead_workers(0)
                .frame_wait_max(Duration::from_secs(5)),
        )
        .unwrap(),
    )
}

fn read(cache: &PageCache, p: u64) -> Vec<u8> {
    let mut buf = page(0xEE);
    cache.read_exact_at(&mut buf, p * PSU).unwrap();
    buf
}

fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    std::thread::spawn(f)
}

/// Gives `t` up to 200 ms to finish (it will not, if the cache correctly makes it wait).
fn let_run<T>(t: &JoinHandle<T>) {
    let start = Instant::now();
    while !t.is_finished() && start.elapsed() < Duration::from_millis(200) {
        std::thread::yield_now();
    }
}

/// Runs `f` on a thread and fails the test if it takes more than `limit` (a hang).
fn bounded<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: a hang"))
}

#[test]
fn a_page_zeroed_under_write_back_stays_zero_after_the_write_lands() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), 0).unwrap();
    let held = dev.hold(Call::Write, 0);
    let flush = spawn({
        let c = c.clone();
        move || c.flush_range(0..PSU)
    });
    held.arrived();
    let zero = spawn({
        let c = c.clone();
        move || c.zero_range(0..PSU)
    });
    let_run(&zero);
    held.release();
    flush.join().unwrap().unwrap();
    zero.join().unwrap().unwrap();
    assert_eq!(read(&c, 0), page(0), "the zeroed page came back");
    c.sync().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0)[..]);
}

#[test]
fn a_page_discarded_under_write_back_then_rewritten_and_synced_keeps_the_rewrite() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), 0).unwrap();
    let held = dev.hold(Call::Write, 0);
    let flush = spawn({
        let c = c.clone();
        move || c.flush_range(0..PSU)
    });
    held.arrived();
    let rewrite = spawn({
        let c = c.clone();
        move || {
            c.discard_range(0..PSU)?;
            c.write_all_at(&page(0x22), 0)?;
            c.sync()
        }
    });
    let_run(&rewrite);
    held.release();
    flush.join().unwrap().unwrap();
    rewrite.join().unwrap().unwrap();
    c.sync().unwrap();
    assert_eq!(
        &dev.durable()[..PS],
        &page(0x22)[..],
        "an older write-back landed last"
    );
    assert_eq!(read(&c, 0), page(0x22));
}

#[test]
fn an_eviction_write_of_a_discarded_page_does_not_land_over_its_rewrite() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache_with(
        &dev,
        CacheConfig::with_budget_pages(2).policy(PolicyKind::Fifo),
    );
    c.write_all_at(&page(0x11), 0).unwrap();
    read(&c, 2);
    // Reading page 1 evicts the dirty page 0 (first in): its write is held. The rewrite then
    // evicts the clean page 2.
    let held = dev.hold(Call::Write, 0);
    let reader = spawn({
        let c = c.clone();
        move || read(&c, 1)
    });
    held.arrived();
    let rewrite = spawn({
        let c = c.clone();
        move || {
            c.discard_range(0..PSU)?;
            c.write_all_at(&page(0x22), 0)?;
            c.sync()
        }
    });
    let_run(&rewrite);
    held.release();
    assert_eq!(reader.join().unwrap(), page(0xAA));
    rewrite.join().unwrap().unwrap();
    c.sync().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0x22)[..]);
    assert_eq!(read(&c, 0), page(0x22));
}

#[test]
fn shrinking_then_growing_reads_zeros_although_an_older_write_landed_late() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11).repeat(2), 0).unwrap();
    let held = dev.hold(Call::Write, 0);
    let flush = spawn({
        let c = c.clone();
        move || c.flush_range(0..2 * PSU)
    });
    held.arrived();
    let shrink = spawn({
        let c = c.clone();
        move || c.resize(0)
    });
    let_run(&shrink);
    held.release();
    flush.join().unwrap().unwrap();
    shrink.join().unwrap().unwrap();
    c.resize(2 * PSU).unwrap();
    assert_eq!(read(&c, 1), page(0), "truncated bytes came back");
    c.sync().unwrap();
    c.evict_range(0..u64::MAX).unwrap();
    assert_eq!(
        read(&c, 0),
        page(0),
        "truncated bytes came back from the device"
    );
    assert_eq!(dev.image(), page(0).repeat(2));
}

/// A shrink cuts the backend twice (before and after the late writes of the dropped pages
/// land); if the second cut fails, the shrink succeeds (the cache is cut) but the backend may
/// still hold bytes past the end: the next sync cuts it, and fails while it cannot.
#[test]
fn a_sync_after_a_shrink_whose_cut_failed_cuts_the_backend_or_fails() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    dev.fail(Call::SetLen, 1); // the shrink's second cut
    c.resize(PSU).unwrap();
    dev.fail(Call::SetLen, 0); // the sync's retry of the cut
    assert!(
        c.sync().is_err(),
        "a sync cannot be Ok while the cut is not done"
    );
    c.sync().unwrap();
    assert_eq!(dev.durable().len(), PS, "the cut is durable");
    c.resize(2 * PSU).unwrap();
    assert_eq!(read(&c, 1), page(0));
}

/// `resize` holds the partial last page before it takes the size lock, but a concurrent
/// `discard_range` can orphan that page meanwhile and a reader load it again from the device.
/// The shrink then zeroes the tail of the orphan, not of the page in the cache: bytes past the
/// new end stay cached, and a growth brings them back.
#[test]
fn a_shrink_whose_tail_page_was_discarded_meanwhile_leaves_no_bytes_past_the_end() {
    let len = 3 * PSU - 100; // page 2 is partial
    let dev = Device::new(page(0xAA).repeat(3)[..len as usize].to_vec());
    let c = cache(&dev, 8);
    let mut buf = page(0);
    c.read_exact_at(&mut buf, PSU).unwrap(); // page 1 cached
                                             // Keep the size lock busy: a discard of the partial last page waits, under the size lock,
                                             // for the write-back of that page, held in flight.
    c.write_all_at(&[0x33; 10], 2 * PSU).unwrap();
    let held = dev.hold(Call::Write, 0);
    let flush = spawn({
        let c = c.clone();
        move || c.flush_range(2 * PSU..3 * PSU)
    });
    held.arrived();
    let tail_discard = spawn({
        let c = c.clone();
        move || c.discard_range(2 * PSU..u64::MAX)
    });
    std::thread::sleep(Duration::from_millis(200));
    // The shrink takes page 1 (its new partial last page), then waits for the size lock.
    let shrink = spawn({
        let c = c.clone();
        move || c.resize(PSU + 10)
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!shrink.is_finished());
    // Meanwhile page 1 is discarded (the shrink's hold becomes an orphan) and read again.
    c.discard_range(PSU..2 * PSU).unwrap();
    c.read_exact_at(&mut buf, PSU).unwrap();
    held.release();
    flush.join().unwrap().unwrap();
    tail_discard.join().unwrap().unwrap();
    shrink.join().unwrap().unwrap();
    assert_eq!(c.len(), PSU + 10);
    let inv = c.check_invariants();
    c.resize(2 * PSU).unwrap();
    let mut want = page(0);
    want[..10].fill(0xAA);
    c.read_exact_at(&mut buf, PSU).unwrap();
    let stale = buf.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(
        stale, 0,
        "{stale} bytes cut off by the shrink came back after a growth"
    );
    assert!(inv.is_ok(), "{inv:?}");
}

#[test]
fn zeroing_to_the_end_of_the_file_keeps_a_page_appended_meanwhile() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = cache(&dev, 8);
    let held = dev.hold(Call::WriteZeroes, 0);
    let zero = spawn({
        let c = c.clone();
        move || c.zero_range(0..2 * PSU)
    });
    held.arrived();
    c.write_all_at(&page(0x22), 2 * PSU).unwrap();
    held.release();
    zero.join().unwrap().unwrap();
    assert_eq!(read(&c, 0), page(0));
    assert_eq!(
        read(&c, 2),
        page(0x22),
        "an appended page outside the range was dropped"
    );
}

#[test]
fn discarding_to_the_end_of_the_file_keeps_a_page_appended_meanwhile() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = cache(&dev, 8);
    // The discard waits for the write-back of page 1 in flight; meanwhile page 2 is appended.
    c.write_all_at(&page(0x11), PSU).unwrap();
    let held = dev.hold(Call::Write, 0);
    let flush = spawn({
        let c = c.clone();
        move || c.flush_range(PSU..2 * PSU)
    });
    held.arrived();
    let discard = spawn({
        let c = c.clone();
        move || c.discard_range(0..2 * PSU)
    });
    let_run(&discard);
    c.write_all_at(&page(0x22), 2 * PSU).unwrap();
    held.release();
    flush.join().unwrap().unwrap();
    discard.join().unwrap().unwrap();
    assert_eq!(
        read(&c, 2),
        page(0x22),
        "an appended page outside the range was dropped"
    );
}

#[test]
fn after_a_failed_sync_every_later_sync_fails() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), 0).unwrap();
    dev.fail(Call::Sync, 0);
    assert!(c.sync().is_err());
    // The device's next sync succeeds without writing what the failed one lost: the cache
    // must not say the data is durable.
    assert!(c.sync().is_err(), "a sync after a failed one returned Ok");
    assert!(
        c.sync_handle().sync().is_err(),
        "a new handle's sync returned Ok"
    );
    assert_ne!(&dev.durable()[..PS], &page(0x11)[..]);
    // The data is still readable from the cache.
    assert_eq!(read(&c, 0), page(0x11));
}

#[test]
fn a_failed_write_back_reaches_a_sync_even_after_flush_and_evict_reported_it() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), 0).unwrap();
    dev.fail(Call::Write, 0);
    assert!(c.evict_range(0..PSU).is_err());
    // evict_range saw the failure; sync must see it too (it is the caller that promises
    // durability), and the data is retried and kept.
    assert!(c.sync().is_err(), "sync missed a write-back failure");
    c.sync().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0x11)[..]);
}

/// Two threads sync through one cursor (the cache's own, or one `SyncHandle` shared by an NBD
/// connection's workers). Thread 1's own write of page 0 fails; before it reads the error
/// sequence, thread 2's sync of an unrelated range takes the report. Thread 1 must still get an
/// error: the page it was asked to make durable is not.
fn own_write_back_failure_reaches_the_sync_that_did_it(shared_handle: bool) {
    // Queue depth 2: runs are submitted two at a time, in page order.
    let dev = Device::with_queue_depth(page(0xAA).repeat(16), 2);
    let c = cache(&dev, 16);
    for p in [0u64, 2, 4, 6] {
        c.write_all_at(&page(0x11), p * PSU).unwrap();
    }
    let handle = Arc::new(c.sync_handle());
    dev.fail(Call::Write, 0); // page 0's write fails...
    let held = dev.hold(Call::Write, 2); // ...and is recorded before page 4's write, held here.
    let t1 = spawn({
        let (c, handle) = (c.clone(), handle.clone());
        move || match shared_handle {
            true => handle.sync(),
            false => c.sync(),
        }
    });
    held.arrived();
    let r2 = match shared_handle {
        true => handle.sync_range(10 * PSU..11 * PSU),
        false => c.sync_range(10 * PSU..11 * PSU),
    };
    held.release();
    let r1 = t1.join().unwrap();
    assert!(r2.is_err(), "the other sync was told first");
    assert_ne!(
        &dev.durable()[..PS],
        &page(0x11)[..],
        "page 0 is not durable"
    );
    assert!(
        r1.is_err(),
        "sync() returned Ok but its own write-back failed"
    );
    // The failure was reported to both (and, once, to any cursor that has not seen it); the
    // data is kept and the next sync makes it durable.
    if shared_handle {
        assert!(c.sync().is_err(), "the cache's own cursor was not told");
    }
    c.sync().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0x11)[..]);
}

#[test]
fn a_sync_whose_own_write_back_failed_fails_although_another_sync_reported_it_first() {
    own_write_back_failure_reaches_the_sync_that_did_it(false);
}

#[test]
fn a_shared_handles_sync_whose_own_write_back_failed_fails_although_another_reported_it() {
    own_write_back_failure_reaches_the_sync_that_did_it(true);
}

#[test]
fn an_extending_write_never_zeroes_a_page_written_meanwhile() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = cache_with(
        &dev,
        CacheConfig::with_budget_pages(2).policy(PolicyKind::Fifo),
    );
    c.write_all_at(&page(0x10), 0).unwrap();
    c.write_all_at(&page(0x11), PSU).unwrap();
    // The first writer's miss on page 3 evicts dirty page 0; that write is held, after the
    // writer chose how to fill page 3.
    let held = dev.hold(Call::Write, 0);
    let first = spawn({
        let c = c.clone();
        move || c.write_all_at(b"x", 3 * PSU)
    });
    held.arrived();
    // Meanwhile a second writer writes all of page 3, which is written back and evicted.
    c.write_all_at(&page(0x33), 3 * PSU).unwrap();
    c.evict_range(3 * PSU..4 * PSU).unwrap();
    held.release();
    first.join().unwrap().unwrap();
    let mut want = page(0x33);
    want[0] = b'x';
    assert_eq!(
        read(&c, 3),
        want,
        "the first writer zeroed the second one's page"
    );
}

#[test]
fn a_zero_range_that_fails_leaves_the_range_as_it_was() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), PSU).unwrap();
    dev.fail(Call::WriteZeroes, 0);
    assert!(c.zero_range(0..3 * PSU).is_err());
    for p in 0..3 {
        let got = read(&c, p);
        let before = if p == 1 { page(0x11) } else { page(0xAA) };
        assert!(
            got == before || got == page(0),
            "page {p} reads bytes that are neither before nor after the zeroing"
        );
    }
}

/// A zeroing that the backend applied but reported failed (an object store's lost answer): the
/// cache kept its clean copy of the old bytes while the backend held zeros, so a page read
/// differently before and after its eviction. Now the clean pages of a failed zeroing are
/// dropped: reads show what the backend holds.
#[test]
fn a_zero_range_that_failed_after_the_backend_zeroed_reads_what_the_backend_holds() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    assert_eq!(read(&c, 1), page(0xAA)); // cached, clean
    dev.zero_then_fail(0);
    assert!(c.zero_range(0..3 * PSU).is_err());
    assert_eq!(
        read(&c, 1),
        dev.image()[PS..2 * PS],
        "the cache kept bytes the backend no longer holds"
    );
    c.evict_range(0..4 * PSU).unwrap();
    assert_eq!(read(&c, 1), page(0));
}

/// Review 4: the clean pages of a failed zeroing are dropped only if nobody holds them. A page
/// a reader had pinned (or held a read guard on) during the zeroing stayed cached with the old
/// bytes while the backend held zeros: once unpinned it read 0xAA, and after a sync and its
/// eviction zeros, with no write in between.
#[test]
fn a_zero_range_that_failed_after_the_backend_zeroed_drops_a_clean_page_held_meanwhile() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    let pin = c.pin_page(1).unwrap(); // cached, clean, held by a reader meanwhile
    dev.zero_then_fail(0);
    assert!(c.zero_range(0..3 * PSU).is_err());
    drop(pin);
    let before = read(&c, 1);
    c.sync().unwrap();
    c.evict_range(0..4 * PSU).unwrap();
    let after = read(&c, 1);
    assert_eq!(
        before[0], after[0],
        "page 1 changed from {:#x} to {:#x} without a write",
        before[0], after[0]
    );
    assert_eq!(
        after,
        dev.image()[PS..2 * PS],
        "reads differ from the backend after a sync"
    );
    c.check_invariants().unwrap();
}

/// Discarding a page whose write-back failed: the caller no longer wants its bytes, so the
/// backend is told (an object store stops counting them as lost at close), but the failure the
/// cache saw still reaches the next sync, and the page reads the backend's bytes.
#[test]
fn a_discarded_page_whose_write_back_failed_is_told_to_the_backend_and_still_fails_a_sync() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache(&dev, 8);
    c.write_all_at(&page(0x11), PSU).unwrap();
    dev.fail(Call::Write, 0);
    assert!(c.evict_range(PSU..2 * PSU).is_err());
    c.discard_range(PSU..2 * PSU).unwrap();
    assert_eq!(dev.discards(), vec![(PSU, PSU)]);
    assert!(c.sync().is_err(), "the failed write-back was not reported");
    c.sync().unwrap();
    assert_eq!(read(&c, 1), page(0xAA), "discarded: the backend's bytes");
}

#[test]
fn a_shrink_does_not_deadlock_with_a_guard_holder_that_appends() {
    bounded(Duration::from_secs(20), || {
        let dev = Device::new(vec![0xAA; PS + PS / 2]);
        let c = cache(&dev, 8);
        let guard_taken = Arc::new(std::sync::Barrier::new(2));
        let holder = spawn({
            let (c, guard_taken) = (c.clone(), guard_taken.clone());
            move || {
                let g = c.read_page(1).unwrap();
                guard_taken.wait();
                std::thread::sleep(Duration::from_millis(100));
                // Appending while holding the guard on the last page.
                c.write_all_at(b"tail", 4 * PSU).unwrap();
                drop(g);
            }
        });
        guard_taken.wait();
        c.resize(PSU + 10).unwrap();
        holder.join().unwrap();
        let len = c.len();
        assert!(len == PSU + 10 || len == 4 * PSU + 4, "{len}");
    });
}

#[test]
fn more_holds_on_one_page_than_the_holder_count_allows_is_an_error_not_a_hang() {
    bounded(Duration::from_secs(60), || {
        let dev = Device::new(page(0xAA));
        let c = cache(&dev, 8);
        let slices = vec![(0u64, 8usize); 70_000];
        match c.read_slices(&slices) {
            Err(Error::TooManyHolds { .. }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("70,000 holds on one page cannot fit in the state word"),
        }
        // The cache is intact afterwards.
        assert_eq!(read(&c, 0), page(0xAA));
        let mut pins = Vec::new();
        let err = loop {
            match c.pin_page(0) {
                Ok(p) => pins.push(p),
                Err(e) => break e,
            }
            assert!(pins.len() <= 1 << 16, "pins never saturate");
        };
        assert!(matches!(err, Error::TooManyHolds { .. }), "{err}");
        drop(pins);
        assert_eq!(read(&c, 0), page(0xAA));
    });
}

#[test]
fn pinned_page_reads_past_the_reader_count_are_an_error_not_a_hang() {
    bounded(Duration::from_secs(60), || {
        let dev = Device::new(page(0xAA));
        let c = cache(&dev, 8);
        let pin = c.pin_page(0).unwrap();
        let mut guards = Vec::new();
        let err = loop {
            match pin.read() {
                Ok(g) => guards.push(g),
                Err(e) => break e,
            }
            assert!(guards.len() <= 1 << 16, "readers never saturate");
        };
        assert!(
            matches!(err, Error::TooManyHolds { page: PageNo(0) }),
            "{err}"
        );
        assert_eq!(guards[0][..], page(0xAA)[..]);
        drop(guards);
        assert_eq!(pin.read().unwrap()[..], page(0xAA)[..]);
    });
}

/// A thread that holds a guard of a page and then calls something that must wait for that
/// page's holders would wait for itself: each such call fails with `HeldByCaller` instead, and
/// the page keeps the guard's bytes.
#[test]
fn waiting_for_a_guard_this_thread_holds_is_an_error_not_a_hang() {
    bounded(Duration::from_secs(30), || {
        let dev = Device::new(page(0xAA).repeat(2));
        let c = cache(&dev, 8);
        c.write_all_at(&page(0x11), 0).unwrap();
        let mut g = c.write_page(0).unwrap();
        g[0] = 0x22;
        let held = |r: Result<(), Error>| matches!(r, Err(Error::HeldByCaller { page: PageNo(0) }));
        let held_1 =
            |r: Result<(), Error>| matches!(r, Err(Error::HeldByCaller { page: PageNo(1) }));
        assert!(held(c.sync()), "sync of a page this thread holds");
        assert!(
            held(c.flush_range(0..PSU)),
            "flush of a page this thread holds"
        );
        let mut buf = [0u8; 1];
        assert!(
            held(c.read_exact_at(&mut buf, 0)),
            "read of a page this thread writes"
        );
        assert!(
            held(c.write_all_at(&[1], 0)),
            "write of a page this thread writes"
        );
        assert!(matches!(
            c.pin_page(0),
            Err(Error::HeldByCaller { page: PageNo(0) })
        ));
        // The other page is not held: it is read and written as usual.
        c.write_all_at(&[7], PSU).unwrap();
        drop(g);
        // A pinned page's guards: a second one of this thread waits for the first.
        let pin = c.pin_page(0).unwrap();
        let w = pin.write().unwrap();
        assert!(matches!(
            pin.read(),
            Err(Error::HeldByCaller { page: PageNo(0) })
        ));
        assert!(matches!(
            pin.write(),
            Err(Error::HeldByCaller { page: PageNo(0) })
        ));
        drop(w);
        // Once the guards are gone, everything goes through and the guard's byte is kept.
        assert_eq!(pin.read().unwrap()[0], 0x22);
        drop(pin);
        c.sync().unwrap();
        assert_eq!(dev.durable()[0], 0x22);
        assert_eq!(dev.durable()[PS], 7);

        // A reader hold: a write (which waits for readers) of the page fails; a read does not.
        let r = c.read_page(1).unwrap();
        assert!(
            held_1(c.write_all_at(&[8], PSU)),
            "write of a page this thread reads"
        );
        assert_eq!(read(&c, 1)[0], 7);
        drop(r);
        c.write_all_at(&[8], PSU).unwrap();
    });
}

/// A victim whose write-back fails stays cached and dirty; the read that needed its frame
/// takes another victim instead of failing for a page it never touched.
#[test]
fn a_failed_eviction_write_tries_another_victim() {
    let dev = Device::new(page(0xAA).repeat(4));
    let c = cache_with(
        &dev,
        CacheConfig::with_budget_pages(2).policy(PolicyKind::Lru),
    );
    c.write_all_at(&page(0x11), 0).unwrap(); // the least recently used: the first victim
    assert_eq!(read(&c, 1), page(0xAA));
    dev.fail(Call::Write, 0);
    assert_eq!(
        read(&c, 2),
        page(0xAA),
        "a read of another page does not fail"
    );
    assert_eq!(
        read(&c, 0),
        page(0x11),
        "the page whose write failed is still cached"
    );
    assert!(c.sync().is_err(), "the failed write-back reaches the sync");
    c.sync().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0x11)[..]);
}

#[test]
fn a_batch_of_misses_succeeds_where_serial_reads_succeed() {
    let dev = Device::with_queue_depth(page(0xAA).repeat(200), 32);
    let c = cache_with(
        &dev,
        CacheConfig::with_budget_pages(8).frame_wait_max(Duration::from_millis(200)),
    );
    // Six of the eight frames pinned: a batch that keeps four loads in flight must finish one
    // before it can start the third.
    let pins: Vec<_> = (100..106).map(|p| c.pin_page(p).unwrap()).collect();
    let mut bufs = [[0u8; 1]; 8];
    let mut reads: Vec<(u64, &mut [u8])> = bufs
        .iter_mut()
        .enumerate()
        .map(|(i, b)| (i as u64 * PSU, &mut b[..]))
        .collect();
    c.read_exact_many(&mut reads).unwrap();
    assert!(bufs.iter().all(|b| b[0] == 0xAA));
    drop(pins);
}

#[test]
fn a_close_that_fails_gives_the_cache_back_to_retry() {
    let dev = Device::new(page(0xAA).repeat(2));
    let c = PageCache::new(
        dev.clone(),
        CacheConfig::with_budget_pages(8).background_writeback(false),
    )
    .unwrap();
    c.write_all_at(&page(0x11), 0).unwrap();
    dev.fail(Call::Write, 0);
    let failed = c.close().unwrap_err();
    assert!(
        matches!(failed.error(), Error::WritebackFailed { .. }),
        "{failed}"
    );
    let c = failed.into_cache();
    assert_eq!(read(&c, 0), page(0x11), "the dirty data is still there");
    c.close().unwrap();
    assert_eq!(&dev.durable()[..PS], &page(0x11)[..]);
}

#[test]
fn a_configuration_too_large_is_a_typed_error() {
    let config = CacheConfig::with_budget_pages((1 << 28) + 1)
        .page_size(512)
        .memory(Commit::Lazy);
    let dev = Device::new(Vec::new());
    match PageCache::new(dev, config) {
        Err(Error::Config(ConfigError::BudgetTooLarge {
            frames: 0x1000_0001,
            frames_max: 0x1000_0000,
        })) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("2^31 frames accepted"),
    }
}

#[test]
fn a_frame_the_backend_kept_after_a_read_is_quarantined_not_reused() {
    let dev = Device::new((0..16u8).flat_map(page).collect());
    let c = cache(&dev, 4);
    dev.keep_buffers(0);
    assert!(
        c.read_page(0).is_err(),
        "a read whose buffer did not come back succeeded"
    );
    assert_eq!(c.stats().quarantined_frames, 1);
    // The device writes into the buffer it kept, late; no page of the cache may show it.
    assert_eq!(dev.scribble(0xEE), 1);
    for round in 0..3 {
        for p in 0..16u64 {
            assert_eq!(read(&c, p), page(p as u8), "round {round}, page {p}");
            dev.scribble(0xEE);
        }
    }
    assert_eq!(c.stats().quarantined_frames, 1);
    assert_eq!(c.stats().resident_pages, 3, "three frames left in use");
}

/// io_uring is available, or the test says it is skipped (and fails under FOLIO_REQUIRE_ALL=1).
fn uring_or_skip(what: &str) -> bool {
    match folio::backend::uring_support() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("FOLIO_REQUIRE_ALL").is_none(),
                "{what}: io_uring is required (FOLIO_REQUIRE_ALL) but unavailable: {why}"
            );
            eprintln!("SKIPPED {what}: io_uring unavailable: {why}");
            false
        }
    }
}

#[test]
fn a_given_up_ring_with_a_write_in_it_fails_every_later_write_and_sync() {
    if !uring_or_skip("given-up ring write test") {
        return;
    }
    bounded(Duration::from_secs(60), || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.img");
        std::fs::write(&path, page(0xAA).repeat(4)).unwrap();
        let b = folio::UringBackend::open(&path, folio::IoMode::Buffered).unwrap();
        use folio::PageCacheBackend;
        // A write queued on this thread's ring, then every io_uring_enter on it fails: the
        // kernel may or may not carry the write out, some day.
        let mut frame = folio::FrameMut::alloc(PS).unwrap();
        frame.as_mut_slice().fill(0x11);
        let w = b.start_write_pages_local(0, vec![frame.freeze()]).unwrap();
        b.break_batch_rings_for_tests().unwrap();
        assert!(w.wait().is_err());
        // Nothing may be written after it (it could land over it), and no sync may succeed.
        let mut frame = folio::FrameMut::alloc(PS).unwrap();
        frame.as_mut_slice().fill(0x22);
        assert!(b
            .write_pages(1, vec![frame.freeze()])
            .and_then(|w| w.wait())
            .is_err());
        assert!(b.sync().is_err());
        assert!(b.set_len(0).is_err());
        // Reads still work.
        let buf = folio::FrameMut::alloc(PS).unwrap();
        b.read_pages(2, vec![buf]).unwrap().wait().unwrap();
    });
}

#[test]
fn will_need_hints_never_grow_the_readahead_queue_without_bound() {
    let dev = Device::new(page(0xAA).repeat(4096));
    let c = Arc::new(
        PageCache::new(
            dev.clone(),
            CacheConfig::with_budget_pages(64)
                .background_writeback(false)
                .readahead_workers(1),
        )
        .unwrap(),
    );
    // The one worker is stuck in a read, so nothing leaves the queue while hints pour in.
    let held = dev.hold(Call::Read, 0);
    c.advise(0..PSU, folio::Advice::WillNeed).unwrap();
    held.arrived();
    for i in 0..1000u64 {
        let at = (i % 64) * 64 * PSU;
        c.advise(at..at + 64 * PSU, folio::Advice::WillNeed)
            .unwrap();
    }
    let dropped = c.stats().readahead_dropped;
    held.release();
    // 1000 hints of 64 pages in 1 MiB runs: far more jobs than the bound holds.
    assert!(
        dropped > 500,
        "the queue took {dropped} fewer jobs than asked: unbounded"
    );
}

#[test]
fn reading_the_last_page_while_the_file_grows_is_never_a_short_read() {
    use folio::{FileBackend, FrameMut, IoMode, PageCacheBackend};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.img");
    std::fs::write(&path, [1u8; 100]).unwrap();
    let b = Arc::new(FileBackend::open(&path, IoMode::Buffered).unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let grower = spawn({
        let (b, stop) = (b.clone(), stop.clone());
        move || {
            // Grows by a few bytes at a time for a bounded while.
            let started = Instant::now();
            let mut len = 100u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && started.elapsed() < Duration::from_secs(2)
            {
                len += 7;
                b.set_len(len).unwrap();
            }
        }
    });
    let mut reads = 0u64;
    while !grower.is_finished() {
        // The page the end of the file is in now: the one a concurrent append grows.
        let tail = b.len() / PSU;
        let frame = FrameMut::alloc(PS).unwrap();
        if let Err(e) = b.read_pages(tail, vec![frame]).and_then(|w| w.wait()) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("read {reads}: a read of a growing page failed: {e}");
        }
        reads += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    grower.join().unwrap();
}

#[test]
fn a_relay_of_read_guards_does_not_starve_a_writer() {
    bounded(Duration::from_secs(60), || {
        let dev = Device::new(page(0xAA).repeat(2));
        let c = cache(&dev, 8);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Two readers relay a hold on page 0: each drops its guard only once the other says it
        // has taken one (or after 100 ms of silence), then takes the next. Without writer
        // preference page 0 is never without a reader and a writer waits forever; with it, a
        // reader that holds nothing defers to the waiting writer, the relay stalls, and the
        // writer gets in within the silence timeout.
        let (a_tx, a_rx) = mpsc::channel::<()>();
        let (b_tx, b_rx) = mpsc::channel::<()>();
        let relay = |me: mpsc::Sender<()>, other: mpsc::Receiver<()>| {
            let (c, stop) = (c.clone(), stop.clone());
            spawn(move || {
                let mut held = c.read_page(0).unwrap();
                let _ = me.send(());
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = other.recv_timeout(Duration::from_millis(100));
                    drop(held);
                    held = c.read_page(0).unwrap();
                    let _ = me.send(());
                    n += 1;
                }
                n
            })
        };
        let readers = [relay(a_tx, b_rx), relay(b_tx, a_rx)];
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let writer = spawn({
            let c = c.clone();
            move || c.write_all_at(b"writer", 0)
        });
        while !writer.is_finished() && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let waited = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap().unwrap();
        let relayed: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        eprintln!("relayed {relayed:?}; the writer waited {waited:?}");
        assert!(
            waited < Duration::from_secs(2),
            "a writer waited {waited:?} behind a relay of readers"
        );
        let mut buf = [0u8; 6];
        c.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"writer");
    });
}

/// A read that misses while the file is shrunk and grown again: it may return the old bytes,
/// zeros or fewer bytes, never an error. Counts the errors seen over a bounded run.
fn short_io_errors_under_resize(backend: Arc<dyn folio::PageCacheBackend>) -> (u64, u64, String) {
    let pages = 64u64;
    let c = Arc::new(
        PageCache::new(
            backend,
            CacheConfig::with_budget_pages(8)
                .background_writeback(false)
                .readahead_workers(0),
        )
        .unwrap(),
    );
    c.advise(0..pages * PSU, folio::Advice::Random).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let resizer = spawn({
        let (c, stop) = (c.clone(), stop.clone());
        move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.resize(PSU).unwrap();
                c.resize(pages * PSU).unwrap();
            }
        }
    });
    let (mut reads, mut errors, mut last) = (0u64, 0u64, String::new());
    let started = std::time::Instant::now();
    let mut buf = page(0);
    let mut k = 1;
    while started.elapsed() < Duration::from_secs(1) {
        match c.read_at(&mut buf, k * PSU) {
            Ok(_) => {}
            Err(e) => {
                errors += 1;
                last = e.to_string();
            }
        }
        reads += 1;
        k = if k + 1 == pages { 1 } else { k + 1 };
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    resizer.join().unwrap();
    (reads, errors, last)
}

fn temp_file(pages: u64) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("folio-safety-shrink-{}", std::process::id()));
    std::fs::write(&path, vec![0xAAu8; (pages * PSU) as usize]).unwrap();
    path
}

#[test]
fn a_miss_racing_a_shrink_is_never_an_error_on_either_file_backend() {
    let path = temp_file(64);
    let file = Arc::new(folio::FileBackend::open(&path, folio::IoMode::Buffered).unwrap());
    let (r, e, last) = short_io_errors_under_resize(file);
    eprintln!("FileBackend: {e} errors in {r} reads {last}");
    assert_eq!(e, 0, "FileBackend: {e} of {r} reads failed: {last}");
    if uring_or_skip("a_miss_racing_a_shrink_is_never_an_error (io_uring)") {
        std::fs::write(&path, vec![0xAAu8; (64 * PSU) as usize]).unwrap();
        let uring = Arc::new(folio::UringBackend::open(&path, folio::IoMode::Buffered).unwrap());
        let (r, e, last) = short_io_errors_under_resize(uring);
        eprintln!("UringBackend: {e} errors in {r} reads {last}");
        assert_eq!(e, 0, "io_uring: {e} of {r} reads failed: {last}");
    }
    let _ = std::fs::remove_file(&path);
}

/// A length the memory backend cannot hold is a typed error (it aborted the process).
#[test]
fn growing_a_memory_backend_past_memory_is_a_typed_error() {
    let backend = Arc::new(folio::MemoryBackend::from_bytes(vec![0u8; PS]));
    let c = PageCache::new(backend, CacheConfig::with_budget_pages(4)).unwrap();
    let err = c.resize(1 << 62).unwrap_err();
    assert_eq!(
        err.to_io_error().kind(),
        std::io::ErrorKind::OutOfMemory,
        "{err}"
    );
    assert_eq!(c.len(), PSU, "the length is unchanged");
    c.write_all_at(&[1], 0).unwrap();
    c.sync().unwrap();
}

/// A cache whose waits for another holder, from a thread that holds a guard, give up quickly.
fn cache_quick_to_give_up(dev: &Arc<Device>, frames: usize, threads: usize) -> Arc<PageCache> {
    Arc::new(
        PageCache::new(
            dev.clone(),
            CacheConfig::with_budget_pages(frames)
                .background_writeback(false)
                .readahead_workers(0)
                .writeback_threads(threads)
                .frame_wait_max(Duration::from_millis(300)),
        )
        .unwrap(),
    )
}

/// A sync large enough to be split over write-back helper threads, from a thread that holds a
/// write guard: the helpers must not wait for the caller's guard (they would for ever, and the
/// caller for them). The caller flushes alone and fails for its own page.
#[test]
fn a_sync_holding_a_guard_is_not_split_over_helpers_that_would_wait_for_it() {
    bounded(Duration::from_secs(30), || {
        // 80 pages, every other one dirty: 40 runs of one page, which a parallel flush splits.
        let dev = Device::new(page(0xAA).repeat(80));
        let c = cache_quick_to_give_up(&dev, 128, 4);
        for p in (0..80u64).step_by(2) {
            c.write_all_at(&page(p as u8), p * PSU).unwrap();
        }
        // The last dirty page: in the last slice, which a helper would write.
        let mut g = c.write_page(78).unwrap();
        g[0] = 0x55;
        let r = c.sync();
        assert!(
            matches!(r, Err(Error::HeldByCaller { page: PageNo(78) })),
            "{r:?}"
        );
        drop(g);
        c.sync().unwrap();
        assert_eq!(dev.durable()[78 * PS], 0x55);
        assert_eq!(dev.durable()[76 * PS], 76);
    });
}

/// Two threads that each hold a write guard and sync wait for each other's page: each wait is
/// bounded (`WouldDeadlock`), so both return, and a later sync writes both guards' bytes.
#[test]
fn two_threads_syncing_while_each_holds_a_guard_do_not_deadlock() {
    bounded(Duration::from_secs(30), || {
        let dev = Device::new(page(0xAA).repeat(4));
        let c = cache_quick_to_give_up(&dev, 8, 1);
        c.write_all_at(&page(0x11), 0).unwrap();
        c.write_all_at(&page(0x22), PSU).unwrap();
        let both = Arc::new(std::sync::Barrier::new(2));
        let run = |p: u64| {
            let (c, both) = (c.clone(), both.clone());
            spawn(move || {
                let mut g = c.write_page(p).unwrap();
                g[1] = 0x77;
                both.wait();
                let r = c.sync();
                // Both wait for the other's page until one gives up; then the other may go on.
                both.wait();
                drop(g);
                r
            })
        };
        let (a, b) = (run(0), run(1));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        for r in [&a, &b] {
            assert!(
                matches!(
                    r,
                    Err(Error::HeldByCaller { .. } | Error::WouldDeadlock { .. })
                ),
                "{r:?}"
            );
        }
        c.sync().unwrap();
        assert_eq!(dev.durable()[1], 0x77);
        assert_eq!(dev.durable()[PS + 1], 0x77);
    });
}

/// A thread holds more guards than it tracks by frame (16); a write of the page of its last
/// guard waits for itself without knowing it: the wait is bounded, a typed error, not a hang.
#[test]
fn a_write_of_a_page_held_as_a_threads_seventeenth_guard_is_an_error_not_a_hang() {
    bounded(Duration::from_secs(30), || {
        let dev = Device::new(page(0xAA).repeat(20));
        let c = cache_quick_to_give_up(&dev, 32, 1);
        let guards: Vec<_> = (0..17).map(|p| c.read_page(p).unwrap()).collect();
        let r = c.write_all_at(&[1], 16 * PSU);
        assert!(
            matches!(
                r,
                Err(Error::HeldByCaller { page: PageNo(16) }
                    | Error::WouldDeadlock { page: PageNo(16) })
            ),
            "{r:?}"
        );
        drop(guards);
        c.write_all_at(&[1], 16 * PSU).unwrap();
        assert_eq!(read(&c, 16)[0], 1);
    });
}

/// A stream of writes larger than the cache, with no flusher: every victim is dirty. Evicting
/// one writes the dirty pages after it too (one I/O), so the stream costs about one backend
/// write per I/O's worth of pages, not one per page; every byte still reaches the device.
#[test]
fn evicting_a_dirty_page_writes_the_dirty_pages_after_it_in_one_io() {
    const PAGES: usize = 4096;
    let dev = Device::with_queue_depth(page(0xAA).repeat(PAGES), 8);
    let c = cache(&dev, 1024);
    for p in 0..PAGES as u64 {
        c.write_all_at(&page(p as u8), p * PSU).unwrap();
    }
    c.sync().unwrap();
    let writes = dev.calls(Call::Write);
    // One per page would be 4,096 (what it was); the default's 5% small queue leaves about 50
    // dirty pages behind each victim.
    assert!(
        writes <= 256,
        "{writes} backend writes for {PAGES} pages streamed through 1,024 frames"
    );
    let durable = dev.durable();
    for p in 0..PAGES {
        assert_eq!(durable[p * PS], p as u8, "page {p}");
    }
}
