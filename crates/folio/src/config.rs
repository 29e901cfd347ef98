//! [`CacheConfig`]: the budget, page size, policy and tuning of a [`PageCache`](crate::PageCache).
//!
//! Owns the configuration values and their validation; owns no state. The write-back settings
//! are documented in [`writeback`](crate::writeback).
//!
//! It sits below the engine, which takes its settings from here (`crate::config`); the facade
//! re-exports it as [`cache`](crate::cache)'s (`folio::CacheConfig`, `folio::cache::CacheConfig`).
//! Never blocks.

use std::time::Duration;

use crate::backend::Commit;
use crate::error::{ConfigError, Result};
use crate::policy::PolicyKind;
use crate::writeback::WritebackConfig;

/// The smallest and largest page sizes.
pub const PAGE_SIZE_MIN: usize = 512;
/// See [`PAGE_SIZE_MIN`].
pub const PAGE_SIZE_MAX: usize = 64 * 1024;

/// The most frames a cache may have: 2^28, a terabyte of 4 KiB pages. Frame ids are 32-bit,
/// and every policy's metadata (the ghost FIFOs' rings, whose positions take 30 bits) is sized
/// for at least this many.
pub const FRAMES_MAX: usize = 1 << 28;

/// How big the cache may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Budget {
    /// At most this many bytes of page data (rounded down to whole pages).
    Bytes(u64),
    /// At most this many pages.
    Pages(usize),
}

/// Configuration of a [`PageCache`](crate::PageCache). The memory budget is mandatory.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub(crate) budget: Budget,
    pub(crate) page_size: usize,
    pub(crate) policy: PolicyKind,
    pub(crate) max_io_bytes: usize,
    pub(crate) frame_wait_max: Duration,
    pub(crate) readahead_max_bytes: usize,
    pub(crate) readahead_workers: usize,
    pub(crate) commit: Commit,
    pub(crate) writeback: WritebackConfig,
}

impl CacheConfig {
    /// A cache of at most `budget_bytes` bytes of pages, 4 KiB pages, the default policy.
    pub fn new(budget_bytes: u64) -> CacheConfig {
        CacheConfig::with_budget(Budget::Bytes(budget_bytes))
    }

    /// A cache of at most `pages` pages.
    pub fn with_budget_pages(pages: usize) -> CacheConfig {
        CacheConfig::with_budget(Budget::Pages(pages))
    }

    fn with_budget(budget: Budget) -> CacheConfig {
        CacheConfig {
            budget,
            page_size: 4096,
            policy: PolicyKind::default(),
            max_io_bytes: 1 << 20,
            frame_wait_max: Duration::from_secs(1),
            readahead_max_bytes: 2 << 20,
            readahead_workers: 4,
            commit: Commit::default(),
            writeback: WritebackConfig::default(),
        }
    }

    /// Page size in bytes: a power of two from 512 to 64 KiB (default 4096).
    pub fn page_size(mut self, page_size: usize) -> CacheConfig {
        self.page_size = page_size;
        self
    }

    /// The eviction policy.
    pub fn policy(mut self, policy: PolicyKind) -> CacheConfig {
        self.policy = policy;
        self
    }

    /// The largest single backend I/O (default 1 MiB); runs of pages are split at this size.
    pub fn io_bytes_max(mut self, bytes: usize) -> CacheConfig {
        self.max_io_bytes = bytes;
        self
    }

    /// The old name of [`io_bytes_max`](Self::io_bytes_max).
    #[deprecated(note = "renamed to `io_bytes_max` (qualifiers last)")]
    pub fn max_io_bytes(self, bytes: usize) -> CacheConfig {
        self.io_bytes_max(bytes)
    }

    /// How long a miss may wait for a frame when every frame is held (default 1 s), before it
    /// fails with [`Error::NoFreeFrame`](crate::Error::NoFreeFrame).
    pub fn frame_wait_max(mut self, wait: Duration) -> CacheConfig {
        self.frame_wait_max = wait;
        self
    }

    /// The largest readahead window (default 2 MiB; twice that in ranges advised
    /// [`Advice::Sequential`](crate::Advice::Sequential); never more than 1/16 of the cache). 0 turns readahead off.
    /// See [`readahead`](crate::readahead).
    pub fn readahead_bytes_max(mut self, bytes: usize) -> CacheConfig {
        self.readahead_max_bytes = bytes;
        self
    }

    /// The old name of [`readahead_bytes_max`](Self::readahead_bytes_max).
    #[deprecated(note = "renamed to `readahead_bytes_max` (qualifiers last)")]
    pub fn readahead_max_bytes(self, bytes: usize) -> CacheConfig {
        self.readahead_bytes_max(bytes)
    }

    /// Threads that load readahead and `WillNeed` pages in the background (default 4, started on
    /// first use). 0 turns readahead off.
    pub fn readahead_workers(mut self, workers: usize) -> CacheConfig {
        self.readahead_workers = workers;
        self
    }

    /// When the frame memory (the whole budget) is committed: [`Commit::UpFront`] (default) at
    /// creation, or [`Commit::Lazy`] as frames are first used.
    pub fn memory(mut self, commit: Commit) -> CacheConfig {
        self.commit = commit;
        self
    }

    pub(crate) fn frames(&self) -> Result<usize> {
        let ps = self.page_size;
        if !ps.is_power_of_two() || !(PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&ps) {
            return Err(ConfigError::PageSize {
                page_size: ps,
                min: PAGE_SIZE_MIN,
                max: PAGE_SIZE_MAX,
            }
            .into());
        }
        let frames = match self.budget {
            Budget::Bytes(b) => usize::try_from(b / ps as u64).unwrap_or(usize::MAX),
            Budget::Pages(p) => p,
        };
        if frames == 0 {
            let budget_bytes = match self.budget {
                Budget::Bytes(b) => b,
                Budget::Pages(_) => 0,
            };
            return Err(ConfigError::BudgetTooSmall {
                budget_bytes,
                page_size: ps,
            }
            .into());
        }
        if frames > FRAMES_MAX {
            return Err(ConfigError::BudgetTooLarge {
                frames,
                frames_max: FRAMES_MAX,
            }
            .into());
        }
        Ok(frames)
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
    /// `dirty_background_ratio`). At least one page. This is an upper bound: while eviction
    /// meets dirty victims (the thread needing a frame writes them itself) and the free frames
    /// plus the policy's [`eviction_window`](crate::EvictionPolicy::eviction_window) are fewer
    /// than twice it (a full cache under S3-FIFO, whose small queue is 2-25% of the frames), the
    /// flusher starts at half of them instead, so that pages are written before they are
    /// evicted ([`Stats::dirty_background_now_pages`](crate::Stats::dirty_background_now_pages) shows the value
    /// in force; the `writeback` module docs say why).
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
    pub fn throttle_wait_max(mut self, wait: Duration) -> CacheConfig {
        self.writeback.throttle_max_wait = wait;
        self
    }

    /// The old name of [`throttle_wait_max`](Self::throttle_wait_max).
    #[deprecated(note = "renamed to `throttle_wait_max` (qualifiers last)")]
    pub fn throttle_max_wait(self, wait: Duration) -> CacheConfig {
        self.throttle_wait_max(wait)
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
