//! Multi-threaded stress: threads read and write overlapping pages of a cache far smaller than
//! the data, while another thread flushes, evicts and discards clean ranges. Every page carries a
//! header (page number, version) and a body derived from both, so a torn or misplaced page is
//! detected, and readers check they never see a version older than one already completed.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use folio::{
    CacheConfig, FileBackend, IoMode, MemoryBackend, PageCache, PageCacheBackend, PolicyKind,
};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PS: usize = 4096;
const PAGES: u64 = 64;
const WRITERS: u64 = 3;
const READERS: u64 = 3;

fn page_bytes(p: u64, version: u64) -> Vec<u8> {
    let mut b = common::pattern(p, version, PS);
    b[..8].copy_from_slice(&p.to_le_bytes());
    b[8..16].copy_from_slice(&version.to_le_bytes());
    b
}

fn check_page(p: u64, buf: &[u8]) -> u64 {
    let got_p = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let version = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    assert_eq!(got_p, p, "page {p} holds page {got_p}'s bytes");
    assert!(
        buf == page_bytes(p, version),
        "page {p} version {version} is torn"
    );
    version
}

fn stress(
    backend: Arc<dyn PageCacheBackend>,
    budget_pages: usize,
    policy: PolicyKind,
    millis: u64,
) {
    // Version 0 of every page, durable before the cache starts.
    let cache = Arc::new(
        PageCache::new(
            backend.clone(),
            CacheConfig::with_budget_pages(budget_pages).policy(policy),
        )
        .unwrap(),
    );
    for p in 0..PAGES {
        cache
            .write_all_at(&page_bytes(p, 0), p * PS as u64)
            .unwrap();
    }
    cache.sync().unwrap();
    let completed: Arc<Vec<AtomicU64>> = Arc::new((0..PAGES).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_millis(millis);
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (cache, completed) = (cache.clone(), completed.clone());
        handles.push(thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(w);
            let mut version = 0u64;
            let mut writes = 0u64;
            while Instant::now() < deadline {
                // Pages owned by this writer: p % WRITERS == w. Sometimes two at once.
                let p = rng.random_range(0..PAGES / WRITERS) * WRITERS + w;
                version += 1;
                if rng.random_bool(0.2) && p + WRITERS < PAGES {
                    // Not contiguous: two separate writes.
                    cache
                        .write_all_at(&page_bytes(p, version), p * PS as u64)
                        .unwrap();
                    let q = p + WRITERS;
                    cache
                        .write_all_at(&page_bytes(q, version), q * PS as u64)
                        .unwrap();
                    completed[q as usize].store(version, Ordering::SeqCst);
                } else {
                    cache
                        .write_all_at(&page_bytes(p, version), p * PS as u64)
                        .unwrap();
                }
                completed[p as usize].store(version, Ordering::SeqCst);
                writes += 1;
            }
            writes
        }));
    }
    // Batched guards hold two pages at once: with fewer than two frames per reader, readers
    // holding one page each could wait for a frame only they can free.
    let batched_guards = budget_pages >= 2 * READERS as usize;
    for r in 0..READERS {
        let (cache, completed) = (cache.clone(), completed.clone());
        handles.push(thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(100 + r);
            let mut buf = vec![0u8; 2 * PS];
            let mut reads = 0u64;
            while Instant::now() < deadline {
                let p = rng.random_range(0..PAGES - 1);
                let floor = [
                    completed[p as usize].load(Ordering::SeqCst),
                    completed[p as usize + 1].load(Ordering::SeqCst),
                ];
                if rng.random_bool(0.5) {
                    cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
                    for (i, chunk) in buf.chunks(PS).enumerate() {
                        let v = check_page(p + i as u64, chunk);
                        assert!(
                            v >= floor[i],
                            "stale: page {} version {v} < {}",
                            p + i as u64,
                            floor[i]
                        );
                    }
                } else if batched_guards && rng.random_bool(0.5) {
                    // Two guards at once from `read_slices`: pages `p` and a random `q`.
                    let q = rng.random_range(0..PAGES);
                    let floor_q = completed[q as usize].load(Ordering::SeqCst);
                    let gs = cache
                        .read_slices(&[(p * PS as u64, PS), (q * PS as u64, PS)])
                        .unwrap();
                    for (g, (page, floor)) in gs.iter().zip([(p, floor[0]), (q, floor_q)]) {
                        let v = check_page(page, g);
                        assert!(v >= floor, "stale slice: page {page} version {v} < {floor}");
                    }
                } else {
                    let g = cache.read_page(p).unwrap();
                    let v = check_page(p, &g);
                    assert!(
                        v >= floor[0],
                        "stale guard: page {p} version {v} < {}",
                        floor[0]
                    );
                }
                reads += 1;
            }
            reads
        }));
    }
    {
        let (cache, stop) = (cache.clone(), stop.clone());
        handles.push(thread::spawn(move || {
            let mut rng = SmallRng::seed_from_u64(7);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                let a = rng.random_range(0..PAGES) * PS as u64;
                let b = a + rng.random_range(1..8) * PS as u64;
                match rng.random_range(0..3) {
                    0 => cache.flush_range(a..b).unwrap(),
                    1 => cache.evict_range(a..b).unwrap(),
                    _ => cache.sync().unwrap(),
                }
                n += 1;
                thread::sleep(Duration::from_micros(200));
            }
            n
        }));
    }
    let last = handles.pop().unwrap();
    let counts: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::SeqCst);
    last.join().unwrap();
    assert!(
        counts.iter().all(|&c| c > 0),
        "every thread made progress: {counts:?}"
    );
    cache.sync().unwrap();
    // The backing store holds exactly the last completed version of every page.
    let reopened = PageCache::new(backend, CacheConfig::with_budget_pages(PAGES as usize)).unwrap();
    let mut buf = vec![0u8; PS];
    for p in 0..PAGES {
        reopened.read_exact_at(&mut buf, p * PS as u64).unwrap();
        assert_eq!(
            check_page(p, &buf),
            completed[p as usize].load(Ordering::SeqCst),
            "page {p}"
        );
    }
    let st = cache.stats();
    assert!(st.evictions > 0 && st.writeback_pages > 0, "{st:?}");
}

#[test]
fn stress_memory_backend_clock() {
    stress(Arc::new(MemoryBackend::new()), 8, PolicyKind::Clock, 1500);
}

#[test]
fn stress_every_policy_with_a_tiny_budget() {
    for &policy in PolicyKind::ALL {
        stress(Arc::new(MemoryBackend::new()), 3, policy, 400);
    }
}

#[test]
fn stress_file_backend() {
    let dir = tempfile::tempdir().unwrap();
    let backend = FileBackend::open(dir.path().join("stress.img"), IoMode::Buffered).unwrap();
    stress(Arc::new(backend), 8, PolicyKind::Clock, 1000);
}
