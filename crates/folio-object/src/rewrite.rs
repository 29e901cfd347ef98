//! Rewriting one chunk: the conditional PUT of its new bytes, and what to do when its outcome is
//! unknown.
//!
//! Owns: [`Image::rewrite`], [`Image::resolve`] and [`Image::zeroed_after_failure`].
//! - **Rewrite**: fetch the chunk if the changes do not cover it, apply them, cut trailing zeros,
//!   seal the bytes with a trailer naming this write (`trailer.rs`: every object body differs,
//!   so versions never come back) and PUT them If-Match the known version (If-None-Match `*`
//!   for a chunk with no object). A chunk of zeros is PUT too, as an empty chunk object, never
//!   deleted during a session: a DELETE is unconditional in S3, so one that lands late (after
//!   its retry succeeded and the chunk was written again) would destroy data, and a chunk gone
//!   from the store would let a late create (If-None-Match) land again. Empty objects are
//!   reclaimed only at open, under a fresh lease (`reclaim.rs`). Every PUT is sent only while
//!   the lease fence is open (`retry.rs`).
//! - **Unknown outcomes**: a PUT that got no answer, or whose retry failed its condition, may
//!   have landed. If its condition fails, the chunk's trailer (the last 32 bytes, one ranged
//!   GET) says whose write is there: this very write (its answer was lost: done), or another
//!   ([`ObjectError::ChunkChanged`] for this round). A PUT that gave up, or whose condition
//!   failed after a retry, marks the chunk *unsure* (`cell.rs`): before its next request the
//!   chunk's version is resolved — the known one is still there, or one written by this session
//!   (it landed late) is adopted and the changes applied on top, or it is someone else's — and
//!   a write is made even if the chunk is absent and stays zeros, so that the late one can no
//!   longer land. Adopting any version written by this session is safe: its writes
//!   of a chunk form one chain of compare-and-swaps from the version it listed at open, so the
//!   one in the store is the latest of them that landed.
//!
//! Does not own: which changes make a round (`chunk.rs`), the fence (`fence.rs`).
//!
//! May block: async, on the backend's runtime.

use bytes::Bytes;
use object_store::{GetRange, PutMode};

use crate::cell::{apply, covers, data_len as zero_trimmed, Cell, Op};
use crate::chunk::{absent, changed, data_len, PASSES_MAX};
use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::layout::Piece;
use crate::retry::{Failed, Gate};
use crate::store::Version;
use crate::trailer::{self, Trailer, CHUNK_TRAILER_LEN};

impl Image {
    /// Applies `ops` (in order) to chunk `n`, which is to hold `len` bytes of the image (0: it
    /// lies wholly past the image's end), in the store. The caller excludes every other read
    /// and rewrite of the chunk.
    pub(crate) async fn rewrite(
        &self,
        n: u64,
        cell: &Cell,
        ops: &[Op],
        len: u64,
        deadline_ms: u64,
    ) -> ObjResult<()> {
        self.writable()?;
        let key = self.layout.chunk(n);
        let gate = Gate::Write {
            fence: &self.fence,
            deadline_ms,
        };
        // Bounded: see PASSES_MAX.
        for _ in 0..PASSES_MAX {
            if cell.st.lock().unsure {
                self.resolve(n, gate).await?;
            }
            let version = self.version(n);
            let mut buf = match &version {
                Some(v) if data_len(v) > 0 && !covers(ops, len) => {
                    let got = self.req.get(&key, None, Some(&v.e_tag), gate).await;
                    let got = match got {
                        Err(f) if changed(&f) && cell.st.lock().unsure => continue,
                        got => self.checked(n, v, got)?,
                    };
                    let mut b = self.opened(n, &got.bytes)?.to_vec();
                    b.resize(len as usize, 0);
                    b
                }
                _ => vec![0; len as usize],
            };
            for op in ops {
                apply(&mut buf, op);
            }
            buf.truncate(zero_trimmed(&buf));
            let unsure = cell.st.lock().unsure;
            if version.is_none() && buf.is_empty() && !unsure {
                return Ok(()); // absent, and zeros: nothing to store
            }
            let id = self.next_write();
            let body = Bytes::from(trailer::seal(buf, id));
            let mode = match &version {
                Some(v) => PutMode::Update(v.update()),
                None => PutMode::Create,
            };
            let put = self.req.put(&key, body, mode, gate).await;
            let landed = match put {
                Ok(sent) if !sent.value.e_tag.is_empty() => sent.value,
                Ok(_) => {
                    // Landed, but its version is unknown until the look below.
                    cell.st.lock().unsure = true;
                    match self.look(n, gate).await? {
                        Some((v, Some(t))) if t.id == id => v,
                        _ => {
                            return Err(ObjectError::Invalid(format!(
                                "the store returned no ETag for {key}"
                            )))
                        }
                    }
                }
                Err(f) if changed(&f) => {
                    if f.uncertain() {
                        // An earlier attempt may have landed: unknown until the look below.
                        cell.st.lock().unsure = true;
                    }
                    match self.look(n, gate).await? {
                        // This very write: an earlier attempt landed, its answer lost.
                        Some((v, Some(t))) if t.id == id => v,
                        // Another write of ours that landed late is adopted by the next
                        // round's resolve (the chunk is unsure): this round fails.
                        now => return Err(self.changed_to(n, version.as_ref(), now.as_ref())),
                    }
                }
                Err(f) => {
                    if f.uncertain() {
                        cell.st.lock().unsure = true;
                    }
                    return Err(f.into_error("PUT", key.as_ref()));
                }
            };
            self.set_version(n, Some(landed));
            // This PUT landed conditional on the version before it: no earlier write of ours
            // can land any more.
            cell.st.lock().unsure = false;
            return Ok(());
        }
        Err(self.changed(
            n,
            &self.version(n).unwrap_or_else(absent),
            "versions that keep changing",
        ))
    }

