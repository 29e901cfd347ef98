//! One io_uring operation (its buffers, `iovec`s and SQE) and preparing reads and writes for a
//! ring.
//!
//! # Owns
//! - `Op`: the frames and `iovec` array of an operation, which the in-flight table holding the
//!   op keeps until its CQE is reaped, with the bytes asked for (`submitted`) and the bytes
//!   that must come back (`expected`);
//! - `InFlight`: that table, the ops of one ring by slot (the SQE's `user_data`), used by the
//!   shared ring and by every batch ring;
//! - building the SQE: one buffer is a plain `READ`/`WRITE` (what `fio` submits), several a
//!   `READV`/`WRITEV`;
//! - preparing (`prepare_read`, `prepare_write`): the geometry and `O_DIRECT` checks; a read
//!   wholly past the end of the file is zero-filled without I/O; a write is clipped at the end
//!   of the file, which never grows; the unaligned tail of a direct write goes through the
//!   buffered descriptor;
//! - views of a run of frames as byte slices (`sub_slices`, `sub_slices_mut`).
//!
//! # Does not own
//! - which ring an op goes to (`dispatch.rs`), the rings that keep an `InFlight` table and
//!   the locks around it (`shared.rs`, `batch.rs`), finishing an op (`complete.rs`).
//!
//! # May block
//! - `prepare_write` of a direct write whose end is not 512-byte aligned: `pwritev` of the
//!   tail on the calling thread. Nothing else here waits or takes a lock.

use std::os::fd::AsRawFd;

use io_uring::{opcode, squeue, types};

use super::UringBackend;
use crate::backend::file::{pwritev_full, DIRECT_ALIGN};
use crate::backend::{
    io_geometry, Frame, FrameMut, IoCompleter, IoMode, IoWaiter, PageCacheBackend, Result,
};
use crate::error::{Error, IoOp};

/// The buffers of one operation, owned by the in-flight table until its CQE is reaped.
pub(super) enum Buffers {
    Read(Vec<FrameMut>),
    Write(Vec<Frame>),
}

impl Buffers {
    /// The operation these buffers are for.
    pub(super) fn op(&self) -> IoOp {
        match self {
            Buffers::Read(_) => IoOp::Read,
            Buffers::Write(_) => IoOp::Write,
        }
    }
}

/// The `iovec`s of one operation. They point into the frames of the same operation.
pub(super) struct Iovecs {
    _keep: Box<[libc::iovec]>,
}

// SAFETY: the raw pointers in the iovecs point into frames owned by the same `Op` (which are
// `Send`); they are only dereferenced by the kernel while the op is in flight.
unsafe impl Send for Iovecs {}

/// The SQE of a read or write of the buffers `iovecs` describes, at `offset` of `fd`, and the
/// `iovec`s it points to, to keep with the op. One buffer is a plain `READ`/`WRITE` (what
/// `fio` submits): no `iovec` array to import, nothing to keep.
fn rw_sqe(
    fd: types::Fd,
    iovecs: Box<[libc::iovec]>,
    offset: u64,
    dir: IoOp,
) -> (squeue::Entry, Iovecs) {
    let sqe = match (&*iovecs, dir) {
        ([one], IoOp::Read) => opcode::Read::new(fd, one.iov_base.cast(), one.iov_len as u32)
            .offset(offset)
            .build(),
        ([one], _) => opcode::Write::new(fd, one.iov_base.cast(), one.iov_len as u32)
            .offset(offset)
            .build(),
        (many, IoOp::Read) => opcode::Readv::new(fd, many.as_ptr(), many.len() as u32)
            .offset(offset)
            .build(),
        (many, _) => opcode::Writev::new(fd, many.as_ptr(), many.len() as u32)
            .offset(offset)
            .build(),
    };
    let keep = if iovecs.len() == 1 {
        Box::default()
    } else {
        iovecs
    };
    (sqe, Iovecs { _keep: keep })
}

/// A read ready to go to a ring, or already done.
pub(super) enum Prepared {
    Done(IoWaiter),
    Op(Op, squeue::Entry, IoWaiter),
}

/// One operation in flight.
pub(super) struct Op {
    pub(super) buffers: Buffers,
    pub(super) _iovecs: Iovecs,
    pub(super) offset: u64,
    /// Bytes the SQE asked for.
    pub(super) submitted: usize,
    /// Bytes that must come back (reads: up to the end of the file; writes: all).
    pub(super) expected: usize,
    /// The file's resize epoch when the op was prepared: a read cut short by our own resize
    /// meanwhile reads zeros past the cut, not an error.
    pub(super) resizes_before: u64,
    pub(super) completer: IoCompleter,
}

/// The prepared op of `buffers` at `offset` of the file of `backend`, whose `iovecs` describe the
/// `submitted` bytes to transfer, `expected` of which must come back; `waiter` makes its waiter.
fn prepared(
    backend: &UringBackend,
    buffers: Buffers,
    iovecs: Box<[libc::iovec]>,
    offset: u64,
    submitted: usize,
    expected: usize,
    waiter: impl FnOnce(IoOp, u64) -> (IoWaiter, IoCompleter),
) -> Prepared {
    let resizes_before = backend.inner.file.resize_epoch();
    let dir = buffers.op();
    let fd = types::Fd(backend.inner.file.file().as_raw_fd());
    let (sqe, iovecs) = rw_sqe(fd, iovecs, offset, dir);
    let (waiter, completer) = waiter(dir, offset);
    let op = Op {
        buffers,
        _iovecs: iovecs,
        offset,
        submitted,
        expected,
        resizes_before,
        completer,
    };
    Prepared::Op(op, sqe, waiter)
}

