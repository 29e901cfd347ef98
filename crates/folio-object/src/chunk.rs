//! Chunks: reading pages out of a chunk object, and the task that writes a chunk's queued
//! changes back.
//!
//! Owns:
//! - **read** ([`Image::read_piece`]): one ranged GET for the pages asked for (the whole object,
//!   trailer and checksum verified, when they cover its data), its body streamed straight into
//!   the cache's frames (no buffer of the body, no copy of it), conditional on the known ETag so
//!   a chunk changed behind Folio's back is an error, not silently different bytes; an absent
//!   or empty chunk, or bytes past the object's data, read as zeros without a request. If a
//!   write of ours of unknown outcome may have landed (`cell.rs`), a failed condition is
//!   resolved (`rewrite.rs`) and the read made again.
//! - **queueing and the rewrite task** ([`Image::queue`], [`Image::unplug`]): a task per chunk
//!   takes every change queued for it and rewrites the chunk (`rewrite.rs`); changes queued
//!   while it runs go into its next round, so the dirty pages of one chunk are one PUT. The
//!   writers' waiters complete only once the PUT is acknowledged, with its error if it failed
//!   (the cache then keeps the pages dirty).
//! - **failure accounting**: the bytes whose latest write-back failed, per chunk (exact byte
//!   ranges, so pages smaller than 4 KiB count right) and in all; a later successful write or
//!   zeroing of them, or a shrink that drops them, clears them. A failed zeroing is not counted:
//!   its caller got the error synchronously and no cached data waits on it.
//!
//! A chunk's reads and rewrites exclude each other (`Cell::io`): a read never races a rewrite
//! of the same chunk (whose version it would not know yet).
//!
//! Does not own: splitting I/O into pieces or completing waiters (`backend.rs`), what a rewrite
//! sends (`rewrite.rs`), the chunk state (`cell.rs`, `versions.rs`).
//!
//! May block: async, on the backend's runtime; rewrites wait for a PUT slot.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use folio::backend::FrameMut;
use object_store::GetRange;

use crate::cell::{Cell, Kick, Op, Pending, Task};
use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::retry::{Failed, Gate};
use crate::store::{Got, Version};
use crate::trailer::{self, Bad, CHUNK_TRAILER_LEN};

/// Bytes of data (the image's bytes) in a chunk object of version `v`.
pub(crate) fn data_len(v: &Version) -> u64 {
    v.size.saturating_sub(CHUNK_TRAILER_LEN)
}

