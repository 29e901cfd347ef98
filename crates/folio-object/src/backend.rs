//! [`ObjectStoreBackend`]: a Folio [`PageCacheBackend`] over an image in an object store.
//!
//! Owns: opening and creating images (options checked, manifest, lease, the streamed listing of
//! chunk versions, then the reclaim of `reclaim.rs` under the fresh lease), closing them (no
//! release of the lease while a write may still land), the backend's own runtime, and the
//! `PageCacheBackend` calls: each read or write of a run of pages
//! is split at chunk boundaries into one piece per chunk; reads start one ranged GET per piece
//! at once (several in flight, bounded), writes queue each piece for its chunk's rewrite
//! (`chunk.rs`). Writes started with `start_write_pages` wait for `unplug`, so a flush's runs
//! of one chunk are gathered into one PUT. Every waiter completes only when its requests are
//! acknowledged.
//!
//! Durability: a PUT the store acknowledged is durable (S3's promise), so a write's waiter
//! completing `Ok` means its pages are durable, and [`sync`](PageCacheBackend::sync) waits for
//! the writes issued before it (failing only once the lease is lost for good). A failed write
//! fails its waiter (the cache keeps its pages dirty and writes them again); the backend also
//! counts the bytes whose latest write failed and [`close`](ObjectStoreBackend::close) reports
//! them if they were never written since nor discarded by the cache (`discarded`). Against a
//! store that does not answer, the first rewrites give up and the store is known down
//! (`health.rs`): the rest fail at once, so a sync of many dirty chunks returns its error after
//! about one retry budget, not one budget per few chunks.
//!
//! Does not own: chunk reads and rewrites (`chunk.rs`), the lease protocol (`lease.rs`), the
//! image layout (`layout.rs`).
//!
//! May block: `open`, `create`, `set_len`, `sync`, `write_zeroes` and drop block the calling
//! thread on the runtime (never call them from inside it); reads and writes only queue work.

use std::sync::Arc;
use std::time::Duration;

use folio::backend::{Frame, FrameMut, Geometry, IoWaiter, PageCacheBackend};
use folio::{ConfigError, IoOp};
use object_store::{ObjectStore, PutMode};

use crate::cell::{Kick, Op, Pending};
use crate::chunk::{changed, data_len};
use crate::error::{ObjResult, ObjectError};
use crate::fence::Clock;
use crate::image::{Access, Image, Limits};
use crate::join::Join;
use crate::layout::{pieces, Layout, Manifest, Piece, Stamp};
use crate::lease::Lease;
use crate::options::{MetadataStats, OpenOptions};
use crate::retry::{Failed, Gate};
use crate::store::{Requests, StoreStats, Version};
use crate::trailer::random_u64;

/// An image in an object store, as a page-cache backend. See the module docs.
pub struct ObjectStoreBackend {
    image: Arc<Image>,
    lease: Option<Arc<Lease>>,
    runtime: Option<tokio::runtime::Runtime>,
    close_wait: Duration,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBackend")
            .field("prefix", &self.image.layout.prefix().as_ref())
            .field("manifest", &self.image.manifest())
            .finish()
    }
}

fn runtime(limits: &Limits) -> ObjResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits.runtime_threads.clamp(1, 64))
        .thread_name("folio-object")
        .enable_all()
        .build()
        .map_err(|e| ObjectError::Invalid(format!("cannot start the backend's runtime: {e}")))
}

impl ObjectStoreBackend {
    /// Creates an image of `manifest`'s geometry under `prefix` (all zeros: no chunk is
    /// stored) and opens it. Fails if a manifest is already there.
    pub fn create(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        manifest: Manifest,
        opts: &OpenOptions,
    ) -> ObjResult<ObjectStoreBackend> {
        opts.check()?;
        let layout = Layout::new(prefix)?;
        let rt = runtime(&opts.limits)?;
        let req = Requests::new(store.clone(), opts.retry, Clock::new());
        let key = layout.manifest();
        let stamp = Stamp {
            image_id: random_u64(),
            revision: 0,
            writer: 0,
        };
        let body = bytes::Bytes::from(manifest.to_json(stamp));
        if let Err(f) = rt.block_on(req.put(&key, body, PutMode::Create, Gate::Open)) {
            let exists = changed(&f);
            if !exists && !f.uncertain() {
                return Err(f.into_error("PUT", key.as_ref()));
            }
            // An attempt of ours may have landed, its answer lost, or may still land: wait
            // until it cannot, then read whose manifest is there (review 3, L3: a lost answer
            // whose read-back failed was reported as "an image already exists").
            rt.block_on(req.settle());
            let ours = match rt.block_on(req.get(&key, None, None, Gate::Open)) {
                Ok(g) => Manifest::parse_stamped(&g.bytes, key.as_ref())
                    .is_ok_and(|(m, s)| m == manifest && s == stamp),
                Err(Failed::Answer {
                    error: object_store::Error::NotFound { .. },
                    ..
                }) => false,
                Err(g) => return Err(g.into_error("GET", key.as_ref())),
            };
            if !ours && exists {
                return Err(ObjectError::Invalid(format!(
                    "an image already exists at {prefix} ({key})"
                )));
            }
            if !ours {
                return Err(f.into_error("PUT", key.as_ref()));
            }
        }
        // A create attempt that got no answer may still land: wait until it cannot.
        rt.block_on(req.settle());
        drop(rt);
        ObjectStoreBackend::open(store, prefix, opts)
    }

