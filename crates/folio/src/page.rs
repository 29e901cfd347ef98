//! Frames and the atomic page state word.
//!
//! The cache owns a fixed pool of frames, allocated up front. Each frame has a `FrameMeta`: the
//! page it holds (`tag`) and one 64-bit state word that carries everything concurrent code needs
//! to agree on, so that every transition is one compare-and-swap:
//!
//! ```text
//!  bits  0..16  readers    shared holders: read_at copies, read guards, write-back I/O
//!  bits 16..32  pins       PinnedPage handles (keep the page resident, no access right)
//!  bit  32      EXCLUSIVE  one holder: the loader of a page, a writer, an evictor
//!  bit  33      WAITERS    someone is parked on this frame (wake on release)
//!  bits 34..36  kind       FREE | LOADING | VALID | ORPHAN
//!  bit  36      DIRTY      the bytes differ from the backend
//!  bit  37      WRITEBACK  a write-back of the bytes is in flight
//!  bit  38      READAHEAD  marker: reaching this page should start the next readahead window
//!  bit  39      WRITER_WAITING  a writer waits for the readers to leave: new readers defer
//!  bits 40..64  sequence   bumped (wrapping) by every acquisition of EXCLUSIVE; never reset
//! ```
//!
//! # Optimistic reads
//! A copy out of a valid page need not take a hold at all: `FrameMeta::optimistic_begin` reads
//! the word, the caller copies the bytes without any store, and `FrameMeta::optimistic_end`
//! reads the word again. Bytes only change under `EXCLUSIVE`, and every acquisition of
//! `EXCLUSIVE` bumps the sequence, so if neither read saw `EXCLUSIVE`, both saw the same
//! sequence and the page still `VALID` under the same tag, no writer, loader or evictor touched
//! the bytes in between and the copy is exact; otherwise the caller throws it away and takes a
//! reader hold instead. This is a seqlock (Linux's `seqcount_t`, Lameter's "SLUB" and vmcache's
//! optimistic latches work the same way) and it is what lets a hit run with plain loads only: a
//! locked read-modify-write is a full barrier on x86, and three of them per hit (hold, release,
//! hit counter) kept one hit's cache misses from overlapping the next one's.
//!
//! The sequence has 24 bits. A copy is wrongly accepted only if exactly a multiple of 2^24
//! (16.8 million) exclusive acquisitions of that one frame ran during it and left the page valid
//! under the same tag; at tens of nanoseconds each, that is a reader stalled mid-copy for
//! seconds while another thread does nothing but lock that page, and then a 1 in 2^24 chance.
//! Linux's 32-bit `seqcount_t` accepts the same kind of bound.
//!
//! # Page states and what may be done in each
//! - **Free** (`FREE`): no page; the frame is on the free list or held `EXCLUSIVE` by the thread
//!   that took it from there or evicted its page. Only that thread touches it.
//! - **Uninitialised** (`LOADING`, always with `EXCLUSIVE`): the frame is in the index under its
//!   page but its bytes are being filled by the loader. Nobody else may read or write it; others
//!   who want the page park until it becomes valid or free.
//! - **Up to date** (`VALID`, not `DIRTY`): bytes equal the backend. Readers share it, one writer
//!   excludes readers, the evictor may claim it when it has no holder.
//! - **Dirty** (`VALID | DIRTY`): bytes are newer than the backend. As up to date, and eviction
//!   must write it back before reusing the frame.
//! - **Under write-back** (`WRITEBACK`, with one reader count held by the I/O): the bytes are being
//!   written. Readers may share it; writers wait for the I/O to complete (stable pages), so the
//!   bytes on disk are a snapshot and a write that arrives meanwhile re-dirties the page after it.
//!   `DIRTY` was cleared when write-back began; a failure sets it again.
//! - **Orphan** (`ORPHAN`): discarded or truncated while somebody still held it. No longer in the
//!   index, never written back; the last holder to release it returns it to the free list.
//!
//! Bytes of a frame are written only by the `EXCLUSIVE` holder, and read by holders (readers, the
//! `EXCLUSIVE` holder) and by optimistic readers, which use a copy the compiler cannot see into
//! (`copy_racy`) and keep it only if the sequence says no `EXCLUSIVE` holder ran meanwhile.
//! That is the whole soundness argument of the `unsafe` byte access in `cache.rs`.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// `tag` of a frame that holds no page.
pub(crate) const NO_PAGE: u64 = u64::MAX;

