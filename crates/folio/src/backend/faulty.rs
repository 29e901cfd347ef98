//! [`FaultyBackend`]: a deterministic fault-injecting wrapper around any backend, with power-cut
//! simulation.
//!
//! It wraps another [`PageCacheBackend`] and, driven by a seeded PRNG (so a seed replays the
//! same faults for the same sequence of calls):
//! - fails reads, writes and syncs with given probabilities, or at given operation counts
//!   (the n-th read, write or sync, counting from 0);
//! - adds latency to every operation (a base plus a random jitter);
//! - tears multi-page writes: a failed write of several pages may land a prefix of them, then
//!   return an error;
//! - in *sticky* mode (like redb's wrapper) fails every operation after the first failure;
//! - simulates a power cut: with [crash tracking](FaultConfig::crash_tracking) it keeps the image
//!   made durable by the last completed sync and the log of page writes (and length changes)
//!   since, and [`crash`](FaultyBackend::crash) returns the durable image with a random subset of
//!   those unsynced page writes applied in a random order (at page granularity: a page write
//!   lands whole or not at all), then fails every later operation.
//!
//! Every injected failure is logged ([`FaultyBackend::injected`]) with the global operation
//! number at which it happened, so a test can check that each one reached some caller.
//!
//! The wrapper completes every I/O before returning (it waits for the inner backend's waiter)
//! and serialises operations on one lock, which makes the crash image exact.
//!
//! ```
//! use std::sync::Arc;
//! use folio::backend::faulty::{FaultConfig, FaultyBackend};
//! use folio::{CacheConfig, MemoryBackend, PageCache};
//!
//! let inner = Arc::new(MemoryBackend::from_bytes(vec![0; 8192]));
//! let faulty = Arc::new(FaultyBackend::new(inner, FaultConfig::new(7).crash_tracking(true))?);
//! let cache = PageCache::new(faulty.clone(), CacheConfig::with_budget_pages(4))?;
//! cache.write_all_at(b"synced", 0)?;
//! cache.sync()?;
//! cache.write_all_at(b"lost?", 4096)?;
//! cache.flush_range(0..u64::MAX)?;
//! let image = faulty.crash(0.0)?; // power cut: no unsynced write survives
//! assert_eq!(&image[..6], b"synced");
//! assert_eq!(&image[4096..4101], &[0; 5]);
//! drop(cache); // its flush now fails: the power is off (logged, no panic)
//! # Ok::<(), folio::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::{io_geometry, Frame, FrameMut, Geometry, IoWaiter, PageCacheBackend, Region};
use crate::error::{Error, IoOp, Result};

/// A small, fast, seedable PRNG (SplitMix64). Good enough for fault schedules and tests; not
/// cryptographic.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.next_f64() < p
    }
}

/// What to inject. Built with chained methods from [`FaultConfig::new`]; by default nothing
/// fails.
#[derive(Clone, Debug, Default)]
pub struct FaultConfig {
    seed: u64,
    read_fail: f64,
    write_fail: f64,
    sync_fail: f64,
    read_fail_at: Vec<u64>,
    write_fail_at: Vec<u64>,
    sync_fail_at: Vec<u64>,
    torn: f64,
    latency: Duration,
    jitter: Duration,
    sticky: bool,
    crash_tracking: bool,
}

impl FaultConfig {
    /// No faults, PRNG seeded with `seed`.
    pub fn new(seed: u64) -> FaultConfig {
        FaultConfig {
            seed,
            ..FaultConfig::default()
        }
    }

    /// Fail each read with probability `p`.
    pub fn fail_reads(mut self, p: f64) -> FaultConfig {
        self.read_fail = p;
        self
    }

    /// Fail each write with probability `p`.
    pub fn fail_writes(mut self, p: f64) -> FaultConfig {
        self.write_fail = p;
        self
    }

    /// Fail each sync with probability `p`.
    pub fn fail_syncs(mut self, p: f64) -> FaultConfig {
        self.sync_fail = p;
        self
    }

    /// Fail the `n`-th read (from 0).
    pub fn fail_read_at(mut self, n: u64) -> FaultConfig {
        self.read_fail_at.push(n);
        self
    }

