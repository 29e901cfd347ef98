//! Hold tokens: a value that exists exactly while this thread holds a frame, so that access to
//! the frame's bytes and to its owner-only state setters is a safe method call on the token,
//! instead of an `unsafe` call that rests on "we hold it".
//!
//! - [`SharedHold`]: a reader hold (readers share a page; nobody writes its bytes meanwhile).
//! - [`ExclusiveHold`]: the `EXCLUSIVE` bit (a loader, a writer, an evictor, a frame just
//!   taken from the free list): the only holder of the frame's bytes.
//! - [`WritebackHold`]: a reader hold with `WRITEBACK` set, for a write-back in flight.
//!
//! Tokens are minted only here, each right after the compare-and-swap on the frame's state
//! word that took the hold succeeded (`Engine::acquire_*`, `ExclusiveHold::downgrade`), and give
//! the hold back when dropped (or consumed by an explicit release). So a token in hand *is* the
//! hold: the `unsafe` byte access lives in this file, and its argument is the type invariant.
//!
//! Owns the tokens and their release. Does not own the state word's transitions (`page/`)
//! nor the index, the policy or the counters (the engine's, which the releases call into).
//! Never blocks.

use std::marker::PhantomData;

use super::{DirtyCount, Engine};
use crate::backend::{Frame, FrameMut};
use crate::page::{Acquire, Released, EXCLUSIVE};
use crate::policy::FrameId;

/// Holds tracked by frame per thread; more are only counted.
const HELD_TRACKED: usize = 16;

/// The holds this thread has (tokens are `!Send`, so they are released on the thread that took
/// them): the first [`HELD_TRACKED`] by engine and frame, the rest counted. A thread with none
/// defers to waiting writers; one with some must not (it may be taking a second hold on the
/// page a writer waits for). A thread about to wait for the holders of a frame it holds itself
/// would wait for ever: [`held_here`] lets it fail instead (`Error::HeldByCaller`).
#[derive(Clone, Copy)]
struct Held {
    /// (engine address, frame) of each tracked hold; the first `tracked` are in use.
    keys: [(usize, FrameId); HELD_TRACKED],
    tracked: usize,
    untracked: u32,
}

crate::sync::thread_local! {
    // In the model build this is shuttle's thread-local: one per logical thread.
    static HELD: std::cell::RefCell<Held> = const {
        std::cell::RefCell::new(Held { keys: [(0, 0); HELD_TRACKED], tracked: 0, untracked: 0 })
    };
}

fn engine_key(engine: &Engine) -> usize {
    engine as *const Engine as usize
}

/// Counts a hold on `f` of `engine` taken by this thread.
fn held_add(engine: &Engine, f: FrameId) {
    let key = (engine_key(engine), f);
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        if h.tracked < HELD_TRACKED {
            let i = h.tracked;
            h.keys[i] = key;
            h.tracked += 1;
        } else {
            h.untracked += 1;
        }
    });
}

/// Forgets a hold on `f` of `engine` released by this thread.
fn held_remove(engine: &Engine, f: FrameId) {
    let key = (engine_key(engine), f);
    HELD.with(|h| {
        let mut h = h.borrow_mut();
        let n = h.tracked;
        match h.keys[..n].iter().rposition(|&k| k == key) {
            Some(i) => {
                h.keys[i] = h.keys[n - 1];
                h.tracked -= 1;
            }
            None => {
                crate::page::state_assert!(h.untracked > 0, "a hold released twice");
                h.untracked = h.untracked.saturating_sub(1);
            }
        }
    });
}

/// True if this thread holds frame `f` of `engine` (among its first [`HELD_TRACKED`] holds):
/// waiting for the frame's holders would then wait for itself.
pub(crate) fn held_here(engine: &Engine, f: FrameId) -> bool {
    let key = (engine_key(engine), f);
    HELD.with(|h| {
        let h = h.borrow();
        h.keys[..h.tracked].contains(&key)
    })
}

