//! S3-FIFO: a small FIFO that filters one-hit wonders, a main FIFO with lazy promotion (CLOCK-like
//! reinsertion), and a ghost FIFO that remembers recently filtered keys.
//!
//! Source: J. Yang, Y. Zhang, Z. Qiu, Y. Yue, K. V. Rashmi, "FIFO queues are all you need for
//! cache eviction", SOSP 2023. Semantics follow libCacheSim's `S3FIFO` (the version that inserts
//! into main while the small queue is full and nothing was evicted yet):
//!
//! * A new page enters the small queue (10% of the frames), or the main queue if its key is in
//!   the ghost queue (then removed from the ghost).
//! * Every hit increments a per-frame counter, saturating at 3: one relaxed byte load and store,
//!   **no lock**. (The adaptive flavour keeps a "sampled" bit in the same byte; a hit on a
//!   sampled page also appends its frame to a per-thread buffer, `hitbuf.rs`, for the chooser.)
//! * Eviction takes from main when main is over its share (or small is empty), else from small.
//!   Small: the oldest page moves to main (counter reset) if it was hit at least `threshold`
//!   times (libCacheSim default 2), else it is evicted and its key enters the ghost FIFO (90% of
//!   the frame count, in keys). Main: the oldest page with a non-zero counter is reinserted at
//!   the head with `min(counter, 3) - 1`; the first page with counter zero is evicted.
//!
//! [`S3Fifo::new`] is the libCacheSim configuration (`s3fifo`); on the reference CloudPhysics
//! trace it matches libCacheSim 0.3.5's row to 4 decimals at 5/10/20/50% and is 0.0002 above it
//! at 1% (0.89399 against the Python package's 0.89385 with unit-size objects: a warm-up detail
//! not pinned down; keeping the moved page's counter or dropping the insert-into-main-before-
//! the-first-eviction rule both move it further away).
//!
//! # A 5% small queue, and the share chosen online
//! [`S3Fifo::folio_default`] (`s3fifo5`, the default before the adaptive one) gives the small queue
//! 5% of the frames, everything else unchanged. Chosen on five real traces of four workload classes
//! (a database, ARC OLTP; a workstation disk with long scans, ARC P6; two virtual disks,
//! CloudPhysics and w106, skewed with a scan phase; a loop-heavy mix, LIRS multi3), 25 cells of
//! 1/5/10/20/50% of the distinct keys (`crates/folio-traces`): mean miss ratio 0.4434 against
//! 0.4448 at 10% (libCacheSim's setting), 0.4529 at 25% (`s3fifo25`, the default before, tuned on
//! CloudPhysics alone) and 0.4435 at 3%. A small queue filters one-hit wonders faster the smaller
//! it is, which scans (P6) and loops (multi3) reward; the ghost brings back what re-references
//! soon. What a fixed share cannot do (the cells missed, see `docs/eviction.md`): a block trace
//! with write-then-read pairs far apart (CloudPhysics at 50%) wants 25%, and P6 at 10% wants
//! frequency admission (W-TinyLFU: 0.36 against 0.44). Adapting the share by hill climbing followed
//! noise on traces of 8 to 80 cache-fulls (worse than fixed). [`S3Fifo::adaptive`]
//! (`s3fifo-adaptive`, Folio's default) runs small shadow S3-FIFOs of six settings (four shares,
//! and two with frequency admission, below) on a sample of the keys (SHARDS: C. Waldspurger et
//! al., FAST 2015) and gives the live S3-FIFO the winner's setting, which costs no migration
//! since only the queue targets and the admission rule change: all 25 cells, mean 0.4351
//! (`s3fifo/adaptive.rs` has the design and the figures). The author's other suggestion for block
//! I/O, a 1-hit threshold, was measured and rejected: promoting on one re-reference lets
//! write-then-read pairs pollute main (CloudPhysics: 0.9004 at 1%, worse than LRU).
//!
//! # Frequency admission
//! An option ([`MainAdmission::Frequency`], `s3fifo/frequency.rs`): a page that S3-FIFO's rule
//! sends to main enters it only if a count-min sketch has seen its key more often than main's
//! next victim (TinyLFU's test). The adaptive flavour offers it as a candidate.
//!
//! A candidate the cache refuses (pinned) is treated as in use: a refused small page moves to
//! main, a refused main page is reinserted at main's head. Each call examines at most
//! `5 * len + 1` candidates (three passes decay every counter, one more finds a claimable page).
//!
//! # Layout
//! Each queue is a FIFO of `u32` entries (frame id and generation) in chunks of a pool the two
//! queues share (`queues.rs`): pushing and popping walk memory sequentially, and a frame costs
//! about 4.6 bytes of queue whichever queue it is in. A page moving within or between queues
//! keeps its entry (popped from one tail, pushed at a head). Removal is lazy: a page that leaves
//! its queue other than from the tail (`on_remove`, or a new page inserted into a frame that is
//! still queued) only has its frame's queue tag cleared; its entry stays and is skipped when
//! popped, recognised as stale because the frame's tag names another queue or because its
//! generation is older (each new page in a frame advances the frame's generation, 5 bits: an
//! entry could be mistaken for live only after 32 new pages in that frame while the stale entry
//! waited; the page then has two entries, and is examined twice per pass, until it leaves its
//! queue or the queues are compacted). When stale entries fill the pool's slack (1/32 of the
//! frames) the queues are compacted, O(frames), at most once per `frames / 32` removals; that
//! also keeps one entry per page.
//!
//! The ghost remembers 32-bit fingerprints of the evicted keys, and each frame keeps its page's
//! fingerprint (not the 8-byte key) for when the page is evicted; see `ghost.rs` for the ghost
//! and its exactness (its miss counts on the reference trace equal an exact FIFO ghost's to
//! within two misses in a million).
//!
//! Metadata per frame: 1 counter byte and 1 byte of queue tag and generation side by side, 4
//! bytes of fingerprint, about 4.6 bytes of queue entries and chunk links, and the ghost at 0.9
//! entries per frame and about 11.2 bytes per entry (10.1 per frame): 21 bytes per page in all
//! (rounded up; `metadata_bytes_per_page` adds up the actual allocations). Frequency admission
//! adds the sketch, 2 bytes per page; the adaptive flavour keeps the sketch and adds its shadows
//! and hit buffers: 25 bytes per page at scale in all.
//!
//! When not to use it: workloads whose reuse distance is mostly between 10% and 100% of the cache
//! *and* that are not re-referenced quickly (loops slightly larger than small+ghost), where a
//! plain LRU/CLOCK keeps more; frequency-skewed workloads with long reuse distances, where
//! frequency admission (or W-TinyLFU) admits better (P6 at 5-10%); and tiny caches (the 5% queue
//! is one frame below 40).
//!
//! Its unit tests, with the list model they check the queues against, are in `s3fifo/tests.rs`.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::sync::{Mutex, MutexGuard};

