//! The adaptive S3-FIFO's chooser: small shadow S3-FIFOs, one per candidate share of the small
//! queue, replay a spatial sample of the page keys; the live S3-FIFO's small queue takes the
//! share of the shadow with the fewest recent misses.
//!
//! Sources: J. Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023 (the
//! policy whose one parameter is chosen); C. Waldspurger, N. Park, A. Garthwaite, I. Ahmad,
//! "Efficient MRC Construction with SHARDS", FAST 2015 (spatial sampling: a key is in the
//! sample if a hash of it is below a threshold, so every access to a sampled key is seen and
//! none of the others; a cache of `C` pages is modelled by a cache of `C * rate` pages fed the
//! sampled accesses — the *scaled-down simulation* of C. Waldspurger, T. Saemundsson, I. Ahmad,
//! N. Park, "Cache Modeling and Optimization using Miniature Simulations", USENIX ATC 2017,
//! which tunes a policy's parameters exactly so). ARC (N. Megiddo, D. Modha, FAST 2003) adapts
//! its split online in the same spirit, from ghost hits rather than from shadows.
//!
//! # Why shadows, not hill climbing
//! Over five real traces (`crates/folio-traces`), the best share of the small queue differs by
//! workload: 2% for scans and loops (ARC P6 at 5%, LIRS multi3 at 50%, CloudPhysics at 5%),
//! 25% for a block trace whose pages are written and read back far apart (CloudPhysics at 50%),
//! 5-10% elsewhere. Climbing one share by comparing consecutive periods' hit ratios confused
//! the workload's own drift with the effect of the step (worse than a fixed share). Shadows
//! compare every candidate over the *same* accesses, so the workload's drift cancels out, and
//! the live cache moves only when a candidate has been better over several cache-fulls.
//!
//! # What it does
//! * A key is sampled if a 32-bit hash of its fingerprint is below `rate * 2^32`; each shadow
//!   has `rate` times the live cache's frames. `rate` is [`RATE_MIN`] (1%), raised so that a
//!   shadow has at least [`SHADOW_PAGES_MIN`] frames, up to 1 for a cache that small (then
//!   every key is sampled and the shadows are exact simulations). SHARDS measured rates of
//!   0.1-1% on traces of millions of keys; on the traces here a shadow needed about 150 frames
//!   and a rate of at least 0.5% to choose well (at 0.25%, 336 frames, it misjudged
//!   CloudPhysics at 50%; with 128 frames, CloudPhysics at 5%).
//! * Every demand miss of a sampled key (in `S3Fifo::on_insert`) and every hit on a sampled
//!   page (the live cache marks the page's frame at insertion; its hits go through lossy
//!   per-thread buffers, `hitbuf.rs`, drained under the live policy's lock) is replayed in
//!   every shadow, an [`S3Fifo`] of the same code with that candidate's share.
//! * Every window of one shadow-cache-full of sampled accesses, each shadow's misses in the
//!   window are added to its score after the score has been multiplied by [`DECAY`] (a
//!   half-life of [`HALF_LIFE_WINDOWS`] windows). If the shadow with the lowest score is not
//!   the current share's and beats it by more than [`MARGIN`] of the decayed access count,
//!   the live small queue takes its share. Nothing moves: the next evictions take from
//!   whichever queue is over its new target.
//!
//! # Measured (`crates/folio-traces`, 25 cells: five traces at 1/5/10/20/50% of their keys)
//! Within 0.01 of the best libCacheSim row in 24 cells (the fixed 5% share: 20; the best of
//! the four shares chosen per cell in hindsight, the `policy_grid` example's ceiling: 24 too),
//! mean miss ratio 0.4388 (fixed 5%: 0.4434; the ceiling: 0.4376). The cell missed, ARC P6 at
//! 10% (0.4236 against W-TinyLFU's 0.3600), is missed by every share (best 0.4221 at 2%): it
//! wants frequency admission, which a shadow of a TinyLFU-admitting S3-FIFO could offer; not
//! built.
//! Near the constants here the result holds: shadows of 136 to 2,048 frames, rates of 0.5 to
//! 1%, half-lives of 8 windows, 16 or none met the same 24 cells with means from 0.4386 to
//! 0.4390. It is not flat everywhere: a margin of 0 or of 0.005 instead of 0.002 missed one
//! more cell each (CloudPhysics at 5%; multi3 at 50%), half-lives of 2-4 windows (a chooser
//! that follows the last few cache-fulls) one or two more, shadows of 128 frames one more.
//!
//! # Costs
//! The hit path of a page outside the sample is the non-adaptive S3-FIFO's (one relaxed byte
//! load and store; the sampled bit rides in the same byte, and testing it is one more
//! instruction on the loaded value). A sampled hit appends its frame to a ring of the striped
//! hit buffer (relaxed stores, no locked instruction); once per 32 of them a thread tries the
//! lock and replays them in the shadows. The stripes are sized from the shadows, so a cache
//! below about 16,000 frames has one or two stripes that all threads share (concurrent sampled
//! hits can overwrite each other there and share a cache line), and its sample is larger (160
//! frames' worth per shadow): a cost only small caches pay. Under contention a full stripe
//! whose lock is busy drops hits while sampled misses are always replayed, so the shadows
//! under-count re-references, alike for every share. A sampled access costs one access in each
//! shadow, under the live policy's lock. Memory: each shadow frame costs about 37 bytes (an S3-FIFO frame with
//! its ghost share, 21, and a key table entry); four shadows of 1% of the frames add 1.6
//! bytes per page (63.6 heap bytes per page for the whole cache at 65,536 frames, within the
//! 64-byte bound), and below 16,000 frames the 160-frame minimum is a fixed 26 KiB.
//!
//! # When not to use it
//! Where a fixed share is known to suit the workload (the shadows cost memory and a little
//! time for nothing); caches far larger than [`SHADOW_PAGES_MIN`] whose workload has too few
//! distinct hot keys for a sample of `rate` of them to be representative (the sample then
//! misjudges, as SHARDS does at low rates); and workloads that change faster than a few
//! cache-fulls, which the chooser follows late.

