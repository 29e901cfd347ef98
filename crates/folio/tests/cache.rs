//! Correctness of the core cache: each test shows one property the issue asks for.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{
    direct_io_dir, pattern, thread_id, uring_available, wait_for, wait_until_asleep, TestBackend,
};
use folio::{
    CacheConfig, ConfigError, Error, FileBackend, IoMode, MemoryBackend, PageCache,
    PageCacheBackend, PageNo, PageState, Pager, PolicyKind,
};

const PS: usize = 4096;

fn cache_over(backend: Arc<TestBackend>, pages: usize) -> PageCache {
    PageCache::new(
        backend,
        CacheConfig::with_budget_pages(pages)
            .frame_wait_max(Duration::from_millis(200))
            // These tests count backend writes: no background flusher racing with them.
            .background_writeback(false),
    )
    .unwrap()
}

#[test]
fn read_write_round_trip_across_pages() {
    let cache = PageCache::new(
        Arc::new(MemoryBackend::new()),
        CacheConfig::with_budget_pages(2),
    )
    .unwrap();
    let data = pattern(1, 1, 5 * PS + 123);
    cache.write_all_at(&data, 777).unwrap();
    assert_eq!(cache.len(), 777 + data.len() as u64);
    let mut back = vec![0u8; data.len()];
    cache.read_exact_at(&mut back, 777).unwrap();
    assert_eq!(back, data);
    let mut head = vec![1u8; 777];
    cache.read_exact_at(&mut head, 0).unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "bytes before the write read as zeros"
    );
    // Short read at the end, zero past it.
    let mut tail = vec![0u8; 100];
    assert_eq!(cache.read_at(&mut tail, cache.len() - 10).unwrap(), 10);
    assert_eq!(cache.read_at(&mut tail, cache.len()).unwrap(), 0);
    assert!(cache.stats().evictions > 0, "a 2-page budget must evict");
}

#[test]
fn concurrent_misses_on_one_page_read_the_backend_once() {
    let backend = TestBackend::new(pattern(0, 0, 8 * PS));
    // The first miss's read is held at the gate until the seven others wait for the page.
    backend.read_gate.close();
    let cache = Arc::new(cache_over(backend.clone(), 4));
    let (tids_tx, tids_rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (cache, tids_tx) = (cache.clone(), tids_tx.clone());
            thread::spawn(move || {
                tids_tx.send(thread_id()).unwrap();
                let mut buf = vec![0u8; PS];
                cache.read_exact_at(&mut buf, 3 * PS as u64).unwrap();
                buf
            })
        })
        .collect();
    let tids: Vec<i32> = tids_rx.iter().take(8).collect();
    assert!(wait_for(Duration::from_secs(60), || backend
        .read_gate
        .waiting
        .load(Ordering::SeqCst)
        == 1));
    // Every reader is asleep: one at the gate, seven parked on the loading page (none of them
    // could sleep for anything else).
    for &tid in &tids {
        wait_until_asleep(tid);
    }
    backend.read_gate.open();
    let expect = pattern(0, 0, 8 * PS)[3 * PS..4 * PS].to_vec();
    for h in handles {
        assert_eq!(h.join().unwrap(), expect);
    }
    assert_eq!(
        backend.reads.load(Ordering::SeqCst),
        1,
        "exactly one backend read"
    );
}

#[test]
fn write_during_writeback_is_not_lost() {
    let backend = TestBackend::new(vec![0u8; 4 * PS]);
    let cache = Arc::new(cache_over(backend.clone(), 4));
    cache.write_all_at(&[1u8; PS], 0).unwrap();
    backend.close_gate();
    let flusher = {
        let cache = cache.clone();
        thread::spawn(move || cache.flush_range(0..PS as u64))
    };
    while backend.waiting_at_gate() == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(cache.page_state(0), Some(PageState::Writeback));
    // A write to the page under write-back: it waits for the I/O, then re-dirties the page.
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let writer = {
        let cache = cache.clone();
        thread::spawn(move || {
            tid_tx.send(thread_id()).unwrap();
            cache.write_all_at(&[2u8; 10], 0)
        })
    };
    // The writer can only sleep waiting for the write-back held at the gate: it is waiting.
    wait_until_asleep(tid_rx.recv().unwrap());
    assert!(!writer.is_finished(), "the write waits for the write-back");
    backend.open_gate();
    flusher.join().unwrap().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(
        cache.page_state(0),
        Some(PageState::Dirty),
        "the late write is dirty"
    );
    cache.sync().unwrap();
    let image = backend.inner.durable_image();
    assert_eq!(&image[..10], &[2u8; 10]);
    assert_eq!(&image[10..PS], &[1u8; PS - 10][..]);
}

