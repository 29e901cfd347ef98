//! The memory overhead bound of issue 6: at most 64 bytes of metadata per cached page (frame
//! state and tag, index slots, policy, free list), for every frame count, including the worst
//! case for the index (a frame count just past a power of two doubles its table).

use std::sync::Arc;

use folio::{CacheConfig, MemoryBackend, PageCache, PolicyKind};

#[test]
fn metadata_is_at_most_64_bytes_per_page() {
    for frames in [1usize, 100, 4096, 4097, 65_536, 65_537] {
        {
            let policy = PolicyKind::default();
            let cache = PageCache::new(
                Arc::new(MemoryBackend::new()),
                CacheConfig::with_budget_pages(frames)
                    .page_size(512)
                    .policy(policy),
            )
            .expect("cache");
            let per_page = cache.metadata_bytes() as f64 / frames as f64;
            // Tiny caches pay for a 16-slot minimum index; the bound is about real sizes.
            if frames >= 100 {
                assert!(
                    per_page <= 64.0,
                    "{frames} frames, {}: {per_page:.1} bytes of metadata per page",
                    cache.policy_name()
                );
            }
        }
    }
}