/// True if this thread holds any frame of any cache (tracked or not).
pub(crate) fn holds_any() -> bool {
    HELD.with(|h| {
        let h = h.borrow();
        h.tracked != 0 || h.untracked != 0
    })
}

fn defer() -> crate::page::Defer {
    if !holds_any() {
        crate::page::Defer::ToWriters
    } else {
        crate::page::Defer::No
    }
}

/// Whether releasing an exclusive hold makes the page dirty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dirty {
    /// The bytes changed: the page is dirty (if it is a valid page).
    Yes,
    /// Leave the dirty bit as it is.
    No,
}

/// A reader hold on a frame. See the [module docs](self).
#[must_use = "dropping a hold releases it at once"]
pub(crate) struct SharedHold<'e> {
    engine: &'e Engine,
    f: FrameId,
    /// A hold is released by the thread that took it (waits park on it).
    _not_send: PhantomData<*const ()>,
}

/// The exclusive hold on a frame. See the [module docs](self).
#[must_use = "dropping a hold releases it at once"]
pub(crate) struct ExclusiveHold<'e> {
    engine: &'e Engine,
    f: FrameId,
    _not_send: PhantomData<*const ()>,
}

/// A write-back in flight: a reader hold with `WRITEBACK` set. Ended by
/// [`end`](WritebackHold::end) with the write's outcome; dropped without it, as failed.
#[must_use = "a write-back must be ended with `end`"]
pub(crate) struct WritebackHold<'e> {
    engine: &'e Engine,
    f: FrameId,
}

impl<'e> SharedHold<'e> {
    /// # Safety
    /// The caller has just taken a reader hold on `f` (a successful acquisition).
    unsafe fn mint(engine: &'e Engine, f: FrameId) -> SharedHold<'e> {
        held_add(engine, f);
        crate::page::state_assert!(crate::page::readers(engine.frames[f as usize].state()) > 0);
        SharedHold {
            engine,
            f,
            _not_send: PhantomData,
        }
    }

    /// The frame.
    pub(crate) fn frame(&self) -> FrameId {
        self.f
    }

    /// The frame's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the token exists only while its reader hold does (module docs), and a reader
        // hold excludes every writer of the bytes; the frame lies within the region.
        unsafe { std::slice::from_raw_parts(self.engine.frame_ptr(self.f), self.engine.page_size) }
    }
}

impl Drop for SharedHold<'_> {
    fn drop(&mut self) {
        held_remove(self.engine, self.f);
        let r = self.engine.frames[self.f as usize].unlock_shared();
        self.engine.released(self.f, r);
    }
}

impl<'e> ExclusiveHold<'e> {
    /// # Safety
    /// The caller has just set `EXCLUSIVE` on `f` (a successful acquisition).
    unsafe fn mint(engine: &'e Engine, f: FrameId) -> ExclusiveHold<'e> {
        held_add(engine, f);
        crate::page::state_assert!(engine.frames[f as usize].state() & EXCLUSIVE != 0);
        ExclusiveHold {
            engine,
            f,
            _not_send: PhantomData,
        }
    }

    /// The frame.
    pub(crate) fn frame(&self) -> FrameId {
        self.f
    }

    /// The frame's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: the token exists only while `EXCLUSIVE` is held (module docs): no other
        // holder touches the bytes, and `&self` excludes `bytes_mut` on this token.
        unsafe { std::slice::from_raw_parts(self.engine.frame_ptr(self.f), self.engine.page_size) }
    }