#[test]
fn failed_eviction_write_back_keeps_the_page_dirty_and_reports() {
    let backend = TestBackend::new(vec![0u8; 4 * PS]);
    let cache = cache_over(backend.clone(), 1);
    cache.write_all_at(&[7u8; PS], 0).unwrap();
    backend.fail_writes.store(true, Ordering::SeqCst);
    // Reading page 1 needs page 0's frame: its write-back fails, the read gets the error.
    let mut buf = vec![0u8; PS];
    let err = cache.read_exact_at(&mut buf, PS as u64).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert_eq!(cache.page_state(0), Some(PageState::Dirty));
    cache.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, vec![7u8; PS], "the data is still there");
    // The failure is reported once by the next sync, then the retry succeeds.
    backend.fail_writes.store(false, Ordering::SeqCst);
    assert!(matches!(cache.sync(), Err(Error::WritebackFailed { .. })));
    cache.sync().unwrap();
    assert_eq!(&backend.inner.durable_image()[..PS], &[7u8; PS][..]);
}

#[test]
fn flush_failure_is_reported_once_and_retried() {
    let backend = TestBackend::new(vec![0u8; 8 * PS]);
    let cache = cache_over(backend.clone(), 8);
    cache.write_all_at(&[3u8; 3 * PS], 0).unwrap();
    backend.fail_writes.store(true, Ordering::SeqCst);
    let err = cache.flush_range(0..u64::MAX).unwrap_err();
    assert!(matches!(err, Error::WritebackFailed { .. }), "{err}");
    assert_eq!(cache.stats().dirty_pages, 3, "pages stay dirty");
    // Reported once: a second flush that also fails reports the new failure, but a check with no
    // new failure is clean.
    backend.fail_writes.store(false, Ordering::SeqCst);
    cache.flush_range(0..u64::MAX).unwrap();
    assert_eq!(cache.stats().dirty_pages, 0);
    // A flush that reported a failure does not make the data durable: the next sync reports it
    // once more (issue 13), then syncs are clean.
    assert!(matches!(cache.sync(), Err(Error::WritebackFailed { .. })));
    cache.sync().unwrap();
    assert_eq!(&backend.inner.durable_image()[..3 * PS], &[3u8; 3 * PS][..]);
}

#[test]
fn all_frames_pinned_gives_a_typed_error() {
    let backend = TestBackend::new(vec![0u8; 4 * PS]);
    let cache = cache_over(backend, 2);
    let a = cache.pin_page(0).unwrap();
    let b = cache.pin_page(1).unwrap();
    let mut buf = [0u8; 1];
    let err = cache.read_exact_at(&mut buf, 2 * PS as u64).unwrap_err();
    assert!(matches!(err, Error::NoFreeFrame { frames: 2 }), "{err}");
    drop(a);
    cache.read_exact_at(&mut buf, 2 * PS as u64).unwrap();
    drop(b);
}

#[test]
fn guards_give_zero_copy_access_and_mark_dirty() {
    let backend = TestBackend::new(vec![0u8; 4 * PS]);
    let cache = cache_over(backend.clone(), 4);
    {
        let mut w = cache.write_page(2).unwrap();
        w[..4].copy_from_slice(b"abcd");
    }
    assert_eq!(cache.page_state(2), Some(PageState::Dirty));
    let r = cache.read_page(2).unwrap();
    assert_eq!(&r[..4], b"abcd");
    drop(r);
    assert!(matches!(cache.read_page(4), Err(Error::OutOfRange { .. })));
    cache.sync().unwrap();
    assert_eq!(&backend.inner.durable_image()[2 * PS..2 * PS + 4], b"abcd");
}

#[test]
fn pager_commit_update_decommit() {
    let backend = TestBackend::new(vec![0u8; 4 * PS]);
    let cache = cache_over(backend.clone(), 4);
    {
        let page = cache.commit_page(1).unwrap();
        page.write().unwrap()[0] = 9;
    }
    cache.update_page(1).unwrap();
    assert!(matches!(
        cache.update_page(3),
        Err(Error::NotResident { page: PageNo(3) })
    ));
    backend.fail_writes.store(true, Ordering::SeqCst);
    assert!(cache.decommit_page(1).is_err());
    assert_eq!(cache.page_state(1), Some(PageState::Dirty), "not lost");
    backend.fail_writes.store(false, Ordering::SeqCst);
    cache.decommit_page(1).unwrap();
    assert_eq!(cache.page_state(1), None);
    assert_eq!(backend.inner.image()[PS], 9);
}

