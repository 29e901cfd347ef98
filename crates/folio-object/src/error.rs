//! Typed errors of the object-store backend.
//!
//! Owns: [`ObjectError`], what can go wrong between Folio and an object store, and its
//! conversion into [`folio::Error`] (the error type of the backend trait). The page cache sees
//! an `ObjectError` as the source of a [`folio::Error::Io`], so a caller can tell a chunk changed
//! behind its back from a store that is down: `ObjectError::find(&err)` digs it out.
//!
//! Does not own: retry decisions (`retry.rs` classifies store errors).

use std::time::Duration;

use folio::{Error, IoOp};

/// What went wrong between Folio and the object store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// A request kept failing with transient errors (timeouts, 5xx, connection errors) and the
    /// retry budget ran out.
    #[error("{op} of {key} failed after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// What was being done (`GET`, `PUT`, ...).
        op: &'static str,
        /// The object key.
        key: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// The last error the store returned.
        last: String,
    },
    /// The store refused a request for a reason a retry cannot fix (permissions, a missing
    /// bucket, a malformed request).
    #[error("{op} of {key} failed: {source}")]
    Store {
        /// What was being done.
        op: &'static str,
        /// The object key.
        key: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A chunk object is not the version Folio wrote or last read: someone else wrote or deleted
    /// it. The backend refuses to overwrite or serve it.
    #[error(
        "chunk {chunk} ({key}) changed behind Folio's back: expected version {expected}, \
         the store has {found}"
    )]
    ChunkChanged {
        /// The chunk number.
        chunk: u64,
        /// Its object key.
        key: String,
        /// The ETag Folio knows (or "absent").
        expected: String,
        /// What the store has (an ETag, "absent" or "a different version").
        found: String,
    },
    /// A chunk's bytes do not match the checksum stored with it.
    #[error("chunk {chunk} ({key}) is corrupt: CRC32C {found:08x}, stored {stored:08x}")]
    Checksum {
        /// The chunk number.
        chunk: u64,
        /// Its object key.
        key: String,
        /// The checksum stored with the object.
        stored: u32,
        /// The checksum of the bytes received.
        found: u32,
    },
    /// Another writer holds the image's lease.
    #[error(
        "the image {prefix} is leased by another writer ({holder}); it renews the lease, so it \
         is alive (use a read-only open, or break the lease once that writer is gone)"
    )]
    Leased {
        /// The image prefix.
        prefix: String,
        /// Who holds it, as written in the lock object.
        holder: String,
    },
    /// This writer lost its lease (another writer took the image over, or renewing failed for
    /// longer than the lease lasts): every later write is refused.
    #[error("the lease on {prefix} was lost: {why}")]
    LeaseLost {
        /// The image prefix.
        prefix: String,
        /// What happened.
        why: String,
    },
    /// The manifest is missing, unreadable or of an unknown format.
    #[error("bad image manifest at {key}: {why}")]
    Manifest {
        /// The manifest's key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// Writes whose PUT failed have not been written again since: not durable.
    #[error("{bytes} bytes whose write-back to the store failed are not durable yet")]
    NotDurable {
        /// Bytes in that state.
        bytes: u64,
    },
    /// A chunk object that is not one Folio wrote: no trailer, or a trailer that does not
    /// match the object (image format 2, `trailer.rs`).
    #[error("chunk {chunk} ({key}) is not a Folio chunk object: {why}")]
    BadChunk {
        /// The chunk number.
        chunk: u64,
        /// Its object key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The lease would not outlive the requests made under it: its time to live must be at
    /// least three attempt timeouts, so that a renewal survives an attempt that hangs for its
    /// whole timeout, and a newcomer's wait covers the holder's requests.
    #[error(
        "a lease time to live of {lease_ttl:?} is too short for store requests of up to \
         {attempt_timeout:?}: it must be at least three times the attempt timeout"
    )]
    LeaseTooShort {
        /// The lease's time to live asked for.
        lease_ttl: Duration,
        /// The per-attempt timeout of store requests.
        attempt_timeout: Duration,
    },
    /// Writes were still in flight when closing gave up waiting for them: the lease was not
    /// released (it expires by itself), and what they carried may not be durable.
    #[error("writes still in flight after {waited:?} at close; the lease was left to expire")]
    InFlightAtClose {
        /// How long closing waited.
        waited: Duration,
    },
    /// A write or resize of an image opened read-only.
    #[error("the image is open read-only")]
    ReadOnly,
    /// A spec, option or geometry is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl ObjectError {
    /// As a `std::io::Error` of the closest kind (what an NBD server turns into an errno).
    pub fn into_io(self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match &self {
            ObjectError::ReadOnly => ErrorKind::PermissionDenied,
            ObjectError::Invalid(_) | ObjectError::LeaseTooShort { .. } => ErrorKind::InvalidInput,
            _ => ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }

    /// Wraps this error as the [`folio::Error`] of an operation `op` at byte `offset`.
    pub fn into_folio(self, op: IoOp, offset: u64) -> Error {
        Error::io(op, offset, self.into_io())
    }

    /// The `ObjectError` inside a [`folio::Error`] (also through a write-back failure), if any.
    pub fn find(err: &Error) -> Option<&ObjectError> {
        match err {
            Error::Io { source, .. } => source.get_ref()?.downcast_ref::<ObjectError>(),
            Error::WritebackFailed { source, .. } => ObjectError::find(source),
            _ => None,
        }
    }
}

/// Result of the store-facing code.
pub type ObjResult<T> = std::result::Result<T, ObjectError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_error_survives_the_trip_through_folio_error() {
        let e = ObjectError::ChunkChanged {
            chunk: 3,
            key: "img/chunks/3".into(),
            expected: "\"a\"".into(),
            found: "absent".into(),
        }
        .into_folio(IoOp::Read, 4096);
        assert!(matches!(
            ObjectError::find(&e),
            Some(ObjectError::ChunkChanged { chunk: 3, .. })
        ));
        assert!(e.to_string().contains("behind Folio's back"), "{e}");
        let wrapped = Error::WritebackFailed {
            seq: 1,
            source: Box::new(e),
        };
        assert!(ObjectError::find(&wrapped).is_some());
        let ro = ObjectError::ReadOnly
            .into_folio(IoOp::Write, 0)
            .to_io_error();
        assert_eq!(ro.kind(), std::io::ErrorKind::PermissionDenied);
    }
}