/// Passes of a read or rewrite: a further pass only follows the adoption of a version of our
/// own that landed without its answer.
pub(crate) const PASSES_MAX: usize = 3;

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
        self.read_cell(n, &cell, start, &mut frames, page).await
    }

    async fn read_cell(
        &self,
        n: u64,
        cell: &Cell,
        start: u64,
        frames: &mut [FrameMut],
        page: usize,
    ) -> ObjResult<()> {
        let _io = cell.io.read().await;
        let end = start + (frames.len() * page) as u64;
        let key = self.layout.chunk(n);
        for pass in 1..=PASSES_MAX {
            let version = self.version(n);
            let Some(v) = version.filter(|v| data_len(v) > start) else {
                frames.iter_mut().for_each(|f| f.as_mut_slice().fill(0));
                return Ok(());
            };
            let stop = end.min(data_len(&v));
            let whole = start == 0 && stop == data_len(&v);
            let sink = parking_lot::Mutex::new(Fill::new(frames, page, stop - start, whole));
            let got = {
                let _slot = self
                    .gets
                    .acquire()
                    .await
                    .expect("the semaphore is never closed");
                let range = (!whole).then_some(GetRange::Bounded(start..stop));
                let put = |at: u64, bytes: &[u8]| sink.lock().put(at, bytes);
                self.req
                    .get_into(&key, range, Some(&v.e_tag), Gate::Open, &put)
                    .await
            };
            let got = match got {
                Err(f) if changed(&f) && pass < PASSES_MAX && cell.st.lock().unsure => {
                    self.resolve(n, Gate::Open).await?;
                    continue;
                }
                Err(f) => return Err(self.failed_get(n, &v, f)),
                Ok(got) => got,
            };
            self.check_version(n, &v, got.version.as_ref())?;
            let fill = sink.into_inner();
            let expected = if whole { v.size } else { stop - start };
            if got.len != expected || fill.received != expected {
                return Err(self.changed(n, &v, "an object of another length"));
            }
            if whole {
                let found = fill.crc.finalize() as u32;
                let tail = &fill.tail[..fill.tail_len];
                trailer::check(got.len, tail, found).map_err(|b| self.bad(n, b))?;
            }
            fill.zero_rest();
            return Ok(());
        }
        Err(self.changed(
            n,
            &self.version(n).unwrap_or_else(absent),
            "versions that keep changing",
        ))
    }

    /// Turns a GET's outcome into the bytes or a typed error, checking the version.
    pub(crate) fn checked(
        &self,
        n: u64,
        expected: &Version,
        got: Result<Got, Failed>,
    ) -> ObjResult<Got> {
        let got = got.map_err(|f| self.failed_get(n, expected, f))?;
        self.check_version(n, expected, got.version.as_ref())?;
        Ok(got)
    }

    /// The typed error of a failed GET of chunk `n`, expected at version `expected`.
    fn failed_get(&self, n: u64, expected: &Version, f: Failed) -> ObjectError {
        match f {
            Failed::Answer {
                error: object_store::Error::Precondition { .. },
                ..
            } => self.changed(n, expected, "a different version"),
            Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            } => self.changed(n, expected, "absent"),
            f => f.into_error("GET", self.layout.chunk(n).as_ref()),
        }
    }

    /// Checks that a GET of chunk `n` answered with the version expected (if it named one).
    fn check_version(&self, n: u64, expected: &Version, got: Option<&Version>) -> ObjResult<()> {
        match got {
            Some(v) if v.e_tag != expected.e_tag => Err(self.changed(n, expected, &v.e_tag)),
            _ => Ok(()),
        }
    }

    /// The data of a whole chunk object, its trailer and checksum verified.
    pub(crate) fn opened<'a>(&self, n: u64, object: &'a [u8]) -> ObjResult<&'a [u8]> {
        trailer::open(object)
            .map(|(data, _)| data)
            .map_err(|b| self.bad(n, b))
    }

    /// The typed error of chunk `n`'s object that is not a good one.
    fn bad(&self, n: u64, bad: Bad) -> ObjectError {
        let key = self.layout.chunk(n).to_string();
        match bad {
            Bad::Format(why) => ObjectError::BadChunk { chunk: n, key, why },
            Bad::Checksum { stored, found } => ObjectError::Checksum {
                chunk: n,
                key,
                stored,
                found,
            },
        }
    }

    pub(crate) fn changed(&self, n: u64, expected: &Version, found: &str) -> ObjectError {
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
            let Some(cell) = self.cell_if_any(n) else {
                continue;
            };
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
    /// nothing is queued. Each round takes a PUT slot and gives it back when it ends, so a chunk
    /// that keeps receiving writes takes its turn with the others (the slots are handed out in
    /// order); its deadline runs from when it got the slot, so waiting for one never counts
    /// against it (a store known down fails it fast instead, `health.rs`).
    async fn flush_chunk(self: Arc<Image>, n: u64) {
        let cell = self.cell(n);
        // Bounded: each round takes at least one queued change, and writers are throttled by
        // the cache (a page is under write-back until its write completes).
        loop {
            {
                let mut st = cell.st.lock();
                if st.pending.is_empty() {
                    st.task = Task::Idle;
                    break;
                }
            }
            let slot = self
                .puts
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let geometry = self.geometry.read().await;
            let io = cell.io.write().await;
            // Not empty: only this task takes what is queued.
            let batch = std::mem::take(&mut cell.st.lock().pending);
            debug_assert!(!batch.is_empty());
            let spans: Vec<(u64, u64, bool)> = batch
                .iter()
                .map(|p| {
                    let (s, e) = p.op.span();
                    (s, e, matches!(p.op, Op::Write { .. }))
                })
                .collect();
            let (ops, waits): (Vec<Op>, Vec<_>) = batch
                .into_iter()
                .map(|p| (p.op, (p.join, p.ticket, p.offset)))
                .unzip();
            let len = self.manifest().chunk_len(n);
            let deadline_ms = self.req.deadline_from_now_ms();
            let result = self.rewrite(n, &cell, &ops, len, deadline_ms).await;
            drop(ops); // the frames go back to the cache before the waiters complete
            if let Err(e) = &result {
                tracing::warn!(chunk = n, error = %e, "chunk write-back failed");
            }
            // Only the bytes below the image's end: a write queued before a shrink that runs
            // after it writes nothing past the end, and its failure loses nothing (review 4:
            // close reported those bytes as not durable).
            let spans: Vec<(u64, u64, bool)> = spans
                .into_iter()
                .map(|(s, e, write)| (s.min(len), e.min(len), write))
                .collect();
            self.track_failures(&cell, &spans, result.is_ok());
            drop(io);
            drop(geometry);
            drop(slot);
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
        drop(cell);
    }

    /// Records a round's outcome over its changes' `spans` (start, end, is a write): on
    /// success every byte they covered is durable; on failure the bytes of its writes are not.
    fn track_failures(&self, cell: &Cell, spans: &[(u64, u64, bool)], ok: bool) {
        let mut st = cell.st.lock();
        let (mut added, mut removed) = (0u64, 0u64);
        for &(start, end, write) in spans {
            if ok {
                removed += st.failed.remove(start, end);
            } else if write {
                added += st.failed.add(start, end);
            }
        }
        drop(st);
        self.failed_bytes.fetch_add(added, Ordering::AcqRel);
        self.failed_bytes.fetch_sub(removed, Ordering::AcqRel);
    }

    /// Forgets failures of bytes `start .. end` of `cell` (dropped by a resize, or zeroed).
    pub(crate) fn forget_failures(&self, cell: &Cell, start: u64, end: u64) {
        let cleared = cell.st.lock().failed.remove(start, end);
        self.failed_bytes.fetch_sub(cleared, Ordering::AcqRel);
    }
}

/// Where a streamed GET of a chunk's pages puts the body: straight into the frames, the
/// trailer's bytes of a whole object aside, its data checksummed on the way (`store.rs`'s
/// `get_into`). Nothing is valid until the read completes and is checked: a failed read leaves
/// its frames to the cache, which discards them.
struct Fill<'f> {
    frames: &'f mut [FrameMut],
    page: usize,
    /// Bytes of data the GET brings (the rest of the frames read as zeros).
    data_len: u64,
    /// A whole object: the CRC32C of its data, and its trailer.
    whole: bool,
    crc: crc_fast::Digest,
    tail: [u8; CHUNK_TRAILER_LEN as usize],
    tail_len: usize,
    /// Bytes received by the current attempt.
    received: u64,
}

