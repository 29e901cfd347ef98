//! The object-store backend against object_store's in-memory store, wrapped in a
//! [`FaultyStore`] that injects latency and failures: hermetic, quick, deterministic where it
//! matters (each test sets its own faults).

mod common;

use common::{block, object, opts};

use std::sync::Arc;
use std::time::Duration;

use folio::backend::{FrameMut, PageCacheBackend};
use folio::{CacheConfig, PageCache};
use folio_object::object_store::memory::InMemory;
use folio_object::object_store::path::Path;
use folio_object::object_store::{ObjectStoreExt, PutPayload};
use folio_object::{
    Access, FaultyStore, Layout, LeaseMode, Manifest, ObjectError, ObjectStoreBackend, OpenOptions,
    CHUNK_TRAILER_LEN,
};
use rand::{Rng, SeedableRng};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const PREFIX: &str = "images/t";

struct Stores {
    inner: Arc<InMemory>,
    faulty: Arc<FaultyStore>,
}

fn stores() -> Stores {
    let inner = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultyStore::new(inner.clone()));
    Stores { inner, faulty }
}

fn create(s: &Stores, size: u64, chunk: u64) -> ObjectStoreBackend {
    let m = Manifest::new(size, chunk).unwrap();
    ObjectStoreBackend::create(s.faulty.clone(), PREFIX, m, &opts()).unwrap()
}

fn open(s: &Stores, o: &OpenOptions) -> Result<ObjectStoreBackend, ObjectError> {
    ObjectStoreBackend::open(s.faulty.clone(), PREFIX, o)
}

fn cache(b: ObjectStoreBackend, budget: u64) -> PageCache {
    PageCache::new(Arc::new(b), CacheConfig::new(budget)).unwrap()
}

fn chunk_key(n: u64) -> Path {
    Layout::new(PREFIX).unwrap().chunk(n)
}

/// The stored object of chunk `n`, if any.
fn stored(s: &Stores, n: u64) -> Option<Vec<u8>> {
    object(&s.inner, &chunk_key(n))
}

/// The data part of chunk `n`'s object (without its trailer), if it has one.
fn data(s: &Stores, n: u64) -> Option<Vec<u8>> {
    stored(s, n).map(|mut o| {
        assert!(
            o.len() >= CHUNK_TRAILER_LEN as usize,
            "chunk {n} has no trailer"
        );
        o.truncate(o.len() - CHUNK_TRAILER_LEN as usize);
        o
    })
}

fn read_all(c: &PageCache, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    c.read_exact_at(&mut buf, 0).unwrap();
    buf
}

fn object_error(e: &folio::Error) -> &ObjectError {
    ObjectError::find(e).unwrap_or_else(|| panic!("not an ObjectError: {e}"))
}

