use std::collections::VecDeque;
use std::ops::Range;

use super::{
    checked_end, in_file, prefetch, take_completed, Begun, Dirty, Engine, ExclusiveHold, Extend,
    Fill, FrameWait, Loading, Piece, Probe, SharedHold, Submit, Took,
};
use crate::error::{Error, Result};
use crate::page::{Acquire, READAHEAD};
use crate::policy::FrameId;
use crate::stats::Counter;

impl Engine {
    // ---- byte I/O -----------------------------------------------------------------------

    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        checked_end(offset, buf.len())?;
        let size = self.len();
        if buf.is_empty() || offset >= size {
            return Ok(0);
        }
        let total = (size - offset).min(buf.len() as u64) as usize;
        let mut done = 0;
        while done < total {
            let pos = offset + done as u64;
            let p = pos >> self.page_shift;
            let in_page = (pos & self.page_mask()) as usize;
            let n = (self.page_size - in_page).min(total - done);
            if self.try_copy_optimistic(p, in_page, &mut buf[done..done + n]) {
                done += n;
                continue;
            }
            let pages_left = (total - done).div_ceil(self.page_size);
            let (held, waited) = self.get_shared_waited(p, pages_left, in_page..in_page + n)?;
            // A truncation may have run since `size` was read, and the page been loaded again
            // past the new end (as zeros): return nothing past the end as of now, which we read
            // after taking the hold (Linux re-checks i_size after the page is up to date for
            // the same reason). Found by the truncate model in crates/folio-shuttle.
            let now = self.len();
            if pos >= now {
                break;
            }
            let n = n.min((now - pos) as usize);
            let meta = &self.frames[held.frame() as usize];
            if meta.state() & READAHEAD != 0 && meta.take_readahead_mark() {
                // A readahead marker: start the next window in the background.
                let jobs = self.readahead.on_marker(p, self.npages(), waited);
                self.readahead.dispatch(jobs, false);
            }
            buf[done..done + n].copy_from_slice(&held.bytes()[in_page..in_page + n]);
            drop(held);
            done += n;
        }
        self.counters.add(Counter::ReadCalls, 1);
        Ok(done)
    }

    /// [`PageCache::read_exact_many`](crate::PageCache::read_exact_many), whose caller has checked the ranges.
    pub(crate) fn read_many(&self, reads: &mut [(u64, &mut [u8])]) -> Result<()> {
        let depth = self
            .backend
            .geometry()
            .queue_depth
            .min(self.frames.len() / 2)
            .clamp(1, 4096);
        let mut in_flight: VecDeque<(Loading<'_>, Piece)> = VecDeque::with_capacity(depth);
        // Pieces for the blocking path: their page is busy (being loaded, by someone else or
        // by this batch), or the file shrank under them.
        let mut deferred: Vec<Piece> = Vec::new();
        let mut failed: Option<Error> = None;
        'reads: for read in 0..reads.len() {
            let (offset, len) = (reads[read].0, reads[read].1.len());
            let mut at = 0;
            while at < len {
                let pos = offset + at as u64;
                let p = pos >> self.page_shift;
                let n = (self.page_size - (pos & self.page_mask()) as usize).min(len - at);
                let piece = Piece { read, at, pos, n };
                at += n;
                let in_page = (pos & self.page_mask()) as usize;
                if self.try_copy_optimistic(p, in_page, &mut reads[read].1[piece.at..at]) {
                    continue;
                }
                match self.try_shared(p, in_page..in_page + n) {
                    Probe::Held(h) => self.copy_piece(h, piece, reads, &mut deferred),
                    // The blocking path waits for the page, or reports too many holders.
                    Probe::Busy(_) | Probe::Saturated => deferred.push(piece),
                    Probe::Absent => {
                        if in_flight.len() >= depth {
                            // Keep `depth` in flight: finish one load (the first to complete),
                            // then start the next at once. (Finishing half the window at a time,
                            // in bursts, left the device at 16 to 32 outstanding; holding
                            // refills back until this thread would block measured ~10% slower.)
                            self.backend.unplug();
                            if let Some((loading, pc)) = take_completed(&mut in_flight) {
                                if let Err(e) = self.finish_piece(loading, pc, reads, &mut deferred)
                                {
                                    failed = Some(e);
                                    break 'reads;
                                }
                            }
                        }
                        // Never wait for a frame while holding loads of our own: the frames
                        // we wait for may be exactly those. Finish one of ours instead.
                        // Bounded: each pass starts a load, or finishes one of ours, or (none
                        // left) waits for a frame like a lone read.
                        let begun = loop {
                            let wait = if in_flight.is_empty() {
                                FrameWait::Wait
                            } else {
                                FrameWait::NoWait
                            };
                            match self.begin_load(p, 1, Fill::Read, 1, Submit::Queued, wait) {
                                Ok(Begun::NoFrame) => {
                                    self.backend.unplug();
                                    if let Some((loading, pc)) = take_completed(&mut in_flight) {
                                        let r =
                                            self.finish_piece(loading, pc, reads, &mut deferred);
                                        if let Err(e) = r {
                                            break Err(e);
                                        }
                                    }
                                }
                                other => break other,
                            }
                        };
                        match begun {
                            Ok(Begun::Loading(loading)) => in_flight.push_back((loading, piece)),
                            // The blocking path waits for a fence.
                            Ok(Begun::Present | Begun::NoFrame | Begun::Fenced) => {
                                deferred.push(piece)
                            }
                            Err(e) => {
                                failed = Some(e);
                                break 'reads;
                            }
                        }
                    }
                }
            }
        }
        // Every load started is finished, failure or not: its frames are held until then.
        self.backend.unplug();
        for (loading, pc) in in_flight.drain(..) {
            let r = self.finish_piece(loading, pc, reads, &mut deferred);
            if let (Err(e), None) = (r, &failed) {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        for pc in deferred {
            let buf = &mut reads[pc.read].1[pc.at..pc.at + pc.n];
            if self.read_at(buf, pc.pos)? < pc.n {
                // Truncated concurrently.
                return Err(Error::OutOfRange {
                    start: pc.pos,
                    end: pc.pos + pc.n as u64,
                    size: self.len(),
                });
            }
        }
        self.counters.add(Counter::ReadCalls, reads.len() as u64);
        Ok(())
    }

    /// A hit without a hold: copies `dst.len()` bytes at `in_page` of page `p` into `dst` if the
    /// page is cached, valid and stays untouched during the copy (an optimistic read, see
    /// [`crate::page`]), and the file still covers them. False if not; `dst` then holds garbage
    /// and the caller takes the locked path, which also handles every rarer case (readahead
    /// markers, a page being loaded or written, a truncation under way).
    #[inline(always)]
    pub(crate) fn try_copy_optimistic(&self, p: u64, in_page: usize, dst: &mut [u8]) -> bool {
        if !crate::page::OPTIMISTIC_READS {
            return false;
        }
        // Callers pass a piece of one page; the copy below relies on it, so check it always.
        debug_assert!(in_page + dst.len() <= self.page_size);
        if in_page + dst.len() > self.page_size {
            return false;
        }
        let found = self.index.lookup_then(p, &self.frames, |f| {
            prefetch(self.frame_ptr(f).wrapping_add(in_page), dst.len());
        });
        let Some(f) = found else {
            return false;
        };
        let meta = &self.frames[f as usize];
        let Some(begin) = meta.optimistic_begin(p) else {
            return false;
        };
        // As in the locked path, the length is read after the page was seen valid: a page
        // loaded again after a truncation may lie past the new end.
        let end = (p << self.page_shift) + (in_page + dst.len()) as u64;
        if end > self.len() {
            return false;
        }
        // SAFETY: frame `f`'s bytes are mapped for the cache's life and `in_page + len` is
        // within the page (checked above).
        unsafe { crate::page::copy_racy(self.frame_ptr(f).wrapping_add(in_page), dst) };
        if !meta.optimistic_end(begin) {
            return false;
        }
        self.policy.on_hit(f);
        self.counters.add(Counter::Hits, 1);
        true
    }

    /// The end of the slice `offset .. offset + len` if it lies within one page and within a
    /// file of `size` bytes (the checks of [`PageCache::read_slice`](crate::PageCache::read_slice)).
    pub(crate) fn check_slice(&self, offset: u64, len: usize, size: u64) -> Result<u64> {
        let end = checked_end(offset, len)?;
        if (offset & self.page_mask()) as usize + len > self.page_size {
            return Err(Error::CrossesPage {
                offset,
                len,
                page_size: self.page_size,
            });
        }
        in_file(offset, end, size)?;
        Ok(end)
    }

    /// A reader hold on page `p` if it is cached and nobody holds it exclusively (a hit); never
    /// waits and never loads. The CPU is asked to start loading the bytes `want` of the page as
    /// soon as its frame is known from the index, so that their cache misses overlap the one on
    /// the frame's state word instead of following it. Always inlined: it is the hit path.
    #[inline(always)]
    pub(crate) fn try_shared(&self, p: u64, want: Range<usize>) -> Probe<'_> {
        let found = self.index.lookup_then(p, &self.frames, |f| {
            prefetch(self.frame_ptr(f).wrapping_add(want.start), want.len());
        });
        match found {
            Some(f) => self.hold_found(f, p),
            None => Probe::Absent,
        }
    }

    /// A reader hold on page `p` in frame `f`, where a lookup found it (a hit, counted), if the
    /// frame still holds `p` and nobody holds it exclusively. Always inlined: the hit path.
    #[inline(always)]
    pub(crate) fn hold_found(&self, f: FrameId, p: u64) -> Probe<'_> {
        match self.acquire_shared(f, p, false) {
            Took::Held(h) => {
                self.policy.on_hit(f);
                self.counters.add(Counter::Hits, 1);
                Probe::Held(h)
            }
            Took::Not(Acquire::Wait) => Probe::Busy(f),
            Took::Not(Acquire::Saturated) => Probe::Saturated,
            Took::Not(_) => Probe::Absent,
        }
    }

    /// Copies `piece` out of the page `held` (released here), or defers it if the file no
    /// longer covers it.
    pub(crate) fn copy_piece(
        &self,
        held: SharedHold<'_>,
        piece: Piece,
        reads: &mut [(u64, &mut [u8])],
        deferred: &mut Vec<Piece>,
    ) {
        // As in `read_at`: the length is read after the hold is taken.
        if piece.pos + piece.n as u64 > self.len() {
            deferred.push(piece);
            return;
        }
        let in_page = (piece.pos & self.page_mask()) as usize;
        reads[piece.read].1[piece.at..piece.at + piece.n]
            .copy_from_slice(&held.bytes()[in_page..in_page + piece.n]);
    }

    /// Finishes the load of `piece`'s page and copies the piece out.
    pub(crate) fn finish_piece(
        &self,
        loading: Loading<'_>,
        piece: Piece,
        reads: &mut [(u64, &mut [u8])],
        deferred: &mut Vec<Piece>,
    ) -> Result<()> {
        let held = self.finish_load(loading)?.downgrade();
        self.copy_piece(held, piece, reads, deferred);
        Ok(())
    }

    pub(crate) fn extend_to(&self, end: u64) -> Result<()> {
        let _g = self.size_lock.lock();
        if end > self.len() {
            self.grow_locked(end)?;
        }
        Ok(())
    }

    /// Zeroes the bytes of page `p` (held in `held`) that lie past the end of the file,
    /// keeping "cached bytes past the end are zero" true under concurrent truncation.
    pub(crate) fn zero_past_end(&self, p: u64, held: &mut ExclusiveHold<'_>) {
        let len = self.len();
        let start = p << self.page_shift;
        let end = start + self.page_size as u64;
        if end > len {
            let from = len.saturating_sub(start) as usize;
            held.bytes_mut()[from..].fill(0);
        }
    }

    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        self.write_bytes(buf, offset, Extend::Yes)
    }

    /// Writes `buf` at `offset`, growing the file (`Extend::Yes`) or cutting the write at its
    /// end (`Extend::No`, for zeroing, which must never grow a file a shrink just cut). Returns
    /// the bytes written.
    pub(crate) fn write_bytes(&self, buf: &[u8], offset: u64, extend: Extend) -> Result<usize> {
        let end = checked_end(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(0);
        }
        self.balance_dirty();
        let buf = match extend {
            Extend::Yes => {
                if end > self.len() {
                    self.extend_to(end)?;
                }
                buf
            }
            Extend::No => {
                let len = self.len();
                if offset >= len {
                    return Ok(0);
                }
                &buf[..buf.len().min((len - offset) as usize)]
            }
        };
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let p = pos >> self.page_shift;
            let in_page = (pos & self.page_mask()) as usize;
            let n = (self.page_size - in_page).min(buf.len() - done);
            // A wish: `begin_load` zero-fills only if the backend holds nothing there, decided
            // under the index lock.
            let fill = if n == self.page_size {
                Fill::Overwrite
            } else if in_page == 0 && pos + n as u64 >= self.len() {
                Fill::Zero
            } else {
                Fill::Read
            };
            let mut held = self.get_exclusive(p, fill, 1)?;
            held.bytes_mut()[in_page..in_page + n].copy_from_slice(&buf[done..done + n]);
            self.zero_past_end(p, &mut held);
            held.release(Dirty::Yes);
            done += n;
        }
        self.counters.add(Counter::WriteCalls, 1);
        Ok(buf.len())
    }
}