pub(crate) const READER: u64 = 1;
pub(crate) const READERS_MASK: u64 = (1 << 16) - 1;
pub(crate) const PIN: u64 = 1 << 16;
pub(crate) const PINS_MASK: u64 = ((1 << 16) - 1) << 16;
pub(crate) const EXCLUSIVE: u64 = 1 << 32;
pub(crate) const WAITERS: u64 = 1 << 33;
pub(crate) const KIND_MASK: u64 = 3 << 34;
pub(crate) const FREE: u64 = 0;
pub(crate) const LOADING: u64 = 1 << 34;
pub(crate) const VALID: u64 = 2 << 34;
pub(crate) const ORPHAN: u64 = 3 << 34;
pub(crate) const DIRTY: u64 = 1 << 36;
pub(crate) const WRITEBACK: u64 = 1 << 37;
pub(crate) const READAHEAD: u64 = 1 << 38;
/// A writer waits for the readers of a valid page to leave: readers that hold nothing else
/// defer to it (writer preference), so a stream of overlapping readers cannot starve a write.
/// Readers that already hold a page do not defer (they may be taking a second hold on this
/// very page, and deferring would deadlock them against the writer that waits for them).
pub(crate) const WRITER_WAITING: u64 = 1 << 39;
/// One step of the sequence (the top field: adding wraps it without touching the others).
const SEQ_ONE: u64 = 1 << 40;
const SEQ_MASK: u64 = !(SEQ_ONE - 1);

/// An assertion on the state machine: checked in debug builds, and in optimized builds too with
/// the `strict-asserts` feature (stress and simulation runs) and in the model-checking build.
macro_rules! state_assert {
    ($($arg:tt)*) => {
        if cfg!(any(debug_assertions, feature = "strict-asserts", folio_model)) {
            assert!($($arg)*);
        }
    };
}
pub(crate) use state_assert;

// The fields of the state word are disjoint and cover all 64 bits.
const _: () = {
    let fields = [
        READERS_MASK,
        PINS_MASK,
        EXCLUSIVE,
        WAITERS,
        KIND_MASK,
        DIRTY,
        WRITEBACK,
        READAHEAD,
        WRITER_WAITING,
        SEQ_MASK,
    ];
    let mut union = 0u64;
    let mut i = 0;
    while i < fields.len() {
        assert!(union & fields[i] == 0, "state-word fields overlap");
        union |= fields[i];
        i += 1;
    }
    assert!(union == u64::MAX, "state-word fields leave bits unused");
    // The kinds fit their field, and adding a reader or a pin cannot carry out of its field
    // while it is below its maximum.
    assert!(FREE & !KIND_MASK == 0 && LOADING & !KIND_MASK == 0);
    assert!(VALID & !KIND_MASK == 0 && ORPHAN & !KIND_MASK == 0);
    assert!(READER == READERS_MASK & READERS_MASK.wrapping_neg());
    assert!(PIN == PINS_MASK & PINS_MASK.wrapping_neg());
};

/// Anyone holding the frame in any way.
const HOLDERS: u64 = READERS_MASK | PINS_MASK | EXCLUSIVE;

/// What must be unchanged between the two reads of an optimistic copy.
const STABLE: u64 = SEQ_MASK | KIND_MASK | EXCLUSIVE;

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

/// Outcome of trying to take a frame for a given page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquire {
    /// Taken.
    Acquired,
    /// The frame holds the page but is busy in a way that ends soon: park, then retry.
    Wait,
    /// The frame does not hold the page (any more).
    Absent,
    /// The frame holds the page, but its count of this kind of holder (readers or pins) is at
    /// its maximum: the caller gets [`Error::TooManyHolds`](crate::Error::TooManyHolds) rather
    /// than waiting for holds that may all be its own.
    Saturated,
    /// The frame does not hold the page, and giving back the hold taken on it by mistake freed
    /// it (it was another page's orphan): the caller must put it on the free list.
    Stray,
}

/// Whether a new reader defers to a waiting writer ([`WRITER_WAITING`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defer {
    /// It holds nothing else: it waits for the writer to go first.
    ToWriters,
    /// It already holds a page (maybe this one): it must not wait for a writer that may be
    /// waiting for it.
    No,
}