    /// Fail the `n`-th write (from 0).
    pub fn fail_write_at(mut self, n: u64) -> FaultConfig {
        self.write_fail_at.push(n);
        self
    }

    /// Fail the `n`-th sync (from 0).
    pub fn fail_sync_at(mut self, n: u64) -> FaultConfig {
        self.sync_fail_at.push(n);
        self
    }

    /// A failing write of two or more pages lands a random non-empty proper prefix of them
    /// first, with probability `p` (a torn write).
    pub fn tear_writes(mut self, p: f64) -> FaultConfig {
        self.torn = p;
        self
    }

    /// Every operation sleeps `base` plus a uniform random part of `jitter`.
    pub fn latency(mut self, base: Duration, jitter: Duration) -> FaultConfig {
        self.latency = base;
        self.jitter = jitter;
        self
    }

    /// After the first failed operation (injected or from the inner backend), every later one
    /// fails too.
    pub fn sticky(mut self, sticky: bool) -> FaultConfig {
        self.sticky = sticky;
        self
    }

    /// Keep the durable image and the unsynced writes, for [`FaultyBackend::crash`]. Reads the
    /// whole inner backend once at construction: for test-sized backends.
    pub fn crash_tracking(mut self, on: bool) -> FaultConfig {
        self.crash_tracking = on;
        self
    }
}

/// One injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InjectedFault {
    /// The operation that failed.
    pub op: IoOp,
    /// Its global operation number (see [`FaultyBackend::op_count`]).
    pub seq: u64,
    /// For a torn write: the pages that landed before the error.
    pub landed_pages: usize,
}

/// Operation counts of a [`FaultyBackend`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Read calls.
    pub reads: u64,
    /// Write calls.
    pub writes: u64,
    /// Sync calls.
    pub syncs: u64,
    /// Injected read failures.
    pub failed_reads: u64,
    /// Injected write failures (torn ones included).
    pub failed_writes: u64,
    /// Injected sync failures.
    pub failed_syncs: u64,
    /// Torn writes.
    pub torn_writes: u64,
}

#[derive(Debug)]
enum Unsynced {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug)]
struct CrashState {
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
}

#[derive(Debug)]
struct State {
    rng: SplitMix64,
    ops: u64,
    counts: FaultCounts,
    injecting: bool,
    tripped: bool,
    power_off: bool,
    log: Vec<InjectedFault>,
    crash: Option<CrashState>,
}

/// The fault-injecting wrapper. See the [module docs](self).
pub struct FaultyBackend {
    inner: Arc<dyn PageCacheBackend>,
    config: FaultConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("config", &self.config)
            .field("counts", &self.counts())
            .finish()
    }
}

fn injected(op: IoOp, offset: u64, what: &str) -> Error {
    Error::io(op, offset, std::io::Error::other(what.to_string()))
}

impl FaultyBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn PageCacheBackend>, config: FaultConfig) -> Result<FaultyBackend> {
        let crash = if config.crash_tracking {
            Some(CrashState {
                durable: read_all(&*inner)?,
                unsynced: Vec::new(),
            })
        } else {
            None
        };
        Ok(FaultyBackend {
            state: Mutex::new(State {
                rng: SplitMix64::new(config.seed),
                ops: 0,
                counts: FaultCounts::default(),
                injecting: true,
                tripped: false,
                power_off: false,
                log: Vec::new(),
                crash,
            }),
            inner,
            config,
        })
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<dyn PageCacheBackend> {
        &self.inner
    }

    /// Turns injection of new faults on or off (sticky and power-cut failures stay).
    pub fn set_injecting(&self, on: bool) {
        self.state.lock().injecting = on;
    }

    /// Operations (reads, writes, syncs) served so far: the clock of [`InjectedFault::seq`].
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// Every injected failure so far, in order.
    pub fn injected(&self) -> Vec<InjectedFault> {
        self.state.lock().log.clone()
    }