#[test]
fn pages_round_trip_through_a_small_cache_and_a_reopen() {
    let s = stores();
    let size = 8 * MIB + 3 * KIB; // a partial last page and a partial last chunk
    let c = cache(create(&s, size, 256 * KIB), MIB);
    let mut model = vec![0u8; size as usize];
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..300 {
        let len = rng.random_range(1..20_000usize);
        let off = rng.random_range(0..size - len as u64);
        let data: Vec<u8> = (0..len).map(|j| (i + j) as u8 | 1).collect();
        c.write_all_at(&data, off).unwrap();
        model[off as usize..off as usize + len].copy_from_slice(&data);
        if i % 50 == 0 {
            c.sync().unwrap();
        }
    }
    c.write_all_at(b"tail", size - 4).unwrap();
    model[size as usize - 4..].copy_from_slice(b"tail");
    assert!(read_all(&c, size) == model, "reads through the cache");
    c.close().unwrap();
    let c = cache(open(&s, &opts()).unwrap(), MIB);
    assert_eq!(c.len(), size);
    assert!(read_all(&c, size) == model, "reads after a reopen");
    // Chunk objects are the image's bytes (the last one cut at the image's end) and a trailer.
    let last = size / (256 * KIB);
    assert_eq!(
        data(&s, last).map(|b| b.len() as u64),
        Some(size % (256 * KIB))
    );
    let first = data(&s, 0).unwrap(); // trailing zeros are not stored
    assert!(first[..] == model[..first.len()]);
    assert!(model[first.len()..(256 * KIB) as usize]
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn a_flush_gathers_the_dirty_pages_of_a_chunk_into_one_put() {
    let s = stores();
    let b = create(&s, 16 * MIB, MIB);
    let c = Arc::new(cache(b, 8 * MIB));
    // 40 scattered pages in chunk 2 and 40 in chunk 9: 80 runs, two chunks.
    for chunk in [2u64, 9] {
        for p in 0..40u64 {
            c.write_all_at(b"x", chunk * MIB + p * 6 * 4096 + 17)
                .unwrap();
        }
    }
    let before = s.faulty.requests();
    c.sync().unwrap();
    let puts = s.faulty.requests() - before;
    // Each chunk: one GET of its old bytes is not needed (absent), one PUT.
    assert_eq!(puts, 2, "one PUT per chunk");
    assert_eq!(data(&s, 2).unwrap()[6 * 4096 + 17], b'x');
}

#[test]
fn queued_writes_wait_for_unplug_and_meet_in_one_put() {
    let s = stores();
    let b = create(&s, 4 * MIB, MIB);
    let before = s.faulty.requests();
    let waiters: Vec<_> = [3u64, 10, 200]
        .iter()
        .map(|&p| {
            let mut f = FrameMut::alloc(4096).unwrap();
            f.as_mut_slice().fill(p as u8);
            let w = b.start_write_pages(p, vec![f.freeze()]).unwrap();
            std::thread::sleep(Duration::from_millis(2)); // a rewrite started now would miss the rest
            w
        })
        .collect();
    assert_eq!(s.faulty.requests(), before, "nothing is sent before unplug");
    b.unplug();
    for w in waiters {
        w.wait().unwrap();
    }
    assert_eq!(s.faulty.requests() - before, 1, "one PUT for the chunk");
    let chunk = stored(&s, 0).unwrap();
    assert_eq!(
        (chunk[3 * 4096], chunk[10 * 4096], chunk[200 * 4096]),
        (3, 10, 200)
    );
}

#[test]
fn zero_chunks_are_emptied_then_reclaimed_at_open_and_absent_chunks_cost_no_request() {
    let s = stores();
    let c = cache(create(&s, 8 * MIB, MIB), 4 * MIB);
    c.write_all_at(&vec![5u8; MIB as usize], MIB).unwrap();
    c.write_all_at(&[6u8; 100], 3 * MIB).unwrap();
    c.sync().unwrap();
    assert!(stored(&s, 1).is_some() && stored(&s, 3).is_some());
    assert!(
        stored(&s, 0).is_none(),
        "never-written chunks are not stored"
    );
    // Reading absent chunks asks the store nothing.
    let before = s.faulty.requests();
    let mut buf = vec![1u8; 2 * MIB as usize];
    c.read_exact_at(&mut buf, 4 * MIB).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    assert_eq!(s.faulty.requests(), before);
    // Zeroing a whole chunk empties it (a conditional PUT of a trailer alone, never a DELETE
    // during a session); writing zeros over the rest of one does too.
    c.zero_range(MIB..2 * MIB).unwrap();
    c.write_all_at(&[0u8; 100], 3 * MIB).unwrap();
    c.sync().unwrap();
    assert_eq!(data(&s, 1), Some(Vec::new()), "zeroed chunk emptied");
    assert_eq!(
        data(&s, 3),
        Some(Vec::new()),
        "chunk written back to zeros emptied"
    );
    // An empty chunk reads as zeros without a request.
    c.evict_range(0..8 * MIB).unwrap();
    let before = s.faulty.requests();
    let mut one = [9u8; 1];
    c.read_exact_at(&mut one, MIB + 5).unwrap();
    assert_eq!(one, [0]);
    assert_eq!(s.faulty.requests(), before);
    c.close().unwrap();
    // The next read-write open deletes them, under its fresh lease.
    let b = open(&s, &opts()).unwrap();
    assert!(stored(&s, 1).is_none() && stored(&s, 3).is_none());
    drop(b);
}

#[test]
fn a_failed_put_keeps_the_data_and_every_sync_fails_until_it_lands() {
    let s = stores();
    let c = cache(create(&s, 4 * MIB, MIB), 2 * MIB);
    c.write_all_at(b"before", 0).unwrap();
    c.sync().unwrap();
    s.faulty.set_down(true);
    c.write_all_at(b"during", 2 * MIB).unwrap();
    // The cache reports the latest failure: the PUT's, or the backend sync's that followed.
    let e = c.sync().unwrap_err();
    assert!(
        matches!(
            object_error(&e),
            ObjectError::RetriesExhausted { .. } | ObjectError::NotDurable { .. }
        ),
        "{e}"
    );
    // Still down: the next sync fails again (the pages are still dirty), never Ok.
    assert!(c.sync().is_err());
    let mut buf = [0u8; 6];
    c.read_exact_at(&mut buf, 2 * MIB).unwrap();
    assert_eq!(&buf, b"during", "the data stays readable in the cache");
    assert!(stored(&s, 2).is_none());
    s.faulty.set_down(false);
    c.sync().unwrap();
    assert_eq!(&data(&s, 2).unwrap()[..6], b"during");
    c.close().unwrap();
}

#[test]
fn a_failed_write_reaches_its_waiter_and_close_reports_it_unless_redone() {
    let s = stores();
    let b = create(&s, 4 * MIB, MIB);
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(3);
    s.faulty.fail_next_puts(100);
    let e = b
        .write_pages(0, vec![f.freeze()])
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(matches!(
        object_error(&e),
        ObjectError::RetriesExhausted { .. }
    ));
    s.faulty.fail_next_puts(0);
    b.sync().unwrap(); // nothing it waited for failed; the failure went to the waiter
    let e = b.close().unwrap_err();
    assert!(matches!(e, ObjectError::NotDurable { bytes: 4096 }), "{e}");
    // Written again, the block is durable and close is clean.
    let b = open(&s, &opts()).unwrap();
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(4);
    s.faulty.fail_next_puts(100);
    assert!(b.write_pages(0, vec![f.freeze()]).unwrap().wait().is_err());
    s.faulty.fail_next_puts(0);
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(5);
    b.write_pages(0, vec![f.freeze()]).unwrap().wait().unwrap();
    b.close().unwrap();
    assert_eq!(stored(&s, 0).unwrap()[0], 5);
}

#[test]
fn transient_failures_are_retried_and_counted() {
    let s = stores();
    let b = create(&s, 4 * MIB, MIB);
    let c = cache(b, 2 * MIB);
    c.write_all_at(b"retried", 0).unwrap();
    s.faulty.fail_next_puts(2); // the third attempt lands (attempts_max = 3)
    c.sync().unwrap();
    assert_eq!(&stored(&s, 0).unwrap()[..7], b"retried");
    s.faulty.fail_next_gets(2);
    c.evict_range(0..MIB).unwrap();
    let mut buf = [0u8; 7];
    c.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"retried");
}

#[test]
fn a_put_whose_answer_was_lost_is_recognised_as_our_own() {
    let s = stores();
    let c = cache(create(&s, 4 * MIB, MIB), 2 * MIB);
    c.write_all_at(b"one", 0).unwrap();
    c.sync().unwrap();
    // The PUT lands but its answer is lost; the retry's If-Match then fails against our own
    // new version, which the backend recognises (same length and checksum).
    s.faulty.lose_next_put_answers(1);
    c.write_all_at(b"two", 0).unwrap();
    c.sync().unwrap();
    c.write_all_at(b"three", 0).unwrap();
    c.sync().unwrap(); // the version it learned is the right one: no spurious conflict
    c.close().unwrap();
    assert_eq!(&stored(&s, 0).unwrap()[..5], b"three");
}

#[test]
fn a_chunk_changed_behind_folios_back_is_detected() {
    let s = stores();
    let b = create(&s, 4 * MIB, MIB);
    let two = (0..2)
        .map(|_| {
            let mut f = FrameMut::alloc(4096).unwrap();
            f.as_mut_slice().fill(1);
            f.freeze()
        })
        .collect();
    b.write_pages(0, two).unwrap().wait().unwrap();
    // Someone else rewrites chunk 0.
    block(
        s.inner
            .put(&chunk_key(0), PutPayload::from(vec![2u8; 8192])),
    )
    .unwrap();
    let e = b
        .read_pages(1, vec![FrameMut::alloc(4096).unwrap()])
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::ChunkChanged { chunk: 0, .. }),
        "{e}"
    );
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(3);
    let e = b
        .write_pages(0, vec![f.freeze()])
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::ChunkChanged { .. }),
        "{e}"
    );
    // And a chunk that appears where Folio knows none is refused on write.
    block(
        s.inner
            .put(&chunk_key(2), PutPayload::from(vec![2u8; 8192])),
    )
    .unwrap();
    let f = FrameMut::alloc(4096).unwrap();
    let e = b
        .write_pages(
            2 * 256,
            vec![{
                let mut f = f;
                f.as_mut_slice().fill(9);
                f.freeze()
            }],
        )
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::ChunkChanged { chunk: 2, .. }),
        "{e}"
    );
    assert_eq!(stored(&s, 2).unwrap(), vec![2u8; 8192], "not overwritten");
}