use super::ghost::{fingerprint, Ghost};
use super::hitbuf::HitBuffers;
use super::queues::{ChunkPool, Queue};
use super::sketch::CountMin4;
use super::{Admission, EvictionPolicy, FrameId, PageKey};

use adaptive::{Candidate, Chooser};

/// Queue tags (the low two bits of a frame's state byte).
const NONE: u8 = 0;
const SMALL: u8 = 1;
const MAIN: u8 = 2;
const QUEUE: u8 = 0b11;
/// The frame's push generation: bits 2..7 of its state byte.
const GEN_SHIFT: u32 = 2;
const GEN_BITS_MAX: u32 = 5;
/// Set on a frame while compaction has kept one entry for it.
const SEEN: u8 = 1 << 7;
const FREQ_MAX: u8 = 3;
/// The hit counter's bits in a frame's `freq` byte.
const COUNT: u8 = 0b11;
/// Set in a frame's `freq` byte while its page is in the adaptive chooser's key sample
/// (`s3fifo/adaptive.rs`): its hits are recorded for the chooser's shadows. Never set without a
/// chooser.
const SAMPLED: u8 = 1 << 7;

/// Tunables of [`S3Fifo`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct S3FifoParams {
    /// Share of the frames for the small queue (libCacheSim: 0.10).
    pub small_ratio: f64,
    /// Ghost entries as a share of the frame count (libCacheSim: 0.90).
    pub ghost_ratio: f64,
    /// Hits in the small queue needed to move to main (libCacheSim: 2).
    pub move_to_main_threshold: u8,
    /// Which of the pages sent to main enter it (S3-FIFO as published: all).
    pub admission: MainAdmission,
}

