//! Unit tests of the adaptive S3-FIFO's chooser (`s3fifo/adaptive.rs`).

use std::sync::atomic::Ordering;

use super::*;

#[test]
fn decay_is_the_half_life() {
    assert!((DECAY.powf(HALF_LIFE_WINDOWS) - 0.5).abs() < 1e-12);
}

/// Replays `keys` through the live adaptive policy as the live cache does (a page table,
/// free frames in order, then victims): `s3fifo/tests.rs`'s replay, its miss ratio unused.
fn replay(p: &S3Fifo, keys: impl Iterator<Item = u64>) {
    super::super::tests::miss_ratio(p, keys);
}

/// A hot set beside a loop larger than the cache (`s3fifo/tests.rs`), which frequency
/// admission serves far better than any share: the chooser switches it on, and the live
/// cache's miss ratio comes near the fixed frequency-admitting S3-FIFO's.
#[test]
fn a_hot_set_beside_a_loop_chooses_frequency_admission() {
    use super::super::tests::{hot_set_beside_a_loop, miss_ratio};
    let cap = 4000;
    let p = S3Fifo::adaptive(cap);
    assert_eq!(p.inner.lock().admission, MainAdmission::Threshold);
    let adaptive = miss_ratio(&p, hot_set_beside_a_loop(cap as u64, 400_000));
    assert_eq!(p.inner.lock().admission, MainAdmission::Frequency);
    let params = S3FifoParams {
        small_ratio: 0.02,
        admission: MainAdmission::Frequency,
        ..S3FifoParams::default()
    };
    let fixed = miss_ratio(
        &S3Fifo::with_params(cap, params, "fixed"),
        hot_set_beside_a_loop(cap as u64, 400_000),
    );
    assert!(
        adaptive < fixed + 0.02,
        "adaptive {adaptive:.4}, fixed frequency admission {fixed:.4}"
    );
}

/// Pages written and read back once, `gap` accesses later (a block device's write-then-read
/// pairs), with a gap of a fifth of the cache: a small queue of 25% still holds the page at
/// its second access, one of 2-10% has sent it to the ghost. The live share follows.
#[test]
fn pairs_far_apart_choose_the_large_small_queue() {
    let cap = 4000;
    let p = S3Fifo::adaptive(cap);
    assert_eq!(p.small_cap(), cap * 5 / 100);
    let gap = cap as u64 / 5;
    let first = 2 * gap;
    replay(
        &p,
        (first..200_000u64).map(|i| if i % 2 == 0 { i } else { i - 2 * gap + 1 }),
    );
    assert_eq!(p.small_cap(), cap / 4);
}

/// A hot set of 97% of the cache, re-read at random, and between its accesses a scan of
/// never-seen pages: only the 2% small queue leaves main room for the whole hot set. (A
/// cache this small samples every key: the shadows are exact.)
#[test]
fn scans_over_a_hot_set_choose_the_small_small_queue() {
    let cap = 200;
    let p = S3Fifo::adaptive(cap);
    let mut x = 1u64;
    replay(
        &p,
        (0..200_000u64).map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i % 3 == 0 {
                1 << 40 | i
            } else {
                (x >> 33) % (cap as u64 * 97 / 100)
            }
        }),
    );
    assert_eq!(p.small_cap(), cap * 2 / 100);
}

#[test]
fn samples_at_the_rate_and_all_keys_of_small_caches() {
    let c = Chooser::new(SHADOW_PAGES_MIN);
    assert!((0..10_000u32).all(|k| c.is_sampled(k.wrapping_mul(0x9e37_79b9) | 1)));
    let c = Chooser::new(1 << 20);
    assert_eq!(c.window_len, (1 << 20) / 100 + 1);
    let n = (1..=1_000_000u32).filter(|&k| c.is_sampled(k)).count();
    assert!((9_500..10_500).contains(&n), "{n}");
    let c = Chooser::new(10_000);
    assert_eq!(c.window_len, SHADOW_PAGES_MIN as u64);
}

/// Sampled accesses the chooser has been fed in its current window.
fn fed(p: &S3Fifo) -> u64 {
    let _ = p.len(); // drains the hit buffers
    let inner = p.inner.lock();
    inner.chooser.as_ref().expect("adaptive").window_accesses
}

/// The policy contract (`EvictionPolicy::on_hit`): a hit for a frame the policy no longer
/// knows (a hit racing with a removal) must be ignored. The removed page's frame keeps its
/// sampled bit, so the late hit must not reach the shadows either.
#[test]
fn a_hit_after_removal_is_not_fed_to_the_shadows() {
    let p = S3Fifo::adaptive(100); // every key sampled
    p.on_insert(0, 7, Admission::Demand);
    assert_eq!(fed(&p), 1, "the demand miss");
    p.on_remove(0);
    assert!(!p.contains(0));
    p.on_hit(0);
    assert_eq!(
        fed(&p),
        1,
        "a hit on a frame the policy no longer knows was replayed"
    );
}