    /// The frame's bytes, writable.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as `bytes`; `&mut self` makes this the only reference through the token.
        unsafe {
            std::slice::from_raw_parts_mut(self.engine.frame_ptr(self.f), self.engine.page_size)
        }
    }

    /// A buffer over the frame for a backend read into it: the frame stays held (and its
    /// index entry `LOADING`) until the read completes.
    pub(crate) fn lend_for_read(&mut self) -> FrameMut {
        let e = self.engine;
        // SAFETY: we hold the frame exclusively until the read that owns the buffer completes
        // (the loader keeps this token until `finish_load`), and the cache checks that the
        // buffer came back before it touches the bytes again (`Region::lent`).
        unsafe { FrameMut::from_region(&e.region, self.f as usize * e.page_size, e.page_size) }
    }

    /// A buffer over the frame for a backend write of its bytes (an evictor's write-back).
    pub(crate) fn lend_for_write(&self) -> Frame {
        let e = self.engine;
        // SAFETY: nobody writes the bytes while we hold the frame exclusively, and we keep this
        // token until the write completes.
        unsafe { Frame::from_region(&e.region, self.f as usize * e.page_size, e.page_size) }
    }

    /// Sets the frame's tag (a frame being given a page).
    pub(crate) fn set_tag(&self, tag: u64) {
        self.engine.frames[self.f as usize].set_tag(tag);
    }

    /// Sets the state word (which keeps `EXCLUSIVE`).
    pub(crate) fn set_state(&self, state: u64) {
        self.engine.frames[self.f as usize].set_owned_state(state);
    }

    /// The state word.
    pub(crate) fn state(&self) -> u64 {
        self.engine.frames[self.f as usize].state()
    }

    /// Marks the page under write-back (`on`) or not, for an evictor's write.
    pub(crate) fn set_writeback(&self, on: bool) {
        self.engine.frames[self.f as usize].set_writeback_owned(on);
    }

    /// Sets the readahead marker.
    pub(crate) fn mark_readahead(&self) {
        self.engine.frames[self.f as usize].mark_readahead_owned();
    }

    /// Adds a pin (the pin outlives this hold).
    pub(crate) fn pin(&self) {
        self.engine.frames[self.f as usize].pin_owned();
    }

    /// Clears `DIRTY` after writing the page back; counts it.
    pub(crate) fn clear_dirty(&self) {
        if self.engine.frames[self.f as usize].clear_dirty_owned() {
            self.engine.count_dirty(DirtyCount::Cleaned);
        }
    }

    /// Releases the hold, making the page dirty if `dirty` says so.
    pub(crate) fn release(self, dirty: Dirty) {
        held_remove(self.engine, self.f);
        let this = std::mem::ManuallyDrop::new(self);
        this.engine.unlock_exclusive(this.f, dirty);
    }

    /// Turns the hold into a reader hold (after a load or a write).
    pub(crate) fn downgrade(self) -> SharedHold<'e> {
        held_remove(self.engine, self.f);
        let this = std::mem::ManuallyDrop::new(self);
        this.engine.frames[this.f as usize].downgrade();
        // SAFETY: `downgrade` turned our `EXCLUSIVE` into a reader hold.
        unsafe { SharedHold::mint(this.engine, this.f) }
    }

    /// Puts the frame (holding no page: out of the index) on the free list.
    pub(crate) fn free(self) {
        held_remove(self.engine, self.f);
        let this = std::mem::ManuallyDrop::new(self);
        crate::page::state_assert!(
            !this.engine.policy.contains(this.f),
            "a freed frame is still in the policy"
        );
        this.engine.push_free(this.f);
    }

    /// Takes the frame (out of the index) out of use for good: see `Engine::quarantine`.
    pub(crate) fn quarantine(self) {
        held_remove(self.engine, self.f);
        let this = std::mem::ManuallyDrop::new(self);
        this.engine.quarantine(this.f);
    }
}

impl Drop for ExclusiveHold<'_> {
    fn drop(&mut self) {
        held_remove(self.engine, self.f);
        self.engine.unlock_exclusive(self.f, Dirty::No);
    }
}

impl<'e> WritebackHold<'e> {
    /// A buffer over the frame for the backend write.
    pub(crate) fn lend_for_write(&self) -> Frame {
        let e = self.engine;
        // SAFETY: the page is under write-back with our reader hold: no writer touches its
        // bytes until `end`, which the flusher calls only after the write completed.
        unsafe { Frame::from_region(&e.region, self.f as usize * e.page_size, e.page_size) }
    }