#[test]
fn whole_chunk_reads_verify_the_stored_checksum() {
    let s = stores();
    let b = create(&s, 4 * MIB, 64 * KIB);
    let frames = (0..16)
        .map(|_| {
            let mut f = FrameMut::alloc(4096).unwrap();
            f.as_mut_slice().fill(7);
            f.freeze()
        })
        .collect();
    b.write_pages(16, frames).unwrap().wait().unwrap();
    b.close().unwrap();
    // One bit of chunk 1's data flips in the store (its trailer's CRC32C no longer matches).
    let mut object = stored(&s, 1).unwrap();
    object[100] ^= 1;
    block(s.inner.put(&chunk_key(1), object.into())).unwrap();
    let b = open(&s, &opts_read_only()).unwrap();
    let frames = (0..16).map(|_| FrameMut::alloc(4096).unwrap()).collect();
    let e = b.read_pages(16, frames).unwrap().wait().unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::Checksum { chunk: 1, .. }),
        "{e}"
    );
    // An object without Folio's trailer is refused by name.
    block(s.inner.put(&chunk_key(2), vec![7u8; 65536].into())).unwrap();
    let b = open(&s, &opts_read_only()).unwrap();
    let frames = (0..16).map(|_| FrameMut::alloc(4096).unwrap()).collect();
    let e = b.read_pages(32, frames).unwrap().wait().unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::BadChunk { chunk: 2, .. }),
        "{e}"
    );
}

