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
//! multiple of the resident count) and then returns `None`.
//!
//! # Concurrency
//! Every method takes `&self`; each policy synchronises itself. `on_hit` runs on the hit path of
//! every thread at once, so the policies meant for the live cache make it a relaxed atomic store
//! or increment (CLOCK, SIEVE, S3-FIFO); list-ordered policies (LRU, ARC) take a lock there and
//! say so in their docs. `on_insert`, `on_remove` and `choose_victim` may run concurrently with
//! each other and with `on_hit`; a policy serialises them internally. The `claim` callback never
//! calls back into the policy, so holding the policy's lock across it cannot deadlock.

pub mod clock;

pub use clock::Clock;

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

    /// Upper bound on the policy's metadata per frame of capacity, in bytes (including ghost
    /// entries, amortised), for the memory overhead figure.
    fn metadata_bytes_per_page(&self) -> usize;
}

/// The policies Folio ships, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PolicyKind {
    /// CLOCK with a one-bit reference flag ([`Clock`]).
    #[default]
    Clock,
}

impl PolicyKind {
    /// Every shipped policy, in display order.
    pub const ALL: &'static [PolicyKind] = &[PolicyKind::Clock];

    /// Builds the policy for `capacity` frames.
    pub fn build(self, capacity: usize) -> Box<dyn EvictionPolicy> {
        match self {
            PolicyKind::Clock => Box::new(Clock::new(capacity)),
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Clock => "clock",
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
                let names: Vec<_> = PolicyKind::ALL.iter().map(|k| k.name()).collect();
                crate::Error::InvalidConfig(format!(
                    "unknown policy {s:?}; known: default, {}",
                    names.join(", ")
                ))
            })
    }
}
