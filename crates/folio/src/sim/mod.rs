//! Trace-driven simulation of the eviction policies (`folio sim`).
//!
//! The simulator drives the very policy objects the live cache uses ([`crate::policy`]) through
//! the same [`EvictionPolicy`] calls: a page→frame map, free frames handed out in order
//! `0, 1, 2, …`, and, once every frame is taken, a miss calls
//! [`choose_victim`](EvictionPolicy::choose_victim) with a claim that always accepts, then
//! [`on_insert`](EvictionPolicy::on_insert) into the freed frame. A hit calls
//! [`on_hit`](EvictionPolicy::on_hit). Miss ratio = misses / accesses.

mod compression;
pub mod trace;

use std::time::{Duration, Instant};

use crate::policy::hash::KeyMap;
use crate::policy::{Admission, EvictionPolicy, FrameId, PageKey, PolicyKind};

pub use trace::{parse_pages, read_pages, read_trace, Compression, TraceError, TraceFormat};

/// A cache size: absolute pages or a percentage of the trace's distinct pages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CacheSize {
    /// This many pages.
    Pages(usize),
    /// This percentage of the distinct pages of the trace (rounded down, at least 1).
    Percent(f64),
}

impl CacheSize {
    /// The size in pages for a trace with `distinct` distinct pages.
    pub fn resolve(self, distinct: usize) -> usize {
        match self {
            CacheSize::Pages(n) => n,
            CacheSize::Percent(p) => ((distinct as f64 * p / 100.0).floor() as usize).max(1),
        }
    }
}

impl std::str::FromStr for CacheSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p.is_finite() => Ok(CacheSize::Percent(p)),
                _ => Err(format!("bad cache size {s:?}: want a positive percentage")),
            }
        } else {
            match s.parse::<usize>() {
                Ok(n) if n > 0 => Ok(CacheSize::Pages(n)),
                _ => Err(format!(
                    "bad cache size {s:?}: want pages (2692) or a percentage (1%)"
                )),
            }
        }
    }
}

impl std::fmt::Display for CacheSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheSize::Pages(n) => write!(f, "{n}"),
            CacheSize::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Number of distinct pages in a trace.
pub fn distinct_pages(trace: &[PageKey]) -> usize {
    let mut seen: KeyMap<()> =
        KeyMap::with_capacity_and_hasher(trace.len() / 4, Default::default());
    for &p in trace {
        seen.insert(p, ());
    }
    seen.len()
}

/// Outcome of one replay.
#[derive(Clone, Debug, PartialEq)]
pub struct SimStats {
    /// Policy name.
    pub policy: &'static str,
    /// Cache size in pages.
    pub cache_pages: usize,
    /// Page accesses replayed.
    pub accesses: u64,
    /// Accesses that missed.
    pub misses: u64,
    /// Wall time of the replay.
    pub elapsed: Duration,
}

impl SimStats {
    /// misses / accesses (0 for an empty trace).
    pub fn miss_ratio(&self) -> f64 {
        if self.accesses == 0 {
            0.0
        } else {
            self.misses as f64 / self.accesses as f64
        }
    }