fn opts_read_only() -> OpenOptions {
    OpenOptions {
        access: Access::ReadOnly,
        ..opts()
    }
}

#[test]
fn a_second_writer_is_refused_while_readers_are_not() {
    let s = stores();
    let a = cache(create(&s, 4 * MIB, MIB), MIB);
    a.write_all_at(b"a's", 0).unwrap();
    a.sync().unwrap();
    let t = std::time::Instant::now();
    let e = open(&s, &opts()).unwrap_err();
    assert!(matches!(e, ObjectError::Leased { .. }), "{e}");
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "it watched the lease"
    );
    let r = cache(open(&s, &opts_read_only()).unwrap(), MIB);
    let mut buf = [0u8; 3];
    r.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"a's");
    assert!(r.write_all_at(b"no", 0).and_then(|()| r.sync()).is_err());
    a.close().unwrap(); // releases the lease
    drop(open(&s, &opts()).unwrap());
}

#[test]
fn a_dead_writers_lease_is_taken_over_after_its_time_to_live() {
    let s = stores();
    drop(create(&s, 4 * MIB, MIB));
    let lock = Layout::new(PREFIX).unwrap().lock();
    let dead = r#"{"holder":"gone:1:0","ttl_ms":300,"attempt_timeout_ms":100,"renewal":4}"#;
    block(s.inner.put(&lock, PutPayload::from(dead))).unwrap();
    let t = std::time::Instant::now();
    let b = open(&s, &opts()).unwrap();
    // Its time to live, a tenth more, and its requests' timeout.
    assert!(
        t.elapsed() >= Duration::from_millis(430),
        "{:?}",
        t.elapsed()
    );
    drop(b);
}

#[test]
fn breaking_a_lease_fences_the_writer_that_held_it() {
    let s = stores();
    let a = create(&s, 4 * MIB, MIB);
    let breaker = OpenOptions {
        lease_mode: LeaseMode::Break,
        ..opts()
    };
    let b = open(&s, &breaker).unwrap();
    // A's next renewal (every 200 ms) finds the lock changed.
    std::thread::sleep(Duration::from_millis(500));
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(1);
    let e = a
        .write_pages(0, vec![f.freeze()])
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::LeaseLost { .. }),
        "{e}"
    );
    assert!(a.sync().is_err());
    let mut f = FrameMut::alloc(4096).unwrap();
    f.as_mut_slice().fill(2);
    b.write_pages(0, vec![f.freeze()]).unwrap().wait().unwrap();
    drop(a); // must not delete B's lock
    drop(b);
    assert!(stored(&s, 0).is_some());
}

