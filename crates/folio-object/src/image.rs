//! The state of one open image, shared by the backend's calls and its tasks.
//!
//! Owns: the image's geometry (size, chunk size, the manifest's version), the table of chunk
//! cells (`chunk.rs`), the bounds on requests in flight, the lease fence, the write tickets that
//! `sync` waits on, and the count of bytes whose write-back failed.
//!
//! Does not own: chunk reads and rewrites (`chunk.rs`), the lease protocol (`lease.rs`), the
//! `PageCacheBackend` calls (`backend.rs`).
//!
//! May block: the async waits below run on the backend's runtime.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{Notify, RwLock, Semaphore};

use crate::chunk::Cell;
use crate::error::{ObjResult, ObjectError};
use crate::layout::{Layout, Manifest};
use crate::store::{Requests, Version};

/// Whether an image is opened for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// Reads only; no lease is taken, writes and resizes are refused.
    ReadOnly,
    /// Reads and writes under the single-writer lease.
    ReadWrite,
}

/// Whether this writer may still write: the lease is held and was renewed recently enough.
pub(crate) struct Fence {
    epoch: Instant,
    /// Milliseconds after `epoch` until which the lease is surely ours (`u64::MAX`: no lease
    /// needed, or not yet limited).
    valid_until_ms: AtomicU64,
    lost: Mutex<Option<String>>,
    prefix: String,
}

impl Fence {
    pub(crate) fn new(prefix: String) -> Fence {
        Fence {
            epoch: Instant::now(),
            valid_until_ms: AtomicU64::new(u64::MAX),
            lost: Mutex::new(None),
            prefix,
        }
    }

    /// Err if writes must stop.
    pub(crate) fn check(&self) -> ObjResult<()> {
        if let Some(why) = self.lost.lock().clone() {
            return Err(ObjectError::LeaseLost {
                prefix: self.prefix.clone(),
                why,
            });
        }
        if self.now_ms() > self.valid_until_ms.load(Ordering::Acquire) {
            return Err(ObjectError::LeaseLost {
                prefix: self.prefix.clone(),
                why: "not renewed within its time to live".into(),
            });
        }
        Ok(())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The lease is ours until `until_ms` (after `epoch`).
    pub(crate) fn extend(&self, until_ms: u64) {
        self.valid_until_ms.store(until_ms, Ordering::Release);
    }

    /// The lease is gone for good.
    pub(crate) fn lose(&self, why: String) {
        tracing::error!(prefix = %self.prefix, why = %why, "lease lost; writes are refused");
        self.lost.lock().get_or_insert(why);
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.lock().is_some()
    }
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

/// One open image.
pub(crate) struct Image {
    pub(crate) req: Requests,
    pub(crate) layout: Layout,
    pub(crate) chunk_size: u64,
    pub(crate) access: Access,
    /// Image size in bytes (the manifest's).
    size: AtomicU64,
    /// The manifest's version, for its conditional rewrite.
    pub(crate) manifest_version: Mutex<Option<Version>>,
    /// Held shared by every chunk read and rewrite, exclusively by `set_len`.
    pub(crate) geometry: RwLock<()>,
    cells: Mutex<HashMap<u64, Arc<Cell>>>,
    pub(crate) gets: Semaphore,
    pub(crate) puts: Semaphore,
    pub(crate) fence: Fence,
    pub(crate) tickets: Tickets,
    /// 4 KiB blocks whose latest write-back failed and was not redone since.
    pub(crate) failed_blocks: AtomicU64,
    /// Chunks whose queued writes wait for `unplug`.
    pub(crate) plugged: Mutex<Vec<u64>>,
    pub(crate) runtime: tokio::runtime::Handle,
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
        Image {
            req,
            layout,
            chunk_size: manifest.chunk_size,
            access,
            size: AtomicU64::new(manifest.size),
            manifest_version: Mutex::new(None),
            geometry: RwLock::new(()),
            cells: Mutex::new(HashMap::new()),
            gets: Semaphore::new(limits.gets_in_flight_max.max(1)),
            puts: Semaphore::new(limits.puts_in_flight_max.max(1)),
            fence: Fence::new(prefix),
            tickets: Tickets::default(),
            failed_blocks: AtomicU64::new(0),
            plugged: Mutex::new(Vec::new()),
            runtime,
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

    /// The cell of chunk `n`, made on first use (one per chunk of the image at most).
    pub(crate) fn cell(&self, n: u64) -> Arc<Cell> {
        self.cells.lock().entry(n).or_default().clone()
    }

    /// Chunks with a cell, and their cells (a snapshot).
    pub(crate) fn cells(&self) -> Vec<(u64, Arc<Cell>)> {
        let mut v: Vec<_> = self
            .cells
            .lock()
            .iter()
            .map(|(&n, c)| (n, c.clone()))
            .collect();
        v.sort_unstable_by_key(|&(n, _)| n);
        v
    }

    /// Refuses writes to a read-only image or after the lease is lost.
    pub(crate) fn writable(&self) -> ObjResult<()> {
        if self.access == Access::ReadOnly {
            return Err(ObjectError::ReadOnly);
        }
        self.fence.check()
    }
}
