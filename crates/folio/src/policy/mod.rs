//! Eviction policies: which resident page gives up its frame when the budget is reached.
//!
//! One trait, [`EvictionPolicy`], one file per implementation. The same objects serve the live
//! cache and the trace simulator (`folio sim`): there is no second implementation.
//!
//! # The contract
//! A policy manages the frame ids `0 .. capacity`. The cache tells it when a page enters a frame
//! ([`on_insert`](EvictionPolicy::on_insert)), when a resident page is hit
//! ([`on_hit`](EvictionPolicy::on_hit)), and when a page leaves its frame other than by eviction
//! ([`on_remove`](EvictionPolicy::on_remove): discard, truncate, a failed load). When the cache
//! needs a frame it calls [`choose_victim`](EvictionPolicy::choose_victim) with a `claim`
//! callback: the policy offers candidates in its preferred order, and the first one the cache
//! manages to claim (it is not pinned, locked or under write-back) is the victim; the policy
//! forgets it (a ghost entry may remember its page key) and returns it. A candidate the cache
//! refuses stays resident; the policy treats it as recently used or passes over it, but must not
//! offer candidates forever: every call examines a bounded number of candidates (at most a small
//! multiple of the resident count) and then returns `None`. A caller that already knows the page
//! to put in the victim's frame may make both calls at once with
//! [`evict_and_insert`](EvictionPolicy::evict_and_insert) (the simulator does; S3-FIFO, ARC and
//! 2Q then take their lock once).
//!
//! # Concurrency
//! Every method takes `&self`; each policy synchronises itself. `on_hit` runs on the hit path of
//! every thread at once, so the policies meant for the live cache make it a relaxed atomic store
//! or increment (CLOCK, SIEVE, S3-FIFO); list-ordered policies (LRU, ARC) take a lock there and
//! say so in their docs. `on_insert`, `on_remove` and `choose_victim` may run concurrently with
//! each other and with `on_hit`; a policy serialises them internally. The `claim` callback never
//! calls back into the policy, so holding the policy's lock across it cannot deadlock.

pub mod arc;
mod climber;
pub mod clock;
pub mod fifo;
mod ghost;
pub mod hash;
mod hitbuf;
pub mod lirs;
mod list;
pub mod lru;
mod queues;
pub mod s3fifo;
pub mod sieve;
mod sketch;
pub mod twoq;
pub mod wtinylfu;

pub use arc::Arc;
pub use clock::Clock;
pub use fifo::Fifo;
pub use lirs::Lirs;
pub use lru::Lru;
pub use s3fifo::{MainAdmission, S3Fifo, S3FifoParams};
pub use sieve::Sieve;
pub use twoq::TwoQ;
pub use wtinylfu::{WTinyLfu, WTinyLfuParams};

/// Hints the CPU to bring the cache line holding `x` closer (a no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint; it never faults and `x` is a valid reference anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(x as *const T as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// Index of a frame in the cache's frame pool: `0 .. capacity`.
pub type FrameId = u32;

/// Identity of a page: its page index in the backend.
pub type PageKey = u64;

/// Why a page enters the cache, so a policy can keep speculative pages from pushing out the hot
/// set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// A caller asked for the page (a miss).
    Demand,
    /// Readahead or a `WillNeed` hint loaded it before anyone asked.
    Speculative,
}

/// A page-replacement policy over a fixed set of frames. See the [module docs](self).
pub trait EvictionPolicy: Send + Sync + std::fmt::Debug {
    /// Short name, as accepted by [`PolicyKind`]'s `FromStr`.
    fn name(&self) -> &'static str;

    /// Number of frames managed (frame ids are `0 .. capacity`).
    fn capacity(&self) -> usize;

    /// Number of resident pages the policy knows.
    fn len(&self) -> usize;

    /// True if no page is resident.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if `frame` holds a page the policy knows (for invariant checks).
    fn contains(&self, frame: FrameId) -> bool;

    /// A hit on the resident page in `frame`. Must be cheap; runs concurrently with everything.
    /// It may arrive for a frame the policy no longer knows (a hit racing with a removal):
    /// such a call must be ignored.
    fn on_hit(&self, frame: FrameId);

    /// Page `page` has entered the (previously free) `frame`.
    fn on_insert(&self, frame: FrameId, page: PageKey, admission: Admission);

    /// The page in `frame` has left it other than through [`choose_victim`](Self::choose_victim).
    /// No-op if the policy does not know `frame`.
    fn on_remove(&self, frame: FrameId);

    /// Picks a victim: offers candidates to `claim` in policy order and returns the first one
    /// claimed, which the policy has then forgotten. `None` if no candidate was claimed within the
    /// policy's bound (for example, every frame is pinned).
    fn choose_victim(&self, claim: &mut dyn FnMut(FrameId) -> bool) -> Option<FrameId>;

