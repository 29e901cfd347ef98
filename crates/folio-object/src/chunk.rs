//! Chunks: reading pages out of a chunk object, and rewriting a chunk with the writes queued
//! for it.
//!
//! Owns: each chunk's [`Cell`] — the version Folio knows (or that it is absent), the writes
//! queued for its next rewrite, whether a rewrite task runs, and which of its blocks' latest
//! write failed — and the two operations on a chunk:
//! - **read** ([`Image::read_piece`]): one ranged GET for the pages asked for (the whole object,
//!   checksum verified, when they cover it), conditional on the known ETag so a chunk changed
//!   behind Folio's back is an error, not silently different bytes; an absent chunk, or bytes
//!   past the object's end, read as zeros without a request.
//! - **rewrite** ([`Image::flush_chunk`]): a task per chunk takes every write queued for it,
//!   fetches the chunk if those writes do not cover it, applies them in order, and PUTs the
//!   whole chunk conditionally (If-Match its ETag, or If-None-Match for a new one), or DELETEs
//!   it if it is now all zeros. Writes queued while it runs go into its next round, so the dirty
//!   pages of one chunk are one PUT. The writers' waiters complete only once the PUT is
//!   acknowledged, with its error if it failed (the cache then keeps the pages dirty).
//!
//! A chunk's reads and rewrites exclude each other (`Cell::io`): a read never sees a half-landed
//! rewrite, and a rewrite never races another.
//!
//! Does not own: splitting I/O into pieces or completing waiters (`backend.rs`), the lease.
//!
//! May block: async, on the backend's runtime; rewrites wait for a PUT slot.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use folio::backend::{Frame, FrameMut};
use object_store::PutMode;
use parking_lot::Mutex;
use tokio::sync::RwLock;

use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::join::Join;
use crate::retry::Failed;
use crate::store::{crc32c, Got, Version};

/// Failure tracking granularity: 4 KiB blocks of a chunk.
const BLOCK: u64 = 4096;

/// One chunk's state.
#[derive(Default)]
pub(crate) struct Cell {
    /// Shared by reads, exclusive for a rewrite.
    pub(crate) io: RwLock<()>,
    pub(crate) st: Mutex<CellState>,
}

impl Cell {
    /// True if the chunk is absent and nothing is queued or running for it: it reads as zeros
    /// and zeroing it is a no-op.
    pub(crate) fn is_idle_and_absent(&self) -> bool {
        let st = self.st.lock();
        st.version.is_none() && st.pending.is_empty() && st.task == Task::Idle
    }
}

/// What is known about a chunk and what waits for it.
#[derive(Default)]
pub(crate) struct CellState {
    /// The stored version; `None`: no object (reads as zeros).
    pub(crate) version: Option<Version>,
    pending: Vec<Pending>,
    task: Task,
    /// Bit per 4 KiB block whose latest write-back failed.
    failed: Vec<u64>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Task {
    /// No rewrite task, nothing queued.
    #[default]
    Idle,
    /// Writes queued; the task starts at the next `unplug`.
    Plugged,
    /// A task is rewriting the chunk (and will take what is queued meanwhile).
    Running,
}

/// A change queued for a chunk.
pub(crate) enum Op {
    /// Pages at byte `at` of the chunk.
    Write { at: u64, frames: Vec<Frame> },
    /// Zeros over `start .. end` of the chunk.
    Zero { start: u64, end: u64 },
}

impl Op {
    fn span(&self) -> (u64, u64) {
        match self {
            Op::Write { at, frames } => {
                let len: usize = frames.iter().map(|f| f.len()).sum();
                (*at, at + len as u64)
            }
            Op::Zero { start, end } => (*start, *end),
        }
    }
}

/// A queued change, the waiter part it completes, and its write ticket.
pub(crate) struct Pending {
    pub(crate) op: Op,
    pub(crate) join: Arc<Join>,
    pub(crate) ticket: u64,
    pub(crate) offset: u64,
}

/// When a queued write's rewrite should start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kick {
    /// Now: the caller waits next.
    Now,
    /// At the next `unplug` (the caller queues more first).
    Plugged,
}

