//! Tests of the io review's object-store findings that its own tests (`review_io.rs`) do not
//! reach: each one failed against the backend the review read, and each names its item. They run
//! over object_store's in-memory store behind a scriptable fault hook (`common/mod.rs`).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    chunk_puts, create, data, is, manifest_puts, object, object_error, opts, opts_long_lease,
    pages, policy, read_page, write, Act, Hooked, Kind, KIB, MIB, PREFIX,
};
use folio::backend::PageCacheBackend;
use folio_object::{
    Access, Layout, Manifest, ObjectError, ObjectStoreBackend, OpenOptions, RetryPolicy,
};

/// Item 1: the lease was checked once, when a rewrite started; its retries could land long after
/// another server had taken the image over. Now every attempt is sent only while the fence is
/// open. Here A's renewals cannot land and its chunk PUTs crawl (150 ms, then a failure, eight
/// times): B, on a good link, waits A's lease out, takes over and lists chunk 0 as absent.
#[test]
fn item_1_a_write_still_retrying_when_the_lease_runs_out_is_refused_and_never_lands() {
    let h = Hooked::new();
    let o = OpenOptions {
        retry: policy(12),
        ..opts()
    };
    let a = create(&h, 4 * MIB, 64 * KIB, &o);
    let chunk_puts = Arc::new(AtomicU32::new(0));
    let n = chunk_puts.clone();
    h.set(move |kind, key| match kind {
        Kind::Put if key.ends_with("/lock") => Act::Fail,
        Kind::Put if key.contains("/chunks/") => {
            if n.fetch_add(1, Ordering::SeqCst) < 8 {
                Act::FailAfter(Duration::from_millis(150))
            } else {
                Act::Delay(Duration::from_millis(150))
            }
        }
        _ => Act::Pass,
    });
    let wa = a.write_pages(0, pages(7, 16, 4096)).unwrap();
    let b = ObjectStoreBackend::open(h.inner.clone(), PREFIX, &opts()).unwrap();
    let e = wa.wait().unwrap_err();
    assert!(
        matches!(object_error(&e), ObjectError::LeaseLost { .. }),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        data(&h.inner, 0),
        None,
        "a PUT of A landed after B took over"
    );
    assert!(
        chunk_puts.load(Ordering::SeqCst) < 8,
        "A kept sending past its lease"
    );
    drop(b);
    drop(a);
}

