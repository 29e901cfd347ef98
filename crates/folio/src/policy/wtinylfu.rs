//! W-TinyLFU: a small LRU *window* that every new page enters, a segmented-LRU *main* region
//! (probation and protected), and a frequency sketch that decides, when the window overflows,
//! whether its oldest page (the candidate) deserves the main region's victim's place.
//!
//! Sources: G. Einziger, R. Friedman, B. Manes, "TinyLFU: A Highly Efficient Cache Admission
//! Policy", ACM Transactions on Storage 13(4), 2017 (W-TinyLFU, the count-min sketch, its
//! doorkeeper and its reset); G. Einziger, O. Eytan, R. Friedman, B. Manes, "Adaptive Software
//! Cache Management", Middleware 2018 (the window sized online by hill climbing, as Caffeine
//! does). The structure follows Caffeine's simulator (`WindowTinyLfuPolicy`,
//! `HillClimberWindowTinyLfuPolicy`, `SimpleClimber`); no code is taken from it.
//!
//! # Two flavours
//! * [`WTinyLfu::caffeine`] / [`WTinyLfu::adaptive`] (`wtinylfu`, `wtinylfu-adaptive`):
//!   Caffeine's design. Every access (hit or miss) counts in a count-min (`sketch.rs`) sketch (16 4-bit
//!   counters per page, reset every 10 x capacity counted increments) behind a doorkeeper. A
//!   miss enters the window (1% of the frames at first); when the window is over its share its
//!   oldest page moves to probation's newest end and competes with probation's oldest page: the
//!   one with the lower estimated frequency is evicted (ties evict the candidate; a candidate
//!   of frequency >= 6 is admitted anyway once in 128 times, Caffeine's defence against a victim
//!   made artificially hot by hash collisions). A probation hit promotes to protected (80% of
//!   main), whose overflow goes back to probation's newest end. In the adaptive flavour a hill
//!   climber moves the window/main boundary: every `10 * capacity` accesses (once the cache is
//!   full) it compares the sample's hit ratio with the previous one and keeps its direction if
//!   it improved, else reverses; steps start at 6.25% of the capacity, decay by 2% a sample
//!   (0.5% for caches of at most 512 pages, which also grow their sample as the step decays),
//!   and restart when the hit ratio jumps by 5 points (a workload change). Growing the window
//!   moves probation's oldest pages into it; shrinking moves the window's oldest pages to
//!   probation's oldest end.
//! * [`WTinyLfu::libcachesim`] (`wtinylfu-lcs`): libCacheSim 0.3.5's `WTinyLFU` (window 1%,
//!   `SLRU` main with segments 1:4, the counting Bloom filter `CountingBloom` (`sketch.rs`) sized for the
//!   main region), to reproduce its reference rows. Its quirks are kept: only main hits, new
//!   pages and window candidates count in the filter (window hits do not), the filter halves
//!   every `32 * main` main hits, a new page enters SLRU's lowest segment with room (so during
//!   warm-up protected fills directly), and the victim is probation's oldest page, or
//!   protected's when probation is empty. One difference is forced by the frame interface: the
//!   cache frees one frame per miss, while libCacheSim's eviction loop keeps comparing window
//!   candidates until one loses and may free several objects at once; here the next candidate
//!   is compared at the next miss. libCacheSim's window also starts as the whole cache and
//!   shrinks at the first eviction; here too (the window holds every page until the cache is
//!   full, then the excess moves to main at the first eviction). A window of less than one
//!   page (libCacheSim: fewer than 100 frames, where it caches nothing) is one page here.
//!
//! # Concurrency
//! `on_hit` records the frame in a hit buffers (`hitbuf.rs`) stripe: relaxed loads and stores, **no lock
//! and no locked instruction**; once per 32 hits of a thread it tries the lock to drain (and
//! drops the hit if the lock is busy). Everything else takes the mutex and first applies the
//! buffered hits in order, so a single-threaded replay is exact.
//!
//! A candidate the cache refuses (pinned) is treated as used (it moves to protected's newest
//! end), and then every other page is offered once, in eviction order (probation, protected,
//! window, oldest first): at most `len` candidates per call.
//!
//! Metadata per frame: 12 bytes of links and key fingerprint, 1 byte of list tag, the sketch
//! (8 bytes at 16 counters per page, plus 2 of doorkeeper), the hit buffers (amortised, about
//! 0.1 byte): about 23 bytes per page (Caffeine flavour); the libCacheSim flavour's counting
//! Bloom filter costs about 58 bytes per page on its own.
//!
//! When not to use it: workloads where recency is everything and frequency misleads (a working
//! set that shifts completely every few cache-fulls: the sketch keeps admitting yesterday's hot
//! pages until it ages), and caches of a few dozen pages (a 1% window is one page).
//!
//! size: two flavours of one policy share its lists, eviction and buffers (Caffeine's, and
//! libCacheSim's kept to reproduce its rows); splitting them would duplicate that core.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sync::{Mutex, MutexGuard};

