//! How an image is laid out in a bucket: object keys, the manifest, and chunk arithmetic.
//!
//! Owns: the names of the objects of an image under its prefix, the manifest format (parse and
//! print, strictly versioned), and the mapping from byte ranges to chunks.
//!
//! Does not own: any I/O (see `backend.rs`), the lease object's contents (`lease.rs`).
//!
//! ```text
//!   PREFIX/manifest.json        {"format":"folio-image","version":2,"size":N,"chunk_size":C,
//!                                "image_id":"<16 hex>","revision":R,"writer":"<16 hex>"}
//!   PREFIX/lock                 the single-writer lease (lease.rs)
//!   PREFIX/chunks/000000000000002a
//!                               bytes 42*C .. 43*C of the image up to its last non-zero byte,
//!                               then a 32-byte trailer (trailer.rs); missing bytes and missing
//!                               chunks read as zeros, and a chunk of zeros written during a
//!                               session is a trailer alone (an "empty" chunk object)
//! ```
//! Chunk names are fixed-width hex, so a listing returns them in image order.
//!
//! The manifest's `image_id` (drawn at create) and `revision` (one more at each resize) make
//! every manifest body different from every other, so its version (an MD5 ETag on S3) never
//! comes back and a conditional rewrite is a true compare-and-swap, and so that a writer whose
//! answer was lost recognises its own manifest (`backend.rs`, `resize.rs`).
//!
//! Version 1 (chunks without trailers, deleted when zeroed) is refused: its zero chunks were
//! deleted during a session, which a late DELETE could turn into lost data.

use object_store::path::Path;

use crate::error::{ObjResult, ObjectError};

/// The `format` field of every manifest Folio writes.
pub const MANIFEST_FORMAT: &str = "folio-image";
/// The manifest version this code writes and reads.
pub const MANIFEST_VERSION: u64 = 2;
/// The default chunk size: 4 MiB.
pub const CHUNK_SIZE_DEFAULT: u64 = 4 << 20;
/// Chunks are whole multiples of this (the largest page size the cache uses in practice, and the
/// frame alignment).
pub const CHUNK_ALIGN: u64 = 4096;
/// The largest chunk: one PUT of a chunk stays well under S3's 5 GiB single-PUT limit, and the
/// backend keeps a few chunks in memory at once.
pub const CHUNK_SIZE_MAX: u64 = 64 << 20;

/// The object keys of one image.
#[derive(Clone, Debug)]
pub struct Layout {
    prefix: Path,
    chunks: Path,
}

impl Layout {
    /// The layout of the image under `prefix` (may be empty: the bucket's root).
    pub fn new(prefix: &str) -> ObjResult<Layout> {
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| ObjectError::Invalid(format!("bad image prefix {prefix:?}: {e}")))?;
        let chunks = prefix.clone().join("chunks");
        Ok(Layout { prefix, chunks })
    }

    /// The image prefix.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The manifest's key.
    pub fn manifest(&self) -> Path {
        self.prefix.clone().join("manifest.json")
    }

    /// The lease object's key.
    pub fn lock(&self) -> Path {
        self.prefix.clone().join("lock")
    }

    /// The folder of the chunk objects.
    pub fn chunks(&self) -> &Path {
        &self.chunks
    }

    /// The key of chunk `n`.
    pub fn chunk(&self, n: u64) -> Path {
        self.chunks.clone().join(format!("{n:016x}"))
    }

    /// The chunk number of a key listed under [`chunks`](Self::chunks), if it is one.
    pub fn chunk_number(&self, key: &Path) -> Option<u64> {
        let mut parts = key.prefix_match(&self.chunks)?;
        let name = parts.next()?;
        if parts.next().is_some() || name.as_ref().len() != 16 {
            return None;
        }
        u64::from_str_radix(name.as_ref(), 16).ok()
    }
}

/// The manifest: what an image is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Image size in bytes.
    pub size: u64,
    /// Chunk size in bytes (a multiple of 4 KiB, at most 64 MiB).
    pub chunk_size: u64,
}

