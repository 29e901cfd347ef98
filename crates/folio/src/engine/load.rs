use std::time::Duration;

use crate::sync::Instant;

use crate::sync::Ordering;

use super::{Begun, Engine, Fill, FrameWait, Loaded, Loading, Submit};
use crate::backend::{Frame, FrameMut, IoWaiter, LocalIoWaiter};
use crate::error::{Error, Result};
use crate::page::{kind, DIRTY, EXCLUSIVE, FREE, LOADING, NO_PAGE, VALID};
use crate::policy::{Admission, FrameId};
use crate::stats::Counter;

impl Engine {
    // ---- loading and eviction -----------------------------------------------------------

    /// A frame held `EXCLUSIVE` in state `FREE`: from the free list, or by evicting a page.
    /// Waits up to `frame_wait_max` while every frame is held.
    pub(crate) fn alloc_frame(&self) -> Result<FrameId> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            if let Some(f) = self.try_alloc_frame()? {
                return Ok(f);
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
    pub(crate) fn try_alloc_frame(&self) -> Result<Option<FrameId>> {
        while let Some(f) = self.free.lock().pop() {
            if self.frames[f as usize].take_free() {
                return Ok(Some(f));
            }
            debug_assert!(false, "frame {f} on the free list is not free");
        }
        self.evict_one()
    }

    /// Evicts one page chosen by the policy, writing it back first if dirty. `Ok(None)` if no
    /// frame could be claimed; `Err` if the victim's write-back failed (it stays cached, dirty).
    pub(crate) fn evict_one(&self) -> Result<Option<FrameId>> {
        let Some(f) = self
            .policy
            .choose_victim(&mut |f| self.frames[f as usize].claim())
        else {
            return Ok(None);
        };
        let meta = &self.frames[f as usize];
        let key = meta.tag();
        if meta.state() & DIRTY != 0 {
            // Under write-back while the write is in flight, so that range operations wait
            // for it as for any other write-back.
            meta.set_writeback_owned(true);
            if self.fenced_after_writeback_began(key) {
                // Not now: its bytes may be from before a hole being punched under it. Put it
                // back and let the caller try another frame.
                meta.set_writeback_owned(false);
                self.readmit(f, key);
                self.unlock_exclusive(f, false);
                return Ok(None);
            }
            self.wb.in_flight_add(1);
            let end = (key + 1) << self.page_shift;
            self.data_end.fetch_max(end, Ordering::AcqRel);
            let written = self.write_exclusive(key, f);
            if let Err(e) = &written {
                // Recorded while the page is still under write-back: a sync that waits for it
                // sees the failure.
                self.errseq.record(e);
                self.counters.add(Counter::WritebackErrors, 1);
            }
            meta.set_writeback_owned(false);
            self.wb.in_flight_add(-1);
            if let Err(e) = written {
                self.readmit(f, key);
                self.unlock_exclusive(f, false);
                return Err(e);
            }
            if meta.clear_dirty_owned() {
                self.dirty_pages.fetch_sub(1, Ordering::AcqRel);
            }
        }
        {
            let mut g = self.index.lock();
            self.index.remove(&mut g, key, f, &self.frames);
        }
        meta.set_owned_state(EXCLUSIVE | FREE);
        meta.set_tag(NO_PAGE);
        self.counters.add(Counter::Evictions, 1);
        Ok(Some(f))
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

    /// Writes back the page `key` in frame `f`, which the caller holds `EXCLUSIVE`.
    pub(crate) fn write_exclusive(&self, key: u64, f: FrameId) -> Result<()> {
        // SAFETY: the caller holds the frame EXCLUSIVE, so nobody writes it during the I/O.
        let frame = unsafe {
            Frame::from_region(&self.region, f as usize * self.page_size, self.page_size)
        };
        let result = self
            .backend
            .write_pages(key, vec![frame])
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
    pub(crate) fn load(&self, p: u64, run: usize, fill: Fill, demand: usize) -> Result<Loaded> {
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
    ) -> Result<Begun> {
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
                Some(f) => frames.push(f),
                None => return Ok(Begun::NoFrame),
            },
        }
        while frames.len() < run {
            // Extra pages of the run are best effort: stop at the first frame we cannot get.
            let next = self.free.lock().pop();
            match next {
                Some(f) if self.frames[f as usize].take_free() => frames.push(f),
                Some(f) => {
                    debug_assert!(false, "frame {f} on the free list is not free");
                    break;
                }
                None => match self.evict_one() {
                    Ok(Some(f)) => frames.push(f),
                    _ => break,
                },
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
            for (i, &f) in frames.iter().enumerate() {
                let key = p + i as u64;
                // A fence is raised before its owner scans the index under this lock: a load
                // either is in the index by then (and waited for), or sees the fence here.
                if self.index.lookup(key, &self.frames).is_some() || self.fences.covers(key) {
                    break;
                }
                let meta = &self.frames[f as usize];
                meta.set_tag(key);
                meta.set_owned_state(EXCLUSIVE | LOADING);
                self.index.insert(&mut g, key, f);
                n += 1;
            }
        }
        for &f in &frames[n..] {
            self.push_free(f);
        }
        if n == 0 {
            return Ok(if self.fences.covers(p) {
                Begun::Fenced
            } else {
                Begun::Present
            });
        }
        frames.truncate(n);
        for (i, &f) in frames.iter().enumerate() {
            let admission = if i < demand {
                Admission::Demand
            } else {
                Admission::Speculative
            };
            self.policy.on_insert(f, p + i as u64, admission);
        }
        let waiter = match fill {
            Fill::Zero => {
                // SAFETY: we hold the frame EXCLUSIVE (LOADING).
                let bytes = unsafe { self.bytes_mut(frames[0]) };
                bytes.fill(0);
                Ok(IoWaiter::ready(Ok(())).into())
            }
            Fill::Overwrite => Ok(IoWaiter::ready(Ok(())).into()),
            Fill::Read => {
                let bufs: Vec<FrameMut> = frames
                    .iter()
                    // SAFETY: each frame is held EXCLUSIVE (LOADING) by us: nobody else touches
                    // its bytes until we publish it as VALID after the I/O, in `finish_load`.
                    .map(|&f| unsafe {
                        FrameMut::from_region(
                            &self.region,
                            f as usize * self.page_size,
                            self.page_size,
                        )
                    })
                    .collect();
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
    pub(crate) fn finish_load(&self, loading: Loading) -> Result<FrameId> {
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
                .filter(|&&f| self.region.lent(f as usize) != 0)
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
                for (i, &f) in frames.iter().enumerate() {
                    // Bytes past the cache's length are zero, whatever the backend returned
                    // (a shrink may not have cut it yet when this read ran).
                    self.zero_past_end(p + i as u64, f);
                    self.frames[f as usize].set_owned_state(EXCLUSIVE | VALID);
                    if i > 0 {
                        self.unlock_exclusive(f, false);
                    }
                }
                Ok(frames[0])
            }
            Err(e) => {
                // Undo: nobody saw these pages valid. Waiters wake, find them gone, and retry.
                let mut g = self.index.lock();
                for (i, &f) in frames.iter().enumerate() {
                    self.index.remove(&mut g, p + i as u64, f, &self.frames);
                    self.policy.on_remove(f);
                    if self.region.lent(f as usize) == 0 {
                        self.push_free(f);
                    } else {
                        self.quarantine(f);
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
        if let Loaded::Exclusive(f) = self.load(p, run, Fill::Read, 0)? {
            if mark {
                self.frames[f as usize].mark_readahead_owned();
            }
            self.unlock_exclusive(f, false);
        }
        Ok(())
    }
}