use super::climber::Climber;
use super::ghost::fingerprint;
use super::hitbuf::HitBuffers;
use super::list::{Links, List, NIL};
use super::sketch::{CountMin4, CountingBloom};
use super::{Admission, EvictionPolicy, FrameId, PageKey};

const NONE: u8 = 0;
const WINDOW: u8 = 1;
const PROBATION: u8 = 2;
const PROTECTED: u8 = 3;

/// Caffeine's jitter: a rejected candidate this frequent is admitted once in 128 times.
const ADMIT_JITTER_FREQ: u32 = 6;

/// Tunables of [`WTinyLfu`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WTinyLfuParams {
    /// Initial share of the frames for the window (Caffeine and libCacheSim: 0.01).
    pub window_ratio: f64,
    /// Share of the main region for protected (0.80).
    pub protected_ratio: f64,
    /// Caffeine's design or libCacheSim's reproduction.
    pub flavor: Flavor,
    /// Adapt the window by hill climbing (Caffeine flavour only).
    pub adaptive: bool,
    /// 4-bit sketch counters per page (Caffeine: 16).
    pub counters_per_page: usize,
    /// Doorkeeper bits per page (0: no doorkeeper).
    pub doorkeeper_bits_per_page: usize,
}

/// Which W-TinyLFU. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Flavor {
    /// Caffeine's (every access counts, count-min sketch, LRU window, SLRU main).
    Caffeine,
    /// libCacheSim 0.3.5's `WTinyLFU`.
    LibCacheSim,
}

impl Default for WTinyLfuParams {
    fn default() -> Self {
        WTinyLfuParams {
            window_ratio: 0.01,
            protected_ratio: 0.80,
            flavor: Flavor::Caffeine,
            adaptive: false,
            counters_per_page: 16,
            doorkeeper_bits_per_page: 16,
        }
    }
}

/// W-TinyLFU. See the [module docs](self).
#[derive(Debug)]
pub struct WTinyLfu {
    name: &'static str,
    capacity: usize,
    hits: HitBuffers,
    /// `Inner::window_max`, copied after each eviction or insertion (the climber moves it) for
    /// [`eviction_window`](EvictionPolicy::eviction_window), read without the lock.
    window_mirror: AtomicUsize,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
enum Freq {
    Cms(CountMin4),
    Cbf {
        cbf: CountingBloom,
        /// Main hits since the last decay.
        main_hits: usize,
        /// Decay after this many main hits (32 x main).
        period: usize,
    },
}

#[derive(Debug)]
struct Inner {
    /// Links and each frame's key fingerprint.
    links: Links<u32>,
    /// Indexed by list tag; `lists[NONE]` is unused.
    lists: [List; 4],
    tag: Box<[u8]>,
    freq: Freq,
    flavor: Flavor,
    window_max: usize,
    protected_max: usize,
    /// libCacheSim flavour: the main region's and probation's size.
    main_max: usize,
    probation_max: usize,
    climber: Option<Climber>,
    rng: u64,
    /// libCacheSim flavour: each frame's page key (its filter hashes the whole key).
    keys: Box<[PageKey]>,
    /// libCacheSim flavour: pages its SLRU evicted during a hit (see `lcs_promote`), still in
    /// their frames; the next victims.
    pending: Vec<FrameId>,
}

impl WTinyLfu {
    /// Caffeine's W-TinyLFU with a fixed 1% window.
    pub fn caffeine(capacity: usize) -> WTinyLfu {
        WTinyLfu::with_params(capacity, WTinyLfuParams::default(), "wtinylfu")
    }

