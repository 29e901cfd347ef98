//! [`FrameMeta`]: one frame's tag and state word, and every transition of that word.
//!
//! # Owns
//! - the tag and the state word of a frame, and every change of them, each one
//!   compare-and-swap checked by `state_assert!` against the word it replaced;
//! - holds (readers, pins, `EXCLUSIVE`) and their release, claims for eviction, taking a frame
//!   off the free list and marking it free, the start and end of a write-back, orphaning, the
//!   readahead marker, the two reads around an optimistic copy;
//! - parking on a frame (`wait_while`) and waking the parked (`WAITERS`).
//!
//! # Does not own
//! - the layout of the word and the types of the outcomes ([`page`](super)), the racy copy
//!   (`copy.rs`);
//! - which frame holds which page (the index), the free list, the dirty-page count and the hold
//!   tokens: the engine's, which calls these transitions.
//!
//! # May block
//! - `wait_while`: parks the calling thread until the word changes (at most `PARK_RECHECK` per
//!   call; callers loop). The other methods never wait: their compare-and-swap loops retry only
//!   when another thread changed the word meanwhile.

use std::time::Duration;

use super::{
    kind, readers, state_assert, Acquire, Defer, Orphaned, Released, DIRTY, EXCLUSIVE, FREE,
    HOLDERS, KIND_MASK, LOADING, NO_PAGE, ORPHAN, PIN, PINS_MASK, READAHEAD, READER, READERS_MASK,
    SEQ_MASK, SEQ_ONE, STABLE, VALID, WAITERS, WRITEBACK, WRITER_WAITING,
};
use crate::sync::{AtomicU64, Ordering};

/// `s` with `EXCLUSIVE` taken: the only way any code sets it, so the sequence moves every time.
#[inline]
fn take_exclusive(s: u64) -> u64 {
    state_assert!(s & EXCLUSIVE == 0, "EXCLUSIVE taken twice: {s:#x}");
    // The writer that waited (or another one) is in: readers may queue behind it again.
    ((s | EXCLUSIVE) & !WRITER_WAITING).wrapping_add(SEQ_ONE)
}

/// The longest a parked thread sleeps before it re-checks the state word on its own. Wake-ups are
/// explicit; this only bounds the damage of a missed one.
const PARK_RECHECK: Duration = Duration::from_millis(20);

/// Metadata of one frame.
#[derive(Debug)]
pub(crate) struct FrameMeta {
    state: AtomicU64,
    tag: AtomicU64,
}

impl Default for FrameMeta {
    fn default() -> Self {
        FrameMeta {
            state: AtomicU64::new(FREE),
            tag: AtomicU64::new(NO_PAGE),
        }
    }
}