    /// Ends the write-back: the page is dirty again if it failed or was given up before it
    /// was submitted (`ok == false`).
    pub(crate) fn end(self, ok: bool) {
        let this = std::mem::ManuallyDrop::new(self);
        this.finish(ok);
    }

    fn finish(&self, ok: bool) {
        let (redirtied, r) = self.engine.frames[self.f as usize].end_writeback(ok);
        if redirtied {
            self.engine.count_dirty(DirtyCount::Restored);
        }
        self.engine.released(self.f, r);
    }
}

impl Drop for WritebackHold<'_> {
    /// A write-back dropped without `end` (a panic on the way) counts as failed: the page is
    /// dirty again, not stuck under write-back.
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// What an acquisition attempt on a frame found (the token, or why not).
pub(crate) enum Took<H> {
    /// The hold.
    Held(H),
    /// Not now: see [`Acquire`].
    Not(Acquire),
}

impl Engine {
    /// A reader hold on page `p` in frame `f`, if the frame holds it and nobody holds it
    /// exclusively; with `pinned`, the caller holds a pin and also accepts an orphan.
    #[inline(always)]
    pub(crate) fn acquire_shared(&self, f: FrameId, p: u64, pinned: bool) -> Took<SharedHold<'_>> {
        match self.settle(
            f,
            self.frames[f as usize].lock_shared_in(p, pinned, defer()),
        ) {
            // SAFETY: the CAS in `lock_shared_in` just took the reader hold.
            Acquire::Acquired => Took::Held(unsafe { SharedHold::mint(self, f) }),
            other => Took::Not(other),
        }
    }

    /// The exclusive hold on page `p` in frame `f` (no readers, no write-back); with `pinned`,
    /// also on an orphan.
    pub(crate) fn acquire_exclusive(
        &self,
        f: FrameId,
        p: u64,
        pinned: bool,
    ) -> Took<ExclusiveHold<'_>> {
        match self.settle(f, self.frames[f as usize].lock_exclusive_in(p, pinned)) {
            // SAFETY: the CAS in `lock_exclusive_in` just set EXCLUSIVE.
            Acquire::Acquired => Took::Held(unsafe { ExclusiveHold::mint(self, f) }),
            other => Took::Not(other),
        }
    }

    /// Frame `f` from the free list: `FREE` → `FREE | EXCLUSIVE`.
    pub(crate) fn acquire_free(&self, f: FrameId) -> Option<ExclusiveHold<'_>> {
        // SAFETY: `take_free` set EXCLUSIVE on success.
        self.frames[f as usize]
            .take_free()
            .then(|| unsafe { ExclusiveHold::mint(self, f) })
    }

    /// Claims the valid page in frame `f` that nobody holds (for eviction or removal).
    pub(crate) fn acquire_unheld(&self, f: FrameId) -> Option<ExclusiveHold<'_>> {
        // SAFETY: `claim` set EXCLUSIVE on success.
        self.frames[f as usize]
            .claim()
            .then(|| unsafe { ExclusiveHold::mint(self, f) })
    }

    /// Begins the write-back of the dirty page `p` in frame `f` (counted: the page is no longer
    /// dirty).
    pub(crate) fn acquire_writeback(&self, f: FrameId, p: u64) -> Took<WritebackHold<'_>> {
        match self.settle(f, self.frames[f as usize].begin_writeback(p)) {
            Acquire::Acquired => {
                self.count_dirty(DirtyCount::Cleaned);
                Took::Held(WritebackHold { engine: self, f })
            }
            other => Took::Not(other),
        }
    }

    /// Hands a released frame's `Released` outcome to the free list.
    pub(crate) fn released(&self, f: FrameId, r: Released) {
        if r == Released::Freed {
            self.push_free(f);
        }
    }
}
