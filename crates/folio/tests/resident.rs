//! `try_read_range` and `try_write_range` (the never-blocking paths a server runs inline)
//! racing each other, the blocking paths, write-back and eviction: every page always holds one
//! whole write, and each page ends with its owner's last write.

use std::sync::Arc;

use folio::{CacheConfig, MemoryBackend, PageCache};

const PS: usize = 4096;
const PAGES: u64 = 64;
const THREADS: u64 = 4;

/// A page's bytes for write number `n`: every 8-byte word is (page, n).
fn page_bytes(p: u64, n: u64) -> Vec<u8> {
    let word = ((p << 32) | n).to_le_bytes();
    word.iter().copied().cycle().take(PS).collect()
}

fn check_whole(p: u64, bytes: &[u8]) {
    let first = &bytes[..8];
    assert!(
        bytes.chunks(8).all(|w| w == first),
        "page {p} mixes two writes"
    );
    let v = u64::from_le_bytes(first.try_into().unwrap());
    assert!(
        v == 0 || v >> 32 == p,
        "page {p} holds page {}'s bytes",
        v >> 32
    );
}

#[test]
fn inline_reads_and_writes_race_blocking_io_write_back_and_eviction() {
    let backend = Arc::new(MemoryBackend::from_bytes(vec![0u8; PAGES as usize * PS]));
    // Half the pages fit: eviction and write-back run all the time.
    let cache = Arc::new(
        PageCache::new(backend, CacheConfig::with_budget_pages(PAGES as usize / 2)).unwrap(),
    );
    let (mut inline_writes, mut inline_reads) = (0u64, 0u64);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let (mut w, mut r) = (0u64, 0u64);
                let mut x = t * 7919 + 1;
                for n in 1..=3000u64 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Thread t owns pages t, t + THREADS, ...: it knows their last write.
                    let own = t + THREADS * ((x >> 40) % (PAGES / THREADS));
                    let any = (x >> 20) % PAGES;
                    let data = page_bytes(own, n);
                    if cache.try_write_range(&data, own * PS as u64).unwrap() {
                        w += 1;
                    } else {
                        cache.write_all_at(&data, own * PS as u64).unwrap();
                    }
                    match cache.try_read_range(any * PS as u64, PS).unwrap() {
                        Some(g) => {
                            r += 1;
                            check_whole(any, &g[0]);
                        }
                        None => {
                            let mut b = vec![0u8; PS];
                            cache.read_exact_at(&mut b, any * PS as u64).unwrap();
                            check_whole(any, &b);
                        }
                    }
                    match n % 500 {
                        0 => cache.sync().unwrap(),
                        250 => cache.evict_range(0..PAGES * PS as u64).unwrap(),
                        _ => {}
                    }
                }
                (w, r)
            })
        })
        .collect();
    for h in handles {
        let (w, r) = h.join().unwrap();
        inline_writes += w;
        inline_reads += r;
    }
    assert!(
        inline_writes > 0 && inline_reads > 0,
        "the inline paths never ran"
    );
    cache.sync().unwrap();
    // Each page ends with its owner's last write: replay the owners' choices.
    for t in 0..THREADS {
        let mut last = std::collections::HashMap::new();
        let mut x = t * 7919 + 1;
        for n in 1..=3000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            last.insert(t + THREADS * ((x >> 40) % (PAGES / THREADS)), n);
        }
        for (p, n) in last {
            let mut b = vec![0u8; PS];
            cache.read_exact_at(&mut b, p * PS as u64).unwrap();
            assert!(b == page_bytes(p, n), "page {p} lost its last write {n}");
        }
    }
}
