use std::collections::VecDeque;
use std::ops::Range;

use crate::sync::{Instant, Ordering};

use super::{take_completed, Check, Cursor, Engine, SubmittedRun, Took, WritebackHold};
use crate::backend::{Frame, IoWaiter};
use crate::error::{Error, Result};
use crate::page::{kind, Acquire, DIRTY, EXCLUSIVE, NO_PAGE, VALID, WRITEBACK};
use crate::policy::FrameId;
use crate::stats::Counter;
use crate::writeback::{clamp_count, PARALLEL_MIN, ROUND_BATCH, THROTTLE_SLICE};

impl Engine {
    // ---- range operations ---------------------------------------------------------------

    /// Resident pages in `pages` whose state word passes `filter`, sorted by page. Walks the
    /// range through the index when it is shorter than the frame table, else the frame table:
    /// the cost is bounded by the smaller of the two, never by the range alone.
    pub(crate) fn resident(
        &self,
        pages: Range<u64>,
        filter: impl Fn(u64) -> bool,
    ) -> Vec<(u64, FrameId)> {
        let mut out = Vec::new();
        if pages.start >= pages.end {
            return out;
        }
        if pages.end - pages.start <= self.frames.len() as u64 {
            let _g = self.index.lock();
            for key in pages {
                if let Some(f) = self.index.lookup(key, &self.frames) {
                    if filter(self.frames[f as usize].state()) {
                        out.push((key, f));
                    }
                }
            }
        } else {
            for (f, meta) in self.frames.iter().enumerate() {
                let key = meta.tag();
                if key != NO_PAGE && pages.contains(&key) && filter(meta.state()) {
                    out.push((key, f as FrameId));
                }
            }
            out.sort_unstable();
        }
        out
    }

    /// Writes back every page in `pages` that is dirty, in runs of contiguous pages. Runs are
    /// submitted without waiting (up to the backend's queue depth at once), so an asynchronous backend has
    /// several in flight; then they are waited for. Failures are recorded in the error sequence
    /// and leave their pages dirty; the first of this flush's own failures is returned.
    pub(crate) fn flush_pages(&self, pages: Range<u64>) -> Result<()> {
        let dirty = self.resident(pages, |s| kind(s) == VALID && s & (DIRTY | WRITEBACK) != 0);
        self.flush_list(&dirty, true)
    }

