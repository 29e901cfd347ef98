//! Background write-back, dirty throttling and write-back error reporting.
//!
//! # Owns
//! - the flusher thread of a cache: starting it, waking it (every interval, or kicked by a
//!   writer over the background threshold), its back-off while rounds fail, stopping and
//!   joining it;
//! - the write-back settings (`WritebackConfig`), their validation, and the thresholds they
//!   give in pages;
//! - the per-frame dirtied-at clock (ticks of 10 ms) and the expiry age;
//! - the count of pages under write-back, the condition throttled writers wait on
//!   (`Ctl::progress`), and the write-back gauges and counters of [`Stats`].
//!
//! # Does not own
//! - a round itself: choosing pages, writing them and every page-state change
//!   (`DIRTY`, `WRITEBACK`, the dirty counter) are the engine's, which this module reaches only
//!   through `FlushTarget` and never names;
//! - the throttled writer's wait loop and the error sequence (`errseq`), which are the
//!   engine's too (`engine/flush.rs`, `engine/errseq.rs`); the sections below describe them
//!   because they are the policy this module's settings drive.
//!
//! # May block
//! - `Writeback::stop` (from `close` and `Drop`): it joins the flusher, so it waits for a
//!   round in progress, I/O included (not when the flusher itself drops the cache);
//! - the flusher thread: on its condition variable until the interval, a kick or a stop, then
//!   in the backend I/O of a round;
//! - `Writeback::kick`: the control mutex, briefly, on the first kick of each round. The
//!   other hooks (`on_dirtied`, `after_dirtied` below the threshold, `in_flight_add`) are
//!   atomics and a notification: they never wait.
//!
//! # The flusher
//! Every [`PageCache`](crate::PageCache) runs one flusher thread (like Linux's per-device flusher). It wakes
//! - every [`writeback_interval`](crate::CacheConfig::writeback_interval) (default 5 s),
//! - and at once when a writer makes the dirty share of the budget pass the background threshold
//!   ([`dirty_background_percent`](crate::CacheConfig::dirty_background_percent), default 10%,
//!   or lower to keep ahead of eviction: below).
//!
//! On each round it writes back, in page order and merging contiguous pages into one backend
//! write (through the cache's own `flush_list`):
//! - when the cache is over the background threshold, the pages dirtied longest ago, until the
//!   dirty count would be half the threshold (Linux also writes the oldest first and stops below
//!   the threshold; the margin keeps a steady writer from causing a round per page, and a page
//!   that is rewritten often stays dirty, so one write covers many of its rewrites), and
//! - pages dirty for longer than [`dirty_expire`](crate::CacheConfig::dirty_expire) (default 30 s).
//!
//! The flusher never waits for a page: a page held by a writer, a guard or another write-back is
//! skipped and picked up by a later round. It holds only a `Weak` reference to the cache, so it
//! never keeps the cache alive; [`PageCache::close`](crate::PageCache::close) and `Drop` stop and join it.
//!
//! # Ahead of eviction
//! A page evicted while dirty is written by the thread that needed its frame: one page, waited
//! for, then the dirty pages after it (`write_behind`), at one I/O in flight instead of the
//! flusher's queue depth. The policy says roughly how many pages may come in before a page
//! inserted now is evicted if nothing hits it: its
//! [`eviction_window`](crate::EvictionPolicy::eviction_window) (S3-FIFO: its small queue, 2 to
//! 25% of the frames as the adaptive chooser moves it; 2Q: `Kin`; W-TinyLFU: its window; LIRS:
//! its resident-HIR queue; FIFO, CLOCK, LRU, SIEVE, ARC: every frame). Add the free frames and
//! that is the eviction distance. **While eviction meets dirty victims** (each one renews a
//! one-second pressure; the first after a lapse wakes the flusher), the threshold in force is the configured one
//! or half the distance, whichever is lower (at least one page), so the pages of a stream are
//! written by the flusher, oldest first, before they reach the eviction point. (With the 5%
//! small queue and the 10% threshold every victim of a sequential writer was dirty and the
//! writer did about three quarters of the write-back itself: 0.5-0.7x fio.) Without dirty
//! victims the configured threshold holds: a hot set rewritten in a full cache, under the
//! configured share, is not written back on every pass (it was, when the lowered threshold
//! applied whenever the cache was full: review 8, `tests/eviction_writeback.rs`). The cost under
//! pressure: a workload that both streams and rewrites has its rewritten pages written more
//! often than the configured threshold alone would (the data must reach the backend by the
//! next sync or expiry anyway), and the flusher runs more, smaller rounds (each walks the
//! frame table once); each lapse of the pressure may cost a few dirty victims again, and their
//! write-behind (about 150 pages per lapse in a stream through 8,192 frames). A window of one
//! or two pages is too short for any background threshold: the victim is the page written
//! last. LIRS and libCacheSim's W-TinyLFU have such a window below 200 frames (1%, at least
//! one), Caffeine's W-TinyLFU below 100 or when its climber shrinks the window to one page (it
//! does on a long stream): there the writer still writes a stream's victims itself, as every
//! policy did before (review 9). A writer
//! reads a flag (and, under pressure, the window: an atomic load) at each clean-to-dirty
//! transition, and the free count (a lock) only when the dirty count is over the full cache's
//! threshold; rounds compute it once. Nothing here changes what is durable when: only when the
//! background write-back starts.
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
//! under write-back (as Linux counts them) at or over the hard limit ([`dirty_percent`](crate::CacheConfig::dirty_percent), default 20% of the budget) kicks
//! the flusher and waits in slices of 10 ms until the dirty count drops below the limit. It stops
//! waiting and proceeds after [`throttle_wait_max`](crate::CacheConfig::throttle_wait_max) (default
//! 500 ms, like Linux's `MAX_PAUSE` bound on one pause), or at once if the flusher is backing off
//! after failures or is not running: waiting cannot help then, and memory stays bounded by the
//! budget regardless (eviction writes dirty pages back itself and reports its failures). The
//! check is two atomic loads, per call not per page, and it also applies to rewrites of pages that
//! are already dirty (like Linux, which throttles the dirtier, not the page). The time spent is
//! reported in [`Stats::throttled_ns`](crate::Stats::throttled_ns).
//!
//! # Errors are never swallowed (errseq)
//! Every failed write-back or sync increments a sequence number and keeps the latest error. Each
//! *observer* keeps the sequence number it has seen:
//! - the [`PageCache`](crate::PageCache) itself (its `flush_range`, `sync`, `sync_range`, `evict_range`, `close`),
//! - and every [`SyncHandle`](crate::SyncHandle) from [`PageCache::sync_handle`](crate::PageCache::sync_handle).
//!
//! A check reports [`Error::WritebackFailed`] if a failure happened since that observer's last
//! check, exactly once per observer, then moves the observer forward. So two handles that sync
//! after one failure each see it once, and a failure caused by the flusher (whose caller is
//! nobody) reaches every observer that syncs afterwards. A new handle starts at the latest
//! failure that some observer has already been told about, so a failure nobody has seen yet is
//! reported to it too (Linux's `errseq_sample`). The failed pages stay dirty and are retried.
//! `Drop` cannot return errors: it logs with `tracing::error!` what it could not write.