impl Image {
    /// Reads `frames` (pages of `page` bytes) from byte `start` of chunk `n`.
    pub(crate) async fn read_piece(
        &self,
        n: u64,
        start: u64,
        mut frames: Vec<FrameMut>,
        page: usize,
    ) -> ObjResult<()> {
        let _geometry = self.geometry.read().await;
        let cell = self.cell(n);
        let _io = cell.io.read().await;
        let version = cell.st.lock().version.clone();
        let end = start + (frames.len() * page) as u64;
        let Some(v) = version.filter(|v| v.size > start) else {
            frames.iter_mut().for_each(|f| f.as_mut_slice().fill(0));
            return Ok(());
        };
        let stop = end.min(v.size);
        let whole = start == 0 && stop == v.size;
        let key = self.layout.chunk(n);
        let got = {
            let _slot = self
                .gets
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let range = (!whole).then_some(start..stop);
            self.req.get(&key, range, Some(&v.e_tag)).await
        };
        let got = self.checked(n, &v, got, whole)?;
        if got.bytes.len() as u64 != stop - start {
            return Err(self.changed(n, &v, "an object of another length"));
        }
        for (i, f) in frames.iter_mut().enumerate() {
            let dst = f.as_mut_slice();
            let from = (i * page).min(got.bytes.len());
            let to = (from + page).min(got.bytes.len());
            dst[..to - from].copy_from_slice(&got.bytes[from..to]);
            dst[to - from..].fill(0);
        }
        Ok(())
    }

    /// Turns a GET's outcome into the chunk's bytes or a typed error, checking the version and
    /// (for a whole object) the stored checksum.
    fn checked(
        &self,
        n: u64,
        expected: &Version,
        got: Result<Got, Failed>,
        whole: bool,
    ) -> ObjResult<Got> {
        let key = self.layout.chunk(n);
        let got = match got {
            Ok(g) => g,
            Err(Failed::Answer {
                error: object_store::Error::Precondition { .. },
                ..
            }) => return Err(self.changed(n, expected, "a different version")),
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => return Err(self.changed(n, expected, "absent")),
            Err(f) => return Err(f.into_error("GET", key.as_ref())),
        };
        if let Some(v) = &got.version {
            if v.e_tag != expected.e_tag {
                return Err(self.changed(n, expected, &v.e_tag));
            }
        }
        if let (true, Some(stored)) = (whole, got.crc) {
            let found = crc32c(&got.bytes);
            if found != stored {
                return Err(ObjectError::Checksum {
                    chunk: n,
                    key: key.to_string(),
                    stored,
                    found,
                });
            }
        }
        Ok(got)
    }

    fn changed(&self, n: u64, expected: &Version, found: &str) -> ObjectError {
        ObjectError::ChunkChanged {
            chunk: n,
            key: self.layout.chunk(n).to_string(),
            expected: expected.e_tag.clone(),
            found: found.to_string(),
        }
    }