    /// Learns chunk `n`'s version after a write of ours of unknown outcome: keeps the known one
    /// if the store still has it, adopts one written by this session, and reports any other
    /// as [`ObjectError::ChunkChanged`].
    pub(crate) async fn resolve(&self, n: u64, gate: Gate<'_>) -> ObjResult<()> {
        let known = self.version(n);
        let now = self.look(n, gate).await?;
        match (&known, &now) {
            (None, None) => Ok(()),
            (Some(k), Some((v, _))) if k.e_tag == v.e_tag => Ok(()),
            (_, Some((v, Some(t)))) if self.is_ours(t.id) => {
                tracing::info!(
                    chunk = n,
                    "a write of ours whose answer was lost landed; adopted"
                );
                self.set_version(n, Some(v.clone()));
                Ok(())
            }
            _ => Err(self.changed_to(n, known.as_ref(), now.as_ref())),
        }
    }

    /// After a zeroing of `pieces` failed: waits until no write of ours of unknown outcome can
    /// still land ([`Requests::settle`](crate::store::Requests::settle)), then learns what each
    /// chunk holds, resolving those whose last write's outcome is unknown. True if every piece
    /// reads as zeros: the zeroing landed, its answer lost (its failures are then forgotten, as
    /// after any zeroing). False if one does not or cannot be known now: the error stands, and
    /// the store no longer changes under the caller (review 3, M4: a zeroing that failed but
    /// landed later turned the bytes of evicted pages into zeros long after the error).
    pub(crate) async fn zeroed_after_failure(&self, pieces: &[Piece]) -> bool {
        self.req.settle().await;
        let _geometry = self.geometry.read().await;
        for p in pieces {
            let cell = self.cell(p.chunk);
            let _io = cell.io.write().await;
            match self.reads_zeros(p, &cell).await {
                Ok(true) => self.forget_failures(&cell, p.start, p.end),
                Ok(false) => return false,
                Err(e) => {
                    tracing::warn!(chunk = p.chunk, error = %e,
                        "cannot tell whether a failed zeroing landed");
                    return false;
                }
            }
        }
        true
    }

    /// True if piece `p` of its chunk reads as zeros in the store now. The caller excludes
    /// every other read and rewrite of the chunk.
    async fn reads_zeros(&self, p: &Piece, cell: &Cell) -> ObjResult<bool> {
        if cell.st.lock().unsure {
            self.resolve(p.chunk, Gate::Open).await?;
        }
        let Some(v) = self.version(p.chunk) else {
            return Ok(true);
        };
        let stop = p.end.min(data_len(&v));
        if stop <= p.start {
            return Ok(true);
        }
        let key = self.layout.chunk(p.chunk);
        let range = Some(GetRange::Bounded(p.start..stop));
        let got = self.req.get(&key, range, Some(&v.e_tag), Gate::Open).await;
        let got = self.checked(p.chunk, &v, got)?;
        Ok(got.bytes.iter().all(|&b| b == 0))
    }

    /// Chunk `n`'s current version and trailer (if it has one), from one ranged GET of its
    /// last bytes; `None` if it has no object.
    async fn look(&self, n: u64, gate: Gate<'_>) -> ObjResult<Option<(Version, Option<Trailer>)>> {
        let key = self.layout.chunk(n);
        let suffix = Some(GetRange::Suffix(CHUNK_TRAILER_LEN));
        let got = self.req.get(&key, suffix, None, gate).await;
        match got {
            Ok(g) => {
                let v = g.version.ok_or_else(|| {
                    ObjectError::Invalid(format!("the store returned no ETag for {key}"))
                })?;
                Ok(Some((v, trailer::read(&g.bytes))))
            }
            Err(Failed::Answer {
                error: object_store::Error::NotFound { .. },
                ..
            }) => Ok(None),
            Err(f) => Err(f.into_error("GET", key.as_ref())),
        }
    }

    fn changed_to(
        &self,
        n: u64,
        known: Option<&Version>,
        now: Option<&(Version, Option<Trailer>)>,
    ) -> ObjectError {
        let found = match now {
            None => "absent".to_string(),
            Some((v, Some(t))) => format!("{} (written by {})", v.e_tag, t.id),
            Some((v, None)) => format!("{} (not written by Folio)", v.e_tag),
        };
        self.changed(n, &known.cloned().unwrap_or_else(absent), &found)
    }
}
