//! The memory overhead bound of issue 6: at most 64 bytes of metadata per cached page (frame
//! state and tag, index slots, policy, free list, write-back clock) for every frame count from
//! 100 up, including frame counts just past a power of two, with the default policy (S3-FIFO:
//! 61 bytes, 63 at 100 frames) and with the lock-free CLOCK policy (42). The cache's own part
//! (frames, index, free list, write-back clock) is 40 bytes at every frame count (the index has
//! exactly twice as many slots as frames); each policy adds what its `metadata_bytes_per_page`
//! states.

use std::sync::Arc;

use folio::{CacheConfig, MemoryBackend, PageCache, PolicyKind};

fn bytes_per_page(frames: usize, policy: PolicyKind) -> f64 {
    let cache = PageCache::new(
        Arc::new(MemoryBackend::new()),
        CacheConfig::with_budget_pages(frames)
            .page_size(512)
            .policy(policy),
    )
    .expect("cache");
    cache.metadata_bytes() as f64 / frames as f64
}

#[test]
fn metadata_is_at_most_64_bytes_per_page() {
    for policy in [PolicyKind::default(), PolicyKind::Clock] {
        for frames in [1usize, 100, 101, 1000, 4096, 4097, 65_536, 65_537, 1 << 20] {
            let per_page = bytes_per_page(frames, policy);
            println!("{policy} {frames}: {per_page:.2} bytes of metadata per page");
            // Tiny caches pay for fixed minimums (index slots, queue chunks, ghost buckets); the
            // bound is about real sizes.
            if frames >= 100 {
                assert!(
                    per_page <= 64.0,
                    "{frames} frames, {policy}: {per_page:.1} bytes of metadata per page"
                );
            }
        }
    }
}

#[test]
fn every_policy_adds_only_what_it_states() {
    let frames = 65_537;
    for &policy in PolicyKind::ALL {
        let stated = policy.build(frames).metadata_bytes_per_page();
        let per_page = bytes_per_page(frames, policy);
        assert!(
            per_page <= 40.0 + stated as f64,
            "{policy}: {per_page:.1} bytes per page, policy states {stated}"
        );
        println!("{policy}: {per_page:.1} bytes of metadata per page");
    }
}
