//! Resizing an image, and rewriting its manifest.
//!
//! Owns: [`Image::resize`] and [`Image::put_manifest`]. Growing rewrites only the manifest (the
//! new range's chunks are absent or empty, so they read as zeros). Shrinking first empties every
//! chunk past the new end and cuts the chunk the end falls in — conditional PUTs (`rewrite.rs`),
//! never a DELETE during a session — then rewrites the manifest: a crash in between leaves the
//! old size with the cut range reading as zeros, and the next read-write open deletes the empty
//! chunks and those past the end under its fresh lease (`backend.rs`).
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
        let deadline_ms = self.req.deadline_ms(self.req.clock.now_ms());
        let old = self.size();
        let cs = self.chunk_size;
        if len < old {
            let first_gone = len.div_ceil(cs);
            // Chunks with data past the new end, and those whose state is unsure.
            let mut gone = self.versions.lock().chunks_from(first_gone, CHUNK_DATA_MIN);
            for (n, cell) in self.cells() {
                if n >= first_gone && cell.st.lock().unsure {
                    gone.push(n);
                }
            }
            gone.sort_unstable();
            gone.dedup();
            for n in gone {
                let cell = self.cell(n);
                self.rewrite(n, &cell, &[], 0, deadline_ms).await?;
            }
            for (n, cell) in self.cells() {
                if n >= first_gone {
                    self.forget_failures_from(&cell, 0);
                }
            }
            let keep = len % cs;
            if keep != 0 {
                let n = len / cs;
                let cell = self.cell(n);
                let stored = self.version(n).map_or(0, |v| data_len(&v));
                let unsure = cell.st.lock().unsure;
                let r = if stored > keep || unsure {
                    let cut = [Op::Zero {
                        start: keep,
                        end: cs,
                    }];
                    self.rewrite(n, &cell, &cut, keep, deadline_ms).await
                } else {
                    Ok(())
                };
                r?;
                self.forget_failures_from(&cell, keep);
            }
        }
        self.put_manifest(Manifest::new(len, cs)?, deadline_ms)
            .await?;
        self.set_size(len);
        Ok(())
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
            // Read it back: whose manifest is there?
            let got = match self.req.get(&key, None, None, gate).await {
                Ok(g) => g,
                Err(g) => return Err(g.into_error("GET", key.as_ref())),
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