/// The ops in flight on one ring, by slot (an SQE's `user_data` is its op's slot). An op stays
/// here, with its buffers, from before its SQE is queued until its CQE is reaped or the ring is
/// given up.
#[derive(Default)]
pub(super) struct InFlight {
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    len: usize,
}

impl InFlight {
    pub(super) fn with_capacity(capacity: usize) -> InFlight {
        InFlight {
            ops: Vec::with_capacity(capacity),
            ..InFlight::default()
        }
    }

    /// Ops in flight.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Puts `op` in a free slot and returns the slot.
    pub(super) fn insert(&mut self, op: Op) -> usize {
        self.len += 1;
        let slot = match self.free.pop() {
            Some(s) => {
                debug_assert!(self.ops[s].is_none(), "slot {s} is free and taken");
                self.ops[s] = Some(op);
                s
            }
            None => {
                self.ops.push(Some(op));
                self.ops.len() - 1
            }
        };
        debug_assert_eq!(self.len + self.free.len(), self.ops.len());
        slot
    }

    /// Takes the op out of `slot`, whose CQE was reaped: the kernel is done with its buffers.
    pub(super) fn take(&mut self, slot: usize) -> Option<Op> {
        let op = self.ops.get_mut(slot).and_then(Option::take);
        if op.is_some() {
            self.free.push(slot);
            self.len -= 1;
        }
        op
    }

    /// Takes every op out, for a ring that is given up (see `fail_and_leak`).
    pub(super) fn take_all(&mut self) -> Vec<Op> {
        let ops: Vec<Op> = self.ops.iter_mut().filter_map(Option::take).collect();
        debug_assert_eq!(ops.len(), self.len);
        self.free = (0..self.ops.len()).collect();
        self.len = 0;
        ops
    }
}

impl UringBackend {
    /// The op, SQE and waiter (made by `waiter`) of a read of `frames` at page `idx`, or a
    /// ready waiter if the read lies wholly past the end of the file (zero-filled here).
    pub(super) fn prepare_read(
        &self,
        idx: u64,
        mut frames: Vec<FrameMut>,
        waiter: impl FnOnce(IoOp, u64) -> (IoWaiter, IoCompleter),
    ) -> Result<Prepared> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let wanted = page_size * frames.len();
        let len = inner.file.len();
        let expected = len.saturating_sub(offset).min(wanted as u64) as usize;
        if expected == 0 {
            for f in &mut frames {
                f.as_mut_slice().fill(0);
            }
            return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
        }
        let iovecs: Box<[libc::iovec]> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        let buffers = Buffers::Read(frames);
        Ok(prepared(
            self, buffers, iovecs, offset, wanted, expected, waiter,
        ))
    }

    /// The op, SQE and waiter (made by `waiter`) of a write of `frames` at page `idx`, or a
    /// ready waiter if nothing is left to write through the ring: past the end of the file
    /// (never grown), or only an unaligned tail (written here, buffered).
    pub(super) fn prepare_write(
        &self,
        idx: u64,
        frames: Vec<Frame>,
        waiter: impl FnOnce(IoOp, u64) -> (IoWaiter, IoCompleter),
    ) -> Result<Prepared> {
        self.inner.writes_usable(IoOp::Write)?;
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let len = inner.file.len();
        if offset >= len {
            return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
        }
        // Never grow the file: clip the write at its length.
        let mut total = ((len - offset) as usize).min(page_size * frames.len());
        if inner.file.mode() == IoMode::Direct && total % DIRECT_ALIGN != 0 {
            // The unaligned tail of the file goes through the buffered descriptor, now; the
            // aligned prefix through the ring.
            let aligned = total - total % DIRECT_ALIGN;
            let tail = sub_slices(&frames, aligned, total);
            pwritev_full(inner.file.buffered_file(), &tail, offset + aligned as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
            total = aligned;
            if total == 0 {
                return Ok(Prepared::Done(IoWaiter::ready(Ok(()))));
            }
        }
        let iovecs: Box<[libc::iovec]> = sub_slices(&frames, 0, total)
            .into_iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
            .collect();
        let buffers = Buffers::Write(frames);
        Ok(prepared(
            self, buffers, iovecs, offset, total, total, waiter,
        ))
    }
}

/// The parts of `frames` from byte `from` (of their concatenation) on.
pub(super) fn sub_slices_mut(frames: &mut [FrameMut], from: usize) -> Vec<&mut [u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames.iter_mut() {
        let len = f.len();
        if pos + len > from {
            let skip = from.saturating_sub(pos);
            out.push(&mut f.as_mut_slice()[skip..]);
        }
        pos += len;
    }
    out
}

/// The parts of `frames` from byte `from` to byte `to` (of their concatenation).
pub(super) fn sub_slices(frames: &[Frame], from: usize, to: usize) -> Vec<&[u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames {
        let (start, end) = (pos, pos + f.len());
        pos = end;
        if end <= from || start >= to {
            continue;
        }
        let a = from.max(start) - start;
        let b = to.min(end) - start;
        // SAFETY: the slices serve a write the caller makes and finishes before it completes
        // the op: the cache keeps these frames under write-back until then.
        out.push(unsafe { &f.as_slice()[a..b] });
    }
    out
}