use crate::sync::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::sync::{AtomicBool, Condvar, Instant, JoinHandle, Mutex};
use std::sync::atomic::AtomicU32;

use crate::error::{ConfigError, Error, Result};
use crate::policy::FrameId;
use crate::stats::Stats;

/// One tick of the dirtied-at clock.
pub(crate) const TICK: Duration = Duration::from_millis(10);
/// A throttled writer re-checks the dirty count at least this often.
pub(crate) const THROTTLE_SLICE: Duration = Duration::from_millis(10);
/// First pause after a failed round; doubles per failed round.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest pause after failed rounds (or the interval, if longer).
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Pages written per batch of a round, between which the flusher checks for failures and a stop
/// request. Every batch drains the queue, so batches are long: 1,024 pages (four 1 MiB runs) left
/// the device idle often enough to cost a sequential writer about 6% of its throughput. Throttled
/// writers do not wait for a batch: they are woken as each run completes (`in_flight_add`).
pub(crate) const ROUND_BATCH: usize = 8192;
/// Flushes of fewer dirty pages than this (or a quarter of the frames) are not split.
pub(crate) const PARALLEL_MIN: usize = 64;
/// The most write-back threads a cache may have (`writeback_threads`).
pub(crate) const THREADS_MAX: usize = 64;

/// Write-back settings of a [`CacheConfig`](crate::CacheConfig).
#[derive(Clone, Debug)]
pub(crate) struct WritebackConfig {
    pub(crate) enabled: bool,
    pub(crate) background_percent: u8,
    pub(crate) dirty_percent: u8,
    pub(crate) expire: Duration,
    pub(crate) interval: Duration,
    pub(crate) throttle_max_wait: Duration,
    pub(crate) threads: usize,
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
    pub(crate) fn validate(&self) -> Result<()> {
        let (bg, hard) = (self.background_percent, self.dirty_percent);
        if !(1..=100).contains(&bg) || !(1..=100).contains(&hard) || bg > hard {
            return Err(ConfigError::DirtyPercent {
                background_percent: bg,
                dirty_percent: hard,
            }
            .into());
        }
        if !(1..=THREADS_MAX).contains(&self.threads) {
            return Err(ConfigError::WritebackThreads {
                threads: self.threads,
                threads_max: THREADS_MAX,
            }
            .into());
        }
        if self.interval.is_zero() {
            return Err(ConfigError::WritebackIntervalZero.into());
        }
        Ok(())
    }
}