    /// Opens the image under `prefix`: reads its manifest, takes the lease (read-write), and
    /// lists its chunks' versions (one LIST request per 1,000 chunks, streamed). A read-write
    /// open then deletes, under its fresh lease, the chunks past the image's end that hold data
    /// and up to [`RECLAIM_PER_OPEN_MAX`](crate::RECLAIM_PER_OPEN_MAX) empty chunk objects,
    /// best effort (`reclaim.rs`), and waits until none of those DELETEs can still land before
    /// it returns.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        opts: &OpenOptions,
    ) -> ObjResult<ObjectStoreBackend> {
        opts.check()?;
        let layout = Layout::new(prefix)?;
        let rt = runtime(&opts.limits)?;
        let req = Requests::new(store, opts.retry, Clock::new());
        let key = layout.manifest();
        let got = match rt.block_on(req.get(&key, None, None, Gate::Open)) {
            Ok(g) => g,
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => {
                return Err(ObjectError::Manifest {
                    key: key.to_string(),
                    why: "no image here (create one with `folio image create`)".into(),
                })
            }
            Err(f) => return Err(f.into_error("GET", key.as_ref())),
        };
        let (manifest, stamp) = Manifest::parse_stamped(&got.bytes, key.as_ref())?;
        if opts.access == Access::ReadWrite && got.version.is_none() {
            return Err(ObjectError::Invalid(format!(
                "the store returned no ETag for {key}: it cannot hold a writable image"
            )));
        }
        let image = Arc::new(Image::new(
            req,
            layout,
            manifest,
            opts.access,
            opts.limits,
            rt.handle().clone(),
        ));
        *image.manifest_state.lock() = (got.version, stamp);
        let lease = match opts.access {
            Access::ReadOnly => None,
            _ => {
                let lease = rt.block_on(Lease::take(&image, opts.lease_ttl, opts.lease_mode))?;
                let lease = Arc::new(lease);
                rt.spawn(lease.clone().renew_forever(Arc::downgrade(&image)));
                // The manifest read above came before the lease: a holder that resized the
                // image meanwhile (its lease ended while ours was being taken) changed it. Read
                // it again under the lease, so the size the reclaim and every write go by is
                // the last holder's.
                let got = rt
                    .block_on(image.req.get(&key, None, None, Gate::Open))
                    .map_err(|f| f.into_error("GET", key.as_ref()))?;
                let (now, stamp) = Manifest::parse_stamped(&got.bytes, key.as_ref())?;
                if now.chunk_size != image.chunk_size {
                    return Err(ObjectError::Manifest {
                        key: key.to_string(),
                        why: "its chunk size changed while the image was being opened".into(),
                    });
                }
                image.set_size(now.size);
                *image.manifest_state.lock() = (got.version, stamp);
                Some(lease)
            }
        };
        let backend = ObjectStoreBackend {
            image,
            lease,
            runtime: Some(rt),
            close_wait: opts.close_wait,
        };
        backend.block_on(backend.load_chunk_versions())?;
        Ok(backend)
    }

    async fn load_chunk_versions(&self) -> ObjResult<()> {
        let image = &self.image;
        let dir = image.layout.chunks().clone();
        image
            .req
            .list(&dir, |meta| {
                let Some(n) = image.layout.chunk_number(&meta.location) else {
                    return Ok(());
                };
                let version = Version::from_meta(&meta).ok_or_else(|| {
                    ObjectError::Invalid(format!(
                        "the store lists {} without an ETag",
                        meta.location
                    ))
                })?;
                image.set_version(n, Some(version));
                Ok(())
            })
            .await?;
        if image.access == Access::ReadWrite {
            self.image.reclaim().await?;
        }
        Ok(())
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(f)
    }

    /// The image's geometry.
    pub fn manifest(&self) -> Manifest {
        self.image.manifest()
    }

    /// Requests made and bytes moved so far.
    pub fn stats(&self) -> StoreStats {
        self.image.req.counters.snapshot()
    }

    /// What the backend keeps per chunk now (see [`MetadataStats`]).
    pub fn metadata(&self) -> MetadataStats {
        let versions = self.image.versions.lock();
        let cells = self.image.cells_live();
        // A cell: its locks and state, plus its slot in the table.
        let cell_bytes = std::mem::size_of::<crate::cell::Cell>() + 32;
        MetadataStats {
            chunk_versions: versions.len(),
            chunk_cells: cells,
            bytes: (versions.heap_bytes() + cells * cell_bytes) as u64,
        }
    }

    /// Most bytes the backend holds outside the cache's frames at once: a chunk for each
    /// rewrite in flight (plus the chunk it fetched), a chunk for each GET in flight.
    pub fn memory_bytes_max(&self, limits: &Limits) -> u64 {
        let c = self.image.chunk_size;
        c * (2 * limits.puts_in_flight_max as u64 + limits.gets_in_flight_max as u64)
    }

    /// Splits the run of `frames` (pages of one length) starting at page `idx` into one piece
    /// per chunk. Returns the page size, the byte offset of the run and the pieces.
    #[allow(clippy::type_complexity)]
    fn split<F>(
        &self,
        idx: u64,
        frames: Vec<F>,
        len: impl Fn(&F) -> usize,
    ) -> folio::Result<(usize, u64, Vec<(Piece, Vec<F>)>)> {
        let page = frames.first().map(&len).unwrap_or(0);
        if page == 0 || frames.iter().any(|f| len(f) != page) {
            let other = frames.iter().map(&len).find(|&l| l != page).unwrap_or(0);
            return Err(ConfigError::FrameLengths { first: page, other }.into());
        }
        if self.image.chunk_size % page as u64 != 0 {
            return Err(ConfigError::PageSizeUnsupported {
                page_size: page,
                reason: format!(
                    "it does not divide the image's chunk size {}",
                    self.image.chunk_size
                ),
            }
            .into());
        }
        let total = (frames.len() * page) as u64;
        let overflow = folio::Error::Overflow {
            offset: idx,
            len: total,
        };
        let offset = idx.checked_mul(page as u64).ok_or(overflow.clone())?;
        offset.checked_add(total).ok_or(overflow)?;
        let mut rest = frames.into_iter();
        let parts = pieces(offset, total, self.image.chunk_size)
            .map(|p| {
                let n = ((p.end - p.start) / page as u64) as usize;
                (p, rest.by_ref().take(n).collect())
            })
            .collect();
        Ok((page, offset, parts))
    }

    fn write(&self, idx: u64, frames: Vec<Frame>, kick: Kick) -> folio::Result<IoWaiter> {
        if frames.is_empty() {
            return Ok(IoWaiter::ready(Ok(())));
        }
        let (_, offset, parts) = self.split(idx, frames, Frame::len)?;
        if let Err(e) = self.image.writable() {
            return Ok(IoWaiter::ready(Err(e.into_folio(IoOp::Write, offset))));
        }
        let (waiter, completer) = IoWaiter::pending(IoOp::Write, offset);
        let join = Arc::new(Join::new(completer, parts.len()));
        for (piece, frames) in parts {
            let pending = Pending {
                op: Op::Write {
                    at: piece.start,
                    frames,
                },
                join: join.clone(),
                ticket: self.image.tickets.issue(),
                offset: offset + piece.at,
            };
            self.image.queue(piece.chunk, pending, kick);
        }
        Ok(waiter)
    }

    /// Waits (up to [`OpenOptions::close_wait`]) for every write issued so far, then, once
    /// none of its requests can still land, releases the lease and stops the runtime. Dropping
    /// the backend does the same; `close` reports writes still in flight (the lease is then
    /// left to expire) or still failing.
    pub fn close(mut self) -> ObjResult<()> {
        let r = self.shutdown();
        self.runtime = None;
        r
    }

    fn shutdown(&mut self) -> ObjResult<()> {
        let Some(rt) = self.runtime.take() else {
            return Ok(());
        };
        let image = self.image.clone();
        let lease = self.lease.take();
        let waited = self.close_wait;
        let r = rt.block_on(async move {
            image.unplug();
            let t = image.tickets.next();
            if tokio::time::timeout(waited, image.tickets.wait_below(t))
                .await
                .is_err()
            {
                // A write may still land: the lease is left to expire (a newcomer waits out
                // its time to live and our attempt timeout), never released under it.
                return Err(ObjectError::InFlightAtClose { waited });
            }
            // No request of ours may land after the lock says "released".
            image.req.settle().await;
            if let Some(lease) = lease {
                lease.release(&image).await;
            }
            match image
                .failed_bytes
                .load(std::sync::atomic::Ordering::Acquire)
            {
                0 => Ok(()),
                bytes => Err(ObjectError::NotDurable { bytes }),
            }
        });
        rt.shutdown_timeout(Duration::from_secs(1));
        r
    }
}

