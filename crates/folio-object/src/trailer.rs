//! The chunk object format (image format 2): the chunk's bytes, then a 32-byte trailer that
//! names the write that made the object.
//!
//! Owns: [`WriteId`] (which session wrote an object, and its write number there), the trailer's
//! layout, and building and checking chunk objects.
//!
//! ```text
//!   object = data (0 ..= chunk length bytes; bytes past it read as zeros) || trailer
//!   trailer, little-endian:
//!     0..8    magic  b"folio\0c2"
//!     8..12   CRC32C of data
//!     12..16  data length in bytes
//!     16..24  writer: a random number drawn when the image was opened read-write
//!     24..32  sequence: that session's write number (never reused within the session)
//! ```
//!
//! Why a trailer: every object Folio writes is then different from every other, so its version
//! (S3's ETag is the MD5 of the body; SeaweedFS does the same) never comes back. A conditional
//! PUT (`If-Match`) is then a true compare-and-swap on versions: a request of ours applied late,
//! conditional on a version the chunk has since left, can never match again, even if the chunk
//! returns to the same bytes (all zeros, say). Without it, "zeros → data → zeros" brings back
//! the first zero version's ETag and a late PUT conditional on it would land. The trailer also
//! lets Folio recognise its own write whose answer was lost (`rewrite.rs`), with one ranged GET
//! of the last 32 bytes, and carries the checksum in the object itself (no store metadata
//! needed).
//!
//! Does not own: I/O. Nothing here blocks.

use crate::store::crc32c;

/// Bytes of the trailer at the end of every chunk object of format 2.
pub const CHUNK_TRAILER_LEN: u64 = 32;

const MAGIC: [u8; 8] = *b"folio\0c2";

/// One write of one session: who wrote an object, and which of its writes it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct WriteId {
    /// Random, drawn per read-write open.
    pub(crate) writer: u64,
    /// The session's write number.
    pub(crate) seq: u64,
}

impl std::fmt::Display for WriteId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.writer, self.seq)
    }
}

/// What a trailer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub(crate) crc: u32,
    pub(crate) data_len: u32,
    pub(crate) id: WriteId,
}

/// Appends the trailer of `id` to the chunk bytes `data` (at most 64 MiB): the object to PUT.
pub(crate) fn seal(mut data: Vec<u8>, id: WriteId) -> Vec<u8> {
    let len = u32::try_from(data.len()).expect("a chunk is at most 64 MiB");
    let crc = crc32c(&data);
    data.reserve_exact(CHUNK_TRAILER_LEN as usize);
    data.extend_from_slice(&MAGIC);
    data.extend_from_slice(&crc.to_le_bytes());
    data.extend_from_slice(&len.to_le_bytes());
    data.extend_from_slice(&id.writer.to_le_bytes());
    data.extend_from_slice(&id.seq.to_le_bytes());
    data
}

/// The trailer at the end of `bytes` (the last 32 bytes of an object), if it is one.
pub(crate) fn read(bytes: &[u8]) -> Option<Trailer> {
    let t = bytes.get(bytes.len().checked_sub(CHUNK_TRAILER_LEN as usize)?..)?;
    if t[..8] != MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes(t[i..i + 4].try_into().expect("4 bytes"));
    let u64_at = |i: usize| u64::from_le_bytes(t[i..i + 8].try_into().expect("8 bytes"));
    Some(Trailer {
        crc: u32_at(8),
        data_len: u32_at(12),
        id: WriteId {
            writer: u64_at(16),
            seq: u64_at(24),
        },
    })
}

/// Why a whole chunk object is not a good one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bad {
    /// No trailer, or one that does not match the object's length.
    Format(String),
    /// The data does not match the trailer's CRC32C.
    Checksum { stored: u32, found: u32 },
}

/// Checks a whole chunk object and returns its data part.
pub(crate) fn open(object: &[u8]) -> Result<(&[u8], Trailer), Bad> {
    let tail = object.len().saturating_sub(CHUNK_TRAILER_LEN as usize);
    let data = &object[..tail];
    let t = check(object.len() as u64, &object[tail..], crc32c(data))?;
    Ok((data, t))
}

/// Checks a whole chunk object of `len` bytes from its last (up to 32) bytes `tail` and the
/// CRC32C `found` of everything before them: for objects streamed rather than held whole.
pub(crate) fn check(len: u64, tail: &[u8], found: u32) -> Result<Trailer, Bad> {
    let t = (len >= CHUNK_TRAILER_LEN)
        .then(|| read(tail))
        .flatten()
        .ok_or_else(|| {
            Bad::Format(format!(
                "an object of {len} bytes without Folio's chunk trailer"
            ))
        })?;
    let data_len = len - CHUNK_TRAILER_LEN;
    if data_len != u64::from(t.data_len) {
        return Err(Bad::Format(format!(
            "the trailer says {} bytes of data, the object holds {data_len}",
            t.data_len
        )));
    }
    if found != t.crc {
        return Err(Bad::Checksum {
            stored: t.crc,
            found,
        });
    }
    Ok(t)
}

/// A random 64-bit number (a writer id, an image id), from the standard library's per-process
/// random hash keys mixed with the time and a counter.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_objects_open_and_damage_is_named() {
        let id = WriteId {
            writer: 0xabcdef,
            seq: 42,
        };
        let obj = seal(vec![7u8; 100], id);
        assert_eq!(obj.len(), 132);
        let (data, t) = open(&obj).unwrap();
        assert_eq!(data, &[7u8; 100][..]);
        assert_eq!(t.id, id);
        assert_eq!(
            read(&obj[100..]).unwrap().id,
            id,
            "the last 32 bytes suffice"
        );
        let empty = seal(Vec::new(), id);
        assert_eq!(open(&empty).unwrap().0.len(), 0);
        let mut bad = obj.clone();
        bad[3] ^= 1;
        assert!(matches!(open(&bad), Err(Bad::Checksum { .. })));
        assert!(matches!(open(&obj[1..]), Err(Bad::Format(_))));
        assert!(matches!(open(b"short"), Err(Bad::Format(_))));
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn equal_data_makes_different_objects() {
        let a = seal(vec![0; 10], WriteId { writer: 1, seq: 1 });
        let b = seal(vec![0; 10], WriteId { writer: 1, seq: 2 });
        assert_ne!(a, b, "so their content-derived versions differ too");
    }
}
