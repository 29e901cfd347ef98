//! Tests of the fourth adversarial review's findings on the object store, each failing against
//! the backend the review read. Over object_store's in-memory store behind the scriptable fault
//! hook (`common/mod.rs`).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    chunk_puts, create, data, opts, opts_long_lease, pages, write, Act, Hooked, Kind, KIB, PREFIX,
};
use folio::backend::PageCacheBackend;
use folio::{CacheConfig, PageCache};
use folio_object::{Limits, ObjectError, ObjectStoreBackend, OpenOptions};

/// A write-back of a page past the new end that was queued before a shrink and whose round ran
/// (and failed) after it was counted as lost: the shrink forgets the failures past the end only
/// when it runs, not those of the rounds that end after it, so close reported bytes that are no
/// longer the image's as not durable.
#[test]
fn a_write_past_the_end_that_fails_after_a_shrink_is_not_reported_lost_at_close() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let o = OpenOptions {
        limits: Limits {
            puts_in_flight_max: 1,
            ..Limits::default()
        },
        ..opts_long_lease()
    };
    let b = create(&h, 4 * chunk, chunk, &o);
    write(&b, 32, 7, 1, 4096).unwrap(); // chunk 2 holds data
                                        // Chunk 0's PUT holds the only slot for a while; the shrink's cut of chunk 2 goes through;
                                        // the queued write of chunk 2, which runs after the shrink, is refused.
    let chunk2_puts = Arc::new(AtomicU32::new(0));
    let chunk0_puts = Arc::new(AtomicU32::new(0));
    let (seen, seen0) = (chunk2_puts.clone(), chunk0_puts.clone());
    h.set(move |kind, key| {
        if !chunk_puts(kind, key) {
            Act::Pass
        } else if key.ends_with(&format!("{:016x}", 0)) {
            seen0.fetch_add(1, Ordering::SeqCst);
            Act::Delay(Duration::from_millis(150))
        } else if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Act::Pass
        } else {
            Act::Deny
        }
    });
    let first = b.write_pages(0, pages(1, 1, 4096)).unwrap();
    // Bounded: chunk 0's PUT is sent at once.
    while chunk0_puts.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Chunk 0's round holds the slot for 150 ms: chunk 2's waits for it, and the shrink for
    // the geometry lock, which it gets before chunk 2's round.
    let late = b.write_pages(32, pages(8, 1, 4096)).unwrap();
    b.set_len(chunk).unwrap();
    first.wait().unwrap();
    let r = late.wait();
    assert!(r.is_err(), "the late write was refused: {r:?}");
    assert_eq!(
        chunk2_puts.load(Ordering::SeqCst),
        2,
        "cut, then the late write"
    );
    h.clear();
    b.sync().unwrap();
    let closed = b.close();
    assert!(
        !matches!(closed, Err(ObjectError::NotDurable { .. })),
        "bytes past the end reported lost: {closed:?}"
    );
    closed.unwrap();
}

/// Across sessions: a shrink whose cut the store refused (the manifest landed, the chunks past
/// the end kept their data), then a new session whose reclaim the store refuses too (DELETE
/// denied), then a growth: every byte past the old cut reads zeros, none of the old data comes
/// back, and the bytes below the cut are kept.
#[test]
fn a_cut_refused_in_one_session_is_made_before_a_growth_in_the_next() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts());
    write(&b, 0, 7, 4 * 16, 4096).unwrap();
    h.set(|kind, key| {
        if chunk_puts(kind, key) {
            Act::Deny
        } else {
            Act::Pass
        }
    });
    b.set_len(chunk + 4096).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 2).unwrap()[0], 7, "the cut was refused");
    h.set(|kind, _| {
        if kind == Kind::Delete {
            Act::Deny
        } else {
            Act::Pass
        }
    });
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    assert_eq!(b.len(), chunk + 4096);
    b.set_len(4 * chunk).unwrap();
    let d1 = data(&h.inner, 1).unwrap();
    assert!(
        d1.len() <= 4096 && d1.iter().all(|&x| x == 7),
        "chunk 1 cut at the old end"
    );
    for n in 2..4 {
        assert!(
            data(&h.inner, n).unwrap_or_default().is_empty(),
            "chunk {n}"
        );
    }
    let c = PageCache::new(Arc::new(b), CacheConfig::new(1 << 20)).unwrap();
    let mut buf = vec![0xEEu8; (3 * chunk) as usize];
    c.read_exact_at(&mut buf, chunk).unwrap();
    assert!(
        buf[..4096].iter().all(|&x| x == 7),
        "below the old end: kept"
    );
    assert!(
        buf[4096..].iter().all(|&x| x == 0),
        "past the old end: zeros"
    );
    c.close().unwrap();
}

/// A shrink whose manifest PUT landed with its answer lost, and whose read-back failed, was
/// reported failed ("nothing changed") while the store held the shorter manifest: the session
/// went on at the old size, a write past the new end was acknowledged and synced, and the next
/// open found the shorter image (its reclaim deletes the chunks past the end): synced data lost.
#[test]
fn a_shrink_reported_failed_never_leaves_the_store_shorter_than_the_session_writes() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts_long_lease());
    // The manifest PUT lands 50 ms after its client was told it failed, its retries fail; the
    // store does not answer the read-back either.
    let puts = Arc::new(AtomicU32::new(0));
    let n = puts.clone();
    h.set(move |kind, key| {
        if !key.ends_with("manifest.json") {
            Act::Pass
        } else if kind == Kind::Put && n.fetch_add(1, Ordering::SeqCst) == 0 {
            Act::Late(Duration::from_millis(50))
        } else {
            Act::Fail
        }
    });
    let r = b.set_len(chunk);
    h.clear();
    if r.is_ok() {
        assert_eq!(b.len(), chunk);
        b.close().unwrap();
        return;
    }
    // Reported failed: the session goes on at the old size.
    assert_eq!(b.len(), 4 * chunk, "{r:?}");
    let w = write(&b, 48, 9, 1, 4096).and_then(|()| b.sync());
    let closed = b.close();
    if w.is_err() || closed.is_err() {
        return; // the write or the close failed: nothing was acknowledged as durable
    }
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    assert_eq!(
        b.len(),
        4 * chunk,
        "set_len failed ({r:?}), a write at chunk 3 and a sync succeeded, yet the image \
         reopens shorter"
    );
    b.close().unwrap();
}