/// The flusher's control block, shared by the cache and the thread.
#[derive(Default)]
pub(crate) struct Ctl {
    pub(crate) state: Mutex<CtlState>,
    /// Wakes the flusher (kick or stop).
    pub(crate) wake: Condvar,
    /// Wakes throttled writers (progress).
    pub(crate) progress: Condvar,
    /// A kick is pending: writers don't take the lock again until the flusher picks it up.
    pub(crate) kick_pending: AtomicBool,
    /// The last round failed: the flusher is backing off.
    pub(crate) failing: AtomicBool,
    pub(crate) running: AtomicBool,
}

#[derive(Default)]
pub(crate) struct CtlState {
    pub(crate) stop: bool,
    pub(crate) kicked: bool,
}

/// Per-cache write-back state, a field of the cache's shared state.
pub(crate) struct Writeback {
    pub(crate) config: WritebackConfig,
    pub(crate) background_pages: u64,
    pub(crate) limit_pages: u64,
    pub(crate) epoch: Instant,
    pub(crate) dirtied_at: Box<[AtomicU32]>,
    pub(crate) ctl: Arc<Ctl>,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) closed: AtomicBool,
    pub(crate) in_flight: AtomicU64,
    pub(crate) throttled_ns: AtomicU64,
    pub(crate) throttle_waits: AtomicU64,
    pub(crate) rounds: AtomicU64,
    /// Set while eviction has recently met a dirty victim: the threshold in force is then
    /// lowered to keep ahead of eviction ("Ahead of eviction" in the module docs).
    pressured: AtomicBool,
    /// The tick at which `pressured` lapses unless another dirty victim renews it.
    pressure_until_ticks: AtomicU32,
}

/// How long a dirty victim keeps the threshold lowered: 1 s of ticks.
const PRESSURE_TICKS: u32 = (1000 / TICK.as_millis()) as u32;

fn percent_of(frames: usize, percent: u8) -> u64 {
    ((frames as u64 * percent as u64) / 100).max(1)
}