impl Default for S3FifoParams {
    fn default() -> Self {
        S3FifoParams {
            small_ratio: 0.10,
            ghost_ratio: 0.90,
            move_to_main_threshold: 2,
            admission: MainAdmission::Threshold,
        }
    }
}

/// Per frame, side by side: the hit counter and sampled bit (written by hits without the lock)
/// and the state byte (queue tag, generation; written only under the lock).
#[derive(Debug, Default)]
struct FrameBits {
    freq: AtomicU8,
    state: AtomicU8,
}

/// S3-FIFO. See the [module docs](self).
#[derive(Debug)]
pub struct S3Fifo {
    name: &'static str,
    frames: Box<[FrameBits]>,
    threshold: u8,
    /// Hits on sampled frames, for the chooser (adaptive flavour only).
    sampled_hits: Option<HitBuffers>,
    /// `Inner::small_cap`, mirrored for [`eviction_window`](EvictionPolicy::eviction_window)
    /// without the lock: stored under the lock whenever the target changes, read relaxed (any
    /// recent target will do: it only moves when the write-back starts).
    small_cap_mirror: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: ChunkPool,
    /// `[_, small, main]`, indexed by queue tag.
    queues: [Queue; 3],
    /// Live pages per queue, indexed by queue tag (the queues also hold stale entries).
    len: [usize; 3],
    /// Fingerprint of each frame's page, for the ghost.
    fp: Box<[u32]>,
    ghost: Ghost,
    small_cap: usize,
    main_cap: usize,
    has_evicted: bool,
    /// A queue entry is `frame << gen_bits | generation`.
    gen_bits: u32,
    /// The adaptive flavour's chooser of the small queue's share (`s3fifo/adaptive.rs`).
    chooser: Option<Box<Chooser>>,
    /// Recent frequencies of the keys (misses, and hits as their counts are spent), with
    /// [`MainAdmission::Frequency`] or a chooser that may choose it.
    sketch: Option<CountMin4>,
    /// Who enters main now (the chooser may change it).
    admission: MainAdmission,
    /// Main's next victim, found (popped, its frame still in main) by an admission test; the
    /// next pop of main takes it first.
    peeked: Option<u32>,
}

impl S3Fifo {
    /// libCacheSim's S3-FIFO: small 10%, ghost 90%, threshold 2.
    pub fn new(capacity: usize) -> S3Fifo {
        S3Fifo::with_params(capacity, S3FifoParams::default(), "s3fifo")
    }

    /// Folio's default: S3-FIFO with a 5% small queue (see the [module docs](self) and
    /// `PolicyKind`).
    pub fn folio_default(capacity: usize) -> S3Fifo {
        S3Fifo::with_small_ratio(capacity, 0.05, "s3fifo5")
    }

    /// S3-FIFO with a 25% small queue: Folio's default until the four new traces showed it
    /// tuned to the CloudPhysics trace alone.
    pub fn small25(capacity: usize) -> S3Fifo {
        S3Fifo::with_small_ratio(capacity, 0.25, "s3fifo25")
    }

    /// S3-FIFO with a 5% small queue and [`MainAdmission::Frequency`] (`s3fifo-freq`): one of
    /// the adaptive default's candidates, fixed. Over the 25 cells of the five traces
    /// (`crates/folio-traces`) its mean miss ratio is 0.4419, below every fixed share without
    /// it (the best, 5%: 0.4434) and every classic policy's libCacheSim mean, but it is worse
    /// than libCacheSim's S3-FIFO by 0.004-0.020 on the database trace (ARC OLTP) and by 0.032
    /// and 0.017 on ARC P6 at 20% and 50%, where the adaptive default does not choose it.
    pub fn frequency(capacity: usize) -> S3Fifo {
        let params = S3FifoParams {
            small_ratio: 0.05,
            admission: MainAdmission::Frequency,
            ..S3FifoParams::default()
        };
        S3Fifo::with_params(capacity, params, "s3fifo-freq")
    }