impl Manifest {
    /// A manifest, checked.
    pub fn new(size: u64, chunk_size: u64) -> ObjResult<Manifest> {
        if chunk_size == 0 || chunk_size % CHUNK_ALIGN != 0 || chunk_size > CHUNK_SIZE_MAX {
            return Err(ObjectError::Invalid(format!(
                "chunk size {chunk_size} must be a non-zero multiple of {CHUNK_ALIGN} bytes \
                 and at most {CHUNK_SIZE_MAX}"
            )));
        }
        // Chunk numbers and byte offsets must fit: the last chunk starts below `size`.
        if size.checked_add(chunk_size).is_none() {
            return Err(ObjectError::Invalid(format!(
                "image size {size} is too large"
            )));
        }
        Ok(Manifest { size, chunk_size })
    }

    /// The manifest as stored, with its stamp.
    pub(crate) fn to_json(self, stamp: Stamp) -> String {
        serde_json::json!({
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "image_id": format!("{:016x}", stamp.image_id),
            "revision": stamp.revision,
            "writer": format!("{:016x}", stamp.writer),
        })
        .to_string()
    }

    /// Parses a stored manifest (`key` is for the error message).
    pub fn parse(bytes: &[u8], key: &str) -> ObjResult<Manifest> {
        Manifest::parse_stamped(bytes, key).map(|(m, _)| m)
    }

    /// Parses a stored manifest and its stamp.
    pub(crate) fn parse_stamped(bytes: &[u8], key: &str) -> ObjResult<(Manifest, Stamp)> {
        let bad = |why: String| ObjectError::Manifest {
            key: key.to_string(),
            why,
        };
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some(MANIFEST_FORMAT) {
            return Err(bad(format!("format is not {MANIFEST_FORMAT:?}")));
        }
        match v.get("version").and_then(|f| f.as_u64()) {
            Some(MANIFEST_VERSION) => {}
            Some(1) => {
                return Err(bad(format!(
                    "image format 1 (chunks deleted when zeroed, no chunk trailers); this Folio \
                     reads format {MANIFEST_VERSION}: export the image with the Folio that wrote \
                     it and import it again"
                )))
            }
            other => {
                return Err(bad(format!(
                    "version {other:?}; this Folio reads version {MANIFEST_VERSION}"
                )))
            }
        }
        let field = |name: &str| {
            v.get(name)
                .and_then(|f| f.as_u64())
                .ok_or_else(|| bad(format!("no integer field {name:?}")))
        };
        let hex = |name: &str| {
            v.get(name)
                .and_then(|f| f.as_str())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| bad(format!("no hex field {name:?}")))
        };
        let stamp = Stamp {
            image_id: hex("image_id")?,
            revision: field("revision")?,
            writer: hex("writer")?,
        };
        let m =
            Manifest::new(field("size")?, field("chunk_size")?).map_err(|e| bad(e.to_string()))?;
        Ok((m, stamp))
    }

    /// Number of chunks the image spans.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// Bytes of chunk `n` that lie inside the image (its object's full length).
    pub fn chunk_len(&self, n: u64) -> u64 {
        let start = n.saturating_mul(self.chunk_size);
        self.size.saturating_sub(start).min(self.chunk_size)
    }
}

/// What makes a manifest body unique: the image's id and the manifest's revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stamp {
    /// Drawn when the image was created.
    pub(crate) image_id: u64,
    /// 0 at create, one more at each resize.
    pub(crate) revision: u64,
    /// The session that wrote it (its random writer id; 0 at create).
    pub(crate) writer: u64,
}

/// The part of a byte range that falls in one chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The chunk number.
    pub chunk: u64,
    /// Offset in the chunk.
    pub start: u64,
    /// End offset in the chunk (exclusive).
    pub end: u64,
    /// Offset of the piece from the start of the whole range.
    pub at: u64,
}