/// The chooser's sample must be a function of the key. The hit path's relaxed load and
/// store of the frame byte can leave the sampled bit of the frame's previous page on a new,
/// unsampled one (a hit that loaded the old byte stores it back, plus one, after the
/// insertion's store; the engine's optimistic read calls `on_hit` with no hold on the
/// frame). The drain then must not replay the unsampled key in the shadows.
#[test]
fn a_stale_sampled_bit_feeds_no_unsampled_key_to_the_shadows() {
    let p = S3Fifo::adaptive(20_000); // about 1% of keys sampled
    let key = (0u64..)
        .find(|&k| {
            !p.inner
                .lock()
                .chooser
                .as_ref()
                .unwrap()
                .is_sampled(fingerprint(k))
        })
        .unwrap();
    p.on_insert(0, key, Admission::Demand);
    assert_eq!(fed(&p), 0);
    // The end state of that race: the new page's byte carries the old page's bit.
    p.frames[0]
        .freq
        .fetch_or(super::super::SAMPLED, Ordering::Relaxed);
    p.on_hit(0);
    assert_eq!(fed(&p), 0, "an unsampled key was replayed in the shadows");
}

/// Tiny caches (1 to 8 frames) and one whose share moves (200 frames), under random keys,
/// hits and pins: every call finds an unpinned victim while one exists, and in the end
/// every frame can be evicted (no queue target of 0 or beyond the frames strands a page).
#[test]
fn tiny_and_adapting_caches_always_find_an_unpinned_victim() {
    for cap in (1..=8).chain([200]) {
        let p = S3Fifo::adaptive(cap);
        let mut page_of: Vec<u64> = Vec::new();
        let mut x = cap as u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for i in 0..20_000u64 {
            let k = next() % (cap as u64 * 3);
            if let Some(f) = page_of.iter().position(|&q| q == k) {
                p.on_hit(f as FrameId);
                continue;
            }
            if page_of.len() < cap {
                page_of.push(k);
                p.on_insert((page_of.len() - 1) as FrameId, k, Admission::Demand);
                continue;
            }
            // Pin a random subset, never all frames.
            let free = (next() % cap as u64) as FrameId;
            let pinned: Vec<bool> = (0..cap)
                .map(|f| f as FrameId != free && next() % 3 == 0)
                .collect();
            let v = p
                .choose_victim(&mut |f| !pinned[f as usize])
                .unwrap_or_else(|| panic!("{cap} frames, access {i}: no victim"));
            assert!(!pinned[v as usize]);
            page_of[v as usize] = k;
            p.on_insert(v, k, Admission::Demand);
            assert_eq!(p.len(), cap);
        }
        let mut evicted = std::collections::HashSet::new();
        while let Some(v) = p.choose_victim(&mut |_| true) {
            assert!(evicted.insert(v), "{cap} frames: frame {v} evicted twice");
        }
        assert_eq!(evicted.len(), cap, "{cap} frames: a page stranded");
        assert_eq!(p.len(), 0);
    }
}

/// The election (module docs): at a window's end the live share moves to the lowest score
/// only if it beats the current share's by more than `MARGIN` of the decayed accesses.
#[test]
fn the_share_moves_only_past_the_margin() {
    for (lead, moves) in [(0.5, false), (2.0, true)] {
        let mut c = Chooser::new(SHADOW_PAGES_MIN);
        let n = c.window_len;
        // One window's end, with shadow 0 `lead` margins ahead of the current share's.
        c.window_accesses = n - 1;
        let accesses = n as f64; // the decayed count once the window ends (from 0)
        for (i, s) in c.shadows.iter_mut().enumerate() {
            s.misses = 100;
            s.score = 0.0;
            if i == 0 {
                s.misses = 0;
                s.score = (100.0 - lead * MARGIN * accesses) / DECAY;
            }
        }
        // A key the shadows have not seen: one more miss in each, no change in the gap.
        let got = c.access(1);
        assert_eq!(got, moves.then_some(CANDIDATES[0]), "lead {lead}");
        assert_eq!(c.current, if moves { 0 } else { INITIAL });
    }
}

/// A share change moves no page: the queues keep their pages, and the evictions after it
/// take from the queue over its new target until it is within it.
#[test]
fn a_share_change_moves_nothing_and_evictions_follow_the_new_target() {
    let cap = 400;
    let p = S3Fifo::adaptive(cap);
    // Fill, and send most of the pages to main (two hits each before their first eviction).
    replay(&p, (0..cap as u64 * 4).map(|i| (i / 3) % (cap as u64 * 2)));
    let lens = |p: &S3Fifo| {
        let i = p.inner.lock();
        (
            i.len[super::super::SMALL as usize],
            i.len[super::super::MAIN as usize],
        )
    };
    let (small, main) = lens(&p);
    assert_eq!(small + main, cap);
    p.set_setting(&mut p.inner.lock(), CANDIDATES[3]);
    assert_eq!(p.small_cap(), cap / 4);
    assert_eq!(lens(&p), (small, main), "a share change moved pages");
    let main_cap = cap - cap / 4;
    assert!(main > main_cap, "the test needs main over its new target");
    for _ in 0..main - main_cap {
        let v = p.choose_victim(&mut |_| true).expect("a victim");
        assert_ne!(p.state(v) & super::super::QUEUE, super::super::SMALL);
    }
    assert_eq!(lens(&p), (small, main_cap));
}