#[test]
fn bad_offsets_are_typed_errors() {
    let cache = cache_over(TestBackend::new(vec![0u8; PS]), 2);
    let mut buf = [0u8; 16];
    assert!(matches!(
        cache.read_at(&mut buf, u64::MAX - 3),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        cache.write_at(&buf, u64::MAX - 3),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        cache.read_exact_at(&mut buf, PS as u64 - 8),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        PageCache::new(
            Arc::new(MemoryBackend::new()),
            CacheConfig::with_budget_pages(1).page_size(3000)
        ),
        Err(Error::Config(ConfigError::PageSize {
            page_size: 3000,
            ..
        }))
    ));
    assert!(matches!(
        PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(100)),
        Err(Error::Config(ConfigError::BudgetTooSmall {
            budget_bytes: 100,
            page_size: 4096
        }))
    ));
}

#[test]
fn read_failure_is_reported_and_not_cached() {
    let backend = TestBackend::new(pattern(5, 5, 2 * PS));
    let cache = cache_over(backend.clone(), 2);
    backend.fail_reads.store(true, Ordering::SeqCst);
    let mut buf = vec![0u8; PS];
    assert!(cache.read_exact_at(&mut buf, 0).is_err());
    assert_eq!(cache.page_state(0), None);
    backend.fail_reads.store(false, Ordering::SeqCst);
    cache.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, pattern(5, 5, 2 * PS)[..PS]);
}

#[test]
fn resize_truncates_and_zeroes_the_tail() {
    let backend = TestBackend::new(vec![0xAA; 4 * PS]);
    let cache = cache_over(backend.clone(), 4);
    let mut buf = vec![0u8; 4 * PS];
    cache.read_exact_at(&mut buf, 0).unwrap();
    cache.resize(PS as u64 + 100).unwrap();
    assert_eq!(backend.len(), PS as u64 + 100);
    assert_eq!(cache.page_state(3), None, "pages past the end are dropped");
    cache.resize(3 * PS as u64).unwrap();
    cache.read_exact_at(&mut buf[..3 * PS], 0).unwrap();
    assert!(buf[..PS + 100].iter().all(|&b| b == 0xAA));
    assert!(
        buf[PS + 100..3 * PS].iter().all(|&b| b == 0),
        "grown part reads as zeros"
    );
}

#[test]
fn discard_drops_unsaved_changes_even_while_held() {
    let backend = TestBackend::new(vec![1u8; 4 * PS]);
    let cache = cache_over(backend.clone(), 4);
    cache.write_all_at(&[2u8; 2 * PS], 0).unwrap();
    let held = cache.read_page(1).unwrap();
    cache.discard_range(0..2 * PS as u64).unwrap();
    assert_eq!(held[0], 2, "a guard keeps its frame readable");
    assert_eq!(cache.page_state(1), None);
    drop(held);
    let mut buf = vec![0u8; 2 * PS];
    cache.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 1), "back to the backend's bytes");
    assert_eq!(cache.stats().dirty_pages, 0);
    // Every frame is usable again.
    cache.read_exact_at(&mut vec![0u8; 4 * PS], 0).unwrap();
}

#[test]
fn zero_range_reads_back_zeros() {
    let backend = TestBackend::new(vec![5u8; 6 * PS]);
    let cache = cache_over(backend.clone(), 3);
    cache.zero_range(100..4 * PS as u64 + 7).unwrap();
    let mut buf = vec![0u8; 6 * PS];
    cache.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf[..100].iter().all(|&b| b == 5));
    assert!(buf[100..4 * PS + 7].iter().all(|&b| b == 0));
    assert!(buf[4 * PS + 7..].iter().all(|&b| b == 5));
    cache.sync().unwrap();
    assert_eq!(backend.inner.durable_image(), buf);
}

#[test]
fn flush_merges_contiguous_dirty_pages_into_one_write() {
    let backend = TestBackend::new(vec![0u8; 64 * PS]);
    let cache = cache_over(backend.clone(), 64);
    cache.write_all_at(&vec![9u8; 32 * PS], 0).unwrap();
    cache.write_all_at(&[9u8; 1], 40 * PS as u64).unwrap();
    let before = backend.writes.load(Ordering::SeqCst);
    cache.sync().unwrap();
    assert_eq!(
        backend.writes.load(Ordering::SeqCst) - before,
        2,
        "one run + one page"
    );
    // A multi-page read of absent pages is one backend read.
    cache.evict_range(0..u64::MAX).unwrap();
    let reads = backend.reads.load(Ordering::SeqCst);
    cache.read_exact_at(&mut vec![0u8; 16 * PS], 0).unwrap();
    assert_eq!(backend.reads.load(Ordering::SeqCst) - reads, 1);
}

