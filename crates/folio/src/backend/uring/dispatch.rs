//! The [`PageCacheBackend`] impl of [`UringBackend`]: which way each call goes.
//!
//! # Owns
//! - routing: a demand read of at most `inline_read_pages_max` pages is `preadv` on the calling
//!   thread; other demand reads, and demand writes, go to the shared ring, woken at once;
//!   batched I/O (`start_*`) goes to the calling thread's batch ring (its owned ring for the
//!   `_local` methods) or, when the thread cannot have one, to the shared ring, woken at
//!   `unplug`;
//! - `unplug`: submitting the calling thread's batch rings, then waking the shared ring;
//! - length, resize, sync and zeroing, through [`FileBackend`](crate::backend::FileBackend),
//!   refused once writes may have been lost.
//!
//! # Does not own
//! - the rings (`shared.rs`, `batch.rs`), preparing ops (`op.rs`), finishing them
//!   (`complete.rs`).
//!
//! # May block
//! - inline reads (`preadv`); `read_pages` and `write_pages` while the shared ring is full;
//!   the `start_*` methods while the thread's batch ring is full (they reap it); a direct write
//!   with an unaligned tail (`pwritev`); `set_len`, `sync` and `write_zeroes` (their system
//!   calls, on the calling thread). No method waits for the I/O it starts: its waiter does.

use std::sync::Arc;

use super::batch::{this_thread, BatchRing, RingUse};
use super::op::Prepared;
use super::shared::Wake;
use super::UringBackend;
use crate::backend::{
    Extent, Frame, FrameMut, Geometry, IoCompleter, IoDriver, IoWaiter, LocalIoWaiter,
    PageCacheBackend, Result,
};
use crate::error::IoOp;

impl UringBackend {
    /// Sends a prepared op to the shared ring, waking its thread now or at `unplug`.
    fn start_shared(&self, prepared: Prepared, wake: Wake) -> Result<IoWaiter> {
        match prepared {
            Prepared::Done(waiter) => Ok(waiter),
            Prepared::Op(op, sqe, waiter) => {
                self.inner.start(op, sqe, wake)?;
                Ok(waiter)
            }
        }
    }

    /// Prepares an op with `prepare` (given the maker of its waiter) and queues it on the
    /// calling thread's batch ring, or the shared ring (woken at `unplug`) if it cannot have
    /// one: the path of [`start_read_pages`](PageCacheBackend::start_read_pages) and
    /// [`start_write_pages`](PageCacheBackend::start_write_pages).
    fn start_batched(
        &self,
        ring_use: RingUse,
        prepare: impl FnOnce(&dyn Fn(IoOp, u64) -> (IoWaiter, IoCompleter)) -> Result<Prepared>,
    ) -> Result<IoWaiter> {
        let ring = self.batch_ring(ring_use, true);
        let make = |op, offset| match &ring {
            Some(r) => IoWaiter::driven(op, offset, r.clone() as Arc<dyn IoDriver>),
            None => IoWaiter::pending(op, offset),
        };
        match (prepare(&make)?, &ring) {
            (Prepared::Op(op, sqe, waiter), Some(r)) => {
                r.push(op, sqe);
                Ok(waiter)
            }
            (prepared, _) => self.start_shared(prepared, Wake::Deferred),
        }
    }
}

impl PageCacheBackend for UringBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        if frames.len() <= self.inline_read_pages_max {
            return self.inner.file.read_pages(idx, frames);
        }
        self.start_shared(
            self.prepare_read(idx, frames, IoWaiter::pending)?,
            Wake::Now,
        )
    }

    fn start_read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        // The caller has more reads to submit before it waits: never inline, and not sent
        // before `unplug` or a wait.
        self.start_batched(RingUse::AnyThread, |waiter| {
            self.prepare_read(idx, frames, waiter)
        })
    }

    fn start_read_pages_local(&self, idx: u64, frames: Vec<FrameMut>) -> Result<LocalIoWaiter> {
        self.start_batched(RingUse::ThisThread, |waiter| {
            self.prepare_read(idx, frames, waiter)
        })
        .map(LocalIoWaiter::from)
    }

    fn unplug(&self) {
        // The calling thread's rings (at most one of each use), found in one pass over the
        // table and submitted outside its lock: a batch unplugs once per I/O it starts.
        let me = this_thread();
        let mut mine: [Option<Arc<BatchRing>>; 2] = [None, None];
        for ((_, _, ring), slot) in self
            .batch_rings
            .lock()
            .iter()
            .filter(|(t, _, _)| *t == me)
            .zip(&mut mine)
        {
            *slot = Some(ring.clone());
        }
        for ring in mine.iter().flatten() {
            ring.submit();
        }
        self.inner.unplug();
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.start_shared(
            self.prepare_write(idx, frames, IoWaiter::pending)?,
            Wake::Now,
        )
    }

    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.start_batched(RingUse::AnyThread, |waiter| {
            self.prepare_write(idx, frames, waiter)
        })
    }

    fn start_write_pages_local(&self, idx: u64, frames: Vec<Frame>) -> Result<LocalIoWaiter> {
        self.start_batched(RingUse::ThisThread, |waiter| {
            self.prepare_write(idx, frames, waiter)
        })
        .map(LocalIoWaiter::from)
    }

    fn len(&self) -> u64 {
        self.inner.file.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.writes_usable(IoOp::Resize)?;
        self.inner.file.set_len(len)
    }

    fn sync(&self) -> Result<()> {
        self.inner.writes_usable(IoOp::Sync)?;
        self.inner.file.sync()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.writes_usable(IoOp::Zero)?;
        self.inner.file.write_zeroes(offset, len)
    }

    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> Result<Vec<Extent>> {
        self.inner.file.allocation(offset, len, extents_max)
    }

    fn geometry(&self) -> Geometry {
        Geometry::default()
            .with_alignment(self.inner.file.alignment())
            .with_queue_depth(self.inner.queue_depth)
    }
}