    /// [`choose_victim`](Self::choose_victim) and, if a victim was claimed,
    /// [`on_insert`](Self::on_insert) of `page` into it: exactly those two calls' effects, but a
    /// policy may do both under one acquisition of its lock. For callers that have the page's
    /// identity and need no work in between (the trace simulator, where the two lock round trips
    /// were a measurable share of a miss); the live cache loads the page between the two.
    fn evict_and_insert(
        &self,
        page: PageKey,
        admission: Admission,
        claim: &mut dyn FnMut(FrameId) -> bool,
    ) -> Option<FrameId> {
        let victim = self.choose_victim(claim)?;
        self.on_insert(victim, page, admission);
        Some(victim)
    }

    /// The policy's eviction window: roughly how many pages come in between a page's insertion
    /// and its eviction when nothing hits it (while no frame is free); an estimate, not a bound
    /// (under LRU with a hot set a new page goes at the next miss; W-TinyLFU's climber can move
    /// window pages to probation's victim end). While eviction meets dirty victims the cache's
    /// background write-back starts early enough for a page dirtied once to be written before
    /// it gets that far (see `writeback.rs`), so that the thread needing a frame does not write
    /// the victim itself; a window of one or two pages is too short for that. Read at
    /// clean-to-dirty transitions: an atomic load at most, never a lock. The default, the
    /// capacity, is right for policies that evict a page only after every page inserted before
    /// it (FIFO, CLOCK, LRU, SIEVE under a stream of new pages); S3-FIFO returns its small
    /// queue's target, 2Q its `Kin`, W-TinyLFU its window, LIRS its resident-HIR limit.
    fn eviction_window(&self) -> usize {
        self.capacity()
    }

    /// Upper bound on the policy's metadata per frame of capacity, in bytes (including ghost
    /// entries, amortised), for the memory overhead figure.
    fn metadata_bytes_per_page(&self) -> usize;
}

/// The policies Folio ships, by name.
///
/// # The default
/// [`PolicyKind::S3FifoAdaptive`]: S3-FIFO (promotion threshold 2, ghost 90%) whose setting is
/// chosen online among six: a small queue of 2, 5, 10 or 25% of the frames, or of 2 or 5% with a
/// TinyLFU frequency test in front of main. Six shadow S3-FIFOs, one per setting, replay a
/// spatial sample of the keys (SHARDS) and the live S3-FIFO takes the setting of the shadow with
/// the fewest recent misses ([`S3Fifo::adaptive`]). Why (the measurements and their limits are
/// in [`s3fifo`] and `docs/eviction.md`):
/// * over five real traces of four workload classes at five sizes each it is within 0.01 of the
///   best libCacheSim row in all 25 cells (the fixed 5% share, the default before it: 20; the
///   four shares without frequency admission: 24) and has the lowest mean miss ratio of every
///   design measured (0.4351; the fixed 5% share 0.4434, libCacheSim's best classic policy
///   there, S3-FIFO at 10%, 0.4448);
/// * it is scan-resistant: new pages enter the small queue; a scan of never-seen pages passes
///   through it and the ghost without touching the main queue (`tests/scan_resistance.rs`);
/// * its hits are a relaxed atomic byte increment with no lock (a page in the sample also
///   appends its frame to a striped hit buffer, no locked instruction; the sample is 1% of the
///   keys at 16,000 frames and above, more below: 160 frames' worth per shadow, every key at
///   160 frames or fewer), and its eviction is FIFO
///   work (the frequency sketch learns of hits when eviction spends a frame's hit counter); 25
///   bytes of metadata per page at scale (the sketch: 2, the shadows: 2.2), a fixed 38 KiB or so
///   for the shadows below 16,000 frames.
///
/// The fixed shares are here as [`PolicyKind::S3Fifo5`] (the previous default), `S3Fifo` and
/// `S3Fifo25`. W-TinyLFU ([`WTinyLfu`], Caffeine's adaptive design included) and LIRS
/// ([`Lirs`]) are here too, with hits through lock-free buffers; on these traces neither beats
/// the default on the mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PolicyKind {
    /// Least recently used ([`Lru`]); locks on every hit.
    Lru,
    /// First in, first out ([`Fifo`]).
    Fifo,
    /// CLOCK with a one-bit reference flag ([`Clock`]).
    Clock,
    /// CLOCK with a two-bit counter ([`Clock::with_bits`]).
    Clock2,
    /// SIEVE ([`Sieve`]).
    Sieve,
    /// S3-FIFO with libCacheSim's parameters: small 10%, ghost 90%, threshold 2 ([`S3Fifo::new`]).
    S3Fifo,
    /// S3-FIFO with a 25% small queue ([`S3Fifo::small25`]): the default before issue 16.
    S3Fifo25,
    /// S3-FIFO with a 5% small queue ([`S3Fifo::folio_default`]): the default before the adaptive
    /// one.
    S3Fifo5,
    /// ARC ([`Arc`]); locks on every hit.
    Arc,
    /// 2Q ([`TwoQ`]); locks on hits to its LRU queue.
    TwoQ,
    /// S3-FIFO with a 5% small queue and TinyLFU frequency admission to main
    /// ([`S3Fifo::frequency`]): one of the adaptive default's candidates, fixed.
    S3FifoFreq,
    /// S3-FIFO whose small queue's share and admission to main are chosen online by shadow
    /// simulations on a sample of the keys ([`S3Fifo::adaptive`]): Folio's default.
    #[default]
    S3FifoAdaptive,
    /// Caffeine's W-TinyLFU, fixed 1% window ([`WTinyLfu::caffeine`]).
    WTinyLfu,
    /// Caffeine's adaptive W-TinyLFU ([`WTinyLfu::adaptive`]).
    WTinyLfuAdaptive,
    /// libCacheSim's W-TinyLFU ([`WTinyLfu::libcachesim`]).
    WTinyLfuLcs,
    /// LIRS ([`Lirs`]).
    Lirs,
}