impl Drop for ObjectStoreBackend {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the object-store image");
        }
    }
}

impl PageCacheBackend for ObjectStoreBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> folio::Result<IoWaiter> {
        if frames.is_empty() {
            return Ok(IoWaiter::ready(Ok(())));
        }
        let (page, offset, parts) = self.split(idx, frames, FrameMut::len)?;
        let (waiter, completer) = IoWaiter::pending(IoOp::Read, offset);
        let join = Arc::new(Join::new(completer, parts.len()));
        for (piece, frames) in parts {
            let image = self.image.clone();
            let join = join.clone();
            let at = offset + piece.at;
            self.image.runtime.spawn(async move {
                let r = image
                    .read_piece(piece.chunk, piece.start, frames, page)
                    .await;
                if let Err(e) = &r {
                    tracing::warn!(chunk = piece.chunk, error = %e, "chunk read failed");
                }
                join.part(r.map_err(|e| e.into_folio(IoOp::Read, at)));
            });
        }
        Ok(waiter)
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> folio::Result<IoWaiter> {
        self.write(idx, frames, Kick::Now)
    }

    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> folio::Result<IoWaiter> {
        self.write(idx, frames, Kick::Plugged)
    }

    fn unplug(&self) {
        self.image.unplug();
    }

    fn len(&self) -> u64 {
        self.image.size()
    }

