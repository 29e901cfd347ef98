//! The engine: frames, lookups, loads, eviction, byte I/O, range operations and write-back runs,
//! behind the [`PageCache`](crate::PageCache) facade.
//!
//! # Layers and files
//! The facade (`crate::cache`) checks arguments and calls the engine; the engine drives, and is
//! never called back by: `PageIndex` (page → frame, lock-free lookups), `FrameMeta` (one atomic
//! state word per frame, `page/`), [`EvictionPolicy`] (victim choice), [`PageCacheBackend`]
//! (I/O), `readahead/` and `writeback.rs` (which drive it through two small traits). One
//! `impl Engine` per concern: `hold.rs` (hold tokens: the only code here that touches frame
//! bytes unsafely), `load.rs` (frames, eviction, loads), `io.rs` (byte reads and writes),
//! `range.rs` (resize, zero, discard), `fence.rs` (ranges being zeroed), `flush.rs` (write-back
//! runs, flusher rounds, sync), `errseq.rs` (failure reporting), `verify.rs` (the invariant
//! checker); `new.rs` builds the engine, `types.rs` holds the small types these share.
//!
//! # Which operations may run concurrently, and what protects each pair
//! Every public method takes `&self` and may be called from any number of threads. The matrix
//! names, for each pair of operations on the *same* page (or range), the mechanism that makes
//! them safe; operations on different pages share only the index mutex (inserts, removals), the
//! free list and the counters. Operations:
//!
//! - **H**: optimistic hit (`read_at`/`read_exact_many` copying without a hold);
//! - **G**: held read (a read guard, `read_slices`, a hit that fell back, a pinned page's read);
//! - **W**: write (`write_at`, a write guard);
//! - **L**: load (a miss, a readahead or `WillNeed` job: pages `LOADING` until the read ends);
//! - **E**: eviction (claim, write a dirty victim back under `WRITEBACK`, remove);
//! - **F**: write-back (`flush_range`, `sync`'s flush, the background flusher);
//! - **P**: pin; **D**: discard; **Z**: `zero_range`; **S**: shrink (`resize` down);
//! - **X**: growth (an extending write, `resize` up); **Y**: backend sync.
//!
//! Mechanisms: `seq` — the sequence in the state word, moved by every acquisition of
//! `EXCLUSIVE`; an optimistic hit that sees it move (or the kind or tag change) falls back to a
//! hold. `cas` — holds taken by compare-and-swap on the state word: readers share, `EXCLUSIVE`
//! excludes everyone, a claim needs no holder. `idx` — the index mutex: one insertion per page,
//! removals. `wb` — the `WRITEBACK` bit: writers wait for it (stable pages) and re-dirty after;
//! no page becomes an orphan under it, so no write of a dropped page lands afterwards. `orph` —
//! a dropped page held by someone becomes an orphan: its holders keep the bytes they had, the
//! last one frees the frame. `fence` — `zero_range`'s fence (`fence.rs`): no load reads and no
//! write-back writes a page being zeroed. `size` — the size mutex (length changes and their
//! backend calls). `len` — the length is read again after the hold is taken. `dend` — zero-fill
//! of a new page decided under `idx` against `data_end`. `sync` — backend syncs one at a time,
//! their failure recorded first. `—` — nothing shared.
//!
//! |   | H | G | W | L | E | F | P | D | Z | S | X | Y |
//! |---|---|---|---|---|---|---|---|---|---|---|---|---|
//! | **H** | — | — | seq | seq | seq | — | — | seq | seq | seq, len | len | — |
//! | **G** |   | cas | cas | cas | cas | cas | cas | orph | orph | cas, orph | cas | cas |
//! | **W** |   |   | cas | idx, cas | cas | wb | cas | orph | fence | size, len | size | wb |
//! | **L** |   |   |   | idx | idx, cas | — | cas | cas | fence | len | dend | — |
//! | **E** |   |   |   |   | cas | wb | cas | wb | fence | wb | — | wb |
//! | **F** |   |   |   |   |   | wb | — | wb | fence, wb | wb, size | dend | wb, sync |
//! | **P** |   |   |   |   |   |   | cas | orph | orph | orph | — | — |
//! | **D** |   |   |   |   |   |   |   | idx | idx, wb | size, idx | size | wb |
//! | **Z** |   |   |   |   |   |   |   |   | fence | len | len | fence |
//! | **S** |   |   |   |   |   |   |   |   |   | size | size | wb |
//! | **X** |   |   |   |   |   |   |   |   |   |   | size | — |
//! | **Y** |   |   |   |   |   |   |   |   |   |   |   | sync |
//!
//! Waits: a thread waits only while it holds nothing but its own hold on the page it waits
//! *for* (never two holds while waiting for a third), and no lock is held across a wait for a
//! page holder. Two locks are held across waits for I/O that never waits for them: the size
//! mutex across backend length changes and, in a shrink, across the loads and write-backs of
//! the pages past the new end (`range.rs`); the sync lock across one backend sync. So there is
//! no lock-order cycle. Each row is checked by a test named in docs/design.md.

