//! Which byte ranges of a backend hold data and which are holes (read as zeros, no storage).
//!
//! Owns: the [`Extent`] type and the `SEEK_DATA`/`SEEK_HOLE` walk over a file
//! ([`file_extents`]). Does not own: the cache's view (dirty pages over a hole are data; the
//! caller writes them back before asking) or any wire format (the NBD server's
//! `BLOCK_STATUS`). May block: on the `lseek` calls, which are metadata lookups of the file
//! system (no data I/O).

use std::fs::File;

use rustix::fs::SeekFrom;

use crate::error::{Error, IoOp, Result};

/// Whether an extent is backed by storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Allocated: may hold any bytes.
    Data,
    /// A hole: reads as zeros and takes no storage.
    Hole,
}

/// A run of bytes with one allocation state, starting where the previous extent ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Length in bytes (never 0).
    pub len: u64,
    /// Data or hole.
    pub allocation: Allocation,
}

/// The extents of `file` from `offset`, covering at most `len` bytes and at most
/// `extents_max` extents (at least one when `len > 0` and `offset` is inside the file); bytes
/// at or past `size` are not described. A file system without `SEEK_DATA` reports everything
/// as data, which is always a correct answer.
pub fn file_extents(
    file: &File,
    size: u64,
    offset: u64,
    len: u64,
    extents_max: usize,
) -> Result<Vec<Extent>> {
    let end = offset.saturating_add(len).min(size);
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < end && out.len() < extents_max.max(1) {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d.min(end),
            // No data at or after `pos`: the rest is a hole.
            Err(rustix::io::Errno::NXIO) => end,
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => {
                out.push(Extent {
                    len: end - pos,
                    allocation: Allocation::Data,
                });
                break;
            }
            Err(e) => return Err(Error::io(IoOp::Read, pos, e.into())),
        };
        if data > pos {
            out.push(Extent {
                len: data - pos,
                allocation: Allocation::Hole,
            });
            pos = data;
            continue;
        }
        let hole = match rustix::fs::seek(file, SeekFrom::Hole(pos)) {
            Ok(h) => h.min(end),
            Err(rustix::io::Errno::NXIO) => end,
            Err(e) => return Err(Error::io(IoOp::Read, pos, e.into())),
        };
        // SEEK_HOLE past `pos` when `pos` is data; a racing truncation may say otherwise.
        let hole = hole.max(pos + 1).min(end);
        out.push(Extent {
            len: hole - pos,
            allocation: Allocation::Data,
        });
        pos = hole;
    }
    debug_assert!(out.iter().all(|e| e.len > 0));
    Ok(out)
}