    fn set_len(&self, len: u64) -> folio::Result<()> {
        self.image
            .writable()
            .and_then(|()| Manifest::new(len, self.image.chunk_size).map(drop))
            .and_then(|()| self.block_on(self.image.resize(len)))
            .map_err(|e| e.into_folio(IoOp::Resize, len))
    }

    fn sync(&self) -> folio::Result<()> {
        // Every write whose waiter completed Ok was acknowledged by the store, which makes it
        // durable; a failed one was reported through its waiter (the cache keeps its pages
        // dirty and writes them again). So sync waits for the writes issued before it and
        // fails only if this writer lost its lease for good: a transient store outage must not
        // fail it, or a cache that treats a failed sync as lost durability could never recover.
        let image = &self.image;
        image.unplug();
        let t = image.tickets.next();
        self.block_on(image.tickets.wait_below(t));
        if image.access == Access::ReadWrite && image.fence.is_lost() {
            return Err(image.fence.check().unwrap_err().into_folio(IoOp::Sync, 0));
        }
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> folio::Result<()> {
        self.image
            .writable()
            .map_err(|e| e.into_folio(IoOp::Zero, offset))?;
        let end = offset
            .checked_add(len)
            .ok_or(folio::Error::Overflow { offset, len })?;
        let end = end.min(self.image.size());
        if offset >= end {
            return Ok(());
        }
        // A chunk with no data and nothing going on reads as zeros already. One with a cell
        // (queued writes, failures to clear, a write of unknown outcome) gets its zeroing queued.
        let image = &self.image;
        let busy: Vec<Piece> = pieces(offset, end - offset, image.chunk_size)
            .filter(|p| {
                image.cell_if_any(p.chunk).is_some()
                    || image.version(p.chunk).is_some_and(|v| data_len(&v) > 0)
            })
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        let (waiter, completer) = IoWaiter::pending(IoOp::Zero, offset);
        let join = Arc::new(Join::new(completer, busy.len()));
        for &p in &busy {
            let pending = Pending {
                op: Op::Zero {
                    start: p.start,
                    end: p.end,
                },
                join: join.clone(),
                ticket: self.image.tickets.issue(),
                offset: offset + p.at,
            };
            self.image.queue(p.chunk, pending, Kick::Now);
        }
        let r = waiter.wait();
        if r.is_err() && self.block_on(image.zeroed_after_failure(&busy)) {
            // Its PUTs landed, their answers lost: the range reads as zeros for good.
            tracing::info!(offset, len, "a zeroing whose answer was lost landed");
            return Ok(());
        }
        // Failed: none of it can land any more, so the range reads as it does now for good.
        r
    }

    fn discarded(&self, offset: u64, len: u64) {
        // The caller no longer wants these bytes: a failed write of them is not lost data.
        let image = &self.image;
        for p in pieces(offset, len, image.chunk_size) {
            if let Some(cell) = image.cell_if_any(p.chunk) {
                image.forget_failures(&cell, p.start, p.end);
            }
        }
    }

    fn geometry(&self) -> Geometry {
        Geometry::default()
            // One chunk of 4 KiB pages: a run never needs more than two GETs.
            .with_io_pages_max((self.image.chunk_size / 4096).max(1) as usize)
            // Flushes submit many runs before waiting, so a chunk's runs meet in one PUT; the
            // backend bounds what is really in flight.
            .with_queue_depth(1024)
    }
}