    /// Operation and failure counts.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().counts
    }

    /// Cuts the power: returns what the device would hold afterwards (the image of the last
    /// completed sync, plus each page written since landing with probability `land_unsynced`, in
    /// a random order; an unsynced length change lands with the same probability), and makes
    /// every later operation fail. Needs [crash tracking](FaultConfig::crash_tracking).
    pub fn crash(&self, land_unsynced: f64) -> Result<Vec<u8>> {
        let mut st = self.state.lock();
        st.power_off = true;
        let st = &mut *st;
        let Some(c) = &st.crash else {
            return Err(Error::Unsupported("crash() without crash tracking"));
        };
        let mut image = c.durable.clone();
        let mut len = image.len() as u64;
        let mut writes: Vec<&Unsynced> = Vec::new();
        for u in &c.unsynced {
            match u {
                Unsynced::SetLen(l) => {
                    if st.rng.chance(land_unsynced) {
                        len = *l;
                    }
                }
                w => {
                    if st.rng.chance(land_unsynced) {
                        writes.push(w);
                    }
                }
            }
        }
        // Any order: the device may have reordered the unsynced writes.
        for i in (1..writes.len()).rev() {
            let j = st.rng.below(i as u64 + 1) as usize;
            writes.swap(i, j);
        }
        image.resize(len as usize, 0);
        for w in writes {
            if let Unsynced::Write { offset, bytes } = w {
                apply(&mut image, *offset, bytes);
            }
        }
        Ok(image)
    }

    /// Takes the lock after the configured latency and counts the operation; decides whether it
    /// fails. Returns the state guard and `Some(error)` if it must fail.
    fn begin(&self, op: IoOp, offset: u64) -> (parking_lot::MutexGuard<'_, State>, Option<Error>) {
        if !self.config.latency.is_zero() || !self.config.jitter.is_zero() {
            let jitter = if self.config.jitter.is_zero() {
                Duration::ZERO
            } else {
                let r = self.state.lock().rng.next_f64();
                self.config.jitter.mul_f64(r)
            };
            std::thread::sleep(self.config.latency + jitter);
        }
        let mut st = self.state.lock();
        st.ops += 1;
        let (nth, p, at) = match op {
            IoOp::Read => {
                st.counts.reads += 1;
                (
                    st.counts.reads - 1,
                    self.config.read_fail,
                    &self.config.read_fail_at,
                )
            }
            IoOp::Write => {
                st.counts.writes += 1;
                (
                    st.counts.writes - 1,
                    self.config.write_fail,
                    &self.config.write_fail_at,
                )
            }
            _ => {
                st.counts.syncs += 1;
                (
                    st.counts.syncs - 1,
                    self.config.sync_fail,
                    &self.config.sync_fail_at,
                )
            }
        };
        if st.power_off {
            return (st, Some(injected(op, offset, "power cut")));
        }
        let fail = (self.config.sticky && st.tripped)
            || (st.injecting && (at.contains(&nth) || st.rng.chance(p)));
        if !fail {
            return (st, None);
        }
        st.tripped = true;
        let seq = st.ops;
        st.log.push(InjectedFault {
            op,
            seq,
            landed_pages: 0,
        });
        match op {
            IoOp::Read => st.counts.failed_reads += 1,
            IoOp::Write => st.counts.failed_writes += 1,
            _ => st.counts.failed_syncs += 1,
        }
        (st, Some(injected(op, offset, "injected failure")))
    }

    fn trip_on(&self, st: &mut State, r: &Result<()>) {
        if r.is_err() {
            st.tripped = true;
        }
    }
}

fn apply(image: &mut [u8], offset: u64, bytes: &[u8]) {
    let len = image.len() as u64;
    if offset >= len {
        return;
    }
    let n = ((len - offset) as usize).min(bytes.len());
    image[offset as usize..offset as usize + n].copy_from_slice(&bytes[..n]);
}

/// Reads the whole of `backend`, a chunk of pages at a time.
fn read_all(backend: &dyn PageCacheBackend) -> Result<Vec<u8>> {
    const PAGE: usize = 4096;
    const PAGES: usize = 64;
    let len = backend.len();
    let mut out = Vec::with_capacity(len as usize);
    let region = Region::new(PAGE * PAGES, PAGE, super::Commit::Lazy)?;
    let mut idx = 0u64;
    while (out.len() as u64) < len {
        let frames = (0..PAGES)
            // SAFETY: disjoint in-bounds slices of a region only this function uses; we touch
            // its bytes again only after the read has completed and dropped the frames.
            .map(|i| unsafe { FrameMut::from_region(&region, i * PAGE, PAGE) })
            .collect();
        backend.read_pages(idx, frames)?.wait()?;
        // SAFETY: the I/O completed: no frame of the region is alive any more.
        let bytes = unsafe { std::slice::from_raw_parts(region.base(), region.len()) };
        let n = ((len - out.len() as u64) as usize).min(PAGE * PAGES);
        out.extend_from_slice(&bytes[..n]);
        idx += PAGES as u64;
    }
    Ok(out)
}

