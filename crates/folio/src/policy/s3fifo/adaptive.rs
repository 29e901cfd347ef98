//! The adaptive S3-FIFO's chooser: small shadow S3-FIFOs, one per candidate setting of the
//! live S3-FIFO (its small queue's share, and whether a TinyLFU frequency test guards main),
//! replay a spatial sample of the page keys; the live S3-FIFO takes the setting of the shadow
//! with the fewest recent misses.
//!
//! Sources: J. Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023 (the
//! policy whose parameters are chosen); G. Einziger, R. Friedman, B. Manes, "TinyLFU: A Highly
//! Efficient Cache Admission Policy", ACM ToS 13(4), 2017 (the frequency test, candidate
//! against victim, with a count-min sketch that halves its counters periodically); C.
//! Waldspurger, N. Park, A. Garthwaite, I. Ahmad, "Efficient MRC Construction with SHARDS",
//! FAST 2015 (spatial sampling: a key is in the sample if a hash of it is below a threshold, so
//! every access to a sampled key is seen and none of the others; a cache of `C` pages is
//! modelled by a cache of `C * rate` pages fed the sampled accesses — the *scaled-down
//! simulation* of C. Waldspurger, T. Saemundsson, I. Ahmad, N. Park, "Cache Modeling and
//! Optimization using Miniature Simulations", USENIX ATC 2017, which tunes a policy's
//! parameters exactly so). ARC (N. Megiddo, D. Modha, FAST 2003) adapts its split online in
//! the same spirit, from ghost hits rather than from shadows.
//!
//! # Why shadows, not hill climbing
//! Over five real traces (`crates/folio-traces`), the best setting differs by workload: a small
//! queue of 2% for scans and loops (ARC P6 at 5%, LIRS multi3 at 50%, CloudPhysics at 5%), 25%
//! for a block trace whose pages are written and read back far apart (CloudPhysics at 50%),
//! 5-10% elsewhere, and frequency admission where a hot set shares the cache with loops or
//! scans a little larger than it (ARC P6 at 5-10%: 0.345 against 0.422 for the best share;
//! w106 at 5% and 20%), while it costs elsewhere (P6 at 20%: 0.19 against 0.16; OLTP: 0.01-0.03
//! at every size). Climbing one share by comparing consecutive periods' hit ratios confused the
//! workload's own drift with the effect of the step (worse than a fixed share). Shadows compare
//! every candidate over the *same* accesses, so the workload's drift cancels out, and the live
//! cache moves only when a candidate has been better over several cache-fulls.
//!
//! # What it does
//! * The candidates ([`CANDIDATES`]): small queues of 2, 5, 10 and 25% with S3-FIFO's own rule
//!   for main ([`MainAdmission::Threshold`]), and small queues of 2 and 5% with frequency
//!   admission ([`MainAdmission::Frequency`]: a page S3-FIFO would move to main enters it only
//!   if a count-min sketch has seen its key more often than main's next victim; see
//!   `s3fifo.rs`). The live S3-FIFO keeps its sketch up to date whichever candidate is live,
//!   so that frequency admission starts with the recent past when it is chosen.
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
//!   every shadow, an [`S3Fifo`] of the same code with that candidate's setting.
//! * Every window of one shadow-cache-full of sampled accesses, each shadow's misses in the
//!   window are added to its score after the score has been multiplied by [`DECAY`] (a
//!   half-life of [`HALF_LIFE_WINDOWS`] windows). If the shadow with the lowest score is not
//!   the current setting's and beats it by more than [`MARGIN`] of the decayed access count,
//!   the live S3-FIFO takes its setting. Nothing moves: the next evictions take from whichever
//!   queue is over its new target, and the next page S3-FIFO sends to main meets the new rule.
//!
//! # Measured (`crates/folio-traces`, 25 cells: five traces at 1/5/10/20/50% of their keys)
//! Within 0.01 of the best libCacheSim row in all 25 cells (the fixed 5% share: 20; the four
//! shares alone, before frequency admission joined them: 24, missing ARC P6 at 10% by 0.064),
//! mean miss ratio 0.4351 (fixed 5%: 0.4434; the four shares alone: 0.4388; the best of the six
//! candidates chosen per cell in hindsight, the `policy_grid` example's ceiling: 0.4330). ARC
//! P6 at 10%: 0.3504 against W-TinyLFU's 0.3600. Near the constants here the result holds:
//! margins of 0.001 to 0.004 and five candidates (without 5% with frequency admission) gave
//! means of 0.4348 to 0.4350, all 25 cells met but one (a margin of 0.004: CloudPhysics at 50%,
//! 0.0130 behind); the closest cells of the chosen constants are w106 at 20% (0.009 behind) and
//! CloudPhysics at 5% and 50% (0.008). The sketch's constants matter more: frequency
//! admission with a 2% small queue on P6 at 10% misses 0.345 with four counters per frame
//! halved every 5 frames' worth of counted accesses (the constants here), 0.368 and 0.562 if
//! halved every 10 or 20 (the 4-bit counters saturate and every key looks alike), 0.360 with
//! two counters per frame (collisions).
//!
//! # Costs
//! The hit path of a page outside the sample is the non-adaptive S3-FIFO's (one relaxed byte
//! load and store; the sampled bit rides in the same byte, and testing it is one more
//! instruction on the loaded value): the sketch learns of hits only when eviction spends the
//! frame's hit counter (up to 3 per pass), under the lock it holds anyway. A sampled hit
//! appends its frame to a ring of the striped hit buffer (relaxed stores, no locked
//! instruction); once per 32 of them a thread tries the lock and replays them in the shadows.
//! The stripes are sized from the shadows, so a cache below about 16,000 frames has one or two
//! stripes that all threads share (concurrent sampled hits can overwrite each other there and
//! share a cache line), and its sample is larger (160 frames' worth per shadow): a cost only
//! small caches pay. Under contention a full stripe whose lock is busy drops hits while
//! sampled misses are always replayed, so the shadows under-count re-references, alike for
//! every candidate. A sampled access costs one access in each shadow, under the live policy's
//! lock; every miss costs one sketch update (one cache line), and with frequency admission a
//! page sent to main costs a look at main's next victim (which the next eviction from main
//! then takes without looking again). Memory: the sketch is 2 bytes per page; each shadow
//! frame costs about 37 bytes (an S3-FIFO frame with its ghost share, 21, a key table entry,
//! and for the two frequency candidates 2 bytes of sketch); six shadows of 1% of the frames add
//! 2.2 bytes per page (25 bytes per page for the policy at scale, 62.5 heap bytes per page for
//! the whole cache at 65,536 frames, within the 64-byte bound), and below 16,000 frames the
//! 160-frame minimum is a fixed 38 KiB or so.
//!
//! # When not to use it
//! Where a fixed share is known to suit the workload (the shadows cost memory and a little
//! time for nothing); caches far larger than [`SHADOW_PAGES_MIN`] whose workload has too few
//! distinct hot keys for a sample of `rate` of them to be representative (the sample then
//! misjudges, as SHARDS does at low rates); and workloads that change faster than a few
//! cache-fulls, which the chooser follows late.
//!
//! A switch is not free, and the shadows do not see its cost: each shadow has run its setting
//! from the start, while the live cache inherits a main queue built under the settings before.
//! Frequency admission makes that matter, because it keeps main as it is unless a newcomer is
//! seen more often than main's victim. Seen on a synthetic trace (a loop over 2.3 times a 10%
//! cache beside random accesses to 8 times as many keys, `folio sim` on one key per line): a
//! one-window detour to the 25% share emptied a fifth of main; back with frequency admission
//! nothing qualified to refill it (the loop's pages are neither ghost hits nor hit twice in the
//! small queue), so the small queue held that fifth and the live cache missed 0.767 where its
//! shadow, and the fixed setting, missed 0.70 (0.887 against 0.856 at 5%; at 20% it was 0.389
//! against s3fifo5's 0.570). Letting pages the small queue evicts refill main while
//! main is under its target (with frequency admission only) mends that trace (0.704, 0.856)
//! but costs CloudPhysics at 50%, where the chooser's late move to frequency admission is the
//! wrong one and the larger small queue the switch leaves behind had been helping (0.4587
//! against 0.4527, 0.014 behind libCacheSim's best): not done.

