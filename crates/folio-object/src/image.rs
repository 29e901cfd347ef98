//! The state of one open image, shared by the backend's calls and its tasks.
//!
//! Owns: the image's geometry (size, chunk size, the manifest's version and stamp), the known
//! versions of its chunks (`versions.rs`), the cells of the chunks that have something going on
//! (`cell.rs`; a cell is dropped as soon as its chunk is idle, so the memory beyond the versions
//! table is bounded by the I/O in flight and the failed writes, not by the image's size), the
//! bounds on requests in flight, the lease fence (`fence.rs`), this session's writer id and
//! write numbers (`trailer.rs`), the write tickets that `sync` waits on, and the count of bytes
//! whose write-back failed.
//!
//! Does not own: chunk reads and rewrites (`chunk.rs`, `rewrite.rs`), the lease protocol
//! (`lease.rs`), the `PageCacheBackend` calls (`backend.rs`).
//!
//! May block: the async waits below run on the backend's runtime.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{Notify, RwLock, Semaphore};

use crate::cell::Cell;
use crate::error::{ObjResult, ObjectError};
use crate::fence::Fence;
use crate::layout::{Layout, Manifest, Stamp};
use crate::store::{Requests, Version};
use crate::trailer::{random_u64, WriteId};
use crate::versions::Versions;

/// Whether an image is opened for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Reads only; no lease is taken, writes and resizes are refused.
    ReadOnly,
    /// Reads and writes under the single-writer lease.
    ReadWrite,
}

/// Writes queued or in flight, numbered, so that `sync` waits for exactly those issued before it.
#[derive(Default)]
pub(crate) struct Tickets {
    state: Mutex<(u64, BTreeSet<u64>)>,
    done: Notify,
}

impl Tickets {
    pub(crate) fn issue(&self) -> u64 {
        let mut s = self.state.lock();
        let t = s.0;
        s.0 += 1;
        s.1.insert(t);
        t
    }

    pub(crate) fn finish(&self, t: u64) {
        let removed = self.state.lock().1.remove(&t);
        debug_assert!(removed, "ticket {t} finished twice");
        self.done.notify_waiters();
    }

    /// The next ticket to be issued: everything below it has been issued.
    pub(crate) fn next(&self) -> u64 {
        self.state.lock().0
    }

    /// Waits until every ticket below `t` has finished.
    pub(crate) async fn wait_below(&self, t: u64) {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.lock().1.first().is_none_or(|&first| first >= t) {
                return;
            }
            notified.await;
        }
    }
}

/// Limits on the backend's concurrency (and so on its memory: each request in flight holds at
/// most one chunk of bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Ranged GETs in flight at once.
    pub gets_in_flight_max: usize,
    /// Chunk rewrites (GET if needed, then PUT or DELETE) in flight at once.
    pub puts_in_flight_max: usize,
    /// Worker threads of the backend's runtime.
    pub runtime_threads: usize,
}

impl Default for Limits {
    /// 32 GETs and 8 chunk rewrites in flight, on 2 runtime threads.
    fn default() -> Limits {
        Limits {
            gets_in_flight_max: 32,
            puts_in_flight_max: 8,
            runtime_threads: 2,
        }
    }
}

/// A holder of a chunk's cell. Dropping it gives the cell back: the cell leaves the table if
/// nobody else holds it and its chunk is idle (every holder goes through this, so the last one
/// out always checks).
pub(crate) struct CellRef<'a> {
    image: &'a Image,
    n: u64,
    cell: Option<Arc<Cell>>,
}

impl std::ops::Deref for CellRef<'_> {
    type Target = Cell;

    fn deref(&self) -> &Cell {
        self.cell.as_ref().expect("held until drop")
    }
}

impl Drop for CellRef<'_> {
    fn drop(&mut self) {
        let mut cells = self.image.cells.lock();
        drop(self.cell.take());
        if let Some(c) = cells.get(&self.n) {
            // Only the table holds it (a holder clones under this lock, so none can appear
            // meanwhile), and nothing is going on. Lock order: the table, then a cell's state.
            if Arc::strong_count(c) == 1 && c.st.lock().is_idle() {
                cells.remove(&self.n);
            }
        }
    }
}

