//! Carrying out one checked request against a device, off the connection's thread, and
//! encoding its whole reply.
//!
//! Owns: the meaning of each command (FUA after the operation on every command that changes
//! data, `FAST_ZERO`, `NO_HOLE`, block status descriptors) and the reply bytes. Does not own:
//! checking requests (`proto.rs`), budgets or sockets (`conn/`). May block: on the device
//! (I/O, waiting for pages).

use std::io;

use tracing::debug;

use crate::device::{Allocation, BlockDevice, SyncCursor};
use crate::proto::*;

/// Descriptors one `BLOCK_STATUS` reply carries at most (the protocol leaves it to the server;
/// 4 KiB of descriptors per reply, as nbdkit's default).
pub(crate) const STATUS_EXTENTS_MAX: usize = 512;

/// Carries out `req` (already checked) and returns its whole reply. A write's payload is given
/// in `payload`.
pub(crate) fn execute(
    dev: &dyn BlockDevice,
    cursor: &dyn SyncCursor,
    req: &Request,
    payload: Option<Vec<u8>>,
    structured: bool,
) -> Vec<u8> {
    let fail = |e: io::Error| {
        let err = errno_of(&e);
        debug!(?req, err, error = %e, "request failed");
        encode_status_reply(structured, req.handle, err)
    };
    let fua = req.flags & CMD_FLAG_FUA != 0;
    let len = req.len as u64;
    let res = match req.kind {
        CMD_READ => return read(dev, req, structured).unwrap_or_else(fail),
        CMD_BLOCK_STATUS => return block_status(dev, req).unwrap_or_else(fail),
        CMD_WRITE => dev.write_at(payload.as_deref().unwrap_or_default(), req.offset),
        CMD_FLUSH => cursor.flush(),
        CMD_TRIM if len > 0 => dev.trim(req.offset, len),
        CMD_WRITE_ZEROES if len > 0 => {
            let no_hole = req.flags & CMD_FLAG_NO_HOLE != 0;
            if req.flags & CMD_FLAG_FAST_ZERO != 0 && (no_hole || !dev.zero_is_fast()) {
                return encode_status_reply(structured, req.handle, ENOTSUP);
            }
            if no_hole {
                write_zero_buffers(dev, req.offset, len)
            } else {
                dev.write_zeroes(req.offset, len)
            }
        }
        CMD_CACHE if len > 0 => dev.prefetch(req.offset, len),
        CMD_TRIM | CMD_WRITE_ZEROES | CMD_CACHE => Ok(()),
        _ => return encode_status_reply(structured, req.handle, EINVAL),
    };
    let changes_data = matches!(req.kind, CMD_WRITE | CMD_TRIM | CMD_WRITE_ZEROES);
    let res = res.and_then(|()| {
        if fua && changes_data && len > 0 {
            cursor.flush_range(req.offset, len)
        } else {
            Ok(())
        }
    });
    match res {
        Ok(()) => encode_status_reply(structured, req.handle, 0),
        Err(e) => fail(e),
    }
}

/// A read that missed: header and data in one buffer.
fn read(dev: &dyn BlockDevice, req: &Request, structured: bool) -> io::Result<Vec<u8>> {
    let (head, head_len) = encode_read_header(structured, req.handle, req.offset, req.len);
    let mut buf = vec![0u8; head_len + req.len as usize];
    buf[..head_len].copy_from_slice(&head[..head_len]);
    dev.read_at(&mut buf[head_len..], req.offset)?;
    Ok(buf)
}

/// `base:allocation` descriptors of the range: holes read as zeros.
fn block_status(dev: &dyn BlockDevice, req: &Request) -> io::Result<Vec<u8>> {
    let max = if req.flags & CMD_FLAG_REQ_ONE != 0 {
        1
    } else {
        STATUS_EXTENTS_MAX
    };
    let extents = dev.allocation(req.offset, req.len as u64, max)?;
    let mut out = Vec::with_capacity(extents.len());
    let mut covered = 0u64;
    for e in extents.iter().take(max) {
        // Never describe past the request (whose length fits in 32 bits).
        let n = e.len.min(req.len as u64 - covered);
        if n == 0 {
            break;
        }
        let flags = match e.allocation {
            Allocation::Data => 0,
            Allocation::Hole => STATE_HOLE | STATE_ZERO,
        };
        // Merge neighbours of one state (the device may split them).
        match out.last_mut() {
            Some((l, f)) if *f == flags && (*l as u64 + n) <= u32::MAX as u64 => *l += n as u32,
            _ => out.push((n as u32, flags)),
        }
        covered += n;
    }
    if out.is_empty() {
        // The protocol wants at least one descriptor: "data" is always true.
        out.push((req.len, 0));
    }
    Ok(encode_block_status(
        req.handle,
        CONTEXT_BASE_ALLOCATION,
        &out,
    ))
}

/// `WRITE_ZEROES` with `NO_HOLE`: write real zeros so that the range stays allocated.
fn write_zero_buffers(dev: &dyn BlockDevice, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        dev.write_at(&zeros[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}