mod errseq;
mod fence;
mod flush;
mod free;
mod hold;
mod io;
mod load;
mod new;
mod range;
mod types;
mod verify;

pub(crate) use errseq::{Check, Cursor, ErrSeq};
pub(crate) use hold::{Dirty, ExclusiveHold, SharedHold, Took, WritebackHold};
pub(crate) use types::{
    checked_end, in_file, take_completed, Begun, DirtyCount, Extend, Fill, FrameWait, Loaded,
    Loading, Piece, Probe, Submit, SubmittedRun,
};
pub(crate) use verify::Held;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::{AtomicBool, AtomicU64, Instant, Mutex, Ordering};

use crate::backend::{PageCacheBackend, Region};
pub(crate) use crate::cpu::prefetch;
use crate::error::{Error, Result};
use crate::index::PageIndex;
use crate::page::{
    kind, Acquire, FrameMeta, DIRTY, EXCLUSIVE, LOADING, READERS_MASK, VALID, WRITEBACK,
    WRITER_WAITING,
};
use crate::policy::{EvictionPolicy, FrameId};
use crate::readahead::{Readahead, Waited};
use crate::stats::{Counter, Counters, Stats};
use crate::writeback::Writeback;

pub(crate) struct Engine {
    pub(crate) backend: Arc<dyn PageCacheBackend>,
    pub(crate) page_size: usize,
    pub(crate) page_shift: u32,
    pub(crate) frames: Box<[FrameMeta]>,
    pub(crate) region: Arc<Region>,
    pub(crate) index: PageIndex,
    pub(crate) free: Mutex<free::FreeFrames>,
    pub(crate) policy: Box<dyn EvictionPolicy>,
    pub(crate) len: AtomicU64,
    /// Serialises changes of the length (extending writes, resize) and the backend length
    /// calls that go with them. Held across `backend.set_len` and, in a shrink, across waiting
    /// for the loads and write-backs of the pages past the new end: none of those ever waits for
    /// this lock or for a page holder, so holding it there cannot deadlock (see `range.rs`).
    pub(crate) size_lock: Mutex<()>,
    /// A shrink could not cut the backend after the late writes of dropped pages landed: the
    /// backend may hold stale bytes past `len`, and the next extension must cut it first.
    pub(crate) truncate_pending: AtomicBool,
    /// The end of the bytes the backend may hold other than zeros: its length when the cache
    /// opened it, raised (before submission) by every write-back, lowered by a completed
    /// shrink. A new page that lies at or past it can be zero-filled instead of read.
    pub(crate) data_end: AtomicU64,
    pub(crate) errseq: ErrSeq,
    /// The cache's own error cursor (its `sync`, `flush_range`, ... and `close`).
    pub(crate) cursor: Cursor,
    /// The first failed backend sync: from then on no sync may return Ok, since the writes it
    /// should have made durable may be lost (Linux marks such pages clean; "fsyncgate").
    pub(crate) durability_lost: Mutex<Option<Error>>,
    /// Held across a backend sync (and the recording of its failure): syncs of the backend
    /// run one at a time. Nothing else takes it.
    pub(crate) sync_lock: Mutex<()>,
    /// Frames out of use for good (see [`Engine::quarantine`]); at most every frame.
    pub(crate) quarantined: Mutex<Vec<FrameId>>,
    /// Background work (a flusher round, a readahead job) holds this shared; the invariant
    /// checker takes it exclusive to see the cache at rest. Contended by nothing else.
    pub(crate) background: crate::sync::RwLock<()>,
    /// Page ranges no load may read and no write-back may write now (see `fence.rs`).
    pub(crate) fences: fence::Fences,
    pub(crate) counters: Counters,
    pub(crate) dirty_pages: AtomicU64,
    pub(crate) max_io_pages: usize,
    pub(crate) frame_wait_max: Duration,
    pub(crate) readahead: Readahead,
    pub(crate) wb: Writeback,
}