#[test]
fn file_backend_with_partial_last_page_and_direct_io() {
    // With both file backends: positional I/O, and io_uring where the kernel has it.
    let dir = direct_io_dir();
    let direct = dir.is_some();
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let uring = uring_available();
    let kinds = [false, true].into_iter().filter(|&u| !u || uring);
    let modes = [IoMode::Buffered, IoMode::Direct]
        .into_iter()
        .filter(|&m| m == IoMode::Buffered || direct);
    for (use_uring, mode) in kinds.flat_map(|u| modes.clone().map(move |m| (u, m))) {
        let path = dir.path().join(format!("{mode:?}-{use_uring}.img"));
        std::fs::write(&path, pattern(9, 9, 3 * PS + 1000)).unwrap();
        let opened: folio::Result<Arc<dyn PageCacheBackend>> = if use_uring {
            folio::UringBackend::open(&path, mode).map(|b| Arc::new(b) as _)
        } else {
            FileBackend::open(&path, mode).map(|b| Arc::new(b) as _)
        };
        let backend = opened.unwrap_or_else(|e| panic!("{mode:?}, io_uring {use_uring}: {e}"));
        let cache = PageCache::new(backend, CacheConfig::with_budget_pages(2)).unwrap();
        assert_eq!(cache.len(), 3 * PS as u64 + 1000);
        let mut buf = vec![0u8; 3 * PS + 1000];
        cache.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, pattern(9, 9, 3 * PS + 1000));
        cache.write_all_at(b"tail", 3 * PS as u64 + 990).unwrap();
        cache.close().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(
            on_disk.len(),
            3 * PS + 1000,
            "{mode:?}: the file did not grow"
        );
        assert_eq!(&on_disk[3 * PS + 990..3 * PS + 994], b"tail");
    }
}

#[test]
fn every_policy_runs_the_live_cache() {
    for &kind in PolicyKind::ALL {
        let backend = TestBackend::new(vec![0u8; 32 * PS]);
        let cache = PageCache::new(
            backend.clone(),
            CacheConfig::with_budget_pages(4).policy(kind),
        )
        .unwrap();
        for i in 0..200u64 {
            let p = (i * 7) % 32;
            cache
                .write_all_at(&pattern(p, i, 64), p * PS as u64)
                .unwrap();
            let mut buf = vec![0u8; 64];
            cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
            assert_eq!(buf, pattern(p, i, 64), "{kind}");
        }
        cache.sync().unwrap();
    }
}

#[test]
fn backend_misuse_and_short_reads_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.img");
    std::fs::write(&path, vec![1u8; 4 * PS]).unwrap();
    let backend = FileBackend::open(&path, IoMode::Buffered).unwrap();
    // Zero-length I/O.
    assert!(matches!(
        backend.read_pages(0, Vec::new()),
        Err(Error::Misaligned { .. })
    ));
    // Frames of different sizes in one I/O.
    let frames = vec![
        folio::FrameMut::alloc(PS).unwrap(),
        folio::FrameMut::alloc(512).unwrap(),
    ];
    assert!(matches!(
        backend.read_pages(0, frames),
        Err(Error::Config(ConfigError::FrameLengths {
            first: PS,
            other: 512
        }))
    ));
    // Misaligned O_DIRECT request (where the filesystem supports O_DIRECT).
    if let Ok(direct) = FileBackend::open(&path, IoMode::Direct) {
        let frames = vec![folio::FrameMut::alloc(100).unwrap()];
        assert!(matches!(
            direct.read_pages(1, frames),
            Err(Error::Misaligned { .. })
        ));
    }
    // The file shrinks behind the cache's back: a short read, not zeros passed off as data.
    let cache = PageCache::new(Arc::new(backend), CacheConfig::with_budget_pages(2)).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(PS as u64)
        .unwrap();
    let mut buf = vec![0u8; PS];
    let err = cache.read_exact_at(&mut buf, 2 * PS as u64).unwrap_err();
    assert!(matches!(err, Error::ShortIo { .. }), "{err}");
}

#[test]
fn pinned_pages_are_never_evicted_and_survive_discard() {
    let backend = TestBackend::new(pattern(3, 3, 16 * PS));
    let cache = cache_over(backend, 2);
    let pin = cache.pin_page(0).unwrap();
    let mut buf = vec![0u8; PS];
    for p in 1..16u64 {
        cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
    }
    assert!(cache.page_state(0).is_some(), "the pinned page stayed");
    assert_eq!(&pin.read().unwrap()[..], &pattern(3, 3, 16 * PS)[..PS]);
    // Discarded while pinned: it leaves the cache but the pin still reads and writes its frame.
    cache.discard_range(0..PS as u64).unwrap();
    assert_eq!(cache.page_state(0), None);
    pin.write().unwrap()[0] ^= 0xFF;
    assert_eq!(pin.read().unwrap()[0], pattern(3, 3, 1)[0] ^ 0xFF);
    drop(pin);
    // The orphan's frame was returned: both frames serve new pages, and page 0 reads the backend.
    for p in 0..16u64 {
        cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
        assert_eq!(
            buf,
            pattern(3, 3, 16 * PS)[p as usize * PS..(p as usize + 1) * PS]
        );
    }
    assert_eq!(cache.stats().dirty_pages, 0);
}
