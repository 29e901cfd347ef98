//! Building an engine ([`Engine::new`]), and the two traits through which the threads below it
//! drive it: `FlushTarget` (the flusher) and `Prefetcher` (the readahead workers).
//!
//! # Owns
//! - checking the configuration against the backend (page size and alignment) and sizing the
//!   I/O runs; allocating everything up front (the frame region, the state words, the index,
//!   the free list, the policy's metadata); starting the flusher thread;
//! - the `FlushTarget` and `Prefetcher` impls: a flusher round or a readahead job runs as
//!   background work (it holds `background` shared, so the invariant checker sees the cache at
//!   rest).
//!
//! # Does not own
//! - the configuration's own checks ([`CacheConfig`]), the flusher's and the workers' loops
//!   (`writeback.rs`, `readahead`), what a round or a job does (`flush.rs`, `load.rs`).
//!
//! # May block
//! - `Engine::new`: maps the frame region and, with `Commit::UpFront`, commits all of it; spawns
//!   the flusher thread;
//! - the trait methods: a flusher round or a readahead job, which do I/O.

use std::sync::Arc;

use super::{fence, Cursor, Engine, ErrSeq};
use crate::backend::{PageCacheBackend, Region};
use crate::config::CacheConfig;
use crate::error::{ConfigError, Error, Result};
use crate::index::PageIndex;
use crate::page::FrameMeta;
use crate::readahead::Readahead;
use crate::stats::Counters;
use crate::sync::{AtomicBool, AtomicU64, Mutex};
use crate::writeback::Writeback;

impl Engine {
    /// A new engine over `backend`: allocates every frame up front and starts the flusher.
    pub(crate) fn new(
        backend: Arc<dyn PageCacheBackend>,
        config: CacheConfig,
    ) -> Result<Arc<Engine>> {
        let frames = config.frames()?;
        config.validate_writeback()?;
        let page_size = config.page_size;
        let geometry = backend.geometry();
        let align = geometry.alignment;
        if align > 1 && page_size % align != 0 {
            return Err(Error::Misaligned {
                offset: 0,
                len: page_size,
                align,
            });
        }
        let region_len = frames
            .checked_mul(page_size)
            .ok_or(ConfigError::BudgetTooLarge {
                frames,
                frames_max: usize::MAX / page_size,
            })?;
        let region = Region::new(region_len, page_size, config.commit)?;
        let max_io_pages = (config.max_io_bytes / page_size)
            .clamp(1, geometry.io_pages_max.max(1))
            .min(frames);
        let engine = Arc::new_cyclic(|weak| Engine {
            readahead: Readahead::new(
                weak.clone() as std::sync::Weak<dyn crate::readahead::Prefetcher>,
                page_size,
                frames,
                config.readahead_max_bytes,
                config.readahead_workers,
                max_io_pages,
            ),
            len: AtomicU64::new(backend.len()),
            page_size,
            page_shift: page_size.trailing_zeros(),
            frames: (0..frames).map(|_| FrameMeta::default()).collect(),
            region,
            index: PageIndex::new(frames),
            free: Mutex::new(super::free::FreeFrames::full(frames)),
            policy: config.policy.build(frames),
            size_lock: Mutex::new(()),
            truncate_pending: AtomicBool::new(false),
            data_end: AtomicU64::new(backend.len()),
            errseq: ErrSeq::default(),
            cursor: Cursor::at(0),
            durability_lost: Mutex::new(None),
            sync_lock: Mutex::new(()),
            quarantined: Mutex::new(Vec::new()),
            background: crate::sync::RwLock::new(()),
            fences: fence::Fences::default(),
            counters: Counters::default(),
            dirty_pages: AtomicU64::new(0),
            max_io_pages,
            frame_wait_max: config.frame_wait_max,
            wb: Writeback::new(&config.writeback, frames),
            backend,
        });
        let weak: std::sync::Weak<dyn crate::writeback::FlushTarget> = Arc::downgrade(&engine) as _;
        crate::writeback::start(&engine.wb, weak)?;
        Ok(engine)
    }
}

impl crate::writeback::FlushTarget for Engine {
    fn writeback(&self) -> &Writeback {
        &self.wb
    }

    fn writeback_round(&self) -> bool {
        let _busy = self.background.read();
        Engine::writeback_round(self)
    }
}

impl crate::readahead::Prefetcher for Engine {
    fn readahead(&self) -> &Readahead {
        &self.readahead
    }

    fn prefetch(&self, p: u64, run: usize, mark: bool) -> Result<()> {
        let _busy = self.background.read();
        Engine::prefetch(self, p, run, mark)
    }
}