impl Engine {
    pub(crate) fn page_mask(&self) -> u64 {
        self.page_size as u64 - 1
    }

    pub(crate) fn len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    pub(crate) fn npages(&self) -> u64 {
        self.len().div_ceil(self.page_size as u64)
    }

    pub(crate) fn check_page(&self, idx: u64) -> Result<()> {
        let npages = self.npages();
        if idx >= npages {
            let ps = self.page_size as u64;
            return Err(Error::OutOfRange {
                start: idx.saturating_mul(ps),
                end: idx.saturating_add(1).saturating_mul(ps),
                size: self.len(),
            });
        }
        Ok(())
    }

    /// Pages that overlap the byte range.
    pub(crate) fn pages_overlapping(&self, range: &Range<u64>) -> Range<u64> {
        if range.start >= range.end {
            return 0..0;
        }
        let first = range.start >> self.page_shift;
        let last = (range.end - 1) >> self.page_shift;
        first..last + 1
    }

    /// The address of frame `f`'s bytes. Dereferencing it is up to the caller (see `bytes`); a
    /// frame id that is not `< frames` gives a dangling pointer, never undefined behaviour here.
    #[inline]
    pub(crate) fn frame_ptr(&self, f: FrameId) -> *mut u8 {
        self.region
            .base()
            .wrapping_add((f as usize) << self.page_shift)
    }

    /// Returns a frame nobody else holds to the free list.
    pub(crate) fn push_free(&self, f: FrameId) {
        let meta = &self.frames[f as usize];
        meta.clear_tag();
        meta.set_free();
        self.free.lock().push(f);
    }

    /// Turns [`Acquire::Stray`] (a mistaken hold whose release freed the frame) into `Absent`,
    /// returning the frame to the free list.
    pub(crate) fn settle(&self, f: FrameId, a: Acquire) -> Acquire {
        if a == Acquire::Stray {
            self.push_free(f);
            return Acquire::Absent;
        }
        a
    }

    /// Releases the `EXCLUSIVE` hold on `f` (through its token, `ExclusiveHold`).
    pub(crate) fn unlock_exclusive(&self, f: FrameId, dirty: Dirty) {
        let dirty = dirty == Dirty::Yes;
        if dirty && self.frames[f as usize].state() & DIRTY == 0 {
            // DIRTY cannot change while we hold the frame exclusive.
            self.wb.on_dirtied(f);
        }
        let (newly_dirty, r) = self.frames[f as usize].unlock_exclusive(dirty);
        if newly_dirty {
            self.count_dirty(DirtyCount::Dirtied);
        }
        self.released(f, r);
    }