use std::collections::HashMap;

use super::super::ghost::fingerprint;
use super::super::hash::BuildKeyHasher;
use super::super::{Admission, EvictionPolicy, FrameId};
use super::{S3Fifo, S3FifoParams};

/// Candidate shares of the small queue.
pub(crate) const SHARES: [f64; 4] = [0.02, 0.05, 0.10, 0.25];
/// The share used until the shadows have an opinion (the fixed default's).
const INITIAL: usize = 1;
/// Frames of each shadow at least (all of the live cache's if it has fewer).
pub(crate) const SHADOW_PAGES_MIN: usize = 160;
/// The least sampling rate (each shadow at least this share of the live cache).
pub(crate) const RATE_MIN: f64 = 0.01;
/// Windows for a score to halve ([`DECAY`] is derived from it; a test checks the two agree).
#[cfg_attr(not(test), allow(dead_code))]
const HALF_LIFE_WINDOWS: f64 = 16.0;
/// Decay of the scores per window: `0.5^(1 / HALF_LIFE_WINDOWS)`.
const DECAY: f64 = 0.957_603_280_698_573_7;
/// A better score must beat the current one by this share of the decayed accesses.
const MARGIN: f64 = 0.002;

/// A shadow: one candidate share's S3-FIFO over the sampled keys, with its own key table.
#[derive(Debug)]
struct Shadow {
    policy: S3Fifo,
    /// Frame of each resident sampled page, by the shadow policy's own fingerprint of its key
    /// (which the policy keeps per frame, so the table needs no key array beside it).
    frame_of: HashMap<u32, FrameId, BuildKeyHasher>,
    /// Frames in use (the first `used` of the policy's).
    used: usize,
    /// Misses in the current window.
    misses: u64,
    /// Decayed misses of past windows.
    score: f64,
}

impl Shadow {
    fn new(frames: usize, share: f64) -> Shadow {
        let params = S3FifoParams {
            small_ratio: share,
            ..S3FifoParams::default()
        };
        Shadow {
            policy: S3Fifo::with_params(frames, params, "shadow"),
            frame_of: HashMap::with_capacity_and_hasher(frames, BuildKeyHasher::default()),
            used: 0,
            misses: 0,
            score: 0.0,
        }
    }

    /// One access to the sampled page of fingerprint `fp`; counts a miss.
    fn access(&mut self, fp: u32) {
        let key = fp as u64;
        let shadow_fp = fingerprint(key);
        if let Some(&frame) = self.frame_of.get(&shadow_fp) {
            self.policy.on_hit(frame);
            return;
        }
        self.misses += 1;
        let frame = if self.used < self.policy.capacity() {
            self.used += 1;
            (self.used - 1) as FrameId
        } else {
            let Some(victim) = self.policy.choose_victim(&mut |_| true) else {
                return; // no frame at all
            };
            self.frame_of.remove(&self.policy.fingerprint_of(victim));
            victim
        };
        self.policy.on_insert(frame, key, Admission::Demand);
        self.frame_of.insert(shadow_fp, frame);
    }

    fn bytes(&self) -> usize {
        // hashbrown: a key, a value and a control byte per bucket (8 buckets per 7 entries),
        // and a group of control bytes more.
        let table =
            self.frame_of.capacity().div_ceil(7) * 8 * (2 * std::mem::size_of::<u32>() + 1) + 16;
        self.policy.metadata_bytes_per_page() * self.policy.capacity() + table
    }
}

/// Chooses the live S3-FIFO's small-queue share. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Chooser {
    /// A fingerprint is sampled if its [`sample_hash`] is below this (`rate * 2^32`).
    threshold: u64,
    shadows: Box<[Shadow]>,
    /// Sampled accesses in the current window, and the window's length.
    window_accesses: u64,
    window_len: u64,
    /// Decayed accesses of past windows (the scores' scale).
    accesses: f64,
    current: usize,
}