    /// Replay throughput.
    pub fn accesses_per_sec(&self) -> f64 {
        self.accesses as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A cache of page identities in front of one policy. See the [module docs](self).
///
/// Generic over the policy type (a caller holding a concrete policy gets static dispatch);
/// `Simulator<'_>` drives a `dyn EvictionPolicy`.
#[derive(Debug)]
pub struct Simulator<'p, P: EvictionPolicy + ?Sized = dyn EvictionPolicy> {
    policy: &'p P,
    /// hashbrown keeps a failed lookup (most accesses) on its 1-byte control array. A flat
    /// open-addressing table of 8-byte tag|frame slots with trace-ahead prefetch ran fewer
    /// instructions but lost up to 20% CPU time (SIEVE, S3-FIFO at 10%), and so did a variant
    /// with separate tag and frame arrays; measured and dropped.
    map: KeyMap<FrameId>,
    frame_page: Vec<PageKey>,
    capacity: usize,
    accesses: u64,
    misses: u64,
}

impl<'p, P: EvictionPolicy + ?Sized> Simulator<'p, P> {
    /// An empty cache with `policy.capacity()` frames.
    pub fn new(policy: &'p P) -> Simulator<'p, P> {
        let capacity = policy.capacity();
        Simulator {
            policy,
            map: KeyMap::with_capacity_and_hasher(capacity, Default::default()),
            frame_page: Vec::with_capacity(capacity),
            capacity,
            accesses: 0,
            misses: 0,
        }
    }

    /// One access; true on a hit.
    #[inline]
    pub fn access(&mut self, page: PageKey) -> bool {
        self.accesses += 1;
        if let Some(&frame) = self.map.get(&page) {
            self.policy.on_hit(frame);
            return true;
        }
        self.misses += 1;
        let frame = if self.frame_page.len() < self.capacity {
            self.frame_page.push(page);
            (self.frame_page.len() - 1) as FrameId
        } else {
            let Some(victim) = self
                .policy
                .evict_and_insert(page, Admission::Demand, &mut |_| true)
            else {
                return false; // no frame (capacity 0): the page bypasses the cache
            };
            let old = std::mem::replace(&mut self.frame_page[victim as usize], page);
            self.map.remove(&old);
            self.map.insert(page, victim);
            return false;
        };
        self.map.insert(page, frame);
        self.policy.on_insert(frame, page, Admission::Demand);
        false
    }

    /// Accesses so far.
    pub fn accesses(&self) -> u64 {
        self.accesses
    }

    /// Misses so far.
    pub fn misses(&self) -> u64 {
        self.misses
    }
}

/// Replays `trace` through `policy`, calling `progress(done)` every 65,536 accesses.
pub fn simulate_with_progress<P: EvictionPolicy + ?Sized>(
    policy: &P,
    trace: &[PageKey],
    progress: &mut dyn FnMut(usize),
) -> SimStats {
    let start = Instant::now();
    let mut sim = Simulator::new(policy);
    for (i, chunk) in trace.chunks(1 << 16).enumerate() {
        for &page in chunk {
            sim.access(page);
        }
        progress(i * (1 << 16) + chunk.len());
    }
    SimStats {
        policy: policy.name(),
        cache_pages: policy.capacity(),
        accesses: sim.accesses,
        misses: sim.misses,
        elapsed: start.elapsed(),
    }
}

/// Replays `trace` through `policy`.
pub fn simulate<P: EvictionPolicy + ?Sized>(policy: &P, trace: &[PageKey]) -> SimStats {
    simulate_with_progress(policy, trace, &mut |_| {})
}

/// Builds `kind` with `cache_pages` frames and replays `trace` through it.
pub fn simulate_kind(kind: PolicyKind, cache_pages: usize, trace: &[PageKey]) -> SimStats {
    let policy = kind.build(cache_pages);
    simulate(&*policy, trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_resolve() {
        let s: CacheSize = "5%".parse().unwrap();
        assert_eq!(s.resolve(269_210), 13_460);
        assert_eq!("1%".parse::<CacheSize>().unwrap().resolve(269_210), 2692);
        assert_eq!("2692".parse::<CacheSize>().unwrap(), CacheSize::Pages(2692));
        assert!("0".parse::<CacheSize>().is_err());
        assert!("x%".parse::<CacheSize>().is_err());
    }

    #[test]
    fn lru_by_hand() {
        // capacity 2: a b a c b -> m m h m(evict b) m
        let policy = PolicyKind::Lru.build(2);
        let st = simulate(&*policy, &[1, 2, 1, 3, 2]);
        assert_eq!((st.accesses, st.misses), (5, 4));
        let st = simulate_kind(PolicyKind::Lru, 2, &[1, 2, 1, 3, 1]);
        assert_eq!(st.misses, 3);
    }
}