#[test]
fn resize_drops_chunks_past_the_end_and_growing_reads_zeros() {
    let s = stores();
    let c = cache(create(&s, 4 * MIB, MIB), 8 * MIB);
    c.write_all_at(&vec![7u8; 4 * MIB as usize], 0).unwrap();
    c.sync().unwrap();
    assert!((0..4).all(|n| stored(&s, n).is_some()));
    c.resize(MIB + MIB / 2).unwrap();
    c.sync().unwrap();
    // Emptied during the session (never deleted), cut at the new end.
    assert_eq!(data(&s, 2), Some(Vec::new()));
    assert_eq!(data(&s, 3), Some(Vec::new()));
    assert_eq!(data(&s, 1).unwrap().len() as u64, MIB / 2);
    c.resize(4 * MIB).unwrap();
    c.evict_range(0..4 * MIB).unwrap();
    let all = read_all(&c, 4 * MIB);
    assert!(all[..(MIB + MIB / 2) as usize].iter().all(|&b| b == 7));
    assert!(all[(MIB + MIB / 2) as usize..].iter().all(|&b| b == 0));
    c.close().unwrap();
    let b = open(&s, &opts()).unwrap();
    assert_eq!(b.manifest().size, 4 * MIB);
    assert!(
        stored(&s, 2).is_none() && stored(&s, 3).is_none(),
        "reclaimed at open"
    );
    drop(b);
}

#[test]
fn sequential_reads_keep_several_gets_in_flight_over_a_slow_store() {
    let s = stores();
    let c = cache(create(&s, 16 * MIB, MIB), 32 * MIB);
    c.write_all_at(&vec![1u8; 16 * MIB as usize], 0).unwrap();
    c.close().unwrap();
    s.faulty.set_latency(Duration::from_millis(20));
    let c = cache(open(&s, &opts()).unwrap(), 32 * MIB);
    let mut buf = vec![0u8; 128 * KIB as usize];
    for off in (0..16 * MIB).step_by(buf.len()) {
        c.read_exact_at(&mut buf, off).unwrap();
        assert!(buf.iter().all(|&b| b == 1));
    }
    assert!(
        s.faulty.in_flight_max() >= 3,
        "GETs in flight at most {}",
        s.faulty.in_flight_max()
    );
}

#[test]
fn sync_returns_after_the_store_acknowledged_over_a_slow_store() {
    let s = stores();
    s.faulty.set_latency(Duration::from_millis(15));
    let c = cache(create(&s, 8 * MIB, MIB), 4 * MIB);
    for n in 0..8u64 {
        c.write_all_at(&[n as u8 + 1; 10], n * MIB + 4096).unwrap();
    }
    c.sync().unwrap();
    for n in 0..8u64 {
        assert_eq!(stored(&s, n).unwrap()[4096], n as u8 + 1, "chunk {n}");
    }
}

#[test]
fn concurrent_writers_under_flaky_puts_lose_nothing_that_was_synced() {
    let s = stores();
    s.faulty.set_latency(Duration::from_millis(1));
    let size = 8 * MIB;
    // The whole image fits: writes never wait on an eviction that a failing PUT would fail.
    let c = Arc::new(cache(create(&s, size, 512 * KIB), 2 * size));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            let faulty = s.faulty.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                let region = size / 4;
                let mut synced = vec![0u8; region as usize];
                let mut current = synced.clone();
                for i in 0..120u32 {
                    let len = rng.random_range(1..9000usize);
                    let off = rng.random_range(0..region - len as u64);
                    let byte = (i as u8).wrapping_mul(3) | 1;
                    c.write_all_at(&vec![byte; len], t * region + off).unwrap();
                    current[off as usize..off as usize + len].fill(byte);
                    if i % 7 == 0 {
                        faulty.fail_next_puts(rng.random_range(0..4));
                    }
                    if i % 10 == 9 && c.sync().is_ok() {
                        synced.clone_from(&current);
                    }
                }
                current
            })
        })
        .collect();
    let regions: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    s.faulty.fail_next_puts(0);
    c.sync().unwrap();
    drop(c);
    let c = cache(open(&s, &opts()).unwrap(), 2 * MIB);
    let all = read_all(&c, size);
    assert!(
        all == regions.concat(),
        "every write is in the store after a good sync"
    );
}