    /// Caffeine's adaptive W-TinyLFU: the window moves by hill climbing.
    pub fn adaptive(capacity: usize) -> WTinyLfu {
        let params = WTinyLfuParams {
            adaptive: true,
            ..WTinyLfuParams::default()
        };
        WTinyLfu::with_params(capacity, params, "wtinylfu-adaptive")
    }

    /// libCacheSim 0.3.5's `WTinyLFU` (window 1%, SLRU 1:4 main, counting Bloom filter).
    pub fn libcachesim(capacity: usize) -> WTinyLfu {
        let params = WTinyLfuParams {
            flavor: Flavor::LibCacheSim,
            ..WTinyLfuParams::default()
        };
        WTinyLfu::with_params(capacity, params, "wtinylfu-lcs")
    }

    /// W-TinyLFU with explicit parameters, reported under `name`.
    pub fn with_params(capacity: usize, params: WTinyLfuParams, name: &'static str) -> WTinyLfu {
        assert!(
            capacity < NIL as usize,
            "W-TinyLFU manages fewer than 2^32 - 1 frames"
        );
        let window_max = match params.flavor {
            // Caffeine: main = (int)(capacity * (1 - window)), the window the rest.
            Flavor::Caffeine => capacity - (capacity as f64 * (1.0 - params.window_ratio)) as usize,
            // libCacheSim: the window is (int64)(capacity * window).
            Flavor::LibCacheSim => (capacity as f64 * params.window_ratio) as usize,
        }
        .clamp(1, capacity.max(1));
        let main_max = capacity.saturating_sub(window_max);
        let (freq, protected_max, probation_max) = match params.flavor {
            Flavor::Caffeine => (
                Freq::Cms(CountMin4::new(
                    capacity,
                    params.counters_per_page,
                    10,
                    params.doorkeeper_bits_per_page,
                )),
                (main_max as f64 * params.protected_ratio) as usize,
                0,
            ),
            Flavor::LibCacheSim => (
                Freq::Cbf {
                    cbf: CountingBloom::new(main_max.max(1)),
                    main_hits: 0,
                    period: 32 * main_max.max(1),
                },
                // SLRU's "seg-size=1:4": each segment (double)share * size, truncated.
                (4.0 / 5.0 * main_max as f64) as usize,
                (1.0 / 5.0 * main_max as f64) as usize,
            ),
        };
        let climber =
            (params.adaptive && params.flavor == Flavor::Caffeine).then(|| Climber::new(capacity));
        WTinyLfu {
            name,
            capacity,
            hits: HitBuffers::new(capacity),
            window_mirror: AtomicUsize::new(window_max),
            inner: Mutex::new(Inner {
                links: Links::new(capacity),
                lists: [List::new(); 4],
                tag: vec![NONE; capacity].into_boxed_slice(),
                freq,
                flavor: params.flavor,
                window_max,
                protected_max,
                main_max,
                probation_max,
                climber,
                rng: 0x2545_f491_4f6c_dd1d ^ capacity as u64,
                keys: match params.flavor {
                    Flavor::LibCacheSim => vec![0; capacity].into_boxed_slice(),
                    Flavor::Caffeine => Box::new([]),
                },
                pending: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock();
        self.drain(&mut inner);
        inner
    }

    fn drain(&self, inner: &mut Inner) {
        self.hits.drain(|f| inner.hit(f));
    }

    /// Copies the window's target for `eviction_window` (under the lock).
    fn mirror_window(&self, inner: &Inner) {
        self.window_mirror
            .store(inner.window_max, Ordering::Relaxed);
    }

    /// The window's current share of the frames (for tests and reports).
    pub fn window_pages(&self) -> usize {
        self.inner.lock().window_max
    }
}

impl Inner {
    fn len(&self) -> usize {
        self.lists[WINDOW as usize].len
            + self.lists[PROBATION as usize].len
            + self.lists[PROTECTED as usize].len
            + self.pending.len()
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.tag.get(frame as usize).is_some_and(|&t| t != NONE) || self.pending.contains(&frame)
    }

    fn unlink(&mut self, frame: FrameId) {
        let t = self.tag[frame as usize];
        if t == NONE {
            if let Some(i) = self.pending.iter().position(|&p| p == frame) {
                self.pending.remove(i);
            }
        } else {
            let Inner { links, lists, .. } = self;
            links.unlink(&mut lists[t as usize], frame);
            self.tag[frame as usize] = NONE;
        }
    }

    /// Puts `frame` (in no list) at the newest end of list `to`.
    fn push_newest(&mut self, frame: FrameId, to: u8) {
        let Inner { links, lists, .. } = self;
        links.push_head(&mut lists[to as usize], frame);
        self.tag[frame as usize] = to;
    }

    /// Puts `frame` (in no list) at the oldest end of list `to`.
    fn push_oldest(&mut self, frame: FrameId, to: u8) {
        let Inner { links, lists, .. } = self;
        links.push_tail(&mut lists[to as usize], frame);
        self.tag[frame as usize] = to;
    }

    fn move_to(&mut self, frame: FrameId, to: u8) {
        self.unlink(frame);
        self.push_newest(frame, to);
    }

    fn oldest(&self, list: u8) -> Option<FrameId> {
        let t = self.lists[list as usize].tail;
        (t != NIL).then_some(t)
    }

    /// Counts one occurrence of the page in `frame`.
    fn record(&mut self, frame: FrameId) {
        match &mut self.freq {
            Freq::Cms(s) => s.increment(self.links.data(frame)),
            Freq::Cbf { cbf, .. } => cbf.add(CountingBloom::hashes(self.keys[frame as usize])),
        }
    }

    /// The estimated frequency of the page in `frame`.
    fn frequency(&self, frame: FrameId) -> u32 {
        match &self.freq {
            Freq::Cms(s) => s.frequency(self.links.data(frame)),
            Freq::Cbf { cbf, .. } => cbf.estimate(CountingBloom::hashes(self.keys[frame as usize])),
        }
    }

    /// libCacheSim's SLRU insertion: the lowest segment with room, probation if none has (its
    /// segments' shares, truncated, may add up to one less than the main region).
    fn lcs_main_insert(&mut self, frame: FrameId) {
        let to = if self.lists[PROBATION as usize].len < self.probation_max
            || self.lists[PROTECTED as usize].len >= self.protected_max
        {
            PROBATION
        } else {
            PROTECTED
        };
        self.unlink(frame);
        self.push_newest(frame, to);
    }

    /// libCacheSim's SLRU hit in probation: to protected; protected's overflow cools to
    /// probation's newest end; and if probation is then over its share (it can be by one, see
    /// `lcs_main_insert`), SLRU *evicts* probation's oldest page, during the hit. A frame cannot
    /// be freed here, so the page leaves the policy and waits in `pending` for the next
    /// `choose`, which returns it before anything else: libCacheSim's next miss finds a free
    /// slot and evicts nothing, so the state is the same. Only a hit on a pending page before
    /// that differs (libCacheSim: a miss that re-inserts it; here: a hit that re-inserts it).
    fn lcs_promote(&mut self, frame: FrameId) {
        self.move_to(frame, PROTECTED);
        while self.lists[PROTECTED as usize].len > self.protected_max {
            let Some(d) = self.oldest(PROTECTED) else {
                break;
            };
            self.move_to(d, PROBATION);
        }
        while self.lists[PROBATION as usize].len > self.probation_max {
            let Some(v) = self.oldest(PROBATION) else {
                break;
            };
            self.unlink(v);
            self.pending.push(v);
        }
    }

    /// A hit on `frame` (from the buffers, in order).
    fn hit(&mut self, frame: FrameId) {
        let Some(&t) = self.tag.get(frame as usize) else {
            return;
        };
        if t == NONE {
            if let Some(i) = self.pending.iter().position(|&p| p == frame) {
                // libCacheSim evicted it; its access is a miss there that re-inserts it
                // into the window without an eviction (a slot is free).
                self.pending.swap_remove(i);
                let key = self.keys[frame as usize];
                self.insert(frame, key, Admission::Demand);
            }
            return;
        }
        let full = self.len() >= self.tag.len();
        match self.flavor {
            Flavor::Caffeine => {
                self.record(frame);
                match t {
                    WINDOW => self.move_to(frame, WINDOW),
                    PROBATION => {
                        self.move_to(frame, PROTECTED);
                        self.demote_protected();
                    }
                    _ => self.move_to(frame, PROTECTED),
                }
                if let Some(c) = &mut self.climber {
                    c.on_access(true, full);
                }
                self.climb();
            }
            Flavor::LibCacheSim => match t {
                WINDOW => self.move_to(frame, WINDOW),
                _ => {
                    if t == PROBATION {
                        self.lcs_promote(frame);
                    } else {
                        self.move_to(frame, PROTECTED);
                    }
                    self.record(frame);
                    if let Freq::Cbf {
                        cbf,
                        main_hits,
                        period,
                    } = &mut self.freq
                    {
                        *main_hits += 1;
                        if *main_hits >= *period {
                            *main_hits = 0;
                            cbf.decay();
                        }
                    }
                }
            },
        }
    }

    /// Protected over its share: its oldest pages go to probation's newest end.
    fn demote_protected(&mut self) {
        while self.lists[PROTECTED as usize].len > self.protected_max {
            let Some(d) = self.oldest(PROTECTED) else {
                break;
            };
            self.move_to(d, PROBATION);
        }
    }

    fn insert(&mut self, frame: FrameId, page: PageKey, admission: Admission) {
        if frame as usize >= self.tag.len() {
            return;
        }
        self.unlink(frame);
        let full = self.len() + 1 >= self.tag.len();
        self.links.set_data(frame, fingerprint(page));
        if let Some(k) = self.keys.get_mut(frame as usize) {
            *k = page;
        }
        self.push_newest(frame, WINDOW);
        if self.flavor == Flavor::Caffeine {
            // Window overflow while the cache fills: to probation, without a contest (a full
            // cache ran the contest in `choose` before this insertion).
            while self.lists[WINDOW as usize].len > self.window_max {
                let Some(w) = self.oldest(WINDOW) else {
                    break;
                };
                self.move_to(w, PROBATION);
            }
        }
        // Speculative pages (readahead) are not counted: unproven, they compete with a
        // frequency of zero (or what earlier demand accesses left).
        if admission == Admission::Demand {
            self.record(frame);
            if let Some(c) = &mut self.climber {
                c.on_access(false, full);
            }
            self.climb();
        }
    }

    /// Caffeine's admission test: is `candidate` worth more than `victim`?
    fn admit(&mut self, candidate: FrameId, victim: FrameId) -> bool {
        let c = self.frequency(candidate);
        let v = self.frequency(victim);
        if c > v {
            return true;
        }
        if self.flavor == Flavor::Caffeine && c >= ADMIT_JITTER_FREQ {
            // xorshift64: deterministic, so replays are reproducible.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            return self.rng & 127 == 0;
        }
        false
    }

    /// Main region's victim: probation's oldest, else protected's, else the window's.
    fn main_victim(&self) -> Option<FrameId> {
        self.oldest(PROBATION)
            .or_else(|| self.oldest(PROTECTED))
            .or_else(|| self.oldest(WINDOW))
    }

    fn choose(&mut self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        // libCacheSim's warm-up moves are not evictions: at most one per page.
        for _ in 0..=self.tag.len() {
            let window = self.lists[WINDOW as usize].len;
            let (victim, winner) = match self.flavor {
                Flavor::Caffeine if window >= self.window_max && window > 0 => {
                    let cand = self.oldest(WINDOW).expect("non-empty window");
                    self.move_to(cand, PROBATION);
                    let victim = self.oldest(PROBATION).expect("candidate in probation");
                    if victim != cand && self.admit(cand, victim) {
                        (victim, None)
                    } else {
                        (cand, None)
                    }
                }
                Flavor::LibCacheSim if !self.pending.is_empty() => (self.pending.remove(0), None),
                Flavor::LibCacheSim if window > 0 => {
                    let cand = self.oldest(WINDOW).expect("non-empty window");
                    let main =
                        self.lists[PROBATION as usize].len + self.lists[PROTECTED as usize].len;
                    if main < self.main_max {
                        // Main has room: the candidate moves in (warm-up), and is counted.
                        self.lcs_main_insert(cand);
                        self.record(cand);
                        continue;
                    }
                    // A main region of no page (one frame in all) has no victim.
                    let victim = self
                        .oldest(PROBATION)
                        .or_else(|| self.oldest(PROTECTED))
                        .unwrap_or(cand);
                    let pick = if victim != cand && self.admit(cand, victim) {
                        (victim, Some(cand))
                    } else {
                        (cand, None)
                    };
                    self.record(cand);
                    pick
                }
                _ => (self.main_victim()?, None),
            };
            if claim(victim) {
                self.unlink(victim);
                if let Some(w) = winner {
                    // libCacheSim: the candidate takes the victim's place in main.
                    self.lcs_main_insert(w);
                }
                return Some(victim);
            }
            // Pinned: in use, so treat it as just used, and offer every other page once.
            if self.tag[victim as usize] == NONE {
                // A pending page (libCacheSim flavour): resident after all.
                self.push_newest(victim, PROTECTED);
            } else {
                self.move_to(victim, PROTECTED);
            }
            self.demote_protected();
            return self.scan(claim, victim);
        }
        None
    }

    /// Offers every page but `refused` once, in eviction order (probation, protected, window;
    /// oldest first); the first one claimed is the victim. The slow path after a refusal.
    fn scan(
        &mut self,
        claim: &mut dyn FnMut(FrameId) -> bool,
        refused: FrameId,
    ) -> Option<FrameId> {
        let mut order = Vec::with_capacity(self.len());
        order.extend(self.pending.iter().copied());
        for list in [PROBATION, PROTECTED, WINDOW] {
            let mut f = self.lists[list as usize].tail;
            while f != NIL {
                order.push(f);
                f = self.links.newer(f);
            }
        }
        let victim = order
            .into_iter()
            .filter(|&f| f != refused)
            .find(|&f| claim(f))?;
        self.unlink(victim);
        Some(victim)
    }

    /// Runs the hill climber's decision, if one is due, and moves the boundary.
    fn climb(&mut self) {
        let Some(c) = &mut self.climber else {
            return;
        };
        let Some(step) = c.adapt() else {
            return;
        };
        let capacity = self.tag.len();
        if step > 0 {
            // Grow the window: probation's oldest pages (then protected's) move into it.
            let steps = (step as usize).min(self.protected_max);
            for _ in 0..steps {
                self.window_max += 1;
                self.protected_max -= 1;
                self.demote_protected();
                let Some(p) = self.oldest(PROBATION).or_else(|| self.oldest(PROTECTED)) else {
                    break;
                };
                self.move_to(p, WINDOW);
            }
        } else {
            let steps = ((-step) as usize).min(self.window_max.saturating_sub(1));
            for _ in 0..steps {
                self.window_max -= 1;
                self.protected_max += 1;
                let Some(w) = self.oldest(WINDOW) else {
                    break;
                };
                self.unlink(w);
                self.push_oldest(w, PROBATION);
            }
        }
        debug_assert!(self.window_max + self.protected_max <= capacity);
    }
}

impl EvictionPolicy for WTinyLfu {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn len(&self) -> usize {
        self.inner.lock().len()
    }

    fn contains(&self, frame: FrameId) -> bool {
        self.inner.lock().contains(frame)
    }

    #[inline]
    fn on_hit(&self, frame: FrameId) {
        self.hits.record_or(frame, || {
            if let Some(mut inner) = self.inner.try_lock() {
                self.drain(&mut inner);
            }
        });
    }

    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission) {
        let mut inner = self.lock();
        inner.insert(frame, page, admission);
        self.mirror_window(&inner);
    }

    fn on_remove(&self, frame: FrameId) {
        let mut inner = self.lock();
        if (frame as usize) < inner.tag.len() {
            inner.unlink(frame);
        }
    }

    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId> {
        let mut inner = self.lock();
        let victim = inner.choose(claim);
        self.mirror_window(&inner);
        victim
    }

    /// A new page enters the window and, unless hit, leaves it once more than the window's
    /// target are there, to lose the admission test against main's victim (a stream's pages do).
    fn eviction_window(&self) -> usize {
        self.window_mirror.load(Ordering::Relaxed)
    }

    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let mut inner = self.lock();
        let victim = inner.choose(claim);
        if let Some(victim) = victim {
            inner.insert(victim, page, admission);
        }
        self.mirror_window(&inner);
        victim
    }

    fn metadata_bytes_per_page(&self) -> usize {
        let inner = self.inner.lock();
        let sketch = match &inner.freq {
            Freq::Cms(s) => s.bytes(),
            Freq::Cbf { cbf, .. } => cbf.bytes(),
        };
        let bytes = std::mem::size_of_val(&*inner.tag)
            + std::mem::size_of_val(&*inner.keys)
            + <Links<u32>>::BYTES_PER_FRAME * self.capacity
            + sketch
            + self.hits.bytes();
        bytes.div_ceil(self.capacity.max(1))
    }
}
