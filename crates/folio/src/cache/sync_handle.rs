//! [`SyncHandle`](crate::SyncHandle): a write-back error cursor of its own (Linux's per-`struct file` errseq).

use std::ops::Range;
use std::sync::Arc;

use crate::cache::PageCache;
use crate::engine::{Check, Cursor, Engine};
use crate::error::Result;

/// A handle with its own write-back error cursor: see the [`writeback`](crate::writeback) module docs.
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
    engine: Arc<Engine>,
    cursor: Cursor,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle")
            .field("seen", &self.cursor.sync_position())
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
        self.engine.sync_with(&range, &self.cursor)
    }

    /// Writes back the dirty pages overlapping `range` (no backend sync), and reports a failure
    /// this handle has not seen yet. A failure it reports is reported again by this handle's
    /// next [`sync`](Self::sync): a flush does not make data durable.
    pub fn flush_range(&self, range: Range<u64>) -> Result<()> {
        let s = &self.engine;
        // Everyone's failures this handle has not seen, then this call's own (whose report
        // another thread sharing the handle may have taken meanwhile).
        let own = s.flush_pages_parallel(s.pages_overlapping(&range));
        s.errseq.check(&self.cursor, Check::Flush)?;
        own
    }

    /// Reports a failure this handle has not seen yet, without any I/O (as a flush does: the
    /// next sync reports it again).
    pub fn check(&self) -> Result<()> {
        self.engine.errseq.check(&self.cursor, Check::Flush)
    }
}

impl PageCache {
    /// A new handle with its own error cursor (see [`SyncHandle`]). It starts after the failures
    /// some observer has already been told about, so a failure nobody has seen is reported to it.
    pub fn sync_handle(&self) -> SyncHandle {
        let engine = self.engine().clone();
        let cursor = Cursor::at(engine.errseq.sample());
        SyncHandle { engine, cursor }
    }
}
