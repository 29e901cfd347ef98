//! `Commit::UpFront` makes the whole budget resident when the cache is created; `Commit::Lazy`
//! leaves it to the first use of each frame. Measured through this process's resident set, so
//! this binary holds one test (nothing else allocates meanwhile).

use std::sync::Arc;

use folio::{CacheConfig, Commit, MemoryBackend, PageCache};

/// Resident bytes of this process (`/proc/self/statm`, second field, in pages of 4 KiB).
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("resident pages");
    pages * 4096
}

#[test]
fn up_front_commit_makes_the_budget_resident_and_lazy_does_not() {
    const BUDGET: u64 = 64 << 20;
    let cache = |commit| {
        PageCache::new(
            Arc::new(MemoryBackend::new()),
            CacheConfig::new(BUDGET).memory(commit),
        )
        .expect("cache")
    };

    let before = resident_bytes();
    let lazy = cache(Commit::Lazy);
    let lazy_grew = resident_bytes().saturating_sub(before);
    assert!(
        lazy_grew < BUDGET / 4,
        "a lazy cache committed {lazy_grew} bytes at creation"
    );
    // Each frame is committed on first use: write one page and it still works.
    lazy.write_all_at(&[7u8; 4096], 0).expect("write");
    drop(lazy);

    let before = resident_bytes();
    let up_front = cache(Commit::UpFront);
    let grew = resident_bytes().saturating_sub(before);
    assert!(
        grew >= BUDGET * 9 / 10,
        "an up-front cache committed only {grew} of {BUDGET} bytes at creation"
    );
    up_front.write_all_at(&[9u8; 100], 4096).expect("write");
    let mut buf = [1u8; 8192];
    up_front.read_exact_at(&mut buf[..4196], 0).expect("read");
    assert_eq!(
        &buf[..4096],
        &[0u8; 4096],
        "the hole before the write reads as zeros"
    );
    assert_eq!(&buf[4096..4196], &[9u8; 100]);
}
