//! Resizing an image, and rewriting its manifest.
//!
//! Owns: [`Image::resize`] and [`Image::put_manifest`]. The rule: **no byte below the size the
//! store's manifest says is ever cut**, and **no byte past it is ever exposed**.
//! - **Shrinking** rewrites the manifest first; only once it landed are the chunks past the new
//!   end emptied and the chunk the end falls in cut (conditional PUTs, `rewrite.rs`, several at
//!   once, each with its own deadline; never a DELETE during a session). That cut is best
//!   effort: if the store fails part-way, the shrink still succeeded (the bytes past the end are
//!   no longer the image's), and what was left is cut before the image grows again, or deleted
//!   by the next read-write open's reclaim (`reclaim.rs`). Review 3, M2: the cut used to come
//!   first under one deadline, so a large shrink that ran out of time left the old size with
//!   some of its chunks already emptied.
//! - **Growing** first cuts what an earlier shrink left past the current end (the versions
//!   table says which chunks hold data there), and fails before the manifest changes if it
//!   cannot: the new range must read as zeros. Then it rewrites the manifest.
//! - A resize to the current size finishes such a cut, best effort (the cache calls it again
//!   after a shrink).
//!
//! The manifest is rewritten If-Match its known version with the next revision of its stamp
//! (`layout.rs`). If the condition fails or the answer is lost, it is read back: if it is the
//! one just sent, that PUT landed; if it is another revision written by this session (an
//! earlier rewrite whose outcome was unknown landed late), it is adopted and the rewrite made
//! again on top; anything else is someone else's ([`ObjectError::Manifest`]).
//!
//! Does not own: chunk rewrites (`rewrite.rs`), which it reuses.
//!
//! May block: async; holds the geometry lock exclusively, so every chunk read and rewrite waits.

use futures_util::StreamExt;
use object_store::PutMode;

use crate::cell::Op;
use crate::chunk::{changed, data_len};
use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::layout::{Manifest, Stamp};
use crate::retry::Gate;

impl Image {
    /// Sets the image size to `len` (see the module docs).
    pub(crate) async fn resize(&self, len: u64) -> ObjResult<()> {
        let _geometry = self.geometry.write().await;
        self.writable()?;
        let old = self.size();
        let manifest = Manifest::new(len, self.chunk_size)?;
        if len > old {
            self.cut_past(old).await?;
            self.put_manifest(manifest, self.req.deadline_from_now_ms())
                .await?;
            self.set_size(len);
            return Ok(());
        }
        if len < old {
            self.put_manifest(manifest, self.req.deadline_from_now_ms())
                .await?;
            self.set_size(len);
            // The bytes past the end are no longer the image's: their failed writes are moot.
            let first_gone = len.div_ceil(self.chunk_size);
            for (n, cell) in self.cells() {
                let keep = if n >= first_gone {
                    0
                } else if n == len / self.chunk_size {
                    len % self.chunk_size
                } else {
                    continue;
                };
                self.forget_failures(&cell, keep, u64::MAX);
            }
        }
        if let Err(e) = self.cut_past(len).await {
            tracing::warn!(error = %e, "the bytes past the image's end are not all cut yet; \
                the next resize or read-write open cuts them");
        }
        Ok(())
    }