/// Item 1: an attempt that started inside the lease ran for its whole timeout, so its answer
/// could come, and be acknowledged, after the lease had run out. Now each attempt is abandoned
/// when the fence closes. Here the lease (1.2 s) cannot be renewed, and a PUT that starts at
/// 0.8 s answers only after 0.38 s, past the fence (at most 1.08 s): it must not be acknowledged.
#[test]
fn item_1_an_attempt_that_would_answer_after_the_lease_ran_out_is_abandoned() {
    let h = Hooked::new();
    let o = OpenOptions {
        retry: RetryPolicy {
            attempt_timeout: Duration::from_millis(400),
            ..policy(3)
        },
        lease_ttl: Duration::from_millis(1200),
        ..OpenOptions::default()
    };
    let a = create(&h, 4 * MIB, 64 * KIB, &o);
    let opened = Instant::now(); // the lease was taken before this: its fence ends by 1.08 s
    h.set(move |kind, key| match kind {
        Kind::Put if key.ends_with("/lock") => Act::Fail,
        Kind::Put if key.contains("/chunks/") => Act::Delay(Duration::from_millis(380)),
        _ => Act::Pass,
    });
    std::thread::sleep(Duration::from_millis(800).saturating_sub(opened.elapsed()));
    let r = write(&a, 0, 7, 1, 4096);
    let e = r.expect_err("acknowledged after the lease ran out");
    assert!(
        matches!(object_error(&e), ObjectError::LeaseLost { .. }),
        "{e}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(data(&h.inner, 0), None, "the abandoned PUT landed");
}

/// Item 1: closing waited 60 s for the writes in flight, then released the lease anyway, so a
/// newcomer could take the image at once while one of them might still land.
#[test]
fn item_1_closing_with_writes_in_flight_leaves_the_lease_to_expire() {
    let h = Hooked::new();
    let o = OpenOptions {
        close_wait: Duration::from_millis(100),
        ..opts()
    };
    let a = create(&h, 4 * MIB, 64 * KIB, &o);
    h.set(|kind, key| {
        if chunk_puts(kind, key) {
            Act::Hang
        } else {
            Act::Pass
        }
    });
    let w = a.write_pages(0, pages(1, 1, 4096)).unwrap();
    let e = a.close().unwrap_err();
    assert!(matches!(e, ObjectError::InFlightAtClose { .. }), "{e}");
    drop(w);
    h.clear();
    let lock = object(&h.inner, &Layout::new(PREFIX).unwrap().lock()).unwrap();
    let lock: serde_json::Value = serde_json::from_slice(&lock).unwrap();
    assert_eq!(lock["released"], false, "{lock}");
    // A newcomer waits it out: time to live, a tenth, and A's attempt timeout.
    let t = Instant::now();
    drop(ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(860),
        "{:?}",
        t.elapsed()
    );
}

/// Item 10: nothing checked that the lease outlives a store request (the defaults were 30 s and
/// 30 s). A writer's lease shorter than three attempt timeouts is a typed error; a reader, which
/// takes no lease, may use any.
#[test]
fn item_10_a_lease_shorter_than_three_attempt_timeouts_is_refused() {
    let h = Hooked::new();
    let short = OpenOptions {
        lease_ttl: Duration::from_millis(599),
        ..opts()
    };
    let m = Manifest::new(MIB, 64 * KIB).unwrap();
    let r = ObjectStoreBackend::create(h.clone(), PREFIX, m, &short);
    assert!(is(&r, |e| matches!(e, ObjectError::LeaseTooShort { .. })));
    drop(create(&h, MIB, 64 * KIB, &opts()));
    let r = ObjectStoreBackend::open(h.clone(), PREFIX, &short);
    assert!(is(&r, |e| matches!(e, ObjectError::LeaseTooShort { .. })));
    let reader = OpenOptions {
        access: Access::ReadOnly,
        ..short
    };
    drop(ObjectStoreBackend::open(h.clone(), PREFIX, &reader).unwrap());
    assert!(
        OpenOptions::default().check().is_ok(),
        "the defaults obey it"
    );
}

/// Item 10: a renewal extended the lease from when `renew` started, so one attempt that hung for
/// its timeout cost the writer most of its lease. Now the lease runs from the start of the
/// attempt that landed. Here the first attempt of every renewal hangs: writes never stop.
#[test]
fn item_10_a_renewal_whose_first_attempt_hangs_does_not_stop_writes() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts());
    let lock_puts = Arc::new(AtomicU32::new(0));
    let n = lock_puts.clone();
    h.set(move |kind, key| match kind {
        Kind::Put if key.ends_with("/lock") => {
            if n.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
                Act::Hang
            } else {
                Act::Pass
            }
        }
        _ => Act::Pass,
    });
    let t = Instant::now();
    let mut refused = Vec::new();
    // Bounded: 2 s of writes.
    while t.elapsed() < Duration::from_secs(2) {
        if let Err(e) = write(&b, 0, 1, 1, 4096) {
            refused.push(format!("{:?}: {e}", t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(lock_puts.load(Ordering::SeqCst) >= 6, "renewals ran");
    assert!(refused.is_empty(), "writes refused: {refused:?}");
}

/// Item 2 (shrink): a shrink DELETEd the chunks past the new end; a DELETE applied late (after
/// its retry succeeded, the image grew again and the chunk was rewritten and synced) destroyed
/// synced data. Now nothing is deleted during a session: the chunks are emptied by conditional
/// PUTs, and deleted only at the next open.
#[test]
fn item_2_a_late_delete_from_a_shrink_does_not_destroy_data_written_after_it() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts_long_lease());
    write(&b, 0, 1, 64, 4096).unwrap();
    h.script(
        |kind, _| kind == Kind::Delete,
        vec![Act::Late(Duration::from_millis(300))],
    );
    b.set_len(chunk).unwrap();
    b.set_len(4 * chunk).unwrap();
    write(&b, 16, 7, 16, 4096).unwrap();
    b.sync().unwrap();
    assert_eq!(b.stats().deletes, 0, "a DELETE during a session");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(data(&h.inner, 1).unwrap()[0], 7, "synced data was deleted");
    assert!(data(&h.inner, 2).unwrap().is_empty(), "shrunk away");
    b.close().unwrap();
}

/// Item 2 (open): the empty chunks are deleted at open, under the fresh lease; open waits until
/// none of those DELETEs can still land, so a write right after it is safe.
#[test]
fn item_2_reclaiming_empty_chunks_at_open_waits_for_its_deletes_to_settle() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts());
    write(&b, 16, 1, 1, 4096).unwrap();
    b.write_zeroes(chunk, chunk).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 1), Some(Vec::new()), "an empty chunk object");
    // The first DELETE at the next open reaches the store only 150 ms after its client gave up.
    let deletes = h.script(
        |kind, _| kind == Kind::Delete,
        vec![Act::Late(Duration::from_millis(150))],
    );
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    assert!(deletes.load(Ordering::SeqCst) >= 2, "reclaimed, retried");
    write(&b, 16, 9, 1, 4096).unwrap();
    b.sync().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        data(&h.inner, 1).unwrap()[0],
        9,
        "a late DELETE of the reclaim landed"
    );
    b.close().unwrap();
}

