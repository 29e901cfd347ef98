//! Tests of the third adversarial review's open findings (M1 to M4, L2, L3): each one failed
//! against the backend the review read, and each names its item. They run over object_store's
//! in-memory store behind a scriptable fault hook (`common/mod.rs`).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    chunk_puts, create, data, manifest_puts, opts, opts_long_lease, pages, write, Act, Hooked,
    Kind, KIB, PREFIX,
};
use folio::backend::PageCacheBackend;
use folio::{CacheConfig, PageCache};
use folio_object::{Limits, Manifest, ObjectError, ObjectStoreBackend, OpenOptions};

/// The cache budget of the tests that go through a page cache.
const MIB_BUDGET: u64 = 1 << 20;

/// Page `p` (4 KiB) read through `c` after dropping it from the cache, so it comes from the
/// backend: its byte if all its bytes are one, else `None`.
fn read_evicted(c: &PageCache, p: u64) -> Option<u8> {
    c.evict_range(p * 4096..(p + 1) * 4096).unwrap();
    let mut buf = vec![0u8; 4096];
    c.read_exact_at(&mut buf, p * 4096).unwrap();
    buf.iter().all(|&x| x == buf[0]).then_some(buf[0])
}

/// M4: a zeroing whose PUT gave up but landed later returned an error, the cache kept the old
/// bytes, and reads of evicted pages turned to zeros once it landed. Now a failed zeroing waits
/// until none of its PUTs can land, and looks: landed (its answer lost) is a success, otherwise
/// the error stands and the bytes stay the old ones for good.
#[test]
fn m4_a_zeroing_of_unknown_outcome_never_changes_the_bytes_after_it_returned() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = Arc::new(create(&h, 4 * chunk, chunk, &opts_long_lease()));
    let c = PageCache::new(b.clone(), CacheConfig::new(MIB_BUDGET)).unwrap();
    c.write_all_at(&vec![5u8; 2 * chunk as usize], 0).unwrap();
    c.sync().unwrap();
    // Chunk 0: its zeroing's first PUT reaches the store 100 ms after its client gave up, the
    // retries fail. Chunk 1: every attempt fails, nothing lands.
    for (p, acts) in [
        (
            0,
            vec![Act::Late(Duration::from_millis(100)), Act::Fail, Act::Fail],
        ),
        (16, vec![Act::Fail, Act::Fail, Act::Fail]),
    ] {
        h.script(chunk_puts, acts);
        let r = c.zero_range(p * 4096..p * 4096 + chunk);
        let now = read_evicted(&c, p);
        std::thread::sleep(Duration::from_millis(300)); // anything late has landed
        let later = read_evicted(&c, p);
        assert_eq!(
            now, later,
            "page {p} changed after zero_range returned {r:?}"
        );
        let want = if r.is_ok() { 0 } else { 5 };
        assert_eq!(now, Some(want), "page {p}, zero_range: {r:?}");
        h.clear();
    }
    assert!(
        data(&h.inner, 0).unwrap().is_empty(),
        "the late zeroing landed"
    );
    assert_eq!(data(&h.inner, 1).unwrap()[0], 5);
}

/// One chunk rewrite in flight at a time.
fn one_put_slot() -> OpenOptions {
    OpenOptions {
        limits: Limits {
            puts_in_flight_max: 1,
            ..Limits::default()
        },
        ..opts_long_lease()
    }
}

/// Every chunk PUT from now on takes `d` (a slow but healthy store).
fn delay_chunk_puts(h: &Hooked, d: Duration) {
    h.set(move |kind, key| {
        if chunk_puts(kind, key) {
            Act::Delay(d)
        } else {
            Act::Pass
        }
    });
}

/// M1: a rewrite's deadline ran from when its first change was queued, so on a healthy store
/// that is merely slow, the chunks at the back of a long queue failed without being sent. Here
/// one PUT slot and 60 ms per PUT: the 24th chunk waits 1.4 s, past two retry budgets (1.2 s).
#[test]
fn m1_a_slow_store_with_a_long_queue_of_dirty_chunks_reports_no_error() {
    let h = Hooked::new();
    let b = create(&h, 32 * 64 * KIB, 64 * KIB, &one_put_slot());
    delay_chunk_puts(&h, Duration::from_millis(60));
    let waiters: Vec<_> = (0..24u64)
        .map(|n| b.write_pages(n * 16, pages(n as u8 + 1, 1, 4096)).unwrap())
        .collect();
    let failed: Vec<String> = waiters
        .into_iter()
        .filter_map(|w| w.wait().err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} writes failed: {:?}",
        failed.len(),
        failed.first()
    );
    h.clear();
    assert_eq!(data(&h.inner, 23).unwrap()[0], 24);
}

