//! Backends: where pages come from and go to.
//!
//! [`PageCacheBackend`] is the seed's trait, kept small because it is the test seam: the cache
//! only ever asks a backend to read or write runs of whole pages, to report and change its
//! length, and to make written data durable. Reads and writes are asynchronous in the seed's
//! sense: they return an [`IoWaiter`] that completes later (a positional-I/O backend completes it
//! before returning; an io_uring backend when the kernel reports completion).
//!
//! Buffers are [`FrameMut`] (lent to a read, which fills it) and [`Frame`] (lent to a write,
//! which only reads it). A frame handed to a backend belongs to that I/O until the waiter
//! completes: the cache keeps the page locked (reads) or under write-back (writes) for that long,
//! and never drops a waiter without waiting for it. The memory behind a frame is reference
//! counted, so it stays valid even if a waiter is leaked.
//!
//! # Ownership is checked, so the trait stays safe
//! A backend could keep a frame after completing its I/O and touch it later, while the cache
//! has handed the page to readers or to another I/O. Safe code cannot turn that into undefined
//! behaviour here:
//! - every [`FrameMut`] (which can write the frame) is counted while it exists; after a read
//!   completes, the cache publishes a frame only if its count is back to zero. A frame whose
//!   `FrameMut` did not come back (a backend that kept it, or an io_uring given up while the
//!   kernel may still write it) is *quarantined*: never used again, counted in
//!   [`Stats::quarantined_frames`](crate::Stats::quarantined_frames), logged;
//! - a [`Frame`] gives safe code only copies of its bytes ([`Frame::copy_to`], a copy that
//!   tolerates a concurrent writer, as the cache's optimistic reads do); a borrowed slice
//!   ([`Frame::as_slice`]) is `unsafe`, for backends that hand it to the kernel or to a system
//!   call that returns before the I/O completes.
//!
//! A backend that keeps a `Frame` can still read bytes the cache has since changed: that is a
//! broken backend, whose late writes the cache cannot undo (the io_uring backend that gives up a
//! ring with writes in it fails every later write for that reason).
//!
//! One file per backend: [`memory`](mod@memory) (tests and examples), [`file`](mod@file) (regular
//! files and block devices through positional I/O), [`uring`] (the same through io_uring, with many
//! I/Os in flight), [`faulty`](mod@faulty) (fault injection and power-cut simulation around any
//! other backend). [`open_best`] picks io_uring when the kernel allows it, else positional I/O.
//!
//! Frame memory and the handles lent to backends are in `frame.rs`, waiters in `waiter.rs`;
//! this file holds the trait, [`open_best`] and the checks the backends share.

pub mod extents;
pub mod faulty;
pub mod file;
pub mod memory;
pub mod uring;

mod frame;
mod waiter;

use std::sync::Arc;

use crate::error::{ConfigError, Error, Result};

pub use extents::{Allocation, Extent};
pub use faulty::{FaultConfig, FaultyBackend};
pub use file::{FileBackend, IoMode};
pub(crate) use frame::Region;
pub use frame::{Commit, Frame, FrameMut, FRAME_ALIGN};
pub use memory::MemoryBackend;
pub use uring::{uring_support, UringBackend};
pub use waiter::{IoCompleter, IoDriver, IoWaiter, LocalIoWaiter};

/// Opens `path` with the fastest backend this process may use: [`UringBackend`] where io_uring
/// works, else [`FileBackend`] (with a warning that says why, printed once to stderr and logged).
/// Chosen at run time, so one binary serves old kernels, seccomp sandboxes and hosts with
/// `kernel.io_uring_disabled` set.
/// Setting `FOLIO_DISABLE_URING=1` forces the fallback.
pub fn open_best(
    path: impl AsRef<std::path::Path>,
    mode: IoMode,
) -> Result<Arc<dyn PageCacheBackend>> {
    let path = path.as_ref();
    match uring_support() {
        Ok(()) => match UringBackend::open(path, mode) {
            Ok(b) => return Ok(Arc::new(b)),
            Err(e) => warn_fallback(&e.to_string()),
        },
        Err(why) => warn_fallback(&why),
    }
    Ok(Arc::new(FileBackend::open(path, mode)?))
}

fn warn_fallback(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "folio: io_uring unavailable ({why}); falling back to positional I/O (FileBackend)"
        );
    });
    tracing::warn!(reason = why, "io_uring unavailable; using FileBackend");
}

