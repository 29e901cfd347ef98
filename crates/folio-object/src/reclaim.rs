//! Reclaiming empty chunk objects at a read-write open.
//!
//! Owns: [`Image::reclaim`]. Nothing is deleted during a session (a zeroed chunk becomes an
//! empty object, `rewrite.rs`); a read-write open, under its fresh lease, deletes the chunks past
//! the image's end that hold data and up to [`RECLAIM_PER_OPEN_MAX`] empty chunk objects, then
//! waits until none of those DELETEs can still land.
//!
//! Does not own: opening (`backend.rs`), the listing of chunk versions it goes by.
//!
//! May block: async, on the backend's runtime.

use futures_util::StreamExt;

use crate::chunk::data_len;
use crate::error::{ObjResult, ObjectError};
use crate::image::Image;
use crate::retry::{Failed, Gate};
use crate::trailer::CHUNK_TRAILER_LEN;

/// Empty chunk objects deleted at most per open (the rest wait for a later open; they cost a
/// listing entry and a few bytes of the versions table each, and read as zeros).
pub const RECLAIM_PER_OPEN_MAX: usize = 1024;

impl Image {
    /// Deletes the chunks past the image's end that hold data and up to
    /// [`RECLAIM_PER_OPEN_MAX`] empty chunk objects, then waits until no DELETE of ours can
    /// still land. Only at open, under the fresh lease: nothing of this session writes
    /// meanwhile. Best effort (review 3, M3: a bucket that refuses DELETE made every read-write
    /// open fail once an empty chunk existed): a failure is logged, the DELETEs not sent yet are
    /// dropped, and the open goes on. What stays is harmless: an empty chunk reads as zeros, and
    /// a chunk past the end is cut before the image grows over it (`resize.rs`). Fails only if
    /// a DELETE of unknown outcome cannot be looked up once it can no longer land.
    pub(crate) async fn reclaim(&self) -> ObjResult<()> {
        let image = self;
        let chunks = image.manifest().chunks();
        let found = image
            .versions
            .lock()
            .chunks_sized_or_from(CHUNK_TRAILER_LEN, chunks);
        let mut empty = 0;
        let gone: Vec<u64> = found
            .into_iter()
            .filter(|&n| {
                // Every chunk past the end that holds data (a shrink whose cut failed part-way
                // leaves some); empty ones, past the end or not, up to the bound.
                let has_data = image.version(n).is_some_and(|v| data_len(&v) > 0);
                (n >= chunks && has_data) || {
                    empty += 1;
                    empty <= RECLAIM_PER_OPEN_MAX
                }
            })
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        tracing::info!(
            chunks = gone.len(),
            "deleting empty chunk objects and chunks past the end"
        );
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let mut deletes = futures_util::stream::iter(gone)
            .map(|n| async move {
                if failed.load(std::sync::atomic::Ordering::Acquire) {
                    return (n, None);
                }
                let key = image.layout.chunk(n);
                let gate = Gate::Write {
                    fence: &image.fence,
                    deadline_ms: image.req.deadline_from_now_ms(),
                };
                (n, Some(image.req.delete(&key, gate).await))
            })
            .buffer_unordered(image.puts_in_flight_max);
        let (mut skipped, mut unknown) = (0usize, Vec::new());
        // Bounded: one item per chunk to delete.
        while let Some((n, r)) = deletes.next().await {
            match r {
                Some(Ok(())) => image.set_version(n, None),
                Some(Err(f)) => {
                    if f.uncertain() {
                        unknown.push(n);
                    }
                    let e = f.into_error("DELETE", image.layout.chunk(n).as_ref());
                    if !failed.swap(true, std::sync::atomic::Ordering::AcqRel) {
                        tracing::warn!(chunk = n, error = %e,
                            "cannot delete empty chunk objects; left for a later open");
                    }
                }
                None => skipped += 1,
            }
        }
        drop(deletes);
        if skipped > 0 {
            tracing::info!(chunks = skipped, "chunk deletions left for a later open");
        }
        image.req.settle().await;
        // A DELETE that got no answer may have landed: learn whether it did, now that it can
        // no longer land, so the version every later request goes by is the store's.
        for n in unknown {
            let key = image.layout.chunk(n);
            match image.req.head(&key).await {
                Ok(v) if v.is_some() => image.set_version(n, v),
                Err(Failed::Answer {
                    error: object_store::Error::NotFound { .. },
                    ..
                }) => image.set_version(n, None),
                Ok(_) => {
                    return Err(ObjectError::Invalid(format!(
                        "the store returned no ETag for {key}"
                    )))
                }
                Err(f) => return Err(f.into_error("HEAD", key.as_ref())),
            }
        }
        Ok(())
    }
}