/// Outcome of a release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Released {
    /// Nothing more to do.
    Held,
    /// The frame was an orphan and this was its last holder: it is now free and must be put on
    /// the free list by the caller.
    Freed,
}

/// Outcome of [`FrameMeta::orphan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Orphaned {
    /// The page is an orphan now; it was dirty (its changes are dropped) or not.
    Done {
        /// It was dirty.
        was_dirty: bool,
        /// Whether the caller must put the frame on the free list.
        released: Released,
    },
    /// A write-back of the page is in flight: wait for it and try again (an orphan is never
    /// written back, and no write of it may land after it left the cache).
    WritebackInFlight,
}

/// The public name of a page state, for docs, debugging and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageState {
    /// The frame holds no page.
    Free,
    /// Allocated for a page whose bytes are being loaded.
    Uninit,
    /// Bytes equal the backend's.
    UpToDate,
    /// Bytes are newer than the backend's.
    Dirty,
    /// A write-back is in flight (the page may be dirty again afterwards).
    Writeback,
    /// Dropped from the cache while still held.
    Orphan,
}

impl PageState {
    pub(crate) fn from_word(s: u64) -> PageState {
        match s & KIND_MASK {
            FREE => PageState::Free,
            LOADING => PageState::Uninit,
            ORPHAN => PageState::Orphan,
            _ if s & WRITEBACK != 0 => PageState::Writeback,
            _ if s & DIRTY != 0 => PageState::Dirty,
            _ => PageState::UpToDate,
        }
    }
}

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

pub(crate) fn readers(s: u64) -> u64 {
    s & READERS_MASK
}

pub(crate) fn kind(s: u64) -> u64 {
    s & KIND_MASK
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

    /// Starts an optimistic read of page `key` (see the [module docs](self)): the word to hand
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
}

/// Whether this target has [`copy_racy`], and so optimistic reads; elsewhere every hit takes a
/// reader hold.
pub(crate) const OPTIMISTIC_READS: bool = cfg!(any(target_arch = "x86_64", folio_model));

/// Copies `src[..dst.len()]` into `dst` while an `EXCLUSIVE` holder may be writing `src`: the
/// copy in the middle of an optimistic read, whose result is used only if
/// [`FrameMeta::optimistic_end`] then says no writer ran.
///
/// # Safety
/// `src..src + dst.len()` is mapped and readable for the whole call (frames are never unmapped
/// while the cache lives).
#[cfg(all(target_arch = "x86_64", not(folio_model)))]
#[inline(always)]
pub(crate) unsafe fn copy_racy(src: *const u8, dst: &mut [u8]) {
    // SAFETY: `rep movsb` reads `rcx` bytes at `rsi` and writes them at `rdi`: the caller
    // vouches for the source range, `dst` is a unique borrow of the destination, and the ABI
    // guarantees the direction flag is clear. The source may be written concurrently. In the
    // language's memory model that is a data race, and stable Rust has no byte-wise atomic copy
    // to express what a seqlock reader needs (C++ proposal P1478). The assembly block is opaque
    // to the optimiser, though: it cannot assume the bytes stable or derive anything from them,
    // so the block does what the hardware does, which is to store some mix of old and new bytes
    // in `dst`. The caller throws those away unless the sequence check proves no writer ran.
    // (crossbeam's `AtomicCell` and Linux's seqlocks rest on the same argument.) `rep movsb`
    // is also what glibc's memcpy uses for copies of this size on CPUs with fast string moves.
    unsafe {
        std::arch::asm!(
            "rep movsb",
            inout("rcx") dst.len() => _,
            inout("rdi") dst.as_mut_ptr() => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags),
        );
    }
}

/// The model-checking build's copy: two halves with a scheduling point between them, so that
/// the models can run a writer in the middle of a copy and show the sequence check rejects it.
///
/// # Safety
/// As the real one. Shuttle runs one thread at a time, so nothing races here.
#[cfg(folio_model)]
pub(crate) unsafe fn copy_racy(src: *const u8, dst: &mut [u8]) {
    let half = dst.len() / 2;
    let (a, b) = dst.split_at_mut(half);
    // SAFETY: the caller vouches for `src[..dst.len()]`; `a` and `b` are disjoint borrows.
    unsafe { std::ptr::copy_nonoverlapping(src, a.as_mut_ptr(), a.len()) };
    crate::sync::yield_now();
    // SAFETY: as above.
    unsafe { std::ptr::copy_nonoverlapping(src.add(half), b.as_mut_ptr(), b.len()) };
}