/// The source and destination of pages: a file, a block device, memory, or a wrapper around one
/// of those (fault injection, tracing).
///
/// Page `idx` covers bytes `idx * page_size .. (idx + 1) * page_size`, where `page_size` is the
/// length of the frames passed in. A backend must:
/// - fill the part of a read that lies past [`len`](Self::len) with zeros (a file whose length is
///   not a page multiple has a partial last page);
/// - never grow itself on a write: bytes of a write past `len` are not written;
/// - complete every waiter it returns, with an error if the I/O failed.
///
/// The core is five methods: [`read_pages`](Self::read_pages),
/// [`write_pages`](Self::write_pages), [`len`](Self::len), [`set_len`](Self::set_len) and
/// [`sync`](Self::sync). The rest have defaults that are always correct: the I/O's shape
/// ([`geometry`](Self::geometry)), hooks a backend with many I/Os in flight overrides to batch
/// them (`start_*`, [`unplug`](Self::unplug)), and cheaper ways to zero a range or map its
/// holes ([`write_zeroes`](Self::write_zeroes), [`allocation`](Self::allocation)). Single-page
/// helpers are in [`PageCacheBackendExt`], which every backend has.
// `is_empty` is there too (`PageCacheBackendExt::is_empty`): the core stays the five methods.
#[allow(clippy::len_without_is_empty)]
pub trait PageCacheBackend: Send + Sync {
    /// Reads the contiguous pages `idx .. idx + frames.len()` into `frames`, asynchronously.
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter>;

    /// Writes `frames` to the contiguous pages `idx .. idx + frames.len()`, asynchronously.
    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter>;

    /// Length of the backend in bytes.
    fn len(&self) -> u64;

    /// Sets the length in bytes: shrinking drops data past the end, growing reads as zeros.
    fn set_len(&self, len: u64) -> Result<()>;

    /// Makes every completed write durable (`fdatasync`).
    fn sync(&self) -> Result<()>;

    /// How this backend wants its I/O shaped: the largest run, the alignment, the queue depth
    /// (default [`Geometry::default`]: 256 pages, no alignment, one operation at a time).
    fn geometry(&self) -> Geometry {
        Geometry::default()
    }

    /// As [`read_pages`](Self::read_pages), when the caller has more reads to submit before it
    /// waits for this one (a batch of misses). A backend that does small reads inline, on the
    /// calling thread, should queue this one instead, so the batch is in flight at once; it may
    /// hold the queued reads back until [`unplug`](Self::unplug), which the caller calls before
    /// it waits for any of them (Linux's block plugging).
    fn start_read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        self.read_pages(idx, frames)
    }

    /// As [`start_read_pages`](Self::start_read_pages), when the calling thread itself will wait
    /// for the read (or drop its waiter), which the returned [`LocalIoWaiter`] enforces: a
    /// backend may then complete it on a queue that only this thread enters. The page cache's
    /// batched misses ([`read_exact_many`](crate::PageCache::read_exact_many)) come this way.
    /// Default: [`start_read_pages`](Self::start_read_pages).
    fn start_read_pages_local(&self, idx: u64, frames: Vec<FrameMut>) -> Result<LocalIoWaiter> {
        self.start_read_pages(idx, frames).map(LocalIoWaiter::from)
    }

    /// As [`write_pages`](Self::write_pages), when the caller has more writes to submit before
    /// it waits for this one (a flush). As with [`start_read_pages`](Self::start_read_pages), the
    /// backend may hold it back until [`unplug`](Self::unplug), which the caller calls before it
    /// waits for any of them.
    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.write_pages(idx, frames)
    }

    /// As [`start_write_pages`](Self::start_write_pages), waited for on the calling thread (see
    /// [`start_read_pages_local`](Self::start_read_pages_local)). The page cache's flushes come
    /// this way. Default: [`start_write_pages`](Self::start_write_pages).
    fn start_write_pages_local(&self, idx: u64, frames: Vec<Frame>) -> Result<LocalIoWaiter> {
        self.start_write_pages(idx, frames).map(LocalIoWaiter::from)
    }

    /// Starts the reads and writes that the calling thread queued with the `start_*` methods
    /// (default: nothing to do).
    fn unplug(&self) {}

    /// Makes `offset .. offset + len` read as zeros, cheaply if the backend can (hole punching).
    /// Returns [`Error::Unsupported`] if it cannot; the cache then writes zero pages instead.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Err(Error::Unsupported("write_zeroes"))
    }

    /// The cache dropped the pages of `offset .. offset + len` without writing them back
    /// ([`PageCache::discard_range`](crate::PageCache::discard_range)): the caller no longer
    /// wants their unsaved changes. A backend that counts bytes whose write-back failed, to
    /// report them as lost at close, stops counting these; a write-back failure the cache
    /// already saw still reaches the next sync. Called once no write-back of them is in flight.
    /// Default: nothing to do.
    fn discarded(&self, offset: u64, len: u64) {
        let _ = (offset, len);
    }

    /// Which bytes of `offset .. offset + len` are data and which are holes, as at most
    /// `extents_max` [`Extent`]s from `offset` on (they may cover less than `len`). Only what
    /// the backend itself holds: written-back data, not dirty pages still in a cache. The
    /// default, "all data", is always correct; file backends ask the file system
    /// (`SEEK_DATA`/`SEEK_HOLE`).
    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> Result<Vec<Extent>> {
        let _ = extents_max;
        let len = len.min(self.len().saturating_sub(offset));
        Ok(if len == 0 {
            Vec::new()
        } else {
            vec![Extent {
                len,
                allocation: Allocation::Data,
            }]
        })
    }
}