/// Item 3, with an unknown outcome: a create that got no answer may land later; zeroing the
/// chunk must then store an empty chunk object even though the chunk is absent, or the late
/// create would bring the bytes back.
#[test]
fn item_3_zeroing_after_a_create_of_unknown_outcome_leaves_nothing_to_resurrect() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * chunk, chunk, &opts());
    h.script(
        chunk_puts,
        vec![Act::Late(Duration::from_millis(100)), Act::Fail, Act::Fail],
    );
    assert!(write(&b, 0, 5, 16, 4096).is_err());
    b.write_zeroes(0, chunk).unwrap();
    b.sync().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        data(&h.inner, 0),
        Some(Vec::new()),
        "the late create landed"
    );
    b.close().unwrap();
}

/// Item 4: S3 answers `409 ConditionalRequestConflict` to a conditional PUT while another
/// conditional write of the key is in flight, and asks for a retry; object_store reports it as
/// "already exists", which was never retried and read as a chunk changed behind our back.
#[test]
fn item_4_a_409_conflict_is_retried() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts());
    let puts = h.script(chunk_puts, vec![Act::Conflict, Act::Pass, Act::Conflict]);
    write(&b, 0, 3, 1, 4096).unwrap(); // a create
    write(&b, 1, 4, 1, 4096).unwrap(); // an update
    assert_eq!(puts.load(Ordering::SeqCst), 4);
    let d = data(&h.inner, 0).unwrap();
    assert_eq!((d[0], d[4096]), (3, 4));
}

/// Item 4: a PUT whose answer was lost is recognised in the same round (its retry's condition
/// fails against our own landed version, whose trailer names this very write), so the write
/// succeeds at once instead of failing a round.
#[test]
fn item_4_a_put_whose_answer_was_lost_succeeds_in_the_same_round() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts());
    write(&b, 0, 1, 1, 4096).unwrap();
    h.script(chunk_puts, vec![Act::LoseAnswer]); // an update
    write(&b, 0, 2, 1, 4096).unwrap();
    h.script(chunk_puts, vec![Act::LoseAnswer]); // a create
    write(&b, 16, 3, 1, 4096).unwrap();
    write(&b, 16, 4, 1, 4096).unwrap(); // the version it learned is the right one
    assert_eq!(data(&h.inner, 0).unwrap()[0], 2);
    assert_eq!(data(&h.inner, 1).unwrap()[0], 4);
    b.close().unwrap();
}

/// Item 9: with the store black-holed, each chunk rewrite spent its whole retry budget holding
/// one of the rewrite slots, and a read of a chunk waited behind its rewrite: a sync, a read
/// and a close took (dirty chunks / slots) budgets. Now each rewrite sends nothing past its
/// deadline: everything ends within about two budgets (here 2 x 0.6 s), whatever the count.
#[test]
fn item_9_reads_and_close_against_a_dead_store_end_in_bounded_time() {
    let h = Hooked::new();
    let b = Arc::new(create(&h, 8 * MIB, 64 * KIB, &opts_long_lease()));
    write(&b, 0, 3, 2, 4096).unwrap();
    h.set(|_, _| Act::Hang);
    let t = Instant::now();
    // 100 dirty chunks, chunk 0 among them (its rewrite needs a GET of it first).
    let waiters: Vec<_> = (0..100u64)
        .map(|c| b.write_pages(c * 16 + 1, pages(9, 1, 4096)).unwrap())
        .collect();
    let reader = {
        let b = b.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            let r = read_page(&b, 0);
            (r.is_err(), t.elapsed())
        })
    };
    for w in waiters {
        assert!(w.wait().is_err());
    }
    let all = t.elapsed();
    let (failed, read) = reader.join().unwrap();
    assert!(failed, "the store is down");
    let b = Arc::into_inner(b).unwrap();
    let t = Instant::now();
    assert!(b.close().is_err(), "not durable");
    let close = t.elapsed();
    eprintln!("100 writes failed after {all:?}, a read after {read:?}, close took {close:?}");
    let budget = Duration::from_millis(3 * 200 + 8);
    assert!(all < 3 * budget, "{all:?}");
    assert!(read < 3 * budget, "{read:?}");
    assert!(close < Duration::from_secs(2), "{close:?}");
}