    fn with_small_ratio(capacity: usize, small_ratio: f64, name: &'static str) -> S3Fifo {
        let params = S3FifoParams {
            small_ratio,
            ..S3FifoParams::default()
        };
        S3Fifo::with_params(capacity, params, name)
    }

    /// S3-FIFO with explicit parameters, reported under `name`.
    pub fn with_params(capacity: usize, params: S3FifoParams, name: &'static str) -> S3Fifo {
        S3Fifo::build(capacity, params, name, None)
    }

    /// S3-FIFO whose small queue's share `chooser` sets (`s3fifo/adaptive.rs`).
    pub(crate) fn with_chooser(
        capacity: usize,
        params: S3FifoParams,
        name: &'static str,
        chooser: Chooser,
    ) -> S3Fifo {
        S3Fifo::build(capacity, params, name, Some(Box::new(chooser)))
    }

    fn build(
        capacity: usize,
        params: S3FifoParams,
        name: &'static str,
        chooser: Option<Box<Chooser>>,
    ) -> S3Fifo {
        assert!(capacity <= 1 << 31, "S3-FIFO manages at most 2^31 frames");
        let small_cap = ((capacity as f64 * params.small_ratio) as usize).clamp(1, capacity.max(1));
        let ghost_cap = (capacity as f64 * params.ghost_ratio) as usize;
        let frame_bits = usize::BITS - (capacity.max(2) - 1).leading_zeros();
        // A chooser may switch frequency admission on: the sketch must know the past by then.
        let sketch =
            (params.admission == MainAdmission::Frequency || chooser.is_some()).then(|| {
                CountMin4::new(
                    capacity,
                    SKETCH_COUNTERS_PER_FRAME,
                    SKETCH_PERIOD_PER_FRAME,
                    0,
                )
            });
        S3Fifo {
            name,
            frames: (0..capacity).map(|_| FrameBits::default()).collect(),
            threshold: params.move_to_main_threshold.clamp(1, FREQ_MAX),
            // Only sampled hits: buffers for the shadows' size are plenty.
            sampled_hits: chooser.as_ref().map(|c| HitBuffers::new(c.shadow_frames())),
            small_cap_mirror: AtomicUsize::new(small_cap),
            inner: Mutex::new(Inner {
                // Room for every frame plus 1/32 of stale entries between compactions.
                pool: ChunkPool::new(ChunkPool::chunks_for(capacity + capacity / 32, 2)),
                queues: [Queue::new(); 3],
                len: [0; 3],
                fp: vec![0; capacity].into_boxed_slice(),
                ghost: Ghost::new(ghost_cap),
                small_cap,
                main_cap: capacity.saturating_sub(small_cap),
                has_evicted: false,
                gen_bits: GEN_BITS_MAX.min(32 - frame_bits),
                chooser,
                sketch,
                admission: params.admission,
                peeked: None,
            }),
        }
    }