    /// Writes back the dirty pages of `dirty` (sorted by page) in runs. With `wait`, waits for
    /// pages that are busy (held, or under another write-back) and writes them if still dirty;
    /// without (the background flusher), skips them. Returns the first failure of its runs
    /// (every failure is also recorded in the error sequence).
    pub(crate) fn flush_list(&self, dirty: &[(u64, FrameId)], wait: bool) -> Result<()> {
        // Runs submitted before the flusher waits for the oldest: the backend's queue depth
        // (at least 1, at most 4096 — which bounds the `in_flight` queue).
        let in_flight_max = self.backend.geometry().queue_depth.clamp(1, 4096);
        let mut run: Vec<(u64, WritebackHold<'_>)> = Vec::with_capacity(self.max_io_pages);
        let mut in_flight: VecDeque<SubmittedRun<'_>> = Default::default();
        let mut first_failure: Result<()> = Ok(());
        let mut note = |r: Result<()>| {
            if first_failure.is_ok() {
                first_failure = r;
            }
        };
        let mut i = 0;
        // Bounded: each pass moves `i` on, or submits a run, or waits for a busy page's load,
        // writer or write-back to end (each of which makes progress without this thread).
        while i < dirty.len() {
            let (key, f) = dirty[i];
            let contiguous = run.last().is_none_or(|&(k, _)| k + 1 == key);
            if !contiguous || run.len() == self.max_io_pages {
                if in_flight.len() >= in_flight_max {
                    // Keep the queue full: finish whichever run completed first.
                    self.backend.unplug();
                    if let Some(r) = take_completed(&mut in_flight) {
                        note(self.complete_run(r));
                    }
                }
                in_flight.push_back(self.submit_run(&mut run));
                continue;
            }
            let mut begun = self.acquire_writeback(f, key);
            if matches!(begun, Took::Held(_)) && self.fenced_after_writeback_began(key) {
                // Its content may be from before a hole being punched under it: not now.
                if let Took::Held(h) = begun {
                    h.end(false);
                }
                if wait {
                    in_flight.push_back(self.submit_run(&mut run));
                    self.backend.unplug();
                    for r in in_flight.drain(..) {
                        note(self.complete_run(r));
                    }
                    self.fences.wait(key);
                    continue;
                }
                begun = Took::Not(Acquire::Wait);
            }
            match begun {
                Took::Held(h) => {
                    self.wb.in_flight_add(1);
                    run.push((key, h));
                    i += 1;
                }
                Took::Not(Acquire::Wait) if !wait => {
                    // The background flusher skips busy pages.
                    in_flight.push_back(self.submit_run(&mut run));
                    i += 1;
                }
                Took::Not(Acquire::Wait) => {
                    // Never wait while holding pages: write what we have first.
                    in_flight.push_back(self.submit_run(&mut run));
                    self.backend.unplug();
                    for r in in_flight.drain(..) {
                        note(self.complete_run(r));
                    }
                    if let Err(e) = self.wait_for(f, key, EXCLUSIVE | WRITEBACK) {
                        // This thread holds the page (a write guard): it stays dirty, and this
                        // flush fails rather than wait for itself.
                        note(Err(e));
                        i += 1;
                    }
                }
                Took::Not(_) => {
                    i += 1;
                }
            }
        }
        in_flight.push_back(self.submit_run(&mut run));
        self.backend.unplug();
        for r in in_flight.drain(..) {
            note(self.complete_run(r));
        }
        first_failure
    }

    /// True if page `key`, whose write-back this thread has just begun (`WRITEBACK` set), is
    /// fenced: the write-back must not go ahead. The full fence pairs with the one a fence's
    /// owner issues between raising it and looking for write-backs in flight: one of the two
    /// sees the other.
    pub(crate) fn fenced_after_writeback_began(&self, key: u64) -> bool {
        crate::sync::fence(Ordering::SeqCst);
        self.fences.covers(key)
    }

    /// Starts writing one run of pages that this thread holds under write-back (they stay under
    /// write-back until [`complete_run`](Self::complete_run)).
    pub(crate) fn submit_run<'e>(
        &'e self,
        run: &mut Vec<(u64, WritebackHold<'e>)>,
    ) -> SubmittedRun<'e> {
        let pages = std::mem::take(run);
        let Some(&(first, _)) = pages.first() else {
            return SubmittedRun {
                pages,
                waiter: Ok(IoWaiter::ready(Ok(())).into()),
            };
        };
        // Before the write can land: a page that later misses past the old end of the data is
        // read, not assumed zero (see `data_end`).
        let end = (first + pages.len() as u64) << self.page_shift;
        self.data_end.fetch_max(end, Ordering::AcqRel);
        let frames: Vec<Frame> = pages.iter().map(|(_, h)| h.lend_for_write()).collect();
        // Queued: `flush_list` unplugs before it waits for any run.
        let waiter = self.backend.start_write_pages_local(first, frames);
        SubmittedRun { pages, waiter }
    }