/// [`copy_racy`] on every target: where there is no assembly copy, a loop of volatile byte
/// loads, which the optimiser cannot merge, split or assume stable either.
///
/// # Safety
/// As [`copy_racy`].
pub(crate) unsafe fn copy_racy_any(src: *const u8, dst: &mut [u8]) {
    if OPTIMISTIC_READS {
        // SAFETY: the caller's contract is `copy_racy`'s.
        unsafe { copy_racy(src, dst) };
        return;
    }
    for (i, d) in dst.iter_mut().enumerate() {
        // SAFETY: `src + i` is within the range the caller vouches for.
        *d = unsafe { std::ptr::read_volatile(src.add(i)) };
    }
}

/// Never called: [`OPTIMISTIC_READS`] is false on this target.
///
/// # Safety
/// None needed; it does nothing.
#[cfg(not(any(target_arch = "x86_64", folio_model)))]
#[inline(always)]
pub(crate) unsafe fn copy_racy(_src: *const u8, _dst: &mut [u8]) {
    unreachable!("optimistic reads are off on this target")
}

// Unit tests run on std's atomics only; `folio_model` is set by the model-checking crate,
// which compiles this file against shuttle's (usable only inside a shuttle test).
#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    fn owned_valid(tag: u64) -> FrameMeta {
        let m = FrameMeta::default();
        m.state.store(EXCLUSIVE | LOADING, Ordering::Release);
        m.set_tag(tag);
        m.set_owned_state(EXCLUSIVE | VALID);
        let _ = m.unlock_exclusive(false);
        m
    }

    #[test]
    fn readers_exclude_writer_and_claim() {
        let m = owned_valid(7);
        assert_eq!(m.lock_shared(7), Acquire::Acquired);
        assert_eq!(m.lock_exclusive(7), Acquire::Wait);
        assert!(!m.claim());
        assert_eq!(m.unlock_shared(), Released::Held);
        assert_eq!(m.lock_exclusive(7), Acquire::Acquired);
        assert_eq!(m.lock_shared(7), Acquire::Wait);
        assert_eq!(m.unlock_exclusive(true), (true, Released::Held));
        assert_eq!(PageState::from_word(m.state()), PageState::Dirty);
        assert_eq!(m.lock_shared(8), Acquire::Absent);
    }

    #[test]
    fn writeback_clears_dirty_and_failure_restores_it() {
        let m = owned_valid(3);
        assert_eq!(m.lock_exclusive(3), Acquire::Acquired);
        let _ = m.unlock_exclusive(true);
        assert_eq!(m.begin_writeback(3), Acquire::Acquired);
        assert_eq!(PageState::from_word(m.state()), PageState::Writeback);
        // A writer waits for the I/O; a second write-back waits too.
        assert_eq!(m.lock_exclusive(3), Acquire::Wait);
        assert_eq!(m.begin_writeback(3), Acquire::Wait);
        assert_eq!(m.end_writeback(false), (true, Released::Held));
        assert_eq!(PageState::from_word(m.state()), PageState::Dirty);
        assert_eq!(m.begin_writeback(3), Acquire::Acquired);
        assert_eq!(m.end_writeback(true), (false, Released::Held));
        assert_eq!(PageState::from_word(m.state()), PageState::UpToDate);
        assert_eq!(m.begin_writeback(3), Acquire::Absent);
    }

    #[test]
    fn orphan_is_freed_by_last_holder() {
        let m = owned_valid(1);
        assert_eq!(m.pin(1), Acquire::Acquired);
        assert_eq!(m.lock_shared(1), Acquire::Acquired);
        assert_eq!(
            m.orphan(),
            Orphaned::Done {
                was_dirty: false,
                released: Released::Held
            }
        );
        assert_eq!(m.lock_shared(1), Acquire::Absent);
        assert_eq!(m.unlock_shared(), Released::Held);
        assert_eq!(m.unpin(), Released::Freed);
        assert_eq!(kind(m.state()), FREE);
    }
}