/// M1: a chunk's rewrite task kept its PUT slot for as long as writes kept coming to it, so
/// with one slot a write to another chunk waited for ever (and then failed its deadline).
#[test]
fn m1_a_chunk_that_keeps_receiving_writes_does_not_keep_its_slot() {
    let h = Hooked::new();
    let b = Arc::new(create(&h, 16 * 64 * KIB, 64 * KIB, &one_put_slot()));
    delay_chunk_puts(&h, Duration::from_millis(40));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut waiters = Vec::new();
            // Bounded: 2 s, a write to chunk 0 every 10 ms, never waiting for one.
            let t = Instant::now();
            while !stop.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(2) {
                waiters.push(b.write_pages(0, pages(1, 1, 4096)).unwrap());
                std::thread::sleep(Duration::from_millis(10));
            }
            waiters
                .into_iter()
                .map(|w| w.wait())
                .filter(Result::is_err)
                .count()
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let r = write(&b, 16, 2, 1, 4096);
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(writer.join().unwrap(), 0, "writes to chunk 0 failed");
    r.unwrap();
    assert!(took < Duration::from_millis(500), "chunk 1 waited {took:?}");
}

/// M2: a shrink emptied the chunks past the new end first, under one deadline, then rewrote the
/// manifest; when the store stopped answering part-way, it failed at the old size with some of
/// those chunks already emptied: bytes below the size it reported were lost. Now the manifest
/// goes first and the cut after it is best effort; a growth cuts what is left before it
/// exposes the range again.
#[test]
fn m2_a_shrink_cut_short_loses_no_byte_below_the_size_and_growing_again_reads_zeros() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 16 * chunk, chunk, &opts_long_lease());
    write(&b, 0, 7, 16 * 16, 4096).unwrap();
    // The shrink's first two chunk PUTs land, then the store stops answering them.
    let puts = Arc::new(AtomicU32::new(0));
    let n = puts.clone();
    h.set(move |kind, key| {
        if !chunk_puts(kind, key) || n.fetch_add(1, Ordering::SeqCst) < 2 {
            Act::Pass
        } else {
            Act::Hang
        }
    });
    let t = Instant::now();
    let r = b.set_len(chunk + 4096);
    let took = t.elapsed();
    h.clear();
    let len = b.len();
    for n in 0..16u64 {
        if n * chunk < len {
            let d = data(&h.inner, n).unwrap_or_default();
            assert_eq!(
                d.first(),
                Some(&7),
                "chunk {n} emptied below the size {len} (set_len: {r:?})"
            );
        }
    }
    assert_eq!(len, chunk + 4096, "the shrink landed: {r:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // The store answers again; writes fail fast for as long as the last failed probe took.
    std::thread::sleep(Duration::from_millis(250));
    // Growing again: every byte past the cut reads zeros, in the store too.
    b.set_len(16 * chunk).unwrap();
    assert_eq!(data(&h.inner, 1).unwrap().len(), 4096, "chunk 1 cut");
    for n in 2..16 {
        assert!(
            data(&h.inner, n).unwrap_or_default().is_empty(),
            "chunk {n}"
        );
    }
    b.close().unwrap();
}