use std::collections::HashMap;

use super::super::ghost::fingerprint;
use super::super::hash::BuildKeyHasher;
use super::super::{Admission, EvictionPolicy, FrameId};
use super::{MainAdmission, S3Fifo, S3FifoParams};

/// A candidate setting of the live S3-FIFO: its small queue's share and who enters main.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Candidate {
    pub(crate) share: f64,
    pub(crate) admission: MainAdmission,
}

const fn candidate(share: f64, admission: MainAdmission) -> Candidate {
    Candidate { share, admission }
}

/// The candidates, one shadow each.
pub(crate) const CANDIDATES: [Candidate; 6] = [
    candidate(0.02, MainAdmission::Threshold),
    candidate(0.05, MainAdmission::Threshold),
    candidate(0.10, MainAdmission::Threshold),
    candidate(0.25, MainAdmission::Threshold),
    candidate(0.02, MainAdmission::Frequency),
    candidate(0.05, MainAdmission::Frequency),
];
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
    fn new(frames: usize, candidate: Candidate) -> Shadow {
        let params = S3FifoParams {
            small_ratio: candidate.share,
            admission: candidate.admission,
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

    /// One access to the sampled page whose key's fingerprint is `shadow_fp` (the fingerprint
    /// of the live fingerprint: the shadows key on it); counts a miss.
    fn access(&mut self, shadow_fp: u32) {
        if let Some(&frame) = self.frame_of.get(&shadow_fp) {
            self.policy.on_hit(frame);
            return;
        }
        self.misses += 1;
        // The eviction and the insertion under one lock (the shadow is this chooser's alone, and
        // it has no sampled hits to drain): a miss costs one uncontended lock, not three.
        let policy = &self.policy;
        let mut inner = policy.inner.lock();
        let frame = if self.used < policy.capacity() {
            self.used += 1;
            (self.used - 1) as FrameId
        } else {
            let Some(victim) = policy.choose_victim_locked(&mut inner, &mut |_| true) else {
                return; // no frame at all
            };
            self.frame_of.remove(&inner.fp[victim as usize]);
            victim
        };
        policy.insert_locked(&mut inner, frame, shadow_fp, Admission::Demand);
        drop(inner);
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
            shadows: CANDIDATES.iter().map(|&c| Shadow::new(frames, c)).collect(),
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

    /// The setting to start with.
    pub(crate) fn initial(&self) -> Candidate {
        CANDIDATES[self.current]
    }

    /// True if the page of fingerprint `fp` is in the sample.
    #[inline]
    pub(crate) fn is_sampled(&self, fp: u32) -> bool {
        (sample_hash(fp) as u64) < self.threshold
    }

    /// One demand access (hit or miss in the live cache) to the sampled page of fingerprint
    /// `fp`. Returns the live S3-FIFO's new setting when it changes.
    pub(crate) fn access(&mut self, fp: u32) -> Option<Candidate> {
        // The shadows' own fingerprint of the key (as `S3Fifo::on_insert` would take it).
        let shadow_fp = fingerprint(fp as u64);
        for s in self.shadows.iter_mut() {
            s.access(shadow_fp);
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
            return Some(CANDIDATES[best]);
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
    /// as [`S3Fifo::folio_default`], the small queue's share and the admission to main chosen
    /// online. Six shadow S3-FIFOs (small queues of 2, 5, 10 and 25%, and of 2 and 5% with
    /// [`MainAdmission::Frequency`]), each with 1% of the frames (at least 160), replay a spatial
    /// sample of the keys (SHARDS: C. Waldspurger et al., FAST 2015); every shadow-cache-full of
    /// sampled accesses, the setting whose shadow has the fewest recent misses (decayed,
    /// half-life 16 windows) becomes the live one. Hits on pages outside the sample cost what
    /// they cost in the fixed S3-FIFO. The design, the papers, the measurements and when not to
    /// use it: `policy/s3fifo/adaptive.rs` and `docs/eviction.md`.
    pub fn adaptive(capacity: usize) -> S3Fifo {
        let chooser = Chooser::new(capacity);
        let initial = chooser.initial();
        let params = S3FifoParams {
            small_ratio: initial.share,
            admission: initial.admission,
            ..S3FifoParams::default()
        };
        S3Fifo::with_chooser(capacity, params, "s3fifo-adaptive", chooser)
    }
}

// Its unit tests (a child file: they reach the chooser's private parts).
#[cfg(all(test, not(folio_model)))]
mod tests;