/// Item 13: every chunk ever listed or touched kept a cell (locks, queues, failure bits) for the
/// life of the image. Now a chunk's cell goes as soon as it is idle, and what stays per stored
/// chunk is one compact version entry.
#[test]
fn item_13_idle_chunks_keep_no_cell_and_a_version_costs_a_few_dozen_bytes() {
    let h = Hooked::new();
    let chunks = 2000u64;
    let b = create(&h, 4096 * 4096, 4096, &opts_long_lease());
    let waiters: Vec<_> = (0..chunks)
        .map(|c| b.write_pages(c * 2, pages(c as u8 | 1, 1, 4096)).unwrap())
        .collect();
    for w in waiters {
        w.wait().unwrap();
    }
    let m = idle(&b);
    assert_eq!(
        (m.chunk_versions, m.chunk_cells),
        (chunks as usize, 0),
        "{m:?}"
    );
    assert!(
        m.bytes <= 80 * chunks,
        "{} bytes per chunk",
        m.bytes / chunks
    );
    for c in (0..chunks).step_by(7) {
        read_page(&b, c * 2).unwrap();
    }
    assert_eq!(idle(&b).chunk_cells, 0, "reads leave no cell behind");
    b.close().unwrap();
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts_long_lease()).unwrap();
    let m = b.metadata();
    assert_eq!(
        (m.chunk_versions, m.chunk_cells),
        (chunks as usize, 0),
        "{m:?}"
    );
    assert!(
        m.bytes <= 80 * chunks,
        "{} bytes per chunk",
        m.bytes / chunks
    );
}

/// The metadata once the tasks that completed the last waiters have ended (they give their
/// chunk's cell back just after; bounded wait).
fn idle(b: &ObjectStoreBackend) -> folio_object::MetadataStats {
    let t = Instant::now();
    loop {
        let m = b.metadata();
        if m.chunk_cells == 0 || t.elapsed() > Duration::from_secs(2) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Item 15: failures were counted in 4 KiB blocks, and a success cleared only whole blocks, so a
/// failed 512-byte page that was written again stayed "not durable" for ever.
#[test]
fn item_15_a_failed_page_smaller_than_4k_written_again_is_durable() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts_long_lease());
    h.set(|kind, key| {
        if chunk_puts(kind, key) {
            Act::Fail
        } else {
            Act::Pass
        }
    });
    assert!(write(&b, 3, 1, 1, 512).is_err());
    h.clear();
    write(&b, 3, 2, 1, 512).unwrap();
    b.close().unwrap();
    assert_eq!(data(&h.inner, 0).unwrap()[3 * 512], 2);
}

/// Item 15: zeroing a chunk that holds no data skipped it without clearing the failure of a
/// write to it, and a failed zeroing counted as a failed write: both made close report bytes
/// "not durable" that no cached data was waiting on.
#[test]
fn item_15_zeroing_clears_failed_writes_and_a_failed_zeroing_is_not_counted() {
    let h = Hooked::new();
    let chunk = 64 * KIB;
    let b = create(&h, 4 * MIB, chunk, &opts_long_lease());
    let failing = |h: &Hooked| {
        h.set(|kind, key| {
            if chunk_puts(kind, key) {
                Act::Fail
            } else {
                Act::Pass
            }
        })
    };
    failing(&h);
    assert!(write(&b, 0, 1, 1, 4096).is_err());
    h.clear();
    b.write_zeroes(0, 4096).unwrap();
    write(&b, 16, 1, 1, 4096).unwrap();
    failing(&h);
    assert!(b.write_zeroes(chunk, chunk).is_err());
    h.clear();
    b.close().unwrap();
    assert_eq!(
        data(&h.inner, 1).unwrap()[0],
        1,
        "the failed zeroing changed nothing"
    );
}

/// Item 15: a create whose answer was lost was retried with If-None-Match, found "its" manifest
/// and reported that an image already exists.
#[test]
fn item_15_a_create_whose_answer_was_lost_succeeds() {
    let h = Hooked::new();
    h.script(manifest_puts, vec![Act::LoseAnswer]);
    let b = create(&h, 4 * MIB, 64 * KIB, &opts());
    assert_eq!(b.manifest().size, 4 * MIB);
    // A second create of the same image is still refused.
    let m = Manifest::new(4 * MIB, 64 * KIB).unwrap();
    let again = ObjectStoreBackend::create(h.clone(), PREFIX, m, &opts());
    assert!(is(&again, |e| matches!(e, ObjectError::Invalid(_))));
}