/// Splits `offset .. offset + len` at chunk boundaries, in order. At most
/// `len / chunk_size + 2` pieces.
pub fn pieces(offset: u64, len: u64, chunk_size: u64) -> impl Iterator<Item = Piece> {
    debug_assert!(chunk_size > 0);
    let end = offset.saturating_add(len);
    let mut pos = offset;
    std::iter::from_fn(move || {
        if pos >= end {
            return None;
        }
        let chunk = pos / chunk_size;
        let start = pos % chunk_size;
        let stop = (chunk_size - start).min(end - pos);
        let piece = Piece {
            chunk,
            start,
            end: start + stop,
            at: pos - offset,
        };
        pos += stop;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_parse_back() {
        let l = Layout::new("/images/vm1/").unwrap();
        assert_eq!(l.manifest().as_ref(), "images/vm1/manifest.json");
        assert_eq!(l.lock().as_ref(), "images/vm1/lock");
        let k = l.chunk(42);
        assert_eq!(k.as_ref(), "images/vm1/chunks/000000000000002a");
        assert_eq!(l.chunk_number(&k), Some(42));
        assert_eq!(l.chunk_number(&l.manifest()), None);
        assert_eq!(l.chunk_number(&Path::from("images/vm1/chunks/2a")), None);
        let root = Layout::new("").unwrap();
        assert_eq!(root.chunk(1).as_ref(), "chunks/0000000000000001");
    }

    #[test]
    fn manifests_round_trip_and_reject_what_they_do_not_know() {
        let m = Manifest::new(10 << 30, 4 << 20).unwrap();
        let stamp = Stamp {
            image_id: 0xfeed_0000_0000_0001,
            revision: 3,
            writer: 0xabc,
        };
        let json = m.to_json(stamp);
        assert_eq!(
            Manifest::parse_stamped(json.as_bytes(), "k").unwrap(),
            (m, stamp)
        );
        assert_eq!(m.chunks(), 2560);
        let odd = Manifest::new(5 * 4096 + 7, 8192).unwrap();
        assert_eq!(odd.chunks(), 3);
        assert_eq!(odd.chunk_len(2), 4096 + 7);
        assert_eq!(odd.chunk_len(3), 0);
        for bad in [
            r#"{"format":"other","version":1,"size":1,"chunk_size":4096}"#,
            r#"{"format":"folio-image","version":3,"size":1,"chunk_size":4096}"#,
            r#"{"format":"folio-image","version":1,"size":1,"chunk_size":4096}"#,
            r#"{"format":"folio-image","version":2,"size":1,"chunk_size":100,"image_id":"1","revision":0,"writer":"0"}"#,
            r#"{"format":"folio-image","version":2,"chunk_size":4096,"image_id":"1","revision":0,"writer":"0"}"#,
            r#"{"format":"folio-image","version":2,"size":1,"chunk_size":4096,"revision":0,"writer":"0"}"#,
            "not json",
        ] {
            let e = Manifest::parse(bad.as_bytes(), "k").unwrap_err();
            assert!(matches!(e, ObjectError::Manifest { .. }), "{bad}: {e}");
        }
        assert!(Manifest::new(1, 0).is_err());
        assert!(Manifest::new(u64::MAX - 10, 4096).is_err());
    }

    #[test]
    fn pieces_split_at_chunk_boundaries() {
        let p: Vec<Piece> = pieces(4096, 3 * 8192, 8192).collect();
        assert_eq!(
            p,
            vec![
                Piece {
                    chunk: 0,
                    start: 4096,
                    end: 8192,
                    at: 0
                },
                Piece {
                    chunk: 1,
                    start: 0,
                    end: 8192,
                    at: 4096
                },
                Piece {
                    chunk: 2,
                    start: 0,
                    end: 8192,
                    at: 12288
                },
                Piece {
                    chunk: 3,
                    start: 0,
                    end: 4096,
                    at: 20480
                },
            ]
        );
        assert_eq!(pieces(0, 0, 8192).count(), 0);
        assert_eq!(pieces(u64::MAX - 1, 10, 8192).count(), 1);
    }
}
