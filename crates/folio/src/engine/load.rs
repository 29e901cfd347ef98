use std::time::Duration;

use crate::sync::Instant;

use crate::sync::Ordering;

use super::{Begun, Dirty, Engine, ExclusiveHold, Fill, FrameWait, Loaded, Loading, Submit};
use crate::backend::{FrameMut, IoWaiter, LocalIoWaiter};
use crate::error::{Error, Result};
use crate::page::{kind, DIRTY, EXCLUSIVE, FREE, LOADING, NO_PAGE, VALID, WRITEBACK};
use crate::policy::{Admission, FrameId};
use crate::stats::Counter;

/// Victims one eviction tries when their write-backs fail, before it gives up with the last
/// failure.
const VICTIM_TRIES: usize = 4;

impl Engine {
    // ---- loading and eviction -----------------------------------------------------------

    /// A frame held `EXCLUSIVE` in state `FREE`: from the free list, or by evicting a page.
    /// Waits up to `frame_wait_max` while every frame is held.
    pub(crate) fn alloc_frame(&self) -> Result<ExclusiveHold<'_>> {
        let started = Instant::now();
        let mut attempts = 0u32;
        // Bounded by `frame_wait_max`.
        loop {
            if let Some(h) = self.try_alloc_frame()? {
                return Ok(h);
            }
            if started.elapsed() >= self.frame_wait_max {
                return Err(Error::NoFreeFrame {
                    frames: self.frames.len(),
                });
            }
            attempts += 1;
            if attempts < 16 {
                crate::sync::yield_now();
            } else {
                crate::sync::sleep(Duration::from_micros(200));
            }
        }
    }

    /// As [`alloc_frame`](Self::alloc_frame), without waiting: `None` if every frame is held
    /// now. (Evicting a dirty victim still writes it back.)
    pub(crate) fn try_alloc_frame(&self) -> Result<Option<ExclusiveHold<'_>>> {
        // Bounded by the free list's length.
        while let Some(f) = self.free.lock().pop() {
            match self.acquire_free(f) {
                Some(h) => return Ok(Some(h)),
                None => debug_assert!(false, "frame {f} on the free list is not free"),
            }
        }
        self.evict_one()
    }

    /// Evicts one page chosen by the policy, writing it back first if dirty, and returns its
    /// frame, held and `FREE`. `Ok(None)` if no frame could be claimed; `Err` if the write-backs
    /// of [`VICTIM_TRIES`] victims failed (they stay cached, dirty).
    pub(crate) fn evict_one(&self) -> Result<Option<ExclusiveHold<'_>>> {
        let mut failure = None;
        // A victim whose write-back fails stays cached, dirty (the failure is recorded for the
        // syncs): another victim is tried, so that a read or write of another page does not
        // fail for it while clean or writable pages remain. Bounded by `VICTIM_TRIES`.
        for _ in 0..VICTIM_TRIES {
            let mut claimed: Option<ExclusiveHold<'_>> = None;
            let victim = self
                .policy
                .choose_victim(&mut |f| match self.acquire_unheld(f) {
                    Some(h) => {
                        claimed = Some(h);
                        true
                    }
                    None => false,
                });
            let Some(held) = claimed else {
                return failure.map_or(Ok(None), Err);
            };
            debug_assert_eq!(
                victim,
                Some(held.frame()),
                "the policy chose the frame it claimed"
            );
            let f = held.frame();
            let key = self.frames[f as usize].tag();
            if held.state() & DIRTY != 0 {
                match self.write_victim(f, key, &held) {
                    Ok(Victim::Clean) => self.write_behind(key),
                    Ok(Victim::Fenced) => return Ok(None),
                    Err(e) => {
                        failure = Some(e);
                        continue;
                    }
                }
            }
            {
                let mut g = self.index.lock();
                self.index.remove(&mut g, key, f, &self.frames);
            }
            held.set_state(EXCLUSIVE | FREE);
            held.set_tag(NO_PAGE);
            self.counters.add(Counter::Evictions, 1);
            // The caller puts a page in it, or frees it.
            return Ok(Some(held));
        }
        failure.map_or(Ok(None), Err)
    }

    /// After a dirty victim `key` had to be written alone: writes back the dirty pages that
    /// follow it (up to one I/O's worth), in runs, without waiting for any holder. A policy
    /// evicts in roughly the order pages came in, so under a stream of writes larger than the
    /// cache the next victims are these pages: written now in one I/O, they are clean when
    /// their turn comes, instead of each costing an I/O of one page (a 5% small queue evicts
    /// pages younger than the flusher's threshold: 63 MiB/s against fio's 2768 before this).
    /// Failures are recorded in the error sequence and leave the pages dirty.
    fn write_behind(&self, key: u64) {
        let Some(first) = key.checked_add(1) else {
            return;
        };
        let end = first.saturating_add(self.max_io_pages.max(1) as u64);
        let dirty = self.resident(first..end, |s| {
            kind(s) == VALID && s & DIRTY != 0 && s & WRITEBACK == 0
        });
        if !dirty.is_empty() {
            self.counters
                .add(Counter::WriteBehindPages, dirty.len() as u64);
            let _ = self.flush_list(&dirty, false);
        }
    }

    /// Writes back the dirty victim `key` in frame `f` (claimed by [`evict_one`]) under
    /// write-back, so that range operations wait for it as for any other write-back.
    /// `Fenced`: not written, given back to the policy (a hole is being punched under it).
    /// `Err`: the write failed, recorded; the page stays cached, dirty.
    fn write_victim(&self, f: FrameId, key: u64, held: &ExclusiveHold<'_>) -> Result<Victim> {
        held.set_writeback(true);
        // A discard may have orphaned the page between our claim and the line above (`orphan`
        // refuses only pages under write-back). Both are read-modify-writes of the state word,
        // so either the orphan came first and we see it now, or it comes after and waits for
        // this write. An orphan's bytes were discarded (and it is no longer dirty): writing
        // them would land after the hole or truncation that discarded them.
        if kind(held.state()) != VALID {
            held.set_writeback(false);
            return Ok(Victim::Clean);
        }
        if self.fenced_after_writeback_began(key) {
            // Not now: its bytes may be from before a hole being punched under it. Put it
            // back and let the caller try another frame.
            held.set_writeback(false);
            self.readmit(f, key);
            return Ok(Victim::Fenced);
        }
        self.wb.in_flight_add(1);
        self.counters.add(Counter::EvictionWritebacks, 1);
        self.wb.dirty_victim();
        let end = (key + 1) << self.page_shift;
        self.data_end.fetch_max(end, Ordering::AcqRel);
        let written = self.write_exclusive(key, held);
        if let Err(e) = &written {
            // Recorded while the page is still under write-back: a sync that waits for it sees
            // the failure.
            self.errseq.record(e);
            self.counters.add(Counter::WritebackErrors, 1);
        }
        held.set_writeback(false);
        self.wb.in_flight_add(-1);
        if let Err(e) = written {
            self.readmit(f, key);
            return Err(e);
        }
        held.clear_dirty();
        Ok(Victim::Clean)
    }

    /// Gives the policy back a victim that could not be evicted (held `EXCLUSIVE` by the
    /// caller), unless a discard orphaned it meanwhile (discard forgets pages in the policy
    /// under the index lock too).
    fn readmit(&self, f: FrameId, key: u64) {
        let _g = self.index.lock();
        if kind(self.frames[f as usize].state()) == VALID {
            self.policy.on_insert(f, key, Admission::Demand);
        }
    }

    /// Writes back the page `key` in `held`.
    pub(crate) fn write_exclusive(&self, key: u64, held: &ExclusiveHold<'_>) -> Result<()> {
        let result = self
            .backend
            .write_pages(key, vec![held.lend_for_write()])
            .and_then(|w| w.wait());
        self.counters.add(Counter::WritebackIos, 1);
        if result.is_ok() {
            self.counters.add(Counter::WritebackPages, 1);
            self.counters
                .add(Counter::BytesWritten, self.page_size as u64);
        }
        result
    }

    /// Loads page `p` and up to `run - 1` following absent pages with one backend read. Returns
    /// the first page's frame held `EXCLUSIVE` and valid, or `Present` if someone else had
    /// inserted `p` first. The first `demand` pages enter the policy as demanded, the rest as
    /// speculative (readahead).
    pub(crate) fn load(&self, p: u64, run: usize, fill: Fill, demand: usize) -> Result<Loaded<'_>> {
        match self.begin_load(p, run, fill, demand, Submit::Now, FrameWait::Wait)? {
            Begun::Loading(loading) => self.finish_load(loading).map(Loaded::Exclusive),
            Begun::Fenced => {
                self.fences.wait(p);
                Ok(Loaded::Present)
            }
            Begun::Present | Begun::NoFrame => Ok(Loaded::Present),
        }
    }

    /// The first half of [`load`](Self::load): claims frames for the run, publishes them in the
    /// index as loading (held `EXCLUSIVE`, so readers of these pages wait) and starts the read.
    /// `None` if page `p` was inserted by someone else first. The caller must pass the result to
    /// [`finish_load`](Self::finish_load), which releases the frames.
    pub(crate) fn begin_load(
        &self,
        p: u64,
        run: usize,
        fill: Fill,
        demand: usize,
        submit: Submit,
        wait: FrameWait,
    ) -> Result<Begun<'_>> {
        let npages = self.npages();
        let run = match fill {
            Fill::Zero | Fill::Overwrite => 1,
            Fill::Read => (run as u64)
                .min(npages.saturating_sub(p))
                .clamp(1, self.max_io_pages as u64) as usize,
        };
        let mut frames = Vec::with_capacity(run);
        match wait {
            FrameWait::Wait => frames.push(self.alloc_frame()?),
            FrameWait::NoWait => match self.try_alloc_frame()? {
                Some(h) => frames.push(h),
                None => return Ok(Begun::NoFrame),
            },
        }
        while frames.len() < run {
            // Extra pages of the run are best effort: stop at the first frame we cannot get.
            match self.try_alloc_frame() {
                Ok(Some(h)) => frames.push(h),
                _ => break,
            }
        }
        let mut n = 0;
        let mut fill = fill;
        {
            let mut g = self.index.lock();
            // Zeros only where the backend holds nothing else: a writer that decided on zeros
            // from the length it saw may have been overtaken by one that wrote this page and
            // had it written back and evicted meanwhile. Decided here, under the index lock,
            // which every write-back's page stays in until its write has been submitted.
            if fill == Fill::Zero && (p << self.page_shift) < self.data_end.load(Ordering::Acquire)
            {
                fill = Fill::Read;
            }
            for (i, h) in frames.iter().enumerate() {
                let key = p + i as u64;
                // A fence is raised before its owner scans the index under this lock: a load
                // either is in the index by then (and waited for), or sees the fence here.
                if self.index.lookup(key, &self.frames).is_some() || self.fences.covers(key) {
                    break;
                }
                h.set_tag(key);
                h.set_state(EXCLUSIVE | LOADING);
                self.index.insert(&mut g, key, h.frame());
                n += 1;
            }
        }
        for h in frames.drain(n..) {
            h.free();
        }
        if n == 0 {
            return Ok(if self.fences.covers(p) {
                Begun::Fenced
            } else {
                Begun::Present
            });
        }
        for (i, h) in frames.iter().enumerate() {
            let admission = if i < demand {
                Admission::Demand
            } else {
                Admission::Speculative
            };
            self.policy.on_insert(h.frame(), p + i as u64, admission);
        }
        let waiter = match fill {
            Fill::Zero => {
                frames[0].bytes_mut().fill(0);
                Ok(IoWaiter::ready(Ok(())).into())
            }
            Fill::Overwrite => Ok(IoWaiter::ready(Ok(())).into()),
            Fill::Read => {
                // Nobody else touches these frames' bytes until they are published valid after
                // the read, in `finish_load` (which checks the buffers came back).
                let bufs: Vec<FrameMut> = frames.iter_mut().map(|h| h.lend_for_read()).collect();
                self.counters.add(Counter::ReadIos, 1);
                match submit {
                    Submit::Now => self.backend.read_pages(p, bufs).map(LocalIoWaiter::from),
                    Submit::Queued => self.backend.start_read_pages_local(p, bufs),
                }
            }
        };
        Ok(Begun::Loading(Loading {
            p,
            frames,
            fill,
            waiter,
        }))
    }

    /// The second half of [`load`](Self::load): waits for the read, then publishes the pages as
    /// valid (the first one stays held `EXCLUSIVE` by the caller) or, if it failed, takes them
    /// out of the index again.
    pub(crate) fn finish_load<'e>(&'e self, loading: Loading<'e>) -> Result<ExclusiveHold<'e>> {
        let Loading {
            p,
            frames,
            fill,
            waiter,
        } = loading;
        let n = frames.len();
        let mut result = waiter.and_then(|w| w.wait());
        // Every writable handle lent to the read must have come back: a frame the backend may
        // still write into is never published nor reused.
        let kept = if fill == Fill::Read {
            frames
                .iter()
                .filter(|h| self.region.lent(h.frame() as usize) != 0)
                .count()
        } else {
            0
        };
        if kept > 0 {
            result = Err(Error::io(
                crate::error::IoOp::Read,
                p << self.page_shift,
                std::io::Error::other(format!(
                    "the backend kept {kept} read buffer(s) after completing the read; \
                     their frames are quarantined"
                )),
            ));
        }
        if fill == Fill::Read && result.is_ok() {
            self.counters
                .add(Counter::BytesRead, (n * self.page_size) as u64);
        }
        self.counters.add(Counter::Misses, 1);
        match result {
            Ok(()) => {
                let mut frames = frames.into_iter().enumerate();
                let mut first = None;
                for (i, mut h) in frames.by_ref() {
                    // Bytes past the cache's length are zero, whatever the backend returned
                    // (a shrink may not have cut it yet when this read ran).
                    self.zero_past_end(p + i as u64, &mut h);
                    h.set_state(EXCLUSIVE | VALID);
                    if i == 0 {
                        first = Some(h);
                    } else {
                        h.release(Dirty::No);
                    }
                }
                Ok(first.expect("a load has at least one page"))
            }
            Err(e) => {
                // Undo: nobody saw these pages valid. Waiters wake, find them gone, and retry.
                let mut g = self.index.lock();
                for (i, h) in frames.into_iter().enumerate() {
                    let f = h.frame();
                    self.index.remove(&mut g, p + i as u64, f, &self.frames);
                    self.policy.on_remove(f);
                    if self.region.lent(f as usize) == 0 {
                        h.free();
                    } else {
                        h.quarantine();
                    }
                }
                Err(e)
            }
        }
    }

    /// Takes frame `f` (held `EXCLUSIVE`, out of the index) out of use for good: a backend may
    /// still write into it. It stays held `EXCLUSIVE` and `FREE`, so nothing can take it
    /// (`take_free` needs it unheld, `claim` needs it valid), and is counted and logged. The
    /// list is bounded by the number of frames.
    pub(crate) fn quarantine(&self, f: FrameId) {
        let meta = &self.frames[f as usize];
        meta.clear_tag();
        meta.set_owned_state(EXCLUSIVE | FREE);
        let mut q = self.quarantined.lock();
        debug_assert!(!q.contains(&f) && q.len() < self.frames.len());
        q.push(f);
        tracing::error!(
            frame = f,
            quarantined = q.len(),
            frames = self.frames.len(),
            "a backend kept a read buffer after completing its read; the frame is quarantined"
        );
    }

    /// Loads the absent pages from `p` on (at most `run`, stopping at the first resident one) as
    /// speculative pages, with one backend read: readahead and `WillNeed`, on a worker thread.
    /// With `mark`, page `p` carries the `READAHEAD` marker, set before anyone can see it valid.
    pub(crate) fn prefetch(&self, p: u64, run: usize, mark: bool) -> Result<()> {
        if p >= self.npages()
            || self.index.lookup(p, &self.frames).is_some()
            || self.fences.covers(p)
        {
            return Ok(());
        }
        if let Loaded::Exclusive(h) = self.load(p, run, Fill::Read, 0)? {
            if mark {
                h.mark_readahead();
            }
            h.release(Dirty::No);
        }
        Ok(())
    }
}

/// What became of a dirty victim: see [`Engine::write_victim`].
enum Victim {
    /// Written back (or discarded meanwhile): the frame may be reused.
    Clean,
    /// Not written: a range operation's fence covers it.
    Fenced,
}
