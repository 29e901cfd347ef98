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
//! That is the whole soundness argument of the `unsafe` byte access in `engine/hold.rs`.
//!
//! # Files
//! - this file: the layout of the state word (its fields, and a const check that they are
//!   disjoint and cover all 64 bits), the masks derived from it, the outcomes of transitions
//!   (`Acquire`, `Released`, `Orphaned`, `Defer`), [`PageState`] and `state_assert!`;
//! - `meta.rs`: `FrameMeta`, a frame's tag and state word, and every transition of the word;
//! - `copy.rs`: the racy copy of optimistic reads, for each target;
//! - `tests.rs`: the unit tests of the transitions.
//!
//! # Owns
//! - what the bits of the state word mean (this file) and every transition of it (`meta.rs`).
//!
//! # Does not own
//! - which frame holds which page (the index), the free list, the dirty-page count and the hold
//!   tokens: the engine's.
//!
//! # May block
//! - only `FrameMeta::wait_while` (`meta.rs`), which parks until the word changes.

mod copy;
mod meta;
// Unit tests run on std's atomics only; `folio_model` is set by the model-checking crate,
// which compiles this file against shuttle's (usable only inside a shuttle test).
#[cfg(all(test, not(folio_model)))]
mod tests;

pub(crate) use copy::{copy_racy, copy_racy_any, OPTIMISTIC_READS};
pub(crate) use meta::FrameMeta;

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

pub(crate) fn readers(s: u64) -> u64 {
    s & READERS_MASK
}

pub(crate) fn kind(s: u64) -> u64 {
    s & KIND_MASK
}