    /// Waits for a run started by [`submit_run`](Self::submit_run) and ends its write-back;
    /// returns the run's failure.
    pub(crate) fn complete_run(&self, submitted: SubmittedRun<'_>) -> Result<()> {
        let SubmittedRun { pages: run, waiter } = submitted;
        if run.is_empty() {
            return Ok(());
        }
        let result = waiter.and_then(|w| w.wait());
        self.counters.add(Counter::WritebackIos, 1);
        let ok = result.is_ok();
        if let Err(e) = &result {
            self.errseq.record(e);
            self.counters.add(Counter::WritebackErrors, 1);
        } else {
            self.counters.add(Counter::WritebackPages, run.len() as u64);
            self.counters
                .add(Counter::BytesWritten, (run.len() * self.page_size) as u64);
        }
        let pages = run.len();
        for (_, h) in run {
            h.end(ok);
        }
        self.wb.in_flight_add(-(pages as i64));
        result
    }

    /// The number of dirty pages. The counter is updated after the page's state word changes, so
    /// a write-back that cleans a page can decrement it before the writer that dirtied the page
    /// increments it: it may be transiently one below the truth per racing pair, wrapping below
    /// zero. Read it through here.
    pub(crate) fn dirty_now(&self) -> u64 {
        clamp_count(self.dirty_pages.load(Ordering::Acquire))
    }

    /// One flusher round: returns true if a write-back failed.
    pub(crate) fn writeback_round(&self) -> bool {
        let wb = &self.wb;
        wb.rounds.fetch_add(1, Ordering::Relaxed);
        wb.round_started();
        let errors_before = self.errseq.count();
        let mut dirty = self.resident(0..u64::MAX, |s| {
            kind(s) == VALID && s & DIRTY != 0 && s & WRITEBACK == 0
        });
        let (now, expire) = (wb.now_ticks(), wb.expire_ticks());
        // Over the background threshold in force (lowered to half the eviction distance, so
        // pages are written before they are evicted), or at the hard limit (they are equal,
        // one page, in tiny caches): write the pages dirtied longest ago until half the
        // threshold is left, as Linux writes the oldest first and stops below the threshold
        // (the margin keeps a busy writer from getting a round per page). A page rewritten
        // often stays dirty, so one write covers many of its rewrites. Expired pages are
        // written in any case.
        let background = wb.background_for(self.eviction_distance_pages());
        let d = self.dirty_now();
        let over = d > background || d >= wb.limit_pages;
        let oldest = if over {
            (d.saturating_sub(background / 2) as usize).min(dirty.len())
        } else {
            0
        };
        if oldest > 0 && oldest < dirty.len() {
            // Oldest first (largest age), then lowest page: the first `oldest` entries, in no
            // particular order. Many pages share a 10 ms tick; without the page tie-break the
            // cut through the last tick took an arbitrary subset of it, which broke a
            // sequential writer's runs into single pages (0.61x fio instead of 1.1x).
            dirty.select_nth_unstable_by_key(oldest - 1, |&(key, f)| {
                (std::cmp::Reverse(wb.age_ticks(f, now)), key)
            });
        }
        let mut pages: Vec<(u64, FrameId)> = dirty
            .iter()
            .enumerate()
            .filter(|&(i, &(_, f))| i < oldest || wb.age_ticks(f, now) >= expire)
            .map(|(_, &p)| p)
            .collect();
        // In page order again, so contiguous pages merge into runs.
        pages.sort_unstable();
        for batch in pages.chunks(ROUND_BATCH) {
            let _ = self.flush_list_parallel(batch, false);
            wb.ctl.progress.notify_all();
            if self.errseq.count() != errors_before {
                return true;
            }
            if wb.ctl.state.lock().stop {
                break;
            }
        }
        self.errseq.count() != errors_before
    }

    /// As `flush_pages`, split over up to `writeback_threads` threads.
    pub(crate) fn flush_pages_parallel(&self, pages: Range<u64>) -> Result<()> {
        let dirty = self.resident(pages, |s| kind(s) == VALID && s & (DIRTY | WRITEBACK) != 0);
        self.flush_list_parallel(&dirty, true)
    }