impl PageCacheBackend for FaultyBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let (_, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let (mut st, fail) = self.begin(IoOp::Read, offset);
        if let Some(e) = fail {
            return Err(e);
        }
        let r = self.inner.read_pages(idx, frames).and_then(|w| w.wait());
        self.trip_on(&mut st, &r);
        Ok(IoWaiter::ready(r))
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let (mut st, fail) = self.begin(IoOp::Write, offset);
        let n = frames.len();
        let (frames, fail) = match fail {
            None => (frames, None),
            Some(e) if n >= 2 && !st.power_off && st.rng.chance(self.config.torn) => {
                let k = 1 + st.rng.below(n as u64 - 1) as usize;
                st.counts.torn_writes += 1;
                if let Some(last) = st.log.last_mut() {
                    last.landed_pages = k;
                }
                (frames.into_iter().take(k).collect(), Some(e))
            }
            Some(e) => return Ok(IoWaiter::ready(Err(e))),
        };
        let len = self.inner.len();
        let logged: Option<Vec<(u64, Vec<u8>)>> = st.crash.as_ref().map(|_| {
            frames
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let off = offset + (i * page_size) as u64;
                    let keep = len.saturating_sub(off).min(page_size as u64) as usize;
                    let mut bytes = f.to_vec();
                    bytes.truncate(keep);
                    (off, bytes)
                })
                .collect()
        });
        let r = self.inner.write_pages(idx, frames).and_then(|w| w.wait());
        self.trip_on(&mut st, &r);
        if let (Ok(()), Some(c), Some(logged)) = (&r, st.crash.as_mut(), logged) {
            for (offset, bytes) in logged {
                c.unsynced.push(Unsynced::Write { offset, bytes });
            }
        }
        Ok(IoWaiter::ready(match fail {
            Some(e) => Err(e),
            None => r,
        }))
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        let mut st = self.state.lock();
        if st.power_off || (self.config.sticky && st.tripped) {
            return Err(injected(IoOp::Resize, len, "backend failed earlier"));
        }
        let r = self.inner.set_len(len);
        self.trip_on(&mut st, &r);
        if let (Ok(()), Some(c)) = (&r, st.crash.as_mut()) {
            c.unsynced.push(Unsynced::SetLen(len));
        }
        r
    }

    fn sync(&self) -> Result<()> {
        let (mut st, fail) = self.begin(IoOp::Sync, 0);
        if let Some(e) = fail {
            return Err(e);
        }
        let r = self.inner.sync();
        self.trip_on(&mut st, &r);
        if let (Ok(()), Some(c)) = (&r, st.crash.as_mut()) {
            for u in std::mem::take(&mut c.unsynced) {
                match u {
                    Unsynced::SetLen(l) => c.durable.resize(l as usize, 0),
                    Unsynced::Write { offset, bytes } => apply(&mut c.durable, offset, &bytes),
                }
            }
        }
        r
    }

    fn discarded(&self, offset: u64, len: u64) {
        self.inner.discarded(offset, len);
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let mut st = self.state.lock();
        if st.power_off || (self.config.sticky && st.tripped) {
            return Err(injected(IoOp::Zero, offset, "backend failed earlier"));
        }
        let r = self.inner.write_zeroes(offset, len);
        self.trip_on(&mut st, &r);
        if let (Ok(()), Some(c)) = (&r, st.crash.as_mut()) {
            let size = self.inner.len();
            let end = offset.saturating_add(len).min(size);
            if offset < end {
                c.unsynced.push(Unsynced::Write {
                    offset,
                    bytes: vec![0; (end - offset) as usize],
                });
            }
        }
        r
    }

    fn geometry(&self) -> Geometry {
        // The inner backend's runs and alignment, but one operation at a time: every call
        // here waits for its I/O before it returns.
        self.inner.geometry().with_queue_depth(1)
    }
}
