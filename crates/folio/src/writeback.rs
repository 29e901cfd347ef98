//! Background write-back, dirty throttling and write-back error reporting.
//!
//! # The flusher
//! Every [`PageCache`] runs one flusher thread (like Linux's per-device flusher). It wakes
//! - every [`writeback_interval`](CacheConfig::writeback_interval) (default 5 s),
//! - and at once when a writer makes the dirty share of the budget pass the background threshold
//!   ([`dirty_background_percent`](CacheConfig::dirty_background_percent), default 10%).
//!
//! On each round it writes back, in page order and merging contiguous pages into one backend
//! write (through the cache's own `flush_list`):
//! - when the cache is over the background threshold, the pages dirtied longest ago, until the
//!   dirty count would be half the threshold (Linux also writes the oldest first and stops below
//!   the threshold; the margin keeps a steady writer from causing a round per page, and a page
//!   that is rewritten often stays dirty, so one write covers many of its rewrites), and
//! - pages dirty for longer than [`dirty_expire`](CacheConfig::dirty_expire) (default 30 s).
//!
//! The flusher never waits for a page: a page held by a writer, a guard or another write-back is
//! skipped and picked up by a later round. It holds only a `Weak` reference to the cache, so it
//! never keeps the cache alive; [`PageCache::close`] and `Drop` stop and join it.
//!
//! Per frame the flusher needs the time the page was dirtied: a parallel array of `AtomicU32`
//! ticks of 10 ms since the cache was created (4 bytes per page; compared with wrapping
//! arithmetic, so it never overflows in practice). It is set when a page goes clean → dirty.
//!
//! # Failures and back-off
//! A failed write-back leaves its pages dirty and is recorded in the error sequence (below). When
//! a round sees a failure, the flusher backs off: the next round is 50 ms later, doubling up to
//! 10 s (or the interval, if that is longer) while failures continue, and writers' wake-ups do
//! not shorten the pause. The first successful round resets it. Reads of cached pages go on
//! being served from memory meanwhile.
//!
//! # Dirty throttling
//! A writer (`write_at` and everything built on it) that finds the dirty pages plus the pages
//! under write-back (as Linux counts them) at or over the hard limit ([`dirty_percent`](CacheConfig::dirty_percent), default 20% of the budget) kicks
//! the flusher and waits in slices of 10 ms until the dirty count drops below the limit. It stops
//! waiting and proceeds after [`throttle_max_wait`](CacheConfig::throttle_max_wait) (default
//! 500 ms, like Linux's `MAX_PAUSE` bound on one pause), or at once if the flusher is backing off
//! after failures or is not running: waiting cannot help then, and memory stays bounded by the
//! budget regardless (eviction writes dirty pages back itself and reports its failures). The
//! check is two atomic loads, per call not per page, and it also applies to rewrites of pages that
//! are already dirty (like Linux, which throttles the dirtier, not the page). The time spent is
//! reported in [`Stats::throttled_ns`].
//!
//! # Errors are never swallowed (errseq)
//! Every failed write-back or sync increments a sequence number and keeps the latest error. Each
//! *observer* keeps the sequence number it has seen:
//! - the [`PageCache`] itself (its `flush_range`, `sync`, `sync_range`, `evict_range`, `close`),
//! - and every [`SyncHandle`] from [`PageCache::sync_handle`].
//!
//! A check reports [`Error::WritebackFailed`] if a failure happened since that observer's last
//! check, exactly once per observer, then moves the observer forward. So two handles that sync
//! after one failure each see it once, and a failure caused by the flusher (whose caller is
//! nobody) reaches every observer that syncs afterwards. A new handle starts at the latest
//! failure that some observer has already been told about, so a failure nobody has seen yet is
//! reported to it too (Linux's `errseq_sample`). The failed pages stay dirty and are retried.
//! `Drop` cannot return errors: it logs with `tracing::error!` what it could not write.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32};

use crate::sync::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::cache::{CacheConfig, PageCache, Shared};
use crate::error::{Error, Result};
use crate::page::{kind, DIRTY, VALID, WRITEBACK};
use crate::policy::FrameId;
use crate::stats::Stats;