impl<'f> Fill<'f> {
    fn new(frames: &'f mut [FrameMut], page: usize, data_len: u64, whole: bool) -> Fill<'f> {
        Fill {
            frames,
            page,
            data_len,
            whole,
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi),
            tail: [0; CHUNK_TRAILER_LEN as usize],
            tail_len: 0,
            received: 0,
        }
    }

    /// The body's bytes from `at` on.
    fn put(&mut self, at: u64, mut bytes: &[u8]) {
        if at == 0 {
            // A new attempt: start over.
            self.crc.reset();
            self.tail_len = 0;
            self.received = 0;
        }
        debug_assert_eq!(at, self.received, "a GET's body arrives in order");
        let mut pos = self.received;
        self.received += bytes.len() as u64;
        // Bounded: each pass consumes bytes, up to one page's worth.
        while !bytes.is_empty() && pos < self.data_len {
            let (i, off) = (
                (pos / self.page as u64) as usize,
                (pos % self.page as u64) as usize,
            );
            let n = bytes
                .len()
                .min(self.page - off)
                .min((self.data_len - pos) as usize);
            let Some(f) = self.frames.get_mut(i) else {
                break; // more data than frames: the length check rejects the read
            };
            f.as_mut_slice()[off..off + n].copy_from_slice(&bytes[..n]);
            if self.whole {
                self.crc.update(&bytes[..n]);
            }
            bytes = &bytes[n..];
            pos += n as u64;
        }
        if self.whole && !bytes.is_empty() && pos >= self.data_len {
            // The trailer's bytes go aside. Bytes past it (a body longer than the object, which
            // the length check then refuses) are only counted: a piece may start anywhere past
            // the trailer's end.
            let t = usize::try_from(pos - self.data_len).unwrap_or(usize::MAX);
            if let Some(room) = self.tail.get_mut(t..) {
                let n = bytes.len().min(room.len());
                room[..n].copy_from_slice(&bytes[..n]);
                self.tail_len = self.tail_len.max(t + n);
            }
        }
    }