    /// Queues `p` for chunk `n`'s next rewrite and starts the rewrite as `kick` says.
    pub(crate) fn queue(self: &Arc<Image>, n: u64, p: Pending, kick: Kick) {
        let cell = self.cell(n);
        let mut st = cell.st.lock();
        st.pending.push(p);
        match (st.task, kick) {
            (Task::Running, _) | (Task::Plugged, Kick::Plugged) => {}
            (Task::Idle, Kick::Plugged) => {
                st.task = Task::Plugged;
                drop(st);
                let first = {
                    let mut plugged = self.plugged.lock();
                    plugged.push(n);
                    plugged.len() == 1
                };
                if first {
                    // A safety net for a caller that breaks the contract and waits without
                    // unplugging: its rewrites start anyway, late.
                    let image = self.clone();
                    self.runtime.spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        image.unplug();
                    });
                }
            }
            (Task::Idle | Task::Plugged, Kick::Now) => {
                st.task = Task::Running;
                drop(st);
                self.spawn_flush(n);
            }
        }
    }

    /// Starts the rewrites of every plugged chunk.
    pub(crate) fn unplug(self: &Arc<Image>) {
        let chunks = std::mem::take(&mut *self.plugged.lock());
        for n in chunks {
            let cell = self.cell(n);
            let mut st = cell.st.lock();
            if st.task == Task::Plugged {
                st.task = Task::Running;
                drop(st);
                self.spawn_flush(n);
            }
        }
    }

    fn spawn_flush(self: &Arc<Image>, n: u64) {
        let image = self.clone();
        self.runtime
            .spawn(async move { image.flush_chunk(n).await });
    }

    /// The rewrite task of chunk `n`: rounds of "take what is queued, rewrite, complete" until
    /// nothing is queued.
    async fn flush_chunk(self: Arc<Image>, n: u64) {
        let cell = self.cell(n);
        let _slot = self
            .puts
            .acquire()
            .await
            .expect("the semaphore is never closed");
        // Bounded: each round takes at least one queued write, and writers are throttled by
        // the cache (a page is under write-back until its write completes).
        loop {
            let geometry = self.geometry.read().await;
            let io = cell.io.write().await;
            let batch = {
                let mut st = cell.st.lock();
                if st.pending.is_empty() {
                    st.task = Task::Idle;
                    return;
                }
                std::mem::take(&mut st.pending)
            };
            let spans: Vec<(u64, u64)> = batch.iter().map(|p| p.op.span()).collect();
            let (mut ops, waits): (Vec<Op>, Vec<_>) = batch
                .into_iter()
                .map(|p| (p.op, (p.join, p.ticket, p.offset)))
                .unzip();
            let len = self.manifest().chunk_len(n);
            let result = self.rewrite(n, &cell, &mut ops, len).await;
            if let Err(e) = &result {
                tracing::warn!(chunk = n, error = %e, "chunk write-back failed");
            }
            self.track_failures(&cell, &spans, result.is_ok());
            drop(io);
            drop(geometry);
            // One failure reaches every write of the round, each with its own offset.
            let failure = result.err().map(|e| Arc::new(e.into_io()));
            for (join, ticket, offset) in waits {
                let r = match &failure {
                    None => Ok(()),
                    Some(e) => Err(folio::Error::Io {
                        op: folio::IoOp::Write,
                        offset,
                        source: e.clone(),
                    }),
                };
                join.part(r);
                self.tickets.finish(ticket);
            }
        }
    }

    /// Applies `ops` (in order) to chunk `n`, whose object is to be `len` bytes long, in the
    /// store. The caller excludes every other read and rewrite of the chunk.
    pub(crate) async fn rewrite(
        &self,
        n: u64,
        cell: &Cell,
        ops: &mut [Op],
        len: u64,
    ) -> ObjResult<()> {
        self.writable()?;
        let len = len as usize;
        let version = cell.st.lock().version.clone();
        if len == 0 {
            return Ok(()); // wholly past the end of the image: nothing to keep
        }
        let key = self.layout.chunk(n);
        let mut buf = match &version {
            Some(v) if v.size > 0 && !covers(ops, len as u64) => {
                let got = self.req.get(&key, None, Some(&v.e_tag)).await;
                let mut b = self.checked(n, v, got, true)?.bytes.to_vec();
                b.resize(len, 0);
                b
            }
            _ => vec![0; len],
        };
        for op in ops.iter_mut() {
            apply(&mut buf, op);
        }
        if buf.iter().all(|&b| b == 0) {
            if version.is_some() {
                self.req
                    .delete(&key)
                    .await
                    .map_err(|f| f.into_error("DELETE", key.as_ref()))?;
                cell.st.lock().version = None;
            }
            return Ok(());
        }
        let crc = crc32c(&buf);
        let size = buf.len() as u64;
        let mode = match &version {
            Some(v) => PutMode::Update(v.update()),
            None => PutMode::Create,
        };
        let put = self.req.put(&key, Bytes::from(buf), mode, Some(crc)).await;
        let landed = match put {
            Ok(v) if !v.e_tag.is_empty() => v,
            Ok(_) => self.current(n, crc, size).await?.ok_or_else(|| {
                ObjectError::Invalid(format!("the store returned no ETag for {key}"))
            })?,
            Err(Failed::Answer {
                error:
                    object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. },
                attempts,
            }) => {
                // After a retry, the precondition may have failed on our own earlier attempt,
                // whose answer was lost: the store then holds exactly our bytes.
                let ours = if attempts > 1 {
                    self.current(n, crc, size).await?
                } else {
                    None
                };
                match (ours, &version) {
                    (Some(v), _) => v,
                    (None, Some(v)) => return Err(self.changed(n, v, "a different version")),
                    (None, None) => {
                        return Err(ObjectError::ChunkChanged {
                            chunk: n,
                            key: key.to_string(),
                            expected: "absent".into(),
                            found: "an object".into(),
                        })
                    }
                }
            }
            Err(f) => return Err(f.into_error("PUT", key.as_ref())),
        };
        cell.st.lock().version = Some(landed);
        Ok(())
    }

    /// The chunk's version in the store if it holds exactly `size` bytes with CRC `crc`.
    async fn current(&self, n: u64, crc: u32, size: u64) -> ObjResult<Option<Version>> {
        let key = self.layout.chunk(n);
        match self.req.head(&key).await {
            Ok((Some(v), Some(c))) if c == crc && v.size == size => Ok(Some(v)),
            Ok(_)
            | Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(f) => Err(f.into_error("HEAD", key.as_ref())),
        }
    }

    /// Marks the blocks of `spans` failed (or, on success, durable again).
    fn track_failures(&self, cell: &Cell, spans: &[(u64, u64)], ok: bool) {
        let mut st = cell.st.lock();
        let mut delta: i64 = 0;
        for &(start, end) in spans {
            // Failure marks every block touched; success clears the blocks written whole.
            let (first, last) = if ok {
                (start.div_ceil(BLOCK), end / BLOCK)
            } else {
                (start / BLOCK, end.div_ceil(BLOCK))
            };
            for b in first..last {
                delta += set_bit(&mut st.failed, b, !ok);
            }
        }
        if delta >= 0 {
            self.failed_blocks.fetch_add(delta as u64, Ordering::AcqRel);
        } else {
            self.failed_blocks
                .fetch_sub(delta.unsigned_abs(), Ordering::AcqRel);
        }
    }

    /// Forgets failures of blocks from byte `from` of chunk `n` on (dropped by a resize).
    pub(crate) fn forget_failures_from(&self, cell: &Cell, from: u64) {
        let mut st = cell.st.lock();
        let total = (st.failed.len() * 64) as u64;
        let mut cleared = 0u64;
        for b in from.div_ceil(BLOCK)..total {
            cleared += set_bit(&mut st.failed, b, false).unsigned_abs();
        }
        self.failed_blocks.fetch_sub(cleared, Ordering::AcqRel);
    }
}