/// One tick of the dirtied-at clock.
const TICK: Duration = Duration::from_millis(10);
/// A throttled writer re-checks the dirty count at least this often.
const THROTTLE_SLICE: Duration = Duration::from_millis(10);
/// First pause after a failed round; doubles per failed round.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause after failed rounds (or the interval, if longer).
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Pages written per batch of a round, between which the flusher checks for failures and a stop
/// request. Every batch drains the queue, so batches are long: 1,024 pages (four 1 MiB runs) left
/// the device idle often enough to cost a sequential writer about 6% of its throughput. Throttled
/// writers do not wait for a batch: they are woken as each run completes (`in_flight_add`).
const ROUND_BATCH: usize = 8192;
/// Flushes of fewer dirty pages than this (or a quarter of the frames) are not split.
const PARALLEL_MIN: usize = 64;

/// Write-back settings of a [`CacheConfig`].
#[derive(Clone, Debug)]
pub(crate) struct WritebackConfig {
    enabled: bool,
    background_percent: u8,
    dirty_percent: u8,
    expire: Duration,
    interval: Duration,
    throttle_max_wait: Duration,
    threads: usize,
}

impl Default for WritebackConfig {
    fn default() -> Self {
        WritebackConfig {
            enabled: true,
            background_percent: 10,
            dirty_percent: 20,
            expire: Duration::from_secs(30),
            interval: Duration::from_secs(5),
            throttle_max_wait: Duration::from_millis(500),
            threads: 4,
        }
    }
}