    /// Makes every stored byte from `end` on zeros: empties the chunks past it that hold data
    /// (or whose state is unsure: a write of ours may have landed there) and cuts the chunk it
    /// falls in, several at once, each with its own deadline. The caller holds the geometry
    /// lock exclusively. Returns the first error; the other chunks are still tried.
    async fn cut_past(&self, end: u64) -> ObjResult<()> {
        let cs = self.chunk_size;
        let first_gone = end.div_ceil(cs);
        let keep = end % cs;
        let mut cuts: Vec<(u64, u64)> = self
            .versions
            .lock()
            .chunks_from(first_gone, CHUNK_DATA_MIN)
            .into_iter()
            .map(|n| (n, 0))
            .collect();
        for (n, cell) in self.cells() {
            if n >= first_gone && cell.st.lock().unsure {
                cuts.push((n, 0));
            }
        }
        if keep != 0 {
            let n = end / cs;
            let stored = self.version(n).map_or(0, |v| data_len(&v));
            let unsure = self.cell_if_any(n).is_some_and(|c| c.st.lock().unsure);
            if stored > keep || unsure {
                cuts.push((n, keep));
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let in_flight = self.puts_in_flight_max;
        let mut rewrites = futures_util::stream::iter(cuts)
            .map(|(n, keep)| async move {
                let cell = self.cell(n);
                let cut = [Op::Zero {
                    start: keep,
                    end: cs,
                }];
                let deadline_ms = self.req.deadline_from_now_ms();
                self.rewrite(n, &cell, &cut, keep, deadline_ms).await
            })
            .buffer_unordered(in_flight);
        let mut first_error = None;
        // Bounded: one item per chunk to cut.
        while let Some(r) = rewrites.next().await {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Rewrites the manifest as `m` (see the module docs).
    pub(crate) async fn put_manifest(&self, m: Manifest, deadline_ms: u64) -> ObjResult<()> {
        let key = self.layout.manifest();
        let gate = Gate::Write {
            fence: &self.fence,
            deadline_ms,
        };
        // Bounded: a further round only after adopting a manifest of our own.
        for _ in 0..3 {
            let (seen, stamp) = self.manifest_state.lock().clone();
            let seen = seen
                .ok_or_else(|| ObjectError::Invalid(format!("the store gave no ETag for {key}")))?;
            let next = Stamp {
                revision: stamp.revision + 1,
                writer: self.writer(),
                ..stamp
            };
            let body = bytes::Bytes::from(m.to_json(next));
            let put = self
                .req
                .put(&key, body, PutMode::Update(seen.update()), gate)
                .await;
            let f = match put {
                Ok(sent) => {
                    *self.manifest_state.lock() = (Some(sent.value), next);
                    return Ok(());
                }
                Err(f) if changed(&f) || f.uncertain() => f,
                Err(f) => return Err(f.into_error("PUT", key.as_ref())),
            };
            if f.uncertain() {
                // It may still land: wait until it cannot (review 3, H2: a shrink that landed
                // after we read back the old manifest left this session writing past the
                // stored end, and the next open deleted those chunks).
                self.req.settle().await;
            }
            // Read it back: whose manifest is there? A read: neither the fence nor a store
            // known down (`health.rs`, which fails writes fast) stops it.
            let got = match self.req.get(&key, None, None, Gate::Open).await {
                Ok(g) => g,
                Err(g) => {
                    let e = g.into_error("GET", key.as_ref());
                    if f.uncertain() {
                        // Landed or not, we cannot tell: the store may hold the new size while
                        // the caller, told it failed, goes on at the old one (review 4: a
                        // shrink that landed so lost the data synced past its end at the next
                        // open). Stop writing for good: every later write and sync fails.
                        self.fence.lose(format!(
                            "a manifest rewrite's outcome is unknown (its read-back failed: {e})"
                        ));
                    }
                    return Err(e);
                }
            };
            let (now, now_stamp) = Manifest::parse_stamped(&got.bytes, key.as_ref())?;
            let ours = now_stamp.image_id == stamp.image_id && now_stamp.writer == self.writer();
            match got.version {
                Some(v) if ours && now_stamp == next && now == m => {
                    *self.manifest_state.lock() = (Some(v), next);
                    return Ok(());
                }
                Some(v) if ours && now_stamp.revision > stamp.revision => {
                    tracing::info!("a manifest rewrite of ours landed late; writing on top");
                    *self.manifest_state.lock() = (Some(v), now_stamp);
                }
                _ if changed(&f) => {
                    return Err(ObjectError::Manifest {
                        key: key.to_string(),
                        why: format!(
                            "it changed behind this writer's back (revision {} of image {:016x}, \
                             expected revision {})",
                            now_stamp.revision, now_stamp.image_id, stamp.revision
                        ),
                    })
                }
                // Not landed, and (settled) it cannot land any more.
                _ => return Err(f.into_error("PUT", key.as_ref())),
            }
        }
        Err(ObjectError::Manifest {
            key: key.to_string(),
            why: "it kept changing".into(),
        })
    }
}

/// A chunk object holds data if it is longer than its trailer.
const CHUNK_DATA_MIN: u64 = crate::trailer::CHUNK_TRAILER_LEN;
