//! The engine's small shared types: what its operations take and return, and two range checks.
//!
//! # Owns
//! - the modes of a load (`Fill`, `FrameWait`, `Submit`) and of a write (`Extend`), and the
//!   changes of the dirty-page count (`DirtyCount`);
//! - what loads and lookups return (`Begun`, `Loading`, `Loaded`, `Probe`), a run under
//!   write-back whose write was submitted (`SubmittedRun`), one page's part of a batched read
//!   (`Piece`);
//! - finishing whichever I/O of a window completed first (`InFlight`, `take_completed`);
//! - the range checks the facade shares (`in_file`, `checked_end`).
//!
//! # Does not own
//! - what is done with them: the `impl Engine` files (`load.rs`, `io.rs`, `flush.rs`, ...).
//!
//! # May block
//! - `take_completed`: until an I/O of the window completes. Nothing else here blocks.

use std::collections::VecDeque;

use super::{ExclusiveHold, SharedHold, WritebackHold};
use crate::backend::LocalIoWaiter;
use crate::error::{Error, Result};
use crate::policy::FrameId;

/// A change of the dirty-page count ([`Engine::count_dirty`](super::Engine::count_dirty)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirtyCount {
    /// A page became dirty (a write): may kick the flusher.
    Dirtied,
    /// A page is dirty again after its write-back failed or was given up: counted, without
    /// kicking the flusher (it is the flusher's own page, or a failed write it backs off from).
    Restored,
    /// A page stopped being dirty.
    Cleaned,
}

/// Whether a write may grow the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extend {
    /// Bytes past the end grow the file.
    Yes,
    /// Bytes past the end are not written.
    No,
}

/// How a newly allocated frame gets its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// From the backend.
    Read,
    /// Zeros: the caller writes the start of the page, the rest lies past the end of the file.
    Zero,
    /// Nothing: the caller overwrites every byte of the page before releasing it, so the stale
    /// bytes of the frame's previous page are never seen (no read, no zeroing).
    Overwrite,
}

/// A run of pages under write-back whose write has been submitted.
pub(crate) struct SubmittedRun<'e> {
    pub(super) pages: Vec<(u64, WritebackHold<'e>)>,
    pub(super) waiter: Result<LocalIoWaiter>,
}

/// Whether [`Engine::begin_load`](super::Engine::begin_load) may wait for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameWait {
    /// Up to `frame_wait_max`, then [`Error::NoFreeFrame`].
    Wait,
    /// Not at all: a caller that holds loads of its own must finish one of them instead, or
    /// it could wait for frames only it can free.
    NoWait,
}

/// What [`Engine::begin_load`](super::Engine::begin_load) did.
pub(crate) enum Begun<'e> {
    /// The load is under way: pass it to [`Engine::finish_load`](super::Engine::finish_load).
    Loading(Loading<'e>),
    /// Someone else inserted the page first.
    Present,
    /// No frame without waiting (only with [`FrameWait::NoWait`]).
    NoFrame,
    /// Page `p` is fenced: wait for the fence (`Fences::wait`), then try again.
    Fenced,
}

/// How [`Engine::begin_load`](super::Engine::begin_load) hands its read to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Submit {
    /// `read_pages`: the caller waits for it next.
    Now,
    /// `start_read_pages_local`: the caller submits more reads before it waits.
    Queued,
}

/// A run of pages whose load [`Engine::begin_load`](super::Engine::begin_load) started: the
/// frames are in the index, held `EXCLUSIVE` in state `LOADING`, until
/// [`Engine::finish_load`](super::Engine::finish_load).
pub(crate) struct Loading<'e> {
    pub(super) p: u64,
    pub(super) frames: Vec<ExclusiveHold<'e>>,
    pub(super) fill: Fill,
    pub(super) waiter: Result<LocalIoWaiter>,
}

/// Something in flight with an I/O to wait for: a load, a run under write-back.
pub(crate) trait InFlight {
    /// The I/O's waiter, or `None` if it failed to start (finishing it will not block).
    fn waiter(&self) -> Option<&LocalIoWaiter>;
}

impl<T> InFlight for (Loading<'_>, T) {
    fn waiter(&self) -> Option<&LocalIoWaiter> {
        self.0.waiter.as_ref().ok()
    }
}

impl InFlight for SubmittedRun<'_> {
    fn waiter(&self) -> Option<&LocalIoWaiter> {
        self.waiter.as_ref().ok()
    }
}

/// Removes an entry of `in_flight` whose I/O has completed, blocking until one has: the first
/// completed one in submission order, waiting (on the oldest, which on a self-reaped ring also
/// completes others) while none has. Finishing the oldest instead, whatever else completed
/// first, left slots idle behind a slow I/O (head-of-line blocking). `None` if empty.
pub(crate) fn take_completed<T: InFlight>(in_flight: &mut VecDeque<T>) -> Option<T> {
    // Bounded: each `wait_progress` completes at least one I/O of the window (or the oldest).
    loop {
        let done = in_flight
            .iter()
            .position(|e| e.waiter().is_none_or(|w| w.is_complete()));
        if let Some(i) = done {
            return in_flight.remove(i);
        }
        in_flight.front()?.waiter()?.wait_progress();
    }
}

/// One page's part of one read of [`PageCache::read_exact_many`](crate::PageCache::read_exact_many).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Piece {
    /// Index of the read.
    pub(super) read: usize,
    /// Offset of the piece in the read's buffer.
    pub(super) at: usize,
    /// Byte position in the file.
    pub(super) pos: u64,
    /// Length (within one page).
    pub(super) n: usize,
}

/// What [`Engine::try_shared`](super::Engine::try_shared) found.
pub(crate) enum Probe<'e> {
    /// A hit: the caller holds the frame shared.
    Held(SharedHold<'e>),
    /// The page is in this frame, held exclusively (being loaded or written).
    Busy(FrameId),
    /// The page is in this frame, with as many readers as the state word can count.
    Saturated,
    /// Not cached.
    Absent,
}

pub(crate) enum Loaded<'e> {
    /// The first page of the run is loaded and held exclusive by the caller.
    Exclusive(ExclusiveHold<'e>),
    /// Somebody else has the page; look it up again.
    Present,
}

/// `Ok` if `start..end` lies within a file of `size` bytes, else [`Error::OutOfRange`].
#[inline]
pub(crate) fn in_file(start: u64, end: u64, size: u64) -> Result<()> {
    if end > size {
        return Err(Error::OutOfRange { start, end, size });
    }
    Ok(())
}

#[inline]
pub(crate) fn checked_end(offset: u64, len: usize) -> Result<u64> {
    offset.checked_add(len as u64).ok_or(Error::Overflow {
        offset,
        len: len as u64,
    })
}
