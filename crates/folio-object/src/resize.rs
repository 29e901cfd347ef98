//! Resizing an image: the manifest rewritten, chunks past the new end dropped.
//!
//! Owns: [`Image::resize`]. Growing rewrites only the manifest (the new chunks are absent, so
//! they read as zeros). Shrinking first deletes every chunk past the new end and cuts the chunk
//! the end falls in (a rewrite that drops its tail, or a DELETE if the rest is zeros), then
//! rewrites the manifest: a crash in between leaves the old size with the cut range reading as
//! zeros, and the next read-write open deletes any chunk past the end.
//!
//! Does not own: chunk rewrites (`chunk.rs`), which it reuses.
//!
//! May block: async; holds the geometry lock exclusively, so every chunk read and rewrite waits.

use object_store::PutMode;

use crate::chunk::Op;
use crate::error::ObjResult;
use crate::image::Image;
use crate::layout::Manifest;

impl Image {
    /// Sets the image size to `len` (see the module docs).
    pub(crate) async fn resize(&self, len: u64) -> ObjResult<()> {
        let _geometry = self.geometry.write().await;
        let old = self.size();
        let cs = self.chunk_size;
        if len < old {
            let first_gone = len.div_ceil(cs);
            for (n, cell) in self.cells() {
                if n < first_gone {
                    continue;
                }
                let exists = cell.st.lock().version.is_some();
                if exists {
                    let key = self.layout.chunk(n);
                    self.req
                        .delete(&key)
                        .await
                        .map_err(|f| f.into_error("DELETE", key.as_ref()))?;
                    cell.st.lock().version = None;
                }
                self.forget_failures_from(&cell, 0);
            }
            let keep = len % cs;
            if keep != 0 {
                let n = len / cs;
                let cell = self.cell(n);
                let stored = cell.st.lock().version.as_ref().map_or(0, |v| v.size);
                if stored > keep {
                    let mut cut = [Op::Zero {
                        start: keep,
                        end: cs,
                    }];
                    self.rewrite(n, &cell, &mut cut, keep).await?;
                }
                self.forget_failures_from(&cell, keep);
            }
        }
        let manifest = Manifest::new(len, cs)?;
        let key = self.layout.manifest();
        let seen = self.manifest_version.lock().clone();
        let mode = seen.map_or(PutMode::Overwrite, |v| PutMode::Update(v.update()));
        let body = bytes::Bytes::from(manifest.to_json());
        let v = self
            .req
            .put(&key, body, mode, None)
            .await
            .map_err(|f| f.into_error("PUT", key.as_ref()))?;
        *self.manifest_version.lock() = Some(v);
        self.set_size(len);
        Ok(())
    }
}