/// One open image.
pub(crate) struct Image {
    pub(crate) req: Requests,
    pub(crate) layout: Layout,
    pub(crate) chunk_size: u64,
    pub(crate) access: Access,
    /// Image size in bytes (the manifest's).
    size: AtomicU64,
    /// The manifest's version and stamp, for its conditional rewrite.
    pub(crate) manifest_state: Mutex<(Option<Version>, Stamp)>,
    /// Held shared by every chunk read and rewrite, exclusively by `set_len`.
    pub(crate) geometry: RwLock<()>,
    /// The version of every stored chunk Folio knows of (absent: no object).
    pub(crate) versions: Mutex<Versions>,
    /// The cells of chunks with something going on (see the module docs).
    cells: Mutex<HashMap<u64, Arc<Cell>>>,
    pub(crate) gets: Semaphore,
    pub(crate) puts: Semaphore,
    /// Chunk rewrites in flight at once (the slots of `puts`).
    pub(crate) puts_in_flight_max: usize,
    pub(crate) fence: Fence,
    pub(crate) tickets: Tickets,
    /// Bytes whose latest write-back failed and was not redone since.
    pub(crate) failed_bytes: AtomicU64,
    /// Chunks whose queued writes wait for `unplug`.
    pub(crate) plugged: Mutex<Vec<u64>>,
    pub(crate) runtime: tokio::runtime::Handle,
    /// This session's writer id (random, drawn at open) and its next write number.
    writer: u64,
    write_seq: AtomicU64,
}

impl Image {
    pub(crate) fn new(
        req: Requests,
        layout: Layout,
        manifest: Manifest,
        access: Access,
        limits: Limits,
        runtime: tokio::runtime::Handle,
    ) -> Image {
        let prefix = layout.prefix().to_string();
        // Read-write: closed until the lease is taken (`lease.rs` opens it).
        let fence_until = match access {
            Access::ReadOnly => u64::MAX,
            Access::ReadWrite => 0,
        };
        let fence = Fence::new(req.clock, prefix, fence_until);
        Image {
            req,
            layout,
            chunk_size: manifest.chunk_size,
            access,
            size: AtomicU64::new(manifest.size),
            manifest_state: Mutex::new((None, Stamp::default())),
            geometry: RwLock::new(()),
            versions: Mutex::new(Versions::default()),
            cells: Mutex::new(HashMap::new()),
            gets: Semaphore::new(limits.gets_in_flight_max.max(1)),
            puts: Semaphore::new(limits.puts_in_flight_max.max(1)),
            puts_in_flight_max: limits.puts_in_flight_max.max(1),
            fence,
            tickets: Tickets::default(),
            failed_bytes: AtomicU64::new(0),
            plugged: Mutex::new(Vec::new()),
            runtime,
            writer: random_u64(),
            write_seq: AtomicU64::new(1),
        }
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub(crate) fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    pub(crate) fn manifest(&self) -> Manifest {
        Manifest {
            size: self.size(),
            chunk_size: self.chunk_size,
        }
    }

    /// A new write id of this session (never given twice).
    pub(crate) fn next_write(&self) -> WriteId {
        WriteId {
            writer: self.writer,
            seq: self.write_seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This session's writer id.
    pub(crate) fn writer(&self) -> u64 {
        self.writer
    }

    /// True if `id` is a write of this session.
    pub(crate) fn is_ours(&self, id: WriteId) -> bool {
        self.access == Access::ReadWrite && id.writer == self.writer
    }

    /// The version Folio knows of chunk `n` (`None`: no object).
    pub(crate) fn version(&self, n: u64) -> Option<Version> {
        self.versions.lock().get(n)
    }

    pub(crate) fn set_version(&self, n: u64, v: Option<Version>) {
        self.versions.lock().set(n, v);
    }

    /// The cell of chunk `n`, made if it has none; given back when the guard drops.
    pub(crate) fn cell(&self, n: u64) -> CellRef<'_> {
        let cell = self.cells.lock().entry(n).or_default().clone();
        CellRef {
            image: self,
            n,
            cell: Some(cell),
        }
    }

    /// The cell of chunk `n` if it has one.
    pub(crate) fn cell_if_any(&self, n: u64) -> Option<CellRef<'_>> {
        let cell = self.cells.lock().get(&n).cloned()?;
        Some(CellRef {
            image: self,
            n,
            cell: Some(cell),
        })
    }

    /// Chunks with a cell, and their cells (a snapshot, in chunk order).
    pub(crate) fn cells(&self) -> Vec<(u64, CellRef<'_>)> {
        let mut v: Vec<(u64, Arc<Cell>)> = self
            .cells
            .lock()
            .iter()
            .map(|(&n, c)| (n, c.clone()))
            .collect();
        v.sort_unstable_by_key(|&(n, _)| n);
        v.into_iter()
            .map(|(n, c)| {
                let r = CellRef {
                    image: self,
                    n,
                    cell: Some(c),
                };
                (n, r)
            })
            .collect()
    }

    /// Cells alive now (chunks with something going on).
    pub(crate) fn cells_live(&self) -> usize {
        self.cells.lock().len()
    }

    /// Refuses writes to a read-only image or after the lease is lost.
    pub(crate) fn writable(&self) -> ObjResult<()> {
        if self.access == Access::ReadOnly {
            return Err(ObjectError::ReadOnly);
        }
        self.fence.check()
    }
}