    /// Takes the lock and hands the buffered sampled hits to the chooser, in order.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        self.drain_sampled(&mut inner);
        inner
    }

    fn drain_sampled(&self, inner: &mut Inner) {
        let Some(hits) = &self.sampled_hits else {
            return;
        };
        let Inner { chooser, fp, .. } = inner;
        let Some(chooser) = chooser.as_deref_mut() else {
            return;
        };
        let mut setting = None;
        hits.drain(|frame| {
            // The frame may hold another page by now, or none: count the hit only if it holds
            // a page whose key is in the sample (the page hit, or one that came in since;
            // rare). The key decides, not the frame's sampled bit: a hit racing with the
            // frame's reuse can store the old page's bit over the new page's byte.
            let Some(f) = self.frames.get(frame as usize) else {
                return;
            };
            let fp = fp[frame as usize];
            if f.state.load(Ordering::Relaxed) & QUEUE != NONE && chooser.is_sampled(fp) {
                setting = chooser.access(fp).or(setting);
            }
        });
        if let Some(setting) = setting {
            self.set_setting(inner, setting);
        }
    }

    /// The hit path's rare branch: a hit on a sampled page, recorded for the chooser.
    #[inline(never)]
    fn record_sampled_hit(&self, frame: FrameId) {
        if let Some(hits) = &self.sampled_hits {
            hits.record_or(frame, || {
                if let Some(mut inner) = self.inner.try_lock() {
                    self.drain_sampled(&mut inner);
                }
            });
        }
    }

    /// Takes the chooser's `setting` from now on (see `Inner::set`), and mirrors the small
    /// queue's new target for [`eviction_window`](EvictionPolicy::eviction_window).
    fn set_setting(&self, inner: &mut Inner, setting: Candidate) {
        inner.set(self.capacity(), setting);
        self.small_cap_mirror
            .store(inner.small_cap, Ordering::Relaxed);
    }

    /// The small queue's target, in frames.
    #[cfg(test)]
    pub(crate) fn small_cap(&self) -> usize {
        let small_cap = self.inner.lock().small_cap;
        assert_eq!(self.eviction_window(), small_cap, "the mirror follows");
        small_cap
    }

    fn insert_locked(&self, inner: &mut Inner, frame: FrameId, fp: u32, admission: Admission) {
        if frame as usize >= self.frames.len() {
            return;
        }
        self.unlink(inner, frame);
        inner.fp[frame as usize] = fp;
        let sampled = inner.chooser.as_ref().is_some_and(|c| c.is_sampled(fp));
        self.frames[frame as usize]
            .freq
            .store(if sampled { SAMPLED } else { 0 }, Ordering::Relaxed);
        if admission == Admission::Demand {
            if let Some(sketch) = &mut inner.sketch {
                sketch.increment(fp);
            }
        }
        let to_main = match admission {
            Admission::Demand => {
                (inner.ghost.remove(fp) && self.admits(inner, fp))
                    || (!inner.has_evicted && inner.len[SMALL as usize] >= inner.small_cap)
            }
            // Speculative pages are unproven: they always start in the small queue.
            _ => false,
        };
        self.enqueue(inner, frame, if to_main { MAIN } else { SMALL });
        if sampled && admission == Admission::Demand {
            let setting = inner.chooser.as_deref_mut().and_then(|c| c.access(fp));
            if let Some(setting) = setting {
                self.set_setting(inner, setting);
            }
        }
    }

    fn choose_victim_locked(
        &self,
        inner: &mut Inner,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        inner.has_evicted = true;
        let budget = (FREQ_MAX as usize + 2) * inner.live() + 1;
        // Pinned main pages refused in this call; once every main page has been refused, main
        // being over its share must not stop the search from reaching the small queue.
        let mut main_refused = 0usize;
        for _ in 0..budget {
            let (small, main) = (inner.len[SMALL as usize], inner.len[MAIN as usize]);
            let main_blocked = main_refused >= main;
            if (main > inner.main_cap && !main_blocked) || small == 0 {
                let (entry, cand) = self.pop_live(inner, MAIN)?;
                let f = &self.frames[cand as usize].freq;
                let v = f.load(Ordering::Relaxed);
                if v & COUNT >= 1 {
                    f.store(v - 1, Ordering::Relaxed);
                    if let Some(sketch) = &mut inner.sketch {
                        sketch.increment(inner.fp[cand as usize]);
                    }
                } else if claim(cand) {
                    self.unlink(inner, cand);
                    return Some(cand);
                } else {
                    main_refused += 1;
                }
                self.requeue(inner, entry, cand, MAIN, MAIN);
            } else {
                let (entry, cand) = self
                    .pop_live(inner, SMALL)
                    .expect("the small queue holds its live pages");
                let f = &self.frames[cand as usize].freq;
                let v = f.load(Ordering::Relaxed);
                let fp = inner.fp[cand as usize];
                if let Some(sketch) = &mut inner.sketch {
                    sketch.increment_by(fp, (v & COUNT) as u32);
                }
                let evict = v & COUNT < self.threshold || !self.admits(inner, fp);
                if evict && claim(cand) {
                    self.unlink(inner, cand);
                    inner.ghost.insert(inner.fp[cand as usize]);
                    return Some(cand);
                }
                // Re-referenced, or pinned (in use, so it has earned main as well): to main.
                f.store(v & SAMPLED, Ordering::Relaxed);
                self.requeue(inner, entry, cand, SMALL, MAIN);
            }
        }
        None
    }
}