/// Sets or clears bit `b`; returns +1, -1 or 0, the change in bits set.
fn set_bit(bits: &mut Vec<u64>, b: u64, on: bool) -> i64 {
    let (word, mask) = ((b / 64) as usize, 1u64 << (b % 64));
    if word >= bits.len() {
        if !on {
            return 0;
        }
        bits.resize(word + 1, 0);
    }
    let was = bits[word] & mask != 0;
    match (was, on) {
        (false, true) => {
            bits[word] |= mask;
            1
        }
        (true, false) => {
            bits[word] &= !mask;
            -1
        }
        _ => 0,
    }
}

/// True if `ops` together cover `0 .. len`.
fn covers(ops: &[Op], len: u64) -> bool {
    let mut spans: Vec<(u64, u64)> = ops.iter().map(|op| op.span()).collect();
    spans.sort_unstable();
    let mut reached = 0;
    for (s, e) in spans {
        if s > reached {
            return false;
        }
        reached = reached.max(e);
    }
    reached >= len
}

/// Applies `op` to the chunk bytes `buf` (clipped to its length) and releases its frames.
fn apply(buf: &mut [u8], op: &mut Op) {
    let len = buf.len() as u64;
    match op {
        Op::Write { at, frames } => {
            let mut pos = *at;
            for f in frames.drain(..) {
                if pos >= len {
                    break;
                }
                let n = (f.len() as u64).min(len - pos) as usize;
                f.copy_to(&mut buf[pos as usize..pos as usize + n]);
                pos += f.len() as u64;
            }
        }
        Op::Zero { start, end } => {
            let (s, e) = ((*start).min(len) as usize, (*end).min(len) as usize);
            buf[s..e].fill(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_bits_count_changes() {
        let mut bits = Vec::new();
        assert_eq!(set_bit(&mut bits, 70, false), 0);
        assert!(bits.is_empty());
        assert_eq!(set_bit(&mut bits, 70, true), 1);
        assert_eq!(set_bit(&mut bits, 70, true), 0);
        assert_eq!(set_bit(&mut bits, 70, false), -1);
        assert_eq!(bits, vec![0, 0]);
    }

    #[test]
    fn zero_ops_clip_to_the_chunk() {
        let mut buf = vec![1u8; 10];
        apply(&mut buf, &mut Op::Zero { start: 8, end: 100 });
        assert_eq!(buf, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    }
}