impl Writeback {
    pub(crate) fn new(config: &WritebackConfig, frames: usize) -> Writeback {
        let config = config.clone();
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
            pressured: AtomicBool::new(false),
            pressure_until_ticks: AtomicU32::new(0),
        }
    }

    /// Bytes of write-back metadata per page (the dirtied-at stamp).
    pub(crate) const BYTES_PER_PAGE: usize = std::mem::size_of::<AtomicU32>();

    pub(crate) fn now_ticks(&self) -> u32 {
        (self.epoch.elapsed().as_millis() / TICK.as_millis()) as u32
    }

    /// Hook: frame `f` is about to go clean → dirty (its holder is exclusive).
    pub(crate) fn on_dirtied(&self, f: FrameId) {
        self.dirtied_at[f as usize].store(self.now_ticks(), Ordering::Relaxed);
    }

    /// The background threshold in force when `distance_pages` pages may still come in before
    /// a page dirtied now can be evicted (the free frames plus the policy's eviction window):
    /// the configured one, or half the distance if that is lower (at least one page). See
    /// "Ahead of eviction" in the module docs.
    pub(crate) fn background_for(&self, distance_pages: u64) -> u64 {
        if !self.pressured.load(Ordering::Relaxed) {
            return self.background_pages;
        }
        self.background_pages.min((distance_pages / 2).max(1))
    }

    /// Hook: the eviction path met a dirty victim (it writes it itself): lower the threshold
    /// in force for the next [`PRESSURE_TICKS`]; the first victim after a lapse also wakes the
    /// flusher to get ahead (later ones find writers kicking it at the lowered threshold).
    pub(crate) fn dirty_victim(&self) {
        let until = self.now_ticks().wrapping_add(PRESSURE_TICKS);
        self.pressure_until_ticks.store(until, Ordering::SeqCst);
        if !self.pressured.swap(true, Ordering::SeqCst) && self.ctl.running.load(Ordering::Relaxed)
        {
            self.kick();
        }
    }

    /// Hook: a flusher round starts; the lowered threshold lapses once no dirty victim has
    /// been met for [`PRESSURE_TICKS`] (a round runs at least every interval, or every back-off
    /// step while write-backs fail, so it lapses that much late at most; with background
    /// write-back disabled there are no rounds and it never lapses, which changes nothing but
    /// the `dirty_background_now_pages` gauge).
    pub(crate) fn round_started(&self) {
        if self.pressured.load(Ordering::Relaxed) {
            let until = self.pressure_until_ticks.load(Ordering::SeqCst);
            // Wrapping comparison: the ticks wrap after about 1.4 years.
            if self.now_ticks().wrapping_sub(until) as i32 >= 0 {
                self.pressured.store(false, Ordering::SeqCst);
                // A victim that renewed the deadline between the load and the store found the
                // flag still set and left it: look again (SeqCst on both sides: a victim whose
                // swap came before the store above has its deadline seen by the load below).
                let renewed = self.pressure_until_ticks.load(Ordering::SeqCst);
                if (self.now_ticks().wrapping_sub(renewed) as i32) < 0 {
                    self.pressured.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Hook: the dirty count is now `dirty`; kick the flusher if that is over the background
    /// threshold in force. Only under pressure can that be below the configured one: then it
    /// depends on the policy's eviction window (`window_pages()`, an atomic load) and the free
    /// frames (`free_pages()`, a lock), lowest with no frame free, so each is read only when it
    /// can matter.
    pub(crate) fn after_dirtied(
        &self,
        dirty: u64,
        window_pages: impl FnOnce() -> u64,
        free_pages: impl FnOnce() -> u64,
    ) {
        let over = dirty >= self.limit_pages
            || dirty > self.background_pages
            || (self.pressured.load(Ordering::Relaxed) && {
                let window = window_pages();
                dirty > self.background_for(window)
                    && dirty > self.background_for(window.saturating_add(free_pages()))
            });
        if over && self.ctl.running.load(Ordering::Relaxed) {
            self.kick();
        }
    }

    pub(crate) fn kick(&self) {
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

    pub(crate) fn age_ticks(&self, f: FrameId, now: u32) -> u32 {
        now.wrapping_sub(self.dirtied_at[f as usize].load(Ordering::Relaxed))
    }

    pub(crate) fn expire_ticks(&self) -> u32 {
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
    pub(crate) fn stop(&self) {
        self.ctl.running.store(false, Ordering::Release);
        self.ctl.state.lock().stop = true;
        self.ctl.wake.notify_all();
        self.ctl.progress.notify_all();
        if let Some(t) = self.thread.lock().take() {
            if !crate::sync::is_current(&t) && t.join().is_err() {
                tracing::error!("the folio flusher thread panicked");
            }
        }
    }
}

/// What the flusher thread drives: the engine, seen from below (so this module never names it).
pub(crate) trait FlushTarget: Send + Sync {
    /// The write-back state of the cache.
    fn writeback(&self) -> &Writeback;
    /// One flusher round; true if a write-back failed.
    fn writeback_round(&self) -> bool;
}

/// Starts the flusher of a new cache (if enabled).
pub(crate) fn start(wb: &Writeback, weak: Weak<dyn FlushTarget>) -> Result<()> {
    if !wb.config.enabled {
        return Ok(());
    }
    let ctl = wb.ctl.clone();
    ctl.running.store(true, Ordering::Release);
    let t = crate::sync::spawn("folio-flusher", move || flusher(weak, ctl)).map_err(|e| {
        wb.ctl.running.store(false, Ordering::Release);
        Error::from(ConfigError::Thread {
            name: "folio-flusher",
            source: Arc::new(e),
        })
    })?;
    *wb.thread.lock() = Some(t);
    Ok(())
}

fn flusher(weak: Weak<dyn FlushTarget>, ctl: Arc<Ctl>) {
    let mut backoff: Option<Duration> = None;
    loop {
        let interval = match weak.upgrade() {
            Some(s) => s.writeback().config.interval,
            None => return,
        };
        {
            let deadline = Instant::now() + backoff.unwrap_or(interval);
            let mut st = ctl.state.lock();
            // A kick cuts the wait short, except while backing off after failures.
            while !(st.stop || (st.kicked && backoff.is_none())) {
                let (guard, timed_out) = ctl.wake.wait_until(st, deadline);
                st = guard;
                if timed_out {
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

#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    /// The threshold is lowered only under pressure: from a dirty victim until a round finds
    /// its deadline passed; a round before the deadline keeps it, and a renewal after a lapse
    /// lowers it again.
    #[test]
    fn pressure_lowers_the_threshold_until_its_deadline() {
        let wb = Writeback::new(&WritebackConfig::default(), 1000);
        let configured = wb.background_pages;
        assert_eq!(configured, 100);
        assert_eq!(wb.background_for(10), configured, "no dirty victim yet");
        wb.dirty_victim();
        assert_eq!(wb.background_for(10), 5);
        assert_eq!(wb.background_for(1), 1, "at least one page");
        assert_eq!(
            wb.background_for(1000),
            configured,
            "never above the setting"
        );
        wb.round_started();
        assert_eq!(
            wb.background_for(10),
            5,
            "a round before the deadline keeps it"
        );
        wb.pressure_until_ticks
            .store(wb.now_ticks().wrapping_sub(1), Ordering::SeqCst);
        wb.round_started();
        assert_eq!(wb.background_for(10), configured, "lapsed");
        wb.dirty_victim();
        assert_eq!(wb.background_for(10), 5, "renewed");
    }
}