impl PolicyKind {
    /// Every shipped policy, in display order.
    pub const ALL: &'static [PolicyKind] = &[
        PolicyKind::Lru,
        PolicyKind::Fifo,
        PolicyKind::Clock,
        PolicyKind::Clock2,
        PolicyKind::Sieve,
        PolicyKind::S3Fifo,
        PolicyKind::S3Fifo25,
        PolicyKind::S3Fifo5,
        PolicyKind::S3FifoFreq,
        PolicyKind::S3FifoAdaptive,
        PolicyKind::Arc,
        PolicyKind::TwoQ,
        PolicyKind::WTinyLfu,
        PolicyKind::WTinyLfuAdaptive,
        PolicyKind::WTinyLfuLcs,
        PolicyKind::Lirs,
    ];

    /// Builds the policy for `capacity` frames.
    pub fn build(self, capacity: usize) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::Lru => Box::new(Lru::new(capacity)),
            PolicyKind::Fifo => Box::new(Fifo::new(capacity)),
            PolicyKind::Clock => Box::new(Clock::new(capacity)),
            PolicyKind::Clock2 => Box::new(Clock::with_bits(capacity, 2)),
            PolicyKind::Sieve => Box::new(Sieve::new(capacity)),
            PolicyKind::S3Fifo => Box::new(S3Fifo::new(capacity)),
            PolicyKind::S3Fifo25 => Box::new(S3Fifo::small25(capacity)),
            PolicyKind::S3Fifo5 => Box::new(S3Fifo::folio_default(capacity)),
            PolicyKind::S3FifoFreq => Box::new(S3Fifo::frequency(capacity)),
            PolicyKind::S3FifoAdaptive => Box::new(S3Fifo::adaptive(capacity)),
            PolicyKind::Arc => Box::new(Arc::new(capacity)),
            PolicyKind::TwoQ => Box::new(TwoQ::new(capacity)),
            PolicyKind::WTinyLfu => Box::new(WTinyLfu::caffeine(capacity)),
            PolicyKind::WTinyLfuAdaptive => Box::new(WTinyLfu::adaptive(capacity)),
            PolicyKind::WTinyLfuLcs => Box::new(WTinyLfu::libcachesim(capacity)),
            PolicyKind::Lirs => Box::new(Lirs::new(capacity)),
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Lru => "lru",
            PolicyKind::Fifo => "fifo",
            PolicyKind::Clock => "clock",
            PolicyKind::Clock2 => "clock2",
            PolicyKind::Sieve => "sieve",
            PolicyKind::S3Fifo => "s3fifo",
            PolicyKind::S3Fifo25 => "s3fifo25",
            PolicyKind::S3Fifo5 => "s3fifo5",
            PolicyKind::S3FifoFreq => "s3fifo-freq",
            PolicyKind::S3FifoAdaptive => "s3fifo-adaptive",
            PolicyKind::Arc => "arc",
            PolicyKind::TwoQ => "twoq",
            PolicyKind::WTinyLfu => "wtinylfu",
            PolicyKind::WTinyLfuAdaptive => "wtinylfu-adaptive",
            PolicyKind::WTinyLfuLcs => "wtinylfu-lcs",
            PolicyKind::Lirs => "lirs",
        }
    }
}

impl std::fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PolicyKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if lower == "default" {
            return Ok(PolicyKind::default());
        }
        PolicyKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == lower)
            .ok_or_else(|| {
                crate::error::ConfigError::UnknownPolicy {
                    name: s.to_string(),
                    known: PolicyKind::ALL.iter().map(|k| k.name()).collect(),
                }
                .into()
            })
    }
}