    /// Writes back `dirty` (sorted by page) in up to `writeback_threads` contiguous slices at
    /// once. Concurrent flushes of disjoint pages are safe (see the concurrency table in
    /// `cache.rs`); each slice still merges its contiguous pages into runs.
    pub(crate) fn flush_list_parallel(&self, dirty: &[(u64, FrameId)], wait: bool) -> Result<()> {
        // An asynchronous backend gets its queue depth from one thread's submissions; threads
        // would only add wake-ups (on 2 cores: 0.68x fio's random-write IOPS with 4 threads).
        let threads = if self.backend.geometry().queue_depth > 1 {
            1
        } else {
            self.wb.config.threads
        };
        // Tiny caches (tests) split tiny flushes too, so the simulation covers this path.
        let min = PARALLEL_MIN.min(self.wb.dirtied_at.len() / 4).max(2);
        // A caller that holds a page flushes alone: a helper thread would wait for its hold
        // without knowing it is the caller's (and the caller waits for the helper).
        if threads <= 1 || dirty.len() < min || super::hold::holds_any() {
            return self.flush_list(dirty, wait);
        }
        let per = dirty.len().div_ceil(threads).max(min / 2);
        // Cut only where `flush_list` would start a new I/O anyway (a gap between pages, or a
        // run reaching `max_io_pages`), so splitting never adds a backend write.
        let max = self.max_io_pages.max(1);
        let mut cuts: Vec<&[(u64, FrameId)]> = Vec::with_capacity(threads);
        let (mut start, mut run_len) = (0, 0);
        for i in 0..dirty.len() {
            let contiguous = i > 0 && dirty[i].0 == dirty[i - 1].0.wrapping_add(1);
            run_len = if contiguous { run_len + 1 } else { 1 };
            let new_io = !contiguous || (run_len - 1) % max == 0;
            if i - start >= per && new_io && cuts.len() + 1 < threads {
                cuts.push(&dirty[start..i]);
                start = i;
            }
        }
        cuts.push(&dirty[start..]);
        if cuts.len() == 1 {
            return self.flush_list(dirty, wait);
        }
        let mut chunks = cuts.into_iter();
        let first = chunks.next().unwrap_or(&[]);
        crate::sync::scope(|scope| {
            let mut helpers = Vec::with_capacity(threads);
            let mut result = Ok(());
            for chunk in chunks {
                let spawned = crate::sync::spawn_scoped(scope, "folio-writeback", move || {
                    self.flush_list(chunk, wait)
                });
                match spawned {
                    Ok(h) => helpers.push(h),
                    // No thread to be had: write this slice here.
                    Err(_) => result = result.and(self.flush_list(chunk, wait)),
                }
            }
            result = result.and(self.flush_list(first, wait));
            for h in helpers {
                // A panic in a helper is a bug; it is reported as a failed flush, not lost.
                let r = h.join().unwrap_or_else(|_| {
                    Err(Error::io(
                        crate::error::IoOp::Write,
                        0,
                        std::io::Error::other("a write-back thread panicked"),
                    ))
                });
                result = result.and(r);
            }
            result
        })
    }