/// The 32-bit hash that decides the sample (a finaliser of the fingerprint, so that the sample
/// does not follow the fingerprint's bits the ghost uses to place it).
#[inline]
fn sample_hash(fp: u32) -> u32 {
    let mut x = fp;
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

impl Chooser {
    /// A chooser for a live cache of `capacity` frames.
    pub(crate) fn new(capacity: usize) -> Chooser {
        let frames = SHADOW_PAGES_MIN
            .min(capacity)
            .max((capacity as f64 * RATE_MIN).ceil() as usize);
        let rate = if capacity == 0 {
            1.0
        } else {
            frames as f64 / capacity as f64
        };
        Chooser {
            threshold: (rate * (1u64 << 32) as f64) as u64,
            shadows: SHARES.iter().map(|&s| Shadow::new(frames, s)).collect(),
            window_accesses: 0,
            window_len: frames.max(1) as u64,
            accesses: 0.0,
            current: INITIAL,
        }
    }

    /// Frames of each shadow.
    pub(crate) fn shadow_frames(&self) -> usize {
        self.window_len as usize
    }

    /// The share to start with.
    pub(crate) fn initial_share(&self) -> f64 {
        SHARES[self.current]
    }

    /// True if the page of fingerprint `fp` is in the sample.
    #[inline]
    pub(crate) fn is_sampled(&self, fp: u32) -> bool {
        (sample_hash(fp) as u64) < self.threshold
    }

    /// One demand access (hit or miss in the live cache) to the sampled page of fingerprint
    /// `fp`. Returns the live small queue's new share when it changes.
    pub(crate) fn access(&mut self, fp: u32) -> Option<f64> {
        for s in self.shadows.iter_mut() {
            s.access(fp);
        }
        self.window_accesses += 1;
        if self.window_accesses < self.window_len {
            return None;
        }
        self.accesses = self.accesses * DECAY + self.window_accesses as f64;
        self.window_accesses = 0;
        for s in self.shadows.iter_mut() {
            s.score = s.score * DECAY + s.misses as f64;
            s.misses = 0;
        }
        let best = (0..self.shadows.len())
            .min_by(|&a, &b| self.shadows[a].score.total_cmp(&self.shadows[b].score))
            .expect("shadows");
        let gain = self.shadows[self.current].score - self.shadows[best].score;
        if best != self.current && gain > MARGIN * self.accesses {
            self.current = best;
            return Some(SHARES[best]);
        }
        None
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        // The chooser's box, the shadows' structs (a policy each, inline) and their heap.
        std::mem::size_of::<Chooser>()
            + std::mem::size_of_val(&*self.shadows)
            + self.shadows.iter().map(Shadow::bytes).sum::<usize>()
    }
}

impl S3Fifo {
    /// The adaptive S3-FIFO (`s3fifo-adaptive`, Folio's default): threshold 2 and a 90% ghost
    /// as [`S3Fifo::folio_default`], the small queue's share chosen online. Four shadow
    /// S3-FIFOs (small queues of 2, 5, 10 and 25%), each with 1% of the frames (at least 160),
    /// replay a spatial sample of the keys (SHARDS: C. Waldspurger et al., FAST 2015); every
    /// shadow-cache-full of sampled accesses, the share whose shadow has the fewest recent
    /// misses (decayed, half-life 16 windows) becomes the live one. Hits on pages outside the
    /// sample cost what they cost in the fixed S3-FIFO. The design, the papers, the measurements
    /// and when not to use it: `policy/s3fifo/adaptive.rs` and `docs/eviction.md`.
    pub fn adaptive(capacity: usize) -> S3Fifo {
        let chooser = Chooser::new(capacity);
        let params = S3FifoParams {
            small_ratio: chooser.initial_share(),
            ..S3FifoParams::default()
        };
        S3Fifo::with_chooser(capacity, params, "s3fifo-adaptive", chooser)
    }
}

#[cfg(all(test, not(folio_model)))]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn decay_is_the_half_life() {
        assert!((DECAY.powf(HALF_LIFE_WINDOWS) - 0.5).abs() < 1e-12);
    }

    /// Replays `keys` through the live adaptive policy as the live cache does (a page table,
    /// free frames in order, then victims).
    fn replay(p: &S3Fifo, keys: impl Iterator<Item = u64>) {
        let mut frame_of = std::collections::HashMap::new();
        let mut page_of = Vec::new();
        for k in keys {
            if let Some(&f) = frame_of.get(&k) {
                p.on_hit(f);
                continue;
            }
            let f = if page_of.len() < p.capacity() {
                page_of.push(k);
                (page_of.len() - 1) as FrameId
            } else {
                let v = p.choose_victim(&mut |_| true).expect("a victim");
                frame_of.remove(&std::mem::replace(&mut page_of[v as usize], k));
                v
            };
            frame_of.insert(k, f);
            p.on_insert(f, k, Admission::Demand);
        }
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
            assert_eq!(got, moves.then_some(SHARES[0]), "lead {lead}");
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
        p.set_small_share(&mut p.inner.lock(), 0.25);
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
}