impl WritebackConfig {
    fn validate(&self) -> Result<()> {
        let (bg, hard) = (self.background_percent, self.dirty_percent);
        if !(1..=100).contains(&bg) || !(1..=100).contains(&hard) || bg > hard {
            return Err(Error::InvalidConfig(format!(
                "dirty thresholds must satisfy 1 <= background ({bg}%) <= hard limit ({hard}%) <= 100"
            )));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(Error::InvalidConfig(format!(
                "write-back threads must be from 1 to 64, not {}",
                self.threads
            )));
        }
        if self.interval.is_zero() {
            return Err(Error::InvalidConfig(
                "the write-back interval must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Write-back settings (see the [`writeback`](crate::writeback) module docs).
impl CacheConfig {
    /// Runs the background flusher thread and throttles writers (default true). Without it,
    /// dirty pages are written only by `flush_range`/`sync`/`close`, eviction and `Drop`.
    pub fn background_writeback(mut self, enabled: bool) -> CacheConfig {
        self.writeback.enabled = enabled;
        self
    }

    /// The flusher starts writing back when more than this percentage of the budget is dirty
    /// (1..=100, at most [`dirty_percent`](Self::dirty_percent); default 10, Linux's
    /// `dirty_background_ratio`). At least one page.
    pub fn dirty_background_percent(mut self, percent: u8) -> CacheConfig {
        self.writeback.background_percent = percent;
        self
    }

    /// Writers wait for the flusher when this percentage of the budget is dirty (1..=100;
    /// default 20, Linux's `dirty_ratio`). At least one page.
    pub fn dirty_percent(mut self, percent: u8) -> CacheConfig {
        self.writeback.dirty_percent = percent;
        self
    }

    /// Pages dirty for longer than this are written back by the next flusher round (default
    /// 30 s, Linux's `dirty_expire_centisecs`; resolution 10 ms).
    pub fn dirty_expire(mut self, expire: Duration) -> CacheConfig {
        self.writeback.expire = expire;
        self
    }

    /// How often the flusher wakes on its own (default 5 s, Linux's
    /// `dirty_writeback_centisecs`). Must be positive.
    pub fn writeback_interval(mut self, interval: Duration) -> CacheConfig {
        self.writeback.interval = interval;
        self
    }

    /// The longest one write call waits for the flusher when the dirty limit is reached (default
    /// 500 ms); after that it proceeds. Zero disables throttling.
    pub fn throttle_max_wait(mut self, wait: Duration) -> CacheConfig {
        self.writeback.throttle_max_wait = wait;
        self
    }

    /// How many threads write back one large flush, sync or flusher batch in parallel (1..=64,
    /// default 4): with a synchronous backend this is the write-back queue depth. Flushes of
    /// fewer than 64 pages (or a quarter of the budget) use the calling thread only.
    pub fn writeback_threads(mut self, threads: usize) -> CacheConfig {
        self.writeback.threads = threads;
        self
    }

    pub(crate) fn validate_writeback(&self) -> Result<()> {
        self.writeback.validate()
    }
}

/// The flusher's control block, shared by the cache and the thread.
#[derive(Default)]
struct Ctl {
    state: Mutex<CtlState>,
    /// Wakes the flusher (kick or stop).
    wake: Condvar,
    /// Wakes throttled writers (progress).
    progress: Condvar,
    /// A kick is pending: writers don't take the lock again until the flusher picks it up.
    kick_pending: AtomicBool,
    /// The last round failed: the flusher is backing off.
    failing: AtomicBool,
    running: AtomicBool,
}

#[derive(Default)]
struct CtlState {
    stop: bool,
    kicked: bool,
}

/// Per-cache write-back state, a field of the cache's shared state.
pub(crate) struct Writeback {
    config: WritebackConfig,
    background_pages: u64,
    limit_pages: u64,
    epoch: Instant,
    dirtied_at: Box<[AtomicU32]>,
    ctl: Arc<Ctl>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: AtomicBool,
    in_flight: AtomicU64,
    throttled_ns: AtomicU64,
    throttle_waits: AtomicU64,
    rounds: AtomicU64,
}

fn percent_of(frames: usize, percent: u8) -> u64 {
    ((frames as u64 * percent as u64) / 100).max(1)
}

impl Writeback {
    pub(crate) fn new(config: &CacheConfig, frames: usize) -> Writeback {
        let config = config.writeback.clone();
        Writeback {
            background_pages: percent_of(frames, config.background_percent),
            limit_pages: percent_of(frames, config.dirty_percent),
            config,
            epoch: Instant::now(),
            dirtied_at: (0..frames).map(|_| AtomicU32::new(0)).collect(),
            ctl: Arc::default(),
            thread: Mutex::new(None),
            closed: AtomicBool::new(false),
            in_flight: AtomicU64::new(0),
            throttled_ns: AtomicU64::new(0),
            throttle_waits: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
        }
    }

    /// Bytes of write-back metadata per page (the dirtied-at stamp).
    pub(crate) const BYTES_PER_PAGE: usize = std::mem::size_of::<AtomicU32>();

    fn now_ticks(&self) -> u32 {
        (self.epoch.elapsed().as_millis() / TICK.as_millis()) as u32
    }

    /// Hook: frame `f` is about to go clean → dirty (its holder is exclusive).
    pub(crate) fn on_dirtied(&self, f: FrameId) {
        self.dirtied_at[f as usize].store(self.now_ticks(), Ordering::Relaxed);
    }

    /// Hook: the dirty count is now `dirty`; kick the flusher if that is over the background
    /// threshold.
    pub(crate) fn after_dirtied(&self, dirty: u64) {
        if (dirty > self.background_pages || dirty >= self.limit_pages)
            && self.ctl.running.load(Ordering::Relaxed)
        {
            self.kick();
        }
    }

    fn kick(&self) {
        if !self.ctl.kick_pending.swap(true, Ordering::AcqRel) {
            self.ctl.state.lock().kicked = true;
            self.ctl.wake.notify_one();
        }
    }

    /// Hook: `n` pages started (positive) or finished (negative) write-back.
    pub(crate) fn in_flight_add(&self, n: i64) {
        if n >= 0 {
            self.in_flight.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            self.in_flight
                .fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
            // Pages left write-back: a throttled writer may go on.
            self.ctl.progress.notify_all();
        }
    }

    fn age_ticks(&self, f: FrameId, now: u32) -> u32 {
        now.wrapping_sub(self.dirtied_at[f as usize].load(Ordering::Relaxed))
    }

    fn expire_ticks(&self) -> u32 {
        (self.config.expire.as_millis() / TICK.as_millis()).min(u32::MAX as u128 / 2) as u32
    }

    /// Adds the write-back gauges and counters to a stats snapshot.
    pub(crate) fn fill_stats(&self, st: &mut Stats) {
        st.writeback_pages_in_flight = self.in_flight.load(Ordering::Relaxed);
        st.throttled_ns = self.throttled_ns.load(Ordering::Relaxed);
        st.throttle_waits = self.throttle_waits.load(Ordering::Relaxed);
        st.flusher_rounds = self.rounds.load(Ordering::Relaxed);
        st.dirty_limit_pages = self.limit_pages;
        st.dirty_background_pages = self.background_pages;
    }

    /// Stops the flusher and joins it. Idempotent.
    fn stop(&self) {
        self.ctl.running.store(false, Ordering::Release);
        self.ctl.state.lock().stop = true;
        self.ctl.wake.notify_all();
        self.ctl.progress.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if t.thread().id() != std::thread::current().id() && t.join().is_err() {
                tracing::error!("the folio flusher thread panicked");
            }
        }
    }
}

/// Starts the flusher of a new cache (if enabled).
pub(crate) fn start(shared: &Arc<Shared>) -> Result<()> {
    let wb = &shared.wb;
    if !wb.config.enabled {
        return Ok(());
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let ctl = wb.ctl.clone();
    ctl.running.store(true, Ordering::Release);
    let t = std::thread::Builder::new()
        .name("folio-flusher".into())
        .spawn(move || flusher(weak, ctl))
        .map_err(|e| {
            wb.ctl.running.store(false, Ordering::Release);
            Error::InvalidConfig(format!("cannot start the flusher thread: {e}"))
        })?;
    *wb.thread.lock() = Some(t);
    Ok(())
}

fn flusher(weak: Weak<Shared>, ctl: Arc<Ctl>) {
    let mut backoff: Option<Duration> = None;
    loop {
        let interval = match weak.upgrade() {
            Some(s) => s.wb.config.interval,
            None => return,
        };
        {
            let deadline = Instant::now() + backoff.unwrap_or(interval);
            let mut st = ctl.state.lock();
            // A kick cuts the wait short, except while backing off after failures.
            while !(st.stop || (st.kicked && backoff.is_none())) {
                if ctl.wake.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            if st.stop {
                return;
            }
            st.kicked = false;
            ctl.kick_pending.store(false, Ordering::Release);
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let failed = shared.writeback_round();
        ctl.progress.notify_all();
        backoff = if failed {
            let cap = BACKOFF_MAX.max(interval);
            Some(backoff.map_or(BACKOFF_MIN, |b| (b * 2).min(cap)))
        } else {
            None
        };
        ctl.failing.store(failed, Ordering::Release);
        drop(shared);
    }
}

/// Reads a page counter that may be transiently below zero as zero.
pub(crate) fn clamp_count(n: u64) -> u64 {
    (n as i64).max(0) as u64
}

impl Shared {
    /// The number of dirty pages. The counter is updated after the page's state word changes, so
    /// a write-back that cleans a page can decrement it before the writer that dirtied the page
    /// increments it: it may be transiently one below the truth per racing pair, wrapping below
    /// zero. Read it through here.
    pub(crate) fn dirty_now(&self) -> u64 {
        clamp_count(self.dirty_pages.load(Ordering::Acquire))
    }

    /// One flusher round: returns true if a write-back failed.
    fn writeback_round(&self) -> bool {
        let wb = &self.wb;
        wb.rounds.fetch_add(1, Ordering::Relaxed);
        let errors_before = self.errseq.count();
        let mut dirty = self.resident(0..u64::MAX, |s| {
            kind(s) == VALID && s & DIRTY != 0 && s & WRITEBACK == 0
        });
        let (now, expire) = (wb.now_ticks(), wb.expire_ticks());
        // Over the background threshold, or at the hard limit (they are equal, one page, in
        // tiny caches): write the pages dirtied longest ago until half the threshold is left,
        // as Linux writes the oldest first and stops below the threshold (the margin keeps a
        // busy writer from getting a round per page). A page rewritten often stays dirty, so
        // one write covers many of its rewrites. Expired pages are written in any case.
        let d = self.dirty_now();
        let over = d > wb.background_pages || d >= wb.limit_pages;
        let oldest = if over {
            (d.saturating_sub(wb.background_pages / 2) as usize).min(dirty.len())
        } else {
            0
        };
        if oldest > 0 && oldest < dirty.len() {
            // Oldest first (largest age), then lowest page: the first `oldest` entries, in no
            // particular order. Many pages share a 10 ms tick; without the page tie-break the
            // cut through the last tick took an arbitrary subset of it, which broke a
            // sequential writer's runs into single pages (0.61x fio instead of 1.1x).
            dirty.select_nth_unstable_by_key(oldest - 1, |&(key, f)| {
                (std::cmp::Reverse(wb.age_ticks(f, now)), key)
            });
        }
        let mut pages: Vec<(u64, FrameId)> = dirty
            .iter()
            .enumerate()
            .filter(|&(i, &(_, f))| i < oldest || wb.age_ticks(f, now) >= expire)
            .map(|(_, &p)| p)
            .collect();
        // In page order again, so contiguous pages merge into runs.
        pages.sort_unstable();
        for batch in pages.chunks(ROUND_BATCH) {
            self.flush_list_parallel(batch, false);
            wb.ctl.progress.notify_all();
            if self.errseq.count() != errors_before {
                return true;
            }
            if wb.ctl.state.lock().stop {
                break;
            }
        }
        self.errseq.count() != errors_before
    }

    /// As `flush_pages`, split over up to `writeback_threads` threads.
    pub(crate) fn flush_pages_parallel(&self, pages: Range<u64>) {
        let dirty = self.resident(pages, |s| kind(s) == VALID && s & (DIRTY | WRITEBACK) != 0);
        self.flush_list_parallel(&dirty, true);
    }

    /// Writes back `dirty` (sorted by page) in up to `writeback_threads` contiguous slices at
    /// once. Concurrent flushes of disjoint pages are safe (see the concurrency table in
    /// `cache.rs`); each slice still merges its contiguous pages into runs.
    fn flush_list_parallel(&self, dirty: &[(u64, FrameId)], wait: bool) {
        // An asynchronous backend gets its queue depth from one thread's submissions; threads
        // would only add wake-ups (on 2 cores: 0.68x fio's random-write IOPS with 4 threads).
        let threads = if self.backend.queue_depth() > 1 {
            1
        } else {
            self.wb.config.threads
        };
        // Tiny caches (tests) split tiny flushes too, so the simulation covers this path.
        let min = PARALLEL_MIN.min(self.wb.dirtied_at.len() / 4).max(2);
        if threads <= 1 || dirty.len() < min {
            return self.flush_list(dirty, wait);
        }
        let per = dirty.len().div_ceil(threads).max(min / 2);
        // Cut only where `flush_list` would start a new I/O anyway (a gap between pages, or a
        // run reaching `max_io_pages`), so splitting never adds a backend write.
        let max = self.max_io_pages.max(1);
        let mut cuts: Vec<&[(u64, FrameId)]> = Vec::with_capacity(threads);
        let (mut start, mut run_len) = (0, 0);
        for i in 0..dirty.len() {
            let contiguous = i > 0 && dirty[i].0 == dirty[i - 1].0.wrapping_add(1);
            run_len = if contiguous { run_len + 1 } else { 1 };
            let new_io = !contiguous || (run_len - 1) % max == 0;
            if i - start >= per && new_io && cuts.len() + 1 < threads {
                cuts.push(&dirty[start..i]);
                start = i;
            }
        }
        cuts.push(&dirty[start..]);
        if cuts.len() == 1 {
            return self.flush_list(dirty, wait);
        }
        let mut chunks = cuts.into_iter();
        let first = chunks.next().unwrap_or(&[]);
        std::thread::scope(|scope| {
            for chunk in chunks {
                let spawned = std::thread::Builder::new()
                    .name("folio-writeback".into())
                    .spawn_scoped(scope, move || self.flush_list(chunk, wait));
                if spawned.is_err() {
                    // No thread to be had: write this slice here.
                    self.flush_list(chunk, wait);
                }
            }
            self.flush_list(first, wait);
        });
    }

    /// Hook at the start of a write call: waits while the dirty pages are at the hard limit
    /// (see the module docs for the bounds).
    pub(crate) fn balance_dirty(&self) {
        let wb = &self.wb;
        // Like Linux, pages under write-back count against the limit: they are not clean yet.
        let dirty = || self.dirty_now() + wb.in_flight.load(Ordering::Acquire);
        if dirty() < wb.limit_pages
            || !wb.ctl.running.load(Ordering::Relaxed)
            || wb.config.throttle_max_wait.is_zero()
        {
            return;
        }
        let started = Instant::now();
        let deadline = started + wb.config.throttle_max_wait;
        wb.throttle_waits.fetch_add(1, Ordering::Relaxed);
        loop {
            if dirty() < wb.limit_pages
                || wb.ctl.failing.load(Ordering::Acquire)
                || !wb.ctl.running.load(Ordering::Acquire)
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(
                    dirty = self.dirty_now(),
                    limit = wb.limit_pages,
                    "dirty throttling gave up waiting for the flusher"
                );
                break;
            }
            wb.kick();
            let mut st = wb.ctl.state.lock();
            if st.stop {
                break;
            }
            wb.ctl
                .progress
                .wait_until(&mut st, (now + THROTTLE_SLICE).min(deadline));
        }
        wb.throttled_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Writes back the dirty pages overlapping `range`, syncs the backend, and reports failures
    /// not yet seen by the observer `seen`.
    pub(crate) fn sync_with(&self, range: &Range<u64>, seen: &AtomicU64) -> Result<()> {
        self.flush_pages_parallel(self.pages_overlapping(range));
        if let Err(e) = self.backend.sync() {
            self.errseq.record(&e);
        }
        self.counters.add(crate::stats::Counter::Syncs, 1);
        self.errseq.check(seen)
    }

    /// `close()`: flush, sync, stop the flusher; returns the first error not yet reported.
    pub(crate) fn close_with(&self, seen: &AtomicU64) -> Result<()> {
        let r = self.sync_with(&(0..u64::MAX), seen);
        self.wb.stop();
        self.wb.closed.store(true, Ordering::Release);
        r
    }

    /// `Drop`: best effort flush and sync (unless closed), stop the flusher, log what failed.
    pub(crate) fn drop_with(&self, seen: &AtomicU64) {
        if !self.wb.closed.load(Ordering::Acquire) {
            let r = self.sync_with(&(0..u64::MAX), seen);
            if let Err(e) = r {
                let left = self.resident(0..u64::MAX, |s| kind(s) == VALID && s & DIRTY != 0);
                let sample: Vec<u64> = left.iter().take(16).map(|&(p, _)| p).collect();
                tracing::error!(
                    error = %e,
                    dirty_pages = left.len(),
                    first_pages = ?sample,
                    "page cache dropped with data it could not write back; use close() to see errors"
                );
            }
        }
        self.wb.stop();
    }
}

/// A handle with its own write-back error cursor: see the [module docs](self).
///
/// Cheap to create, `Send + Sync`, usable from any thread; it keeps the cache's shared state
/// alive (not its flusher).
///
/// ```
/// use std::sync::Arc;
/// use folio::{CacheConfig, MemoryBackend, PageCache};
///
/// let cache = PageCache::new(Arc::new(MemoryBackend::new()), CacheConfig::new(1 << 20))?;
/// let (a, b) = (cache.sync_handle(), cache.sync_handle());
/// cache.write_all_at(b"x", 0)?;
/// a.sync()?;
/// b.sync()?;
/// # Ok::<(), folio::Error>(())
/// ```
pub struct SyncHandle {
    shared: Arc<Shared>,
    seen: AtomicU64,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle")
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish()
    }
}

impl SyncHandle {
    /// Writes back every dirty page, makes the backend durable, and reports a write-back failure
    /// this handle has not seen yet (once).
    pub fn sync(&self) -> Result<()> {
        self.sync_range(0..u64::MAX)
    }

    /// As [`sync`](Self::sync), for the pages overlapping `range` (bytes).
    pub fn sync_range(&self, range: Range<u64>) -> Result<()> {
        self.shared.sync_with(&range, &self.seen)
    }

    /// Writes back the dirty pages overlapping `range` (no backend sync), and reports a failure
    /// this handle has not seen yet.
    pub fn flush_range(&self, range: Range<u64>) -> Result<()> {
        let s = &self.shared;
        s.flush_pages_parallel(s.pages_overlapping(&range));
        s.errseq.check(&self.seen)
    }

    /// Reports a failure this handle has not seen yet, without any I/O.
    pub fn check(&self) -> Result<()> {
        self.shared.errseq.check(&self.seen)
    }
}

impl PageCache {
    /// A new handle with its own error cursor (see [`SyncHandle`]). It starts after the failures
    /// some observer has already been told about, so a failure nobody has seen is reported to it.
    pub fn sync_handle(&self) -> SyncHandle {
        let shared = self.shared().clone();
        let seen = AtomicU64::new(shared.errseq.sample());
        SyncHandle { shared, seen }
    }
}
