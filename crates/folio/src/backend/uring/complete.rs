//! Completing operations: from a CQE's result to the waiter's, and failing the operations of a
//! ring that is given up.
//!
//! # Owns
//! - `Inner::finish`: a negative result becomes an I/O error with the operation and offset; a
//!   short read inside the file is finished with `preadv` (buffered), bytes past the end of the
//!   file are zeroed, and a file that ended early is [`Error::ShortIo`]; a short write is
//!   finished with `pwritev`, and a write of nothing is an error (`WriteZero`);
//! - failing a ring that is given up (`fail_and_leak`): every op fails with a typed error and
//!   its buffers are leaked, never freed under a kernel that may still use them; a write among
//!   them makes every later write, sync, resize and zeroing fail (`Inner::writes_usable`), since
//!   it may still land;
//! - which `io_uring_enter` errors are transient, and how many failures in a row give a ring
//!   up (`RING_FAILURES_MAX`).
//!
//! # Does not own
//! - the in-flight tables (`shared.rs`, `batch.rs`): an op reaches `finish` only once its CQE
//!   has been reaped and it has left its table;
//! - the waiters (`IoWaiter`, `IoCompleter`): [`backend`](crate::backend)'s.
//!
//! # May block
//! - `finish` of a short transfer: positional I/O on the thread that reaped it (the ring thread
//!   or a batch ring's driver). Completing a waiter wakes the thread waiting on it.

use std::sync::atomic::Ordering;

use super::op::{sub_slices, sub_slices_mut, Buffers, Op};
use super::shared::Inner;
use crate::backend::file::{preadv_full, pwritev_full};
use crate::backend::{Frame, FrameMut, Result};
use crate::error::{Error, IoOp};

/// Failures of `io_uring_enter` in a row (about 1 ms apart) after which a ring (a batch ring or
/// the shared one) is given up.
pub(super) const RING_FAILURES_MAX: u32 = 100;

pub(super) fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

fn errno_error(op: IoOp, offset: u64, res: i32) -> Error {
    Error::io(op, offset, std::io::Error::from_raw_os_error(-res))
}

/// Fails every op of a ring being given up and leaks its buffers: the kernel may still own them.
/// The cache sees the read buffers never came back and quarantines their frames; a write that
/// may still land fails every later write of the backend (`Inner::writes_lost`).
pub(super) fn fail_and_leak(inner: &Inner, ops: Vec<Op>) {
    for op in ops {
        if matches!(op.buffers, Buffers::Write(_)) {
            inner.writes_lost.store(true, Ordering::Release);
        }
        let Op {
            buffers,
            _iovecs,
            offset,
            completer,
            ..
        } = op;
        let e = ring_broken(&buffers, offset);
        std::mem::forget((buffers, _iovecs));
        completer.complete(Err(e));
    }
}

/// The error of an op (with these buffers) on a ring that was given up.
pub(super) fn ring_broken(buffers: &Buffers, offset: u64) -> Error {
    Error::io(buffers.op(), offset, ring_given_up())
}

pub(super) fn ring_given_up() -> std::io::Error {
    std::io::Error::other("the io_uring kept failing and was given up")
}

impl Inner {
    /// `Err` once a given-up ring may still carry out writes (see `writes_lost`).
    pub(super) fn writes_usable(&self, op: IoOp) -> Result<()> {
        if self.writes_lost.load(Ordering::Acquire) {
            return Err(Error::io(
                op,
                0,
                std::io::Error::other(
                    "an io_uring was given up with writes in flight that may still land; \
                     reopen the file",
                ),
            ));
        }
        Ok(())
    }

    /// Completes an op whose CQE carried `res`.
    pub(super) fn finish(&self, op: Op, res: i32) {
        let Op {
            buffers,
            offset,
            submitted,
            expected,
            resizes_before,
            completer,
            ..
        } = op;
        let result = match buffers {
            Buffers::Read(mut frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Read, offset, res))
                } else {
                    self.finish_read(&mut frames, offset, res as usize, expected, resizes_before)
                }
            }
            Buffers::Write(frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Write, offset, res))
                } else {
                    self.finish_write(&frames, offset, res as usize, submitted)
                }
            }
        };
        completer.complete(result);
    }

    fn finish_read(
        &self,
        frames: &mut [FrameMut],
        offset: u64,
        mut done: usize,
        expected: usize,
        resizes_before: u64,
    ) -> Result<()> {
        if done < expected {
            // A short read inside the file (rare): read the rest synchronously, buffered, since
            // the remainder need not be aligned.
            let mut bufs = sub_slices_mut(frames, done);
            let more = preadv_full(self.file.buffered_file(), &mut bufs, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Read, offset, e))?;
            done += more;
        }
        // Past the end of the file: zeros.
        for b in sub_slices_mut(frames, done) {
            b.fill(0);
        }
        if done < expected && !self.file.resized_since(resizes_before) {
            return Err(Error::ShortIo {
                op: IoOp::Read,
                offset,
                done,
                wanted: expected,
            });
        }
        Ok(())
    }

    fn finish_write(
        &self,
        frames: &[Frame],
        offset: u64,
        done: usize,
        submitted: usize,
    ) -> Result<()> {
        if done < submitted {
            if done == 0 {
                return Err(Error::io(
                    IoOp::Write,
                    offset,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "write wrote nothing"),
                ));
            }
            let rest: Vec<&[u8]> = sub_slices(frames, done, submitted);
            pwritev_full(self.file.buffered_file(), &rest, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
        }
        Ok(())
    }
}