    /// The one place the dirty-page counter changes: by +1 when a page becomes dirty, -1 when
    /// it stops being dirty (write-back began, eviction wrote it, discard dropped it). The
    /// counter follows the state words, so it may be transiently "negative" (wrapping) when a
    /// decrement overtakes the increment of a racing pair (see `dirty_now`); at rest it equals
    /// the dirty frames (`check_invariants`).
    pub(crate) fn count_dirty(&self, change: DirtyCount) {
        match change {
            DirtyCount::Dirtied => {
                let n = self
                    .dirty_pages
                    .fetch_add(1, Ordering::AcqRel)
                    .wrapping_add(1);
                self.wb.after_dirtied(
                    crate::writeback::clamp_count(n),
                    || self.policy.eviction_window() as u64,
                    || self.free.lock().len() as u64,
                );
            }
            DirtyCount::Restored => {
                self.dirty_pages.fetch_add(1, Ordering::AcqRel);
            }
            DirtyCount::Cleaned => {
                self.dirty_pages.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    // ---- lookups ------------------------------------------------------------------------

    /// Waits while page `key` in frame `f` is loading or has one of the `blocking` bits. Fails
    /// with `HeldByCaller` instead of waiting for a hold of this thread's own (see
    /// [`waits_for_itself`](Self::waits_for_itself)).
    pub(crate) fn wait_for(&self, f: FrameId, key: u64, blocking: u64) -> Result<()> {
        let meta = &self.frames[f as usize];
        if self.waits_for_itself(f, blocking) {
            return Err(Error::HeldByCaller { page: key.into() });
        }
        let busy = |s: u64| {
            meta.tag() == key && (kind(s) == LOADING || (kind(s) == VALID && s & blocking != 0))
        };
        if !hold::holds_any() {
            // Holding nothing, this thread is in no cycle: the holders it waits for finish.
            meta.wait_while(busy);
            return Ok(());
        }
        // Holding a page, it may be in a cycle with the holder it waits for (that holder
        // waiting for our page, or a hold of ours past the tracked ones): a wait for another
        // hold (not for a load or a write-back, which end on their own) is bounded by
        // `frame_wait_max`. Bounded by that deadline and by loads and write-backs.
        let deadline = Instant::now() + self.frame_wait_max;
        loop {
            let s = meta.state();
            if !busy(s) {
                return Ok(());
            }
            if kind(s) == VALID && held_against(s, blocking) && Instant::now() >= deadline {
                return Err(Error::WouldDeadlock { page: key.into() });
            }
            // Returns at the latest after a re-check interval.
            meta.wait_while(busy);
        }
    }

    /// True if waiting for frame `f` to lose the `blocking` bits would wait for a hold this
    /// thread has: its `EXCLUSIVE` (no other holder can have it while we hold the frame), or,
    /// when readers block, its reader hold. (A write-back or a writer's announcement alone
    /// ends without us: a thread that holds a page never defers to writers.)
    pub(crate) fn waits_for_itself(&self, f: FrameId, blocking: u64) -> bool {
        if !hold::held_here(self, f) {
            return false;
        }
        let s = self.frames[f as usize].state();
        held_against(s, blocking)
    }

    /// A reader hold on page `p`, loading it (and up to `run` following absent pages) on a miss.
    #[inline]
    pub(crate) fn get_shared(&self, p: u64, run: usize) -> Result<SharedHold<'_>> {
        self.get_shared_prefetch(p, run, 0..0)
    }

    /// As [`get_shared`](Self::get_shared), prefetching the bytes `want` of the page on a hit
    /// (see [`try_shared`](Self::try_shared)).
    #[inline]
    pub(crate) fn get_shared_prefetch(
        &self,
        p: u64,
        run: usize,
        want: Range<usize>,
    ) -> Result<SharedHold<'_>> {
        self.get_shared_waited(p, run, want).map(|(h, _)| h)
    }

    /// As [`get_shared_prefetch`](Self::get_shared_prefetch); also says whether the caller
    /// had to wait for the page (a load, its own or another's, was under way or needed).
    pub(crate) fn get_shared_waited(
        &self,
        p: u64,
        run: usize,
        want: Range<usize>,
    ) -> Result<(SharedHold<'_>, Waited)> {
        let mut waited = Waited::No;
        // Bounded: each pass takes the hold, waits for the page's loader or writer, or loads it.
        loop {
            match self.try_shared(p, want.clone()) {
                Probe::Held(h) => return Ok((h, waited)),
                Probe::Busy(f) => {
                    // A loader or a writer holds it, or a writer waits for it: readers wait
                    // only for that writer, not for other readers.
                    waited = Waited::Yes;
                    self.wait_for(f, p, EXCLUSIVE | WRITER_WAITING)?;
                    continue;
                }
                Probe::Saturated => return Err(Error::TooManyHolds { page: p.into() }),
                Probe::Absent => {}
            }
            let plan = self.readahead.on_miss(p, run, self.npages());
            waited = Waited::Yes;
            let loaded = self.load(p, plan.run.max(run), Fill::Read, run)?;
            self.readahead.dispatch(plan.jobs, false);
            match loaded {
                Loaded::Exclusive(h) => return Ok((h.downgrade(), waited)),
                Loaded::Present => continue,
            }
        }
    }

    /// The exclusive hold on page `p`; on a miss fills a new frame as `fill` says.
    pub(crate) fn get_exclusive(
        &self,
        p: u64,
        fill: Fill,
        run: usize,
    ) -> Result<ExclusiveHold<'_>> {
        // Bounded: each pass takes the hold, waits for its holders, or loads the page.
        loop {
            if let Some(f) = self.index.lookup(p, &self.frames) {
                match self.acquire_exclusive(f, p, false) {
                    Took::Held(h) => {
                        self.policy.on_hit(f);
                        self.counters.add(Counter::Hits, 1);
                        return Ok(h);
                    }
                    // (An exclusive hold is never "saturated"; wait as for any holder.)
                    Took::Not(Acquire::Wait | Acquire::Saturated) => {
                        // New readers defer to us while we wait for the current ones.
                        self.frames[f as usize].announce_writer();
                        self.wait_for(f, p, EXCLUSIVE | READERS_MASK | WRITEBACK)?;
                        continue;
                    }
                    Took::Not(_) => {}
                }
            }
            match self.load(p, run, fill, usize::MAX)? {
                Loaded::Exclusive(h) => return Ok(h),
                Loaded::Present => continue,
            }
        }
    }

