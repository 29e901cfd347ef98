//! The Folio page cache as an export.
//!
//! Owns: the mapping of NBD's storage operations onto [`folio::PageCache`]: reads and writes
//! through the cache, hits lent zero-copy ([`PageCache::try_read_range`]) and writes to cached
//! pages done inline ([`PageCache::try_write_range`]), `FLUSH` and `FUA`
//! through each connection's own [`SyncHandle`] (its write-back error cursor), `WRITE_ZEROES`
//! and `TRIM` as [`PageCache::zero_range`], `CACHE` as a `WillNeed` hint, and allocation status
//! from the backend after the range's dirty pages are written back. Does not own: the cache
//! itself, threads or the protocol. May block: everything but `read_resident` and
//! `try_write_at` (I/O, waiting
//! for pages being loaded or written).

use std::io;
use std::sync::Arc;

use folio::{Advice, PageCache, SyncHandle};

use crate::device::{Allocation, BlockDevice, Extent, Resident, SyncCursor};

/// The Folio page cache as an export: `FLUSH` on any connection writes back and syncs the whole
/// cache (so a flush on one connection covers writes acknowledged on every connection sharing
/// it: `CAN_MULTI_CONN`), FUA syncs the request's range, and both `WRITE_ZEROES` and `TRIM`
/// zero the range (holes punched where the backend can; trimmed ranges then read back as zeros,
/// which is deterministic and allowed).
pub struct CacheDevice {
    cache: Arc<PageCache>,
}

impl CacheDevice {
    /// Wraps a shared cache, advising it that access is random with locality (a disk image:
    /// misses outside sequential streams load the cluster around them, adaptively; see
    /// [`Advice::Clustered`]).
    pub fn new(cache: Arc<PageCache>) -> CacheDevice {
        let _ = cache.advise(0..u64::MAX, Advice::Clustered);
        CacheDevice { cache }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<PageCache> {
        &self.cache
    }

    fn end(&self, offset: u64, len: u64) -> io::Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.cache.len() => Ok(end),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("range {offset}+{len} past the end"),
            )),
        }
    }
}

/// A connection's cursor: a [`SyncHandle`] of the cache.
struct CacheCursor {
    handle: SyncHandle,
    len: u64,
}

impl SyncCursor for CacheCursor {
    fn flush(&self) -> io::Result<()> {
        Ok(self.handle.sync()?)
    }
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset.saturating_add(len).min(self.len);
        Ok(self.handle.sync_range(offset..end)?)
    }
}

impl BlockDevice for CacheDevice {
    fn len(&self) -> u64 {
        self.cache.len()
    }
    fn block_size(&self) -> usize {
        self.cache.page_size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Ok(self.cache.read_exact_at(buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // The cache would grow the file; an export has a fixed size.
        self.end(offset, buf.len() as u64)?;
        Ok(self.cache.write_all_at(buf, offset)?)
    }
    /// The server's own flush (at shutdown), as a new observer: it writes back and syncs
    /// everything, and reports a write-back failure that no connection has been told about
    /// (one some connection's `FLUSH` already reported, and whose data a later flush wrote, is
    /// not reported again).
    fn flush(&self) -> io::Result<()> {
        Ok(self.cache.sync_handle().sync()?)
    }
    fn flush_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = self.end(offset, len)?;
        Ok(self.cache.sync_handle().sync_range(offset..end)?)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = self.end(offset, len)?;
        Ok(self.cache.zero_range(offset..end)?)
    }
    fn trim(&self, offset: u64, len: u64) -> io::Result<()> {
        self.write_zeroes(offset, len)
    }
    fn sync_cursor(self: Arc<Self>) -> Box<dyn SyncCursor> {
        Box::new(CacheCursor {
            handle: self.cache.sync_handle(),
            len: self.cache.len(),
        })
    }
    fn read_resident(&self, offset: u64, len: usize) -> Option<io::Result<Box<dyn Resident + '_>>> {
        match self.cache.try_read_range(offset, len) {
            Ok(Some(guards)) => Some(Ok(Box::new(guards))),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
    fn try_write_at(&self, buf: &[u8], offset: u64) -> Option<io::Result<()>> {
        match self.cache.try_write_range(buf, offset) {
            Ok(true) => Some(Ok(())),
            Ok(false) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
    fn zero_is_fast(&self) -> bool {
        // Whole pages are dropped from the cache and the backend punches a hole; only the
        // partial pages at the edges are written, in memory.
        true
    }
    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> io::Result<Vec<Extent>> {
        let end = self.end(offset, len)?;
        // Dirty pages over a hole are data: write them back first, so the backend knows. A
        // failed write-back keeps them dirty (and is reported to the next sync): say "data".
        if self.cache.flush_range(offset..end).is_err() {
            return Ok(vec![Extent {
                len,
                allocation: Allocation::Data,
            }]);
        }
        let mut extents = self.cache.backend().allocation(offset, len, extents_max)?;
        if extents.is_empty() {
            extents.push(Extent {
                len,
                allocation: Allocation::Data,
            });
        }
        Ok(extents)
    }
    /// Dirty bytes (pages written back whose sync failed are not counted: at least this much).
    fn unsynced_bytes(&self) -> Option<u64> {
        Some(self.cache.stats().dirty_pages * self.cache.page_size() as u64)
    }
    fn prefetch(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = self.end(offset, len)?;
        Ok(self.cache.advise(offset..end, Advice::WillNeed)?)
    }
}