impl FrameMeta {
    pub(crate) fn state(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn tag(&self) -> u64 {
        self.tag.load(Ordering::Acquire)
    }

    /// Sets the tag. Only the `EXCLUSIVE` holder of a free frame may do this.
    pub(crate) fn set_tag(&self, tag: u64) {
        state_assert!(self.state() & EXCLUSIVE != 0, "set_tag without EXCLUSIVE");
        self.tag.store(tag, Ordering::Release);
    }

    /// Sets the state word of a frame this thread owns exclusively to `new` (which must keep
    /// `EXCLUSIVE`), keeping the sequence and waking anyone parked.
    pub(crate) fn set_owned_state(&self, new: u64) {
        state_assert!(
            new & EXCLUSIVE != 0,
            "an owned state keeps EXCLUSIVE: {new:#x}"
        );
        state_assert!(
            new & SEQ_MASK == 0,
            "the sequence is not the owner's to set"
        );
        let prev = self.update(|s| Some(new | (s & SEQ_MASK)));
        state_assert!(
            prev.is_some_and(|p| p & EXCLUSIVE != 0 && p & (READERS_MASK | WRITEBACK) == 0),
            "set_owned_state on a frame not held exclusively: {prev:x?}"
        );
    }

    /// Starts an optimistic read of page `key` (see the [module docs](super)): the word to hand
    /// to [`optimistic_end`](Self::optimistic_end), or `None` if the page is not valid here, is
    /// held `EXCLUSIVE`, or carries a readahead marker (whose reader must take a hold to start
    /// the next window). No store, no hold.
    #[inline]
    pub(crate) fn optimistic_begin(&self, key: u64) -> Option<u64> {
        let s = self.state.load(Ordering::Acquire);
        // Ordered after the state load by its acquire, so the tag is the one of that state.
        (kind(s) == VALID && s & (EXCLUSIVE | READAHEAD) == 0 && self.tag() == key).then_some(s)
    }

    /// Ends an optimistic read begun with `begin`: true if nothing could have changed the bytes
    /// since, so what the caller copied is the page's content.
    #[inline]
    pub(crate) fn optimistic_end(&self, begin: u64) -> bool {
        // The copy's loads complete before the state is read again.
        crate::sync::fence(Ordering::Acquire);
        (self.state.load(Ordering::Relaxed) ^ begin) & STABLE == 0
    }

    fn wake_if(&self, prev: u64) {
        if prev & WAITERS != 0 {
            crate::sync::unpark_all(self.key());
        }
    }

    fn key(&self) -> usize {
        &self.state as *const AtomicU64 as usize
    }

    /// Applies `f` to the state word atomically, clears `WAITERS` and wakes waiters if it was set.
    /// `f` returns `None` to leave the word unchanged. Returns the previous word, or `None`.
    fn update(&self, mut f: impl FnMut(u64) -> Option<u64>) -> Option<u64> {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            let new = f(cur)?;
            match self.state.compare_exchange_weak(
                cur,
                new & !WAITERS,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(prev) => {
                    self.wake_if(prev);
                    return Some(prev);
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Parks the calling thread until `blocked(state)` is false (or a bounded re-check interval
    /// passes; callers loop).
    pub(crate) fn wait_while(&self, blocked: impl Fn(u64) -> bool) {
        if !blocked(self.state()) {
            return;
        }
        let validate = || {
            let prev = self.state.fetch_or(WAITERS, Ordering::AcqRel);
            blocked(prev | WAITERS)
        };
        // The key is the address of this frame's state word, which lives as long as the cache.
        crate::sync::park(self.key(), validate, PARK_RECHECK);
    }

    /// Takes a shared (reader) hold on the page `key` if it is valid here.
    #[cfg(test)]
    pub(crate) fn lock_shared(&self, key: u64) -> Acquire {
        self.lock_shared_in(key, false, Defer::ToWriters)
    }

    /// Announces a writer waiting for the readers of this valid page to leave (see
    /// [`WRITER_WAITING`]); nothing if it is held exclusively, has no reader, or is announced.
    pub(crate) fn announce_writer(&self) {
        self.update(|s| {
            (kind(s) == VALID && s & (EXCLUSIVE | WRITER_WAITING) == 0 && readers(s) > 0)
                .then_some(s | WRITER_WAITING)
        });
    }

    /// As [`lock_shared`](Self::lock_shared); with `pinned`, the caller holds a pin on this
    /// frame and also accepts it orphaned (discarded while pinned).
    pub(crate) fn lock_shared_in(&self, key: u64, pinned: bool, defer: Defer) -> Acquire {
        self.acquire(
            key,
            pinned,
            |s| {
                s & EXCLUSIVE != 0
                    || (defer == Defer::ToWriters && kind(s) == VALID && s & WRITER_WAITING != 0)
            },
            |s| readers(s) == READERS_MASK,
            |s| s + READER,
            |m| m.unlock_shared(),
        )
    }

    /// Takes a pin on the page `key` if it is valid here (waits out a load, and an evictor or a
    /// writer, so a pin never meets an evictor).
    pub(crate) fn pin(&self, key: u64) -> Acquire {
        self.acquire(
            key,
            false,
            |s| s & EXCLUSIVE != 0,
            |s| s & PINS_MASK == PINS_MASK,
            |s| s + PIN,
            |m| m.unpin(),
        )
    }

    /// Takes the exclusive (writer) hold on the valid page `key`: no readers, no write-back.
    #[cfg(test)]
    pub(crate) fn lock_exclusive(&self, key: u64) -> Acquire {
        self.lock_exclusive_in(key, false)
    }

    /// As [`lock_exclusive`](Self::lock_exclusive); with `pinned`, also accepts an orphan.
    pub(crate) fn lock_exclusive_in(&self, key: u64, pinned: bool) -> Acquire {
        self.acquire(
            key,
            pinned,
            |s| s & (EXCLUSIVE | READERS_MASK | WRITEBACK) != 0,
            |_| false,
            take_exclusive,
            |m| m.unlock_exclusive(false).1,
        )
    }

    /// The one acquisition loop behind the holds: while the page is valid (or, with `pinned`,
    /// orphaned), not `busy` and not `full`, CAS the state word to `take(state)`; then check the tag, since
    /// the frame may have been reused for another page before the CAS. On a mismatch the hold is
    /// given back with `undo`; if that made this thread the last holder of an orphan, the frame
    /// is now free and the caller must return it to the free list ([`Acquire::Stray`]).
    #[inline]
    fn acquire(
        &self,
        key: u64,
        pinned: bool,
        busy: impl Fn(u64) -> bool,
        full: impl Fn(u64) -> bool,
        take: impl Fn(u64) -> u64,
        undo: impl FnOnce(&Self) -> Released,
    ) -> Acquire {
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            match kind(cur) {
                VALID => {}
                ORPHAN if pinned => {}
                LOADING => return self.wait_verdict(key),
                _ => return Acquire::Absent,
            }
            if busy(cur) {
                return self.wait_verdict(key);
            }
            if full(cur) {
                return match self.wait_verdict(key) {
                    Acquire::Wait => Acquire::Saturated,
                    other => other,
                };
            }
            match self.state.compare_exchange_weak(
                cur,
                take(cur),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if self.tag() == key {
            return Acquire::Acquired;
        }
        match undo(self) {
            Released::Held => Acquire::Absent,
            Released::Freed => Acquire::Stray,
        }
    }

    fn wait_verdict(&self, key: u64) -> Acquire {
        if self.tag() == key {
            Acquire::Wait
        } else {
            Acquire::Absent
        }
    }

    /// Claims a valid page nobody holds, for eviction or removal: sets `EXCLUSIVE`.
    pub(crate) fn claim(&self) -> bool {
        self.update(|s| {
            (kind(s) == VALID && s & (HOLDERS | WRITEBACK) == 0).then(|| take_exclusive(s))
        })
        .is_some()
    }

    fn release(&self, f: impl Fn(u64) -> u64) -> (u64, Released) {
        let mut freed = Released::Held;
        let prev = self
            .update(|s| {
                let mut new = f(s);
                freed = Released::Held;
                if kind(new) == ORPHAN && new & HOLDERS == 0 {
                    new = FREE | (new & SEQ_MASK);
                    freed = Released::Freed;
                }
                Some(new)
            })
            .unwrap_or(0);
        (prev, freed)
    }

    /// Drops a reader hold.
    pub(crate) fn unlock_shared(&self) -> Released {
        let (prev, r) = self.release(|s| s.wrapping_sub(READER));
        state_assert!(readers(prev) > 0, "a reader hold released twice: {prev:#x}");
        r
    }

    /// Drops a pin.
    pub(crate) fn unpin(&self) -> Released {
        let (prev, r) = self.release(|s| s.wrapping_sub(PIN));
        state_assert!(prev & PINS_MASK != 0, "a pin released twice: {prev:#x}");
        r
    }

    /// Drops the exclusive hold, marking the page dirty if `dirty`. Returns whether this made a
    /// clean page dirty, and whether the frame was freed.
    pub(crate) fn unlock_exclusive(&self, dirty: bool) -> (bool, Released) {
        let (prev, freed) = self.release(|s| {
            let mut n = s & !EXCLUSIVE;
            if dirty && kind(s) == VALID {
                n |= DIRTY;
            }
            n
        });
        state_assert!(
            prev & EXCLUSIVE != 0,
            "EXCLUSIVE released but not held: {prev:#x}"
        );
        let newly_dirty = dirty && kind(prev) == VALID && prev & DIRTY == 0;
        (newly_dirty, freed)
    }

    /// Turns the exclusive hold into a reader hold (after a load or a write).
    pub(crate) fn downgrade(&self) {
        let prev = self.update(|s| Some((s & !EXCLUSIVE) + READER));
        state_assert!(
            prev.is_some_and(|p| p & EXCLUSIVE != 0 && readers(p) == 0),
            "downgrade of a frame not held exclusively: {prev:x?}"
        );
    }

    /// Starts write-back of the dirty valid page `key`: clears `DIRTY`, sets `WRITEBACK` and takes
    /// a reader hold for the I/O. `Wait` if a writer holds it or another write-back is in flight;
    /// `Absent` if it is not that page or not dirty.
    pub(crate) fn begin_writeback(&self, key: u64) -> Acquire {
        if self.tag() != key {
            return Acquire::Absent;
        }
        let mut verdict = Acquire::Absent;
        self.update(|s| {
            if kind(s) != VALID || (s & DIRTY == 0 && s & WRITEBACK == 0) {
                verdict = Acquire::Absent;
                return None;
            }
            if s & (EXCLUSIVE | WRITEBACK) != 0 || readers(s) == READERS_MASK {
                verdict = Acquire::Wait;
                return None;
            }
            verdict = Acquire::Acquired;
            Some(((s & !DIRTY) | WRITEBACK) + READER)
        });
        if verdict == Acquire::Acquired && self.tag() != key {
            // The frame was evicted, reused for another page and dirtied between our look at
            // the tag and the CAS (the ABA case): undo, like a mistaken hold in `acquire`.
            return match self.end_writeback(false).1 {
                Released::Held => Acquire::Absent,
                Released::Freed => Acquire::Stray,
            };
        }
        verdict
    }

    /// Ends write-back: on failure the page is dirty again. Returns whether the page became dirty
    /// again (for the dirty counter), and whether the frame was freed.
    pub(crate) fn end_writeback(&self, ok: bool) -> (bool, Released) {
        let (prev, freed) = self.release(|s| {
            let mut n = (s & !WRITEBACK).wrapping_sub(READER);
            if !ok && kind(s) == VALID {
                n |= DIRTY;
            }
            n
        });
        state_assert!(
            prev & WRITEBACK != 0 && readers(prev) > 0,
            "a write-back ended that was not in flight: {prev:#x}"
        );
        let redirtied = !ok && kind(prev) == VALID && prev & DIRTY == 0;
        (redirtied, freed)
    }

    /// Marks a valid page orphaned, clearing `DIRTY`, unless a write-back of it is in flight;
    /// frees it at once if there is no holder. The caller has just removed it from the index.
    pub(crate) fn orphan(&self) -> Orphaned {
        let mut freed = Released::Held;
        let prev = self.update(|s| {
            if s & WRITEBACK != 0 {
                return None;
            }
            freed = Released::Held;
            if kind(s) != VALID {
                return Some(s);
            }
            let new = (s & !(KIND_MASK | DIRTY | READAHEAD | WRITER_WAITING)) | ORPHAN;
            if new & HOLDERS == 0 {
                freed = Released::Freed;
                return Some(FREE | (new & SEQ_MASK));
            }
            Some(new)
        });
        match prev {
            None => Orphaned::WritebackInFlight,
            Some(prev) => Orphaned::Done {
                was_dirty: kind(prev) == VALID && prev & DIRTY != 0,
                released: freed,
            },
        }
    }

    /// Marks the page that this thread holds `EXCLUSIVE` as being written back (`on`) or not:
    /// the evictor's write of a dirty victim, which range operations must wait for as for any
    /// write-back.
    pub(crate) fn set_writeback_owned(&self, on: bool) {
        let prev = self.update(|s| Some(if on { s | WRITEBACK } else { s & !WRITEBACK }));
        state_assert!(
            prev.is_some_and(|p| p & EXCLUSIVE != 0 && (p & WRITEBACK != 0) != on),
            "an owner's write-back bit set twice or without EXCLUSIVE: {prev:x?}"
        );
    }

    /// Sets the `READAHEAD` marker on a frame this thread holds `EXCLUSIVE` (a page being loaded
    /// by readahead, before anyone else can see it valid).
    pub(crate) fn mark_readahead_owned(&self) {
        let prev = self.state.fetch_or(READAHEAD, Ordering::AcqRel);
        state_assert!(
            prev & EXCLUSIVE != 0,
            "readahead mark without EXCLUSIVE: {prev:#x}"
        );
    }

    /// Clears the `READAHEAD` marker; true if this call cleared it (exactly one reader of a
    /// marked page sees true and starts the next window).
    pub(crate) fn take_readahead_mark(&self) -> bool {
        self.state.fetch_and(!READAHEAD, Ordering::AcqRel) & READAHEAD != 0
    }

    #[cfg(test)]
    pub(crate) fn set_owned_state_for_test(&self, s: u64) {
        self.state.store(s, Ordering::Release);
    }

    /// Clears the tag of a frame on its way to the free list.
    pub(crate) fn clear_tag(&self) {
        self.tag.store(NO_PAGE, Ordering::Release);
    }

    /// Marks a frame free (no holder) on its way to the free list, waking anyone parked on it.
    pub(crate) fn set_free(&self) {
        let prev = self.update(|s| Some(FREE | (s & SEQ_MASK)));
        state_assert!(
            prev.is_some_and(|p| p & (PINS_MASK | READERS_MASK) == 0),
            "a frame freed while held: {prev:x?}"
        );
    }

    /// Adds a pin to a frame this thread holds `EXCLUSIVE`.
    pub(crate) fn pin_owned(&self) {
        let prev = self.update(|s| Some(s + PIN));
        state_assert!(
            prev.is_some_and(|p| p & EXCLUSIVE != 0 && p & PINS_MASK != PINS_MASK),
            "a pin added without EXCLUSIVE, or past the maximum: {prev:x?}"
        );
    }

    /// Takes a frame from the free list: `FREE` → `FREE | EXCLUSIVE`.
    pub(crate) fn take_free(&self) -> bool {
        self.update(|s| (s & (KIND_MASK | HOLDERS) == FREE).then(|| take_exclusive(s)))
            .is_some()
    }

    /// Clears `DIRTY` on a page this thread holds `EXCLUSIVE` (after writing it back). Returns
    /// whether it was dirty.
    pub(crate) fn clear_dirty_owned(&self) -> bool {
        let prev = self.update(|s| Some(s & !DIRTY));
        state_assert!(
            prev.is_some_and(|p| p & EXCLUSIVE != 0),
            "DIRTY cleared without EXCLUSIVE: {prev:x?}"
        );
        prev.is_some_and(|p| p & DIRTY != 0)
    }

    /// Marks dirty the valid, clean page this thread holds as a reader (its cached bytes must
    /// reach the backend again: a failed hole punch may have changed the backend under it).
    /// False if it is already dirty or under write-back.
    pub(crate) fn mark_dirty_shared(&self) -> bool {
        let prev = self
            .update(|s| (kind(s) == VALID && s & (DIRTY | WRITEBACK) == 0).then_some(s | DIRTY));
        state_assert!(
            prev.is_none_or(|p| readers(p) > 0 && p & EXCLUSIVE == 0),
            "DIRTY set without a reader hold: {prev:x?}"
        );
        prev.is_some()
    }
}