    /// A pin on page `p` (loading it on a miss): the frame stays resident until the pin is
    /// dropped. Pins give no access to the bytes, so they are counted, not tokens.
    pub(crate) fn get_pinned(&self, p: u64) -> Result<FrameId> {
        loop {
            if let Some(f) = self.index.lookup(p, &self.frames) {
                match self.settle(f, self.frames[f as usize].pin(p)) {
                    Acquire::Acquired => {
                        self.policy.on_hit(f);
                        self.counters.add(Counter::Hits, 1);
                        return Ok(f);
                    }
                    Acquire::Wait => {
                        self.wait_for(f, p, EXCLUSIVE)?;
                        continue;
                    }
                    Acquire::Saturated => return Err(Error::TooManyHolds { page: p.into() }),
                    Acquire::Absent | Acquire::Stray => {}
                }
            }
            if let Loaded::Exclusive(h) = self.load(p, 1, Fill::Read, usize::MAX)? {
                h.pin();
                let f = h.frame();
                drop(h);
                return Ok(f);
            }
        }
    }

    pub(crate) fn check_errors(&self) -> Result<()> {
        self.errseq.check(&self.cursor, Check::Flush)
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let free = self.free.lock().len() + self.quarantined.lock().len();
        let mut st = Stats {
            hits: c.get(Counter::Hits),
            misses: c.get(Counter::Misses),
            evictions: c.get(Counter::Evictions),
            eviction_writebacks: c.get(Counter::EvictionWritebacks),
            write_behind_pages: c.get(Counter::WriteBehindPages),
            read_ios: c.get(Counter::ReadIos),
            writeback_ios: c.get(Counter::WritebackIos),
            writeback_pages: c.get(Counter::WritebackPages),
            writeback_errors: c.get(Counter::WritebackErrors),
            syncs: c.get(Counter::Syncs),
            read_bytes: c.get(Counter::BytesRead),
            writeback_bytes: c.get(Counter::BytesWritten),
            read_calls: c.get(Counter::ReadCalls),
            write_calls: c.get(Counter::WriteCalls),
            dirty_pages: self.dirty_now(),
            resident_pages: (self.frames.len() - free) as u64,
            capacity_pages: self.frames.len() as u64,
            quarantined_frames: self.quarantined.lock().len() as u64,
            readahead_dropped: self.readahead.dropped(),
            ..Stats::default()
        };
        self.wb.fill_stats(&mut st);
        st.dirty_background_now_pages = self.wb.background_for(self.eviction_distance_pages());
        st
    }

    /// Pages that may come in, at the least, before a page dirtied now can be evicted: the
    /// free frames, then the policy's eviction window. The flusher starts under half of it
    /// (`Writeback::background_for`).
    pub(crate) fn eviction_distance_pages(&self) -> u64 {
        let free = self.free.lock().len() as u64;
        free.saturating_add(self.policy.eviction_window() as u64)
    }
}

/// True if state word `s` has a hold that a wait for the `blocking` bits waits for: an
/// `EXCLUSIVE` holder, or readers when readers block.
fn held_against(s: u64, blocking: u64) -> bool {
    s & EXCLUSIVE != 0 || (blocking & READERS_MASK != 0 && s & READERS_MASK != 0)
}