/// M3: the empty chunk objects are deleted at the next read-write open; a bucket that refuses
/// DELETE made every such open fail. Now the reclaim is best effort. And a DELETE whose outcome
/// is unknown is looked up once it can no longer land, so later writes go by the store's
/// version (without that, the next write of the chunk failed as "changed behind our back").
#[test]
fn m3_a_bucket_that_refuses_delete_still_opens_read_write() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts());
    write(&b, 16, 1, 1, 4096).unwrap();
    write(&b, 32, 1, 1, 4096).unwrap();
    b.write_zeroes(chunk, 2 * chunk).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 1), Some(Vec::new()), "an empty chunk object");
    h.set(|kind, _| {
        if kind == Kind::Delete {
            Act::Deny
        } else {
            Act::Pass
        }
    });
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    assert_eq!(data(&h.inner, 1), Some(Vec::new()), "refused: still there");
    write(&b, 16, 2, 1, 4096).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 1).unwrap()[0], 2);
    // Chunk 2's DELETE lands but its answer is lost, and its retries fail.
    h.script(
        |kind, _| kind == Kind::Delete,
        vec![Act::LoseAnswer, Act::Fail, Act::Fail],
    );
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    h.clear();
    assert_eq!(data(&h.inner, 2), None, "deleted");
    write(&b, 32, 3, 1, 4096).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 2).unwrap()[0], 3);
}

/// L2: a newcomer watching a live holder's lock found it changed after its watch and reported
/// the image leased, even when the change was the holder releasing it on close.
#[test]
fn l2_a_lock_released_while_a_newcomer_watches_it_is_taken() {
    let h = Hooked::new();
    let a = create(&h, 4 * 64 * KIB, 64 * KIB, &opts());
    let newcomer = {
        let h = h.clone();
        std::thread::spawn(move || ObjectStoreBackend::open(h, PREFIX, &opts()))
    };
    std::thread::sleep(Duration::from_millis(200)); // the newcomer watches
    a.close().unwrap();
    let b = newcomer.join().unwrap().unwrap();
    write(&b, 0, 1, 1, 4096).unwrap();
    b.close().unwrap();
}

/// L3: a create whose first PUT landed with its answer lost, and whose retries failed, was
/// reported as a failure (or, when reading the manifest back failed, as "an image already
/// exists"). Now it waits until no attempt can land and reads the manifest back: ours is a
/// success; one that cannot be read back is that error, not "exists".
#[test]
fn l3_a_create_whose_answer_was_lost_is_resolved() {
    let h = Hooked::new();
    h.script(manifest_puts, vec![Act::LoseAnswer, Act::Fail, Act::Fail]);
    let m = Manifest::new(4 * 64 * KIB, 64 * KIB).unwrap();
    let b = ObjectStoreBackend::create(h.clone(), PREFIX, m, &opts()).unwrap();
    assert_eq!(b.manifest(), m);
    b.close().unwrap();
    let h = Hooked::new();
    let (puts, gets) = (AtomicU32::new(0), AtomicU32::new(0));
    h.set(move |kind, key| match kind {
        _ if !key.ends_with("manifest.json") => Act::Pass,
        Kind::Put if puts.fetch_add(1, Ordering::SeqCst) == 0 => Act::LoseAnswer,
        Kind::Get if gets.fetch_add(1, Ordering::SeqCst) < 3 => Act::Fail,
        _ => Act::Pass,
    });
    let e = ObjectStoreBackend::create(h.clone(), PREFIX, m, &opts()).unwrap_err();
    assert!(
        matches!(e, ObjectError::RetriesExhausted { op: "GET", .. }),
        "{e}"
    );
}

/// The folio library's `discard_range` dropped a dirty page without telling the backend, so a
/// page whose write-back had failed and that the caller then discarded still counted as lost
/// at close. Now the backend forgets it; the failure still reached the sync after it.
#[test]
fn a_discarded_page_whose_write_back_failed_is_not_reported_lost_at_close() {
    let h = Hooked::new();
    let b = Arc::new(create(&h, 4 * 64 * KIB, 64 * KIB, &opts_long_lease()));
    let c = PageCache::new(b.clone(), CacheConfig::new(MIB_BUDGET)).unwrap();
    c.write_all_at(&[1u8; 4096], 0).unwrap();
    h.set(|kind, key| {
        if chunk_puts(kind, key) {
            Act::Fail
        } else {
            Act::Pass
        }
    });
    assert!(c.evict_range(0..4096).is_err(), "its write-back failed");
    h.clear();
    c.discard_range(0..4096).unwrap();
    assert!(c.sync().is_err(), "the failure reaches the sync");
    c.sync().unwrap();
    c.close().unwrap();
    let b = Arc::into_inner(b).expect("the cache gave the backend back");
    b.close().unwrap();
    assert_eq!(data(&h.inner, 0), None, "discarded: never written");
}