    /// Hook at the start of a write call: waits while the dirty pages are at the hard limit
    /// (see the module docs for the bounds).
    pub(crate) fn balance_dirty(&self) {
        let wb = &self.wb;
        // Like Linux, pages under write-back count against the limit: they are not clean yet.
        let dirty = || self.dirty_now() + wb.in_flight.load(Ordering::Acquire);
        if dirty() < wb.limit_pages
            || !wb.ctl.running.load(Ordering::Relaxed)
            || wb.config.throttle_max_wait.is_zero()
        {
            return;
        }
        let started = Instant::now();
        let deadline = started + wb.config.throttle_max_wait;
        wb.throttle_waits.fetch_add(1, Ordering::Relaxed);
        loop {
            if dirty() < wb.limit_pages
                || wb.ctl.failing.load(Ordering::Acquire)
                || !wb.ctl.running.load(Ordering::Acquire)
            {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(
                    dirty = self.dirty_now(),
                    limit = wb.limit_pages,
                    "dirty throttling gave up waiting for the flusher"
                );
                break;
            }
            wb.kick();
            let st = wb.ctl.state.lock();
            if st.stop {
                break;
            }
            drop(
                wb.ctl
                    .progress
                    .wait_until(st, (now + THROTTLE_SLICE).min(deadline)),
            );
        }
        wb.throttled_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Writes back the dirty pages overlapping `range`, syncs the backend, and reports failures
    /// not yet seen by the observer `cursor`'s sync position.
    ///
    /// A failed backend sync is reported here and then *every* later sync fails too, with
    /// [`Error::DurabilityLost`]: the writes it should have made durable may never be (a
    /// file system may drop them and let the next `fsync` succeed, PostgreSQL's "fsyncgate"),
    /// and the cache cannot know which, so it never again says the data is durable. Reads and
    /// writes go on; reopening the backend (and checking the data) is the way back.
    pub(crate) fn sync_with(&self, range: &Range<u64>, cursor: &Cursor) -> Result<()> {
        // Everyone's write-back failures since this cursor's last sync reach it through the
        // error sequence; this call's own are returned even if another thread sharing the
        // cursor consumed their report meanwhile (the pages it was asked for are not durable).
        let own = self.flush_pages_parallel(self.pages_overlapping(range));
        // A shrink that could not cut the backend the second time left bytes past the end
        // there (see `shrink_locked`): a sync makes the cut durable too, or fails.
        let cut = self.cut_pending();
        {
            // One backend sync at a time, its failure recorded before the next starts: a sync
            // that succeeds right after another failed (which may have dropped the writes this
            // one covers) must see that failure, not report Ok.
            let _one = self.sync_lock.lock();
            if self.durability_lost.lock().is_none() {
                if let Err(e) = self.backend.sync() {
                    self.errseq.record(&e);
                    self.durability_lost.lock().get_or_insert(e);
                }
            }
        }
        self.counters.add(crate::stats::Counter::Syncs, 1);
        // The cursor moves first, so a failure reported here is not reported again.
        self.errseq.check(cursor, Check::Sync)?;
        own?;
        cut?;
        match &*self.durability_lost.lock() {
            Some(e) => Err(Error::DurabilityLost {
                source: Box::new(e.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Cuts the backend at the length if a shrink's cut failed (under the size lock, so no
    /// resize runs meanwhile); the cut's error if it fails again (the next sync retries).
    fn cut_pending(&self) -> Result<()> {
        if !self.truncate_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        let _g = self.size_lock.lock();
        if self.truncate_pending.load(Ordering::Acquire) {
            self.backend.set_len(self.len())?;
            self.truncate_pending.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// `close()`: flush, sync, stop the flusher; returns the first error not yet reported.
    /// On an error nothing is stopped: the caller gets the cache back to retry.
    pub(crate) fn close_with(&self, cursor: &Cursor) -> Result<()> {
        self.sync_with(&(0..u64::MAX), cursor)?;
        self.wb.stop();
        self.wb.closed.store(true, Ordering::Release);
        Ok(())
    }

    /// `Drop`: best effort flush and sync (unless closed), stop the flusher, log what failed.
    pub(crate) fn drop_with(&self, cursor: &Cursor) {
        if !self.wb.closed.load(Ordering::Acquire) {
            let r = self.sync_with(&(0..u64::MAX), cursor);
            if let Err(e) = r {
                let left = self.resident(0..u64::MAX, |s| kind(s) == VALID && s & DIRTY != 0);
                let sample: Vec<u64> = left.iter().take(16).map(|&(p, _)| p).collect();
                tracing::error!(
                    error = %e,
                    dirty_pages = left.len(),
                    first_pages = ?sample,
                    "page cache dropped with data it could not write back; use close() to see errors"
                );
            }
        }
        self.wb.stop();
    }
}