impl Inner {
    fn live(&self) -> usize {
        self.len[SMALL as usize] + self.len[MAIN as usize]
    }

    /// Takes the chooser's `setting` from now on: the small queue's share of the `capacity`
    /// frames, and who enters main. Nothing moves: the evictions that follow take from the
    /// queue over its new target.
    fn set(&mut self, capacity: usize, setting: Candidate) {
        debug_assert!(
            setting.admission == MainAdmission::Threshold || self.sketch.is_some(),
            "frequency admission without a sketch"
        );
        self.admission = setting.admission;
        let share = setting.share;
        self.small_cap = ((capacity as f64 * share) as usize).clamp(1, capacity.max(1));
        self.main_cap = capacity.saturating_sub(self.small_cap);
    }
}

impl EvictionPolicy for S3Fifo {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capacity(&self) -> usize {
        self.frames.len()
    }

    fn len(&self) -> usize {
        self.lock().live()
    }

    /// New pages enter the small queue and are evicted from it, unless hit, once it is over its
    /// target: the small queue's target (2 to 25% of the frames; the adaptive chooser moves it).
    fn eviction_window(&self) -> usize {
        self.small_cap_mirror.load(Ordering::Relaxed)
    }

    fn contains(&self, frame: FrameId) -> bool {
        let _inner = self.inner.lock();
        (frame as usize) < self.frames.len() && self.state(frame) & QUEUE != NONE
    }

    #[inline]
    fn on_hit(&self, frame: FrameId) {
        if let Some(f) = self.frames.get(frame as usize) {
            let v = f.freq.load(Ordering::Relaxed);
            if v & COUNT < FREQ_MAX {
                f.freq.store(v + 1, Ordering::Relaxed);
            }
            if v & SAMPLED != 0 {
                self.record_sampled_hit(frame);
            }
        }
    }

    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission) {
        let mut inner = self.lock();
        self.insert_locked(&mut inner, frame, fingerprint(page), admission);
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.lock();
        if (frame as usize) < self.frames.len() {
            self.unlink(&mut inner, frame);
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.lock();
        self.choose_victim_locked(&mut inner, claim)
    }

    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let fp = fingerprint(page);
        let mut inner = self.lock();
        // The insertion looks `page` up in the ghost: start fetching its buckets.
        inner.ghost.prefetch(fp);
        let victim = self.choose_victim_locked(&mut inner, claim)?;
        self.insert_locked(&mut inner, victim, fp, admission);
        Some(victim)
    }

    fn metadata_bytes_per_page(&self) -> usize {
        let inner = self.inner.lock();
        let bytes = std::mem::size_of_val(&*self.frames)
            + std::mem::size_of_val(&*inner.fp)
            + inner.pool.bytes()
            + inner.ghost.bytes()
            + inner.sketch.as_ref().map_or(0, |s| s.bytes())
            + inner.chooser.as_ref().map_or(0, |c| c.bytes())
            + self.sampled_hits.as_ref().map_or(0, |h| h.bytes());
        bytes.div_ceil(self.capacity().max(1))
    }
}

// The adaptive flavour's chooser and its shadows (a child file: the two reach each other).
mod adaptive;
// The queue entries: generations, lazy removal, compaction.
mod entries;
// Frequency admission to main.
mod frequency;

pub use frequency::MainAdmission;
use frequency::{SKETCH_COUNTERS_PER_FRAME, SKETCH_PERIOD_PER_FRAME};

// The model-checking build's mutex needs a shuttle test: these run on std's only.
#[cfg(all(test, not(folio_model)))]
mod tests;