/// The shape of a backend's I/O, from [`PageCacheBackend::geometry`].
///
/// ```
/// use folio::backend::Geometry;
///
/// let g = Geometry::default().with_queue_depth(32).with_io_pages_max(64);
/// assert_eq!((g.io_pages_max, g.alignment, g.queue_depth), (64, 1, 32));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Geometry {
    /// The largest number of pages this backend wants in one
    /// [`read_pages`](PageCacheBackend::read_pages) or
    /// [`write_pages`](PageCacheBackend::write_pages) call (default 256).
    pub io_pages_max: usize,
    /// The alignment (bytes) that offsets, lengths and buffers of I/O must have (O_DIRECT;
    /// default 1: none).
    pub alignment: usize,
    /// How many operations this backend keeps in flight at once. 1 (the default) means its
    /// calls do the I/O before they return (the waiter is already complete): the cache then
    /// writes back large flushes from several threads to get a queue depth. Above 1 the cache
    /// submits up to this many operations from one thread and waits for them afterwards.
    pub queue_depth: usize,
}

impl Default for Geometry {
    fn default() -> Geometry {
        Geometry {
            io_pages_max: 256,
            alignment: 1,
            queue_depth: 1,
        }
    }
}

impl Geometry {
    /// With [`io_pages_max`](Self::io_pages_max) set to `pages`.
    pub fn with_io_pages_max(mut self, pages: usize) -> Geometry {
        self.io_pages_max = pages;
        self
    }

    /// With [`alignment`](Self::alignment) set to `bytes`.
    pub fn with_alignment(mut self, bytes: usize) -> Geometry {
        self.alignment = bytes;
        self
    }

    /// With [`queue_depth`](Self::queue_depth) set to `depth`.
    pub fn with_queue_depth(mut self, depth: usize) -> Geometry {
        self.queue_depth = depth;
        self
    }
}

/// Single-page helpers and derived values over any [`PageCacheBackend`] (the seed's
/// `read_page`, `write_page` and their synchronous forms). Implemented for every backend; not
/// meant to be implemented by hand.
pub trait PageCacheBackendExt: PageCacheBackend {
    /// True if the backend is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of pages of `page_size` bytes, counting a partial last page.
    fn npages(&self, page_size: usize) -> u64 {
        self.len().div_ceil(page_size as u64)
    }

    /// Reads one page (the seed's `read_page`).
    fn read_page(&self, idx: u64, frame: FrameMut) -> Result<IoWaiter> {
        self.read_pages(idx, vec![frame])
    }

    /// Writes one page (the seed's `write_page`).
    fn write_page(&self, idx: u64, frame: Frame) -> Result<IoWaiter> {
        self.write_pages(idx, vec![frame])
    }

    /// Reads one page and waits for it (the seed's `read_page_sync`).
    fn read_page_sync(&self, idx: u64, frame: FrameMut) -> Result<()> {
        self.read_page(idx, frame)?.wait()
    }

    /// Writes one page and waits for it (the seed's `write_page_sync`).
    fn write_page_sync(&self, idx: u64, frame: Frame) -> Result<()> {
        self.write_page(idx, frame)?.wait()
    }
}

impl<B: PageCacheBackend + ?Sized> PageCacheBackendExt for B {}

/// Checks that `frames` all have the length of the first and returns it with the byte offset of
/// page `idx`. Shared by the backends in this module.
pub(crate) fn io_geometry(idx: u64, lens: impl Iterator<Item = usize>) -> Result<(usize, u64)> {
    let mut page_size = None;
    let mut count = 0u64;
    for len in lens {
        match page_size {
            None => page_size = Some(len),
            Some(p) if p != len => {
                return Err(ConfigError::FrameLengths {
                    first: p,
                    other: len,
                }
                .into())
            }
            Some(_) => {}
        }
        count += 1;
    }
    let page_size = page_size.unwrap_or(0);
    let offset = idx.checked_mul(page_size as u64).ok_or(Error::Overflow {
        offset: idx,
        len: page_size as u64,
    })?;
    offset
        .checked_add(count * page_size as u64)
        .ok_or(Error::Overflow {
            offset,
            len: count * page_size as u64,
        })?;
    Ok((page_size, offset))
}