    /// Zeros what the data did not cover: bytes past the object's data read as zeros.
    fn zero_rest(self) {
        let data_len = self.data_len as usize;
        for (i, f) in self.frames.iter_mut().enumerate() {
            let from = (data_len.saturating_sub(i * self.page)).min(self.page);
            f.as_mut_slice()[from..].fill(0);
        }
    }
}

/// True if a conditional request failed its condition (the object is another version, or gone).
pub(crate) fn changed(f: &Failed) -> bool {
    matches!(
        f,
        Failed::Answer {
            error: object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. }
                | object_store::Error::AlreadyExists { .. },
            ..
        }
    )
}

/// A stand-in version for "absent", for error messages.
pub(crate) fn absent() -> Version {
    Version {
        e_tag: "absent".into(),
        version: None,
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trailer::{seal, WriteId};

    /// A whole object streamed in odd pieces (across page and trailer boundaries), its first
    /// attempt cut off and made again from the start: the frames get its data and zeros past
    /// it, the trailer and checksum check out.
    #[test]
    fn a_streamed_body_fills_the_frames_and_a_new_attempt_starts_over() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let object = seal(data.clone(), WriteId { writer: 1, seq: 2 });
        let mut frames: Vec<FrameMut> = (0..4).map(|_| FrameMut::alloc(4096).unwrap()).collect();
        frames.iter_mut().for_each(|f| f.as_mut_slice().fill(0xee));
        let mut fill = Fill::new(&mut frames, 4096, data.len() as u64, true);
        fill.put(0, &object[..5000]);
        fill.put(5000, &[9u8; 3000]); // the attempt fails part-way, with garbage
        let mut at = 0;
        for piece in object.chunks(4097 - 1500) {
            fill.put(at, piece);
            at += piece.len() as u64;
        }
        assert_eq!(fill.received, object.len() as u64);
        let found = fill.crc.finalize() as u32;
        let t = trailer::check(fill.received, &fill.tail[..fill.tail_len], found).unwrap();
        assert_eq!(t.id, WriteId { writer: 1, seq: 2 });
        fill.zero_rest();
        let got: Vec<u8> = frames.iter().flat_map(|f| f.as_slice().to_vec()).collect();
        assert_eq!(&got[..data.len()], &data[..]);
        assert!(
            got[data.len()..].iter().all(|&b| b == 0),
            "past the data: zeros"
        );
    }

    /// A body whose bytes differ from its trailer's checksum is refused.
    #[test]
    fn a_streamed_body_with_a_flipped_bit_fails_its_checksum() {
        let mut object = seal(vec![5u8; 8192], WriteId { writer: 1, seq: 1 });
        object[4096] ^= 1;
        let mut frames: Vec<FrameMut> = (0..2).map(|_| FrameMut::alloc(4096).unwrap()).collect();
        let mut fill = Fill::new(&mut frames, 4096, 8192, true);
        fill.put(0, &object);
        let found = fill.crc.finalize() as u32;
        assert!(matches!(
            trailer::check(fill.received, &fill.tail[..fill.tail_len], found),
            Err(Bad::Checksum { .. })
        ));
    }

    /// A whole object's body that runs on past the object Folio knows (a store that ignores
    /// `If-Match` on GET, and the chunk grown behind Folio's back), in pieces that start past
    /// its end: counted, so the length check refuses the read, never a panic on the trailer's
    /// buffer, and the trailer kept aside is the object's.
    #[test]
    fn a_streamed_body_longer_than_the_object_is_counted_not_a_panic() {
        let object = seal(vec![5u8; 8192], WriteId { writer: 1, seq: 1 });
        let mut frames: Vec<FrameMut> = (0..2).map(|_| FrameMut::alloc(4096).unwrap()).collect();
        let mut fill = Fill::new(&mut frames, 4096, 8192, true);
        fill.put(0, &object);
        let mut at = object.len() as u64;
        for piece in [&[1u8; 10][..], &[2u8; 100], &[], &[3u8; 4096]] {
            fill.put(at, piece);
            at += piece.len() as u64;
        }
        assert_eq!(fill.received, object.len() as u64 + 4206);
        assert_eq!(&fill.tail[..fill.tail_len], &object[8192..]);
    }
}
