//! Adaptive read-around (`Advice::Clustered`) through the real cache: random reads with
//! locality load whole clusters (each page still read from the backend once), and random reads
//! with none over a file far larger than the cache soon stop reading around.

use std::sync::Arc;

use folio::{Advice, CacheConfig, MemoryBackend, PageCache};

const PS: usize = 4096;

/// A permutation of `0..n` (a fixed LCG walk over a power-of-two range, skipping values >= n).
fn permutation(n: u64) -> Vec<u64> {
    let m = n.next_power_of_two();
    let mut x = 1u64;
    let mut out = Vec::with_capacity(n as usize);
    // Bounded: an LCG with multiplier 5 mod 4 and odd increment has full period m.
    for _ in 0..m {
        x = (x.wrapping_mul(5).wrapping_add(12345)) % m;
        if x < n {
            out.push(x);
        }
    }
    out
}

fn cache(pages: u64, budget_pages: usize, clustered: bool) -> PageCache {
    let backend = Arc::new(MemoryBackend::from_bytes(vec![7u8; pages as usize * PS]));
    let c = PageCache::new(backend, CacheConfig::with_budget_pages(budget_pages)).unwrap();
    if clustered {
        c.advise(0..u64::MAX, Advice::Clustered).unwrap();
    }
    c
}

#[test]
fn random_reads_of_every_page_load_clusters_and_read_each_page_once() {
    let pages = 4096u64;
    let order = permutation(pages);
    assert_eq!(order.len() as u64, pages);
    let mut misses = [0u64; 2];
    for (i, clustered) in [false, true].into_iter().enumerate() {
        let c = cache(pages, 8192, clustered);
        let mut buf = vec![0u8; PS];
        for &p in &order {
            c.read_exact_at(&mut buf, p * PS as u64).unwrap();
            assert!(buf.iter().all(|&b| b == 7));
        }
        let s = c.stats();
        assert_eq!(s.read_bytes, pages * PS as u64, "a page read twice: {s:?}");
        misses[i] = s.misses;
    }
    // Without the advice nearly every read misses (a random read that lands right after a
    // recent one may start a short sequential window).
    assert!(misses[0] >= pages - 32, "{} misses", misses[0]);
    assert!(
        misses[1] * 4 <= pages,
        "read-around should turn most reads into hits: {} misses",
        misses[1]
    );
}

#[test]
fn random_reads_without_locality_stop_reading_around() {
    // 256 MiB of pages, a 256 KiB cache: neighbours are evicted long before anyone reads them.
    let pages = 65_536u64;
    let c = cache(pages, 64, true);
    let mut buf = vec![0u8; PS];
    let mut x = 99u64;
    let reads = 4000u64;
    for _ in 0..reads {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let p = (x >> 33) % pages;
        c.read_exact_at(&mut buf, p * PS as u64).unwrap();
    }
    let s = c.stats();
    let pages_read = s.read_bytes / PS as u64;
    // Clusters of 16 pages for every miss would read about 16x; adaptation keeps it near 1x.
    assert!(
        pages_read < reads * 2,
        "{pages_read} pages read for {reads} random reads: {s:?}"
    );
}