/// Item 15: a resize whose manifest PUT lost its answer failed, and every later resize failed
/// too (412 against our own manifest), with the size in memory different from the store's.
/// Now the manifest is read back: our own is recognised, whether its answer was lost or it
/// landed after the resize gave up.
#[test]
fn item_15_resizes_whose_manifest_answer_was_lost_or_late_are_recognised() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts_long_lease());
    // The first PUT loses its answer (its retry, the second, finds our manifest there); the
    // third lands 50 ms after its client was told it failed, the next two fail.
    h.script(
        manifest_puts,
        vec![
            Act::LoseAnswer,
            Act::Pass,
            Act::Late(Duration::from_millis(50)),
            Act::Fail,
            Act::Fail,
        ],
    );
    b.set_len(5 * MIB).unwrap();
    assert_eq!(b.len(), 5 * MIB);
    // Gave up, landed 50 ms later: the resize waits until it cannot land any more, reads the
    // manifest back and finds its own (review 3, H2).
    b.set_len(6 * MIB).unwrap();
    assert_eq!(b.len(), 6 * MIB);
    b.set_len(7 * MIB).unwrap();
    assert_eq!(b.len(), 7 * MIB);
    b.close().unwrap();
    let o = OpenOptions {
        access: Access::ReadOnly,
        ..opts()
    };
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &o).unwrap();
    assert_eq!(b.len(), 7 * MIB);
}

/// Review 3, H1: `open` reads the manifest and then takes the lease. A holder that grows the
/// image, writes past the old end, syncs and closes in between must not lose that data to the
/// new holder's stale size (whose reclaim at open deleted data chunks past the end it had read).
#[test]
fn an_image_grown_while_another_open_waited_for_the_lease_keeps_its_new_data() {
    let h = Hooked::new();
    let a = create(&h, 256 * KIB, 64 * KIB, &opts_long_lease());
    let a = Arc::new(std::sync::Mutex::new(Some(a)));
    let fired = Arc::new(AtomicU32::new(0));
    {
        let (a, fired) = (a.clone(), fired.clone());
        h.set(move |_, key| {
            // B's first request for the lock, after its manifest GET: meanwhile A grows the
            // image, writes chunk 6 (past the old end), syncs and closes (releasing the lease).
            if key.ends_with("/lock") && fired.fetch_add(1, Ordering::SeqCst) == 0 {
                let a = a.lock().unwrap().take().unwrap();
                std::thread::spawn(move || {
                    a.set_len(512 * KIB).unwrap();
                    write(&a, 96, 0x5A, 1, 4096).unwrap(); // byte 384 KiB: chunk 6
                    a.sync().unwrap();
                    a.close().unwrap();
                })
                .join()
                .unwrap();
            }
            Act::Pass
        });
    }
    let b = ObjectStoreBackend::open(h.clone(), PREFIX, &opts()).unwrap();
    assert_eq!(
        b.len(),
        512 * KIB,
        "the new holder goes by the size the last one left"
    );
    b.close().unwrap();
    h.clear();
    let chunk = data(&h.inner, 6).expect("chunk 6, synced by A, is still in the store");
    assert_eq!(&chunk[..4096], &[0x5A; 4096][..]);
}

/// Review 3, H2: a shrink whose manifest PUT gave up but lands a little later must not leave
/// this session believing the old size while the store holds the new one (the session then
/// wrote past the stored end, and the next open deleted those chunks).
#[test]
fn a_shrink_whose_manifest_put_lands_after_it_gave_up_leaves_the_session_at_the_stored_size() {
    let h = Hooked::new();
    let b = create(&h, 4 * MIB, 64 * KIB, &opts_long_lease());
    h.script(
        manifest_puts,
        vec![Act::Late(Duration::from_millis(50)), Act::Fail, Act::Fail],
    );
    let r = b.set_len(2 * MIB);
    std::thread::sleep(Duration::from_millis(300)); // anything late has landed
    h.clear();
    let stored = object(&h.inner, &Layout::new(PREFIX).unwrap().manifest()).unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(
        stored["size"].as_u64(),
        Some(b.len()),
        "the session's size is the stored one (set_len returned {r:?})"
    );
    b.close().unwrap();
}
