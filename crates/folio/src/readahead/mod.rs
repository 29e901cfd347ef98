//! Readahead per stream of sequential access, and access hints (`posix_fadvise`).
//!
//! # Owns
//! - the table of streams (detecting sequential misses, window sizes, markers, windows in
//!   flight ahead of a reader) and the access hints of [`Advice`] (64 ranges);
//! - turning a miss or a reached marker into work: the pages to read at once and background
//!   jobs (`MissPlan`, `Job`), cut at the largest backend I/O;
//! - the worker pool (`pool.rs`): started on first use, a bounded job queue (jobs beyond it are
//!   dropped and counted), stale jobs skipped, workers stopped and joined with the cache.
//!
//! # Does not own
//! - loading pages: a worker calls `Prefetcher::prefetch` (the engine, which this module
//!   never names), which inserts the pages `LOADING`, reads them and sets the marker; page
//!   states, the index and the policy's admission are the engine's;
//! - when it is asked: the engine calls `on_miss` on a miss and `on_marker` when a reader
//!   reaches a marked page, never on a plain hit;
//! - what [`Advice::WillNeed`] and [`Advice::DontNeed`] do to the cache
//!   ([`PageCache::advise`](crate::PageCache::advise)).
//!
//! # May block
//! - `on_miss`, `on_marker`, `set_hint` and `dispatch`: short locks (streams, hints, the job
//!   queue), never I/O; the first `dispatch` spawns the workers;
//! - a worker: on the queue's condition variable for a job, then in the backend read of its
//!   run (inside `prefetch`);
//! - `shutdown` (when the cache is dropped): it joins the workers, so it waits for the runs they
//!   are loading.
//!
//! # Streams
//! The cache keeps a small table of recent *streams* (16 entries, least recently used replaced),
//! like a shared version of Linux's per-`struct file` `f_ra`. It is consulted only on a miss and
//! when a reader reaches a marked page, never on a plain hit, so the hit path pays one load of the
//! state word it already owns.
//!
//! - A miss at page `p` that matches no stream records a *candidate*: "a read of `p .. p + n`
//!   happened; a miss at `p + n` continues it". Two such continuations in a row make it a stream.
//!   Random access only ever creates candidates, so it never reads ahead (beyond the rare pair of
//!   misses that each land exactly at the end of a recent one). A miss at page 0 (reading a file from its start) or in a range advised
//!   [`Advice::Sequential`] starts a stream at once.
//! - A miss that continues a stream starts a window: the requested pages are read synchronously
//!   (the caller needs them), and the rest of the window, up to its size, is read ahead
//!   asynchronously. The first page read ahead carries the `READAHEAD` marker bit (`page/`). The
//!   window starts at 128 KiB and doubles with each window to the configured maximum (2 MiB by
//!   default) and at most 1/16 of the cache, both doubled under [`Advice::Sequential`]; the
//!   window being read plus those in flight ahead of it stay within 1/8 of the cache, or two
//!   windows if that is less (more would evict read-ahead pages before they are read).
//! - A reader that reaches a marked page (or misses on it because the readahead has not inserted
//!   it yet) clears the mark and starts the next window asynchronously, so the reader of a cold
//!   file rarely waits. A stream keeps one window in flight ahead of its reader, as Linux does,
//!   until its reader, at full window size, reaches a marked page that is still loading: then it
//!   keeps one more, up to four (and 1/8 of the cache). With one, the I/O in flight is one
//!   window, which capped 2 MiB windows at about 1.2 GiB/s on a device fio reads at 1.4-1.7
//!   GiB/s with 8 MiB in flight (two ahead, fixed: about 1.47 GiB/s in alternating runs).
//!
//! # Asynchrony
//! Windows are split into runs of at most `io_bytes_max` and handed to a small pool of worker
//! threads (started on first use; `readahead_workers`, default 4), each of which loads one run
//! with one backend read. Pages of a run are in the index as *uninitialised* (`LOADING`, held
//! `EXCLUSIVE`) until the read completes, so a reader that arrives early parks on them exactly as
//! it parks on another reader's load. The marker is set while the worker still holds the page
//! exclusive, so nobody can see the page valid before it is marked. A failed run is undone (its
//! pages leave the index, nothing is cached); readers parked on them retry with their own read.
//! The job queue is bounded: readahead is best effort and is dropped, not queued without end.
//!
//! Readahead pages enter the policy with [`Admission::Speculative`](crate::Admission), so a
//! scan-resistant policy keeps them from pushing out the hot set.

mod pool;

use std::ops::Range;
use std::sync::Weak;

use crate::sync::{Mutex, RwLock};

use self::pool::{Pool, QUEUE_MAX};
use crate::readaround::ReadAround;

/// What the readahead workers drive: the engine, seen from below (so this module never names it).
pub(crate) trait Prefetcher: Send + Sync {
    /// The readahead state of the cache.
    fn readahead(&self) -> &Readahead;
    /// Loads the absent pages from `p` on (at most `run`) as speculative pages, marking `p`
    /// with the readahead marker if `mark`.
    fn prefetch(&self, p: u64, run: usize, mark: bool) -> crate::error::Result<()>;
}

/// An access hint on a byte range, after `posix_fadvise(2)`. See
/// [`PageCache::advise`](crate::PageCache::advise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// No hint: detect sequential streams (removes earlier hints on the range).
    Normal,
    /// Sequential access expected: read ahead from the first miss, with twice the maximum window.
    Sequential,
    /// Random access expected: never read ahead in this range.
    Random,
    /// The range will be needed soon: load it in the background now (up to the cache's capacity).
    WillNeed,
    /// The range is not needed: write back its dirty pages and drop it from the cache.
    DontNeed,
    /// Random access with locality expected (a disk image served to a VM): a miss outside any
    /// sequential stream loads the aligned cluster around it, up to 64 KiB, shrinking it while
    /// its neighbours go unread (see `readaround.rs`). Sequential streams are still detected.
    Clustered,
}

/// Streams remembered at once.
const STREAMS: usize = 16;
/// Hints remembered at once (the oldest is forgotten first).
const HINTS: usize = 64;
/// Initial window in bytes (Linux's default maximum).
const INIT_WINDOW_BYTES: usize = 128 << 10;
/// Most windows a stream at full size keeps in flight ahead of its reader. A stream starts with
/// one (Linux's scheme: reaching a window's first page starts the next), so it has one window
/// of I/O in flight, which capped 2 MiB windows at about 1.2 GiB/s on a device that fio reads at
/// 1.4-1.7 GiB/s with 8 MiB in flight. Each time its reader reaches a marked page of a full-size
/// window and has to wait for it, the stream keeps one more window in flight, up to this many
/// (and to 1/8 of the cache in all).
const WINDOWS_AHEAD_MAX: usize = 4;

/// Whether a reader had to wait for the page it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The page was there.
    No,
    /// The page was being loaded, or had to be.
    Yes,
}

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Window start (or the candidate's first page).
    start: u64,
    /// End of the current window (or the page after the candidate's read).
    end: u64,
    /// Current window size in pages; 0 for a candidate.
    size: usize,
    /// The marked first pages of the windows in flight, oldest first (`markers_len` of them):
    /// reaching one starts the next window.
    markers: [u64; WINDOWS_AHEAD_MAX],
    markers_len: u8,
    /// Full-size windows to keep in flight (1 to `Readahead::ahead_max`).
    ahead: u8,
    /// The window may reach twice the maximum (`Advice::Sequential`).
    boost: bool,
    /// Candidates: sequential misses seen so far (a window starts at `CONFIRM`).
    seq: u8,
    /// LRU stamp; 0 = unused slot.
    used: u64,
}

impl Stream {
    fn markers(&self) -> &[u64] {
        &self.markers[..self.markers_len as usize]
    }

    fn first_marker(&self) -> Option<u64> {
        self.markers().first().copied()
    }

    /// Records the marked first page of a window just started (the newest).
    fn push_marker(&mut self, m: u64) {
        if self.markers_len as usize == WINDOWS_AHEAD_MAX {
            // Forget the oldest: a reader past it restarts the stream from its miss anyway.
            self.markers.copy_within(1.., 0);
            self.markers_len -= 1;
        }
        self.markers[self.markers_len as usize] = m;
        self.markers_len += 1;
    }

    /// Forgets the markers up to and including `m` (the reader has reached `m`).
    fn drop_markers_through(&mut self, m: u64) {
        let keep: usize = self.markers().iter().filter(|&&x| x > m).count();
        let from = self.markers_len as usize - keep;
        self.markers.copy_within(from..self.markers_len as usize, 0);
        self.markers_len = keep as u8;
    }
}

/// Consecutive sequential misses that make a candidate a stream (page 0 and
/// `Advice::Sequential` start one at once). Two keep random access from reading ahead when a
/// random miss happens to land right after an earlier one.
const CONFIRM: u8 = 2;

#[derive(Default)]
struct Streams {
    slots: [Stream; STREAMS],
    clock: u64,
}

#[derive(Clone, Debug)]
struct Hint {
    pages: Range<u64>,
    advice: Advice,
}

/// One run of pages to load in the background.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Job {
    pub(crate) start: u64,
    pub(crate) len: usize,
    /// Set the `READAHEAD` marker on the first page.
    pub(crate) mark: bool,
    /// Part of a stream's window (else `WillNeed`): dropped if the reader has passed it.
    pub(crate) stream: bool,
}

/// What the miss path should do.
#[derive(Debug, Default)]
pub(crate) struct MissPlan {
    /// Pages to load synchronously from the missed page on (at least the request): more when the
    /// miss falls inside a window whose readahead has not inserted its pages yet.
    pub(crate) run: usize,
    /// Background runs to start after the synchronous load.
    pub(crate) jobs: Vec<Job>,
}

/// The readahead state of one cache.
pub(crate) struct Readahead {
    cache: Weak<dyn Prefetcher>,
    init_pages: usize,
    max_pages: usize,
    /// Pages a stream's window being read and windows ahead may span: 1/8 of the cache.
    stream_pages_max: usize,
    chunk_pages: usize,
    workers: usize,
    streams: Mutex<Streams>,
    hints: RwLock<Vec<Hint>>,
    pool: Mutex<Option<Pool>>,
    /// The queue's bound for forced jobs (`WillNeed`): room for one `WillNeed` of the whole
    /// cache on top of the streams' `QUEUE_MAX`. Beyond it jobs are dropped (a hint).
    forced_max: usize,
    /// Jobs dropped because the queue was full.
    dropped: std::sync::atomic::AtomicU64,
    around: ReadAround,
}

impl Readahead {
    /// `max_bytes` 0 turns readahead off. `chunk_pages` is the largest backend I/O in pages.
    pub(crate) fn new(
        cache: Weak<dyn Prefetcher>,
        page_size: usize,
        capacity_pages: usize,
        max_bytes: usize,
        workers: usize,
        chunk_pages: usize,
    ) -> Readahead {
        let max_pages = (max_bytes / page_size).min(capacity_pages / 16);
        let max_pages = if max_pages < 2 || workers == 0 {
            0
        } else {
            max_pages
        };
        Readahead {
            cache,
            init_pages: (INIT_WINDOW_BYTES / page_size).clamp(1, max_pages.max(1)),
            max_pages,
            stream_pages_max: capacity_pages / 8,
            chunk_pages: chunk_pages.max(1),
            workers,
            streams: Mutex::new(Streams::default()),
            hints: RwLock::new(Vec::new()),
            pool: Mutex::new(None),
            forced_max: QUEUE_MAX + capacity_pages.div_ceil(chunk_pages.max(1)),
            dropped: std::sync::atomic::AtomicU64::new(0),
            around: ReadAround::new(page_size, max_pages.min(chunk_pages.max(1)), capacity_pages),
        }
    }

    fn hint(&self, p: u64) -> Advice {
        let hints = self.hints.read();
        hints
            .iter()
            .rev()
            .find(|h| h.pages.contains(&p))
            .map_or(Advice::Normal, |h| h.advice)
    }

    /// Records an access pattern hint (`Normal`, `Sequential`, `Random`) for `pages`.
    pub(crate) fn set_hint(&self, pages: Range<u64>, advice: Advice) {
        let mut hints = self.hints.write();
        hints.retain(|h| h.pages.start < pages.start || h.pages.end > pages.end);
        if advice != Advice::Normal {
            if hints.len() == HINTS {
                hints.remove(0);
            }
            hints.push(Hint { pages, advice });
        } else {
            hints.push(Hint {
                pages,
                advice: Advice::Normal,
            });
            if hints.len() > HINTS {
                hints.remove(0);
            }
        }
    }

    /// Most full-size windows of `cap` pages a stream keeps in flight ahead of its reader: with
    /// the one being read they stay within 1/8 of the cache (more would evict read-ahead pages
    /// before they are read), and one is always allowed.
    fn ahead_max(&self, cap: usize) -> usize {
        (self.stream_pages_max / cap.max(1))
            .saturating_sub(1)
            .clamp(1, WINDOWS_AHEAD_MAX)
    }

    fn cap(&self, boost: bool) -> usize {
        if boost {
            self.max_pages * 2
        } else {
            self.max_pages
        }
    }

    /// Splits the window `start .. end` into background jobs; the first carries the marker.
    fn window_jobs(&self, start: u64, end: u64, jobs: &mut Vec<Job>) {
        let mut c = start;
        while c < end {
            let len = ((end - c) as usize).min(self.chunk_pages);
            jobs.push(Job {
                start: c,
                len,
                mark: c == start,
                stream: true,
            });
            c += len as u64;
        }
    }

    /// A miss on page `p` for a read of `req` pages, in a file of `npages` pages: updates the
    /// streams and returns the background reads to start.
    pub(crate) fn on_miss(&self, p: u64, req: usize, npages: u64) -> MissPlan {
        let mut plan = MissPlan {
            run: req,
            jobs: Vec::new(),
        };
        if self.max_pages == 0 {
            return plan;
        }
        let advice = self.hint(p);
        if advice == Advice::Random {
            return plan;
        }
        let boost = advice == Advice::Sequential;
        let req_end = (p + req as u64).min(npages);
        let mut st = self.streams.lock();
        st.clock += 1;
        let now = st.clock;
        let found = st.slots.iter().position(|s| {
            s.used != 0
                && if s.size == 0 {
                    p == s.end
                } else {
                    s.start <= p && p <= s.end
                }
        });
        let slot = match found {
            Some(i) => i,
            None => {
                let i = (0..STREAMS).min_by_key(|&i| st.slots[i].used).unwrap_or(0);
                let starts = p == 0 || boost;
                st.slots[i] = Stream {
                    start: p,
                    end: req_end,
                    size: 0,
                    markers: [0; WINDOWS_AHEAD_MAX],
                    markers_len: 0,
                    ahead: 1,
                    boost,
                    seq: 0,
                    used: now,
                };
                if !starts {
                    drop(st);
                    if advice == Advice::Clustered {
                        self.read_around(p, req, npages, &mut plan);
                    }
                    return plan;
                }
                i
            }
        };
        let s = &mut st.slots[slot];
        s.used = now;
        s.boost |= boost;
        if found.is_some() && s.size == 0 && !s.boost {
            s.seq += 1;
            if s.seq < CONFIRM {
                s.start = p;
                s.end = req_end;
                return plan;
            }
        }
        let cap = self.cap(s.boost);
        // The reader outran a window in flight: read the rest of it now, in one I/O.
        if s.size != 0 && p < s.end {
            plan.run = req.max(((s.end - p) as usize).min(self.chunk_pages));
        }
        if s.size == 0 || p >= s.end || s.first_marker().is_some_and(|m| p >= m) {
            // Continue the stream: the next window starts after what the reader asked for (or
            // after the current window, whichever is further).
            let size = if s.size == 0 {
                self.init_pages.max(req).min(cap.max(req))
            } else {
                (s.size * 2).min(cap)
            };
            let (start, end) = if s.size == 0 {
                (req_end, (p + size as u64).max(req_end).min(npages))
            } else {
                let start = req_end.max(s.end);
                (start, (start + size as u64).min(npages))
            };
            s.size = size;
            s.start = p;
            s.end = end.max(req_end);
            s.markers_len = 0;
            if start < end {
                s.push_marker(start);
            }
            self.window_jobs(start, end, &mut plan.jobs);
        } else {
            // Inside a window whose readahead is on its way: just the synchronous read.
            s.end = s.end.max(req_end);
        }
        plan
    }

    /// A miss outside any stream under [`Advice::Clustered`]: the cluster around it.
    fn read_around(&self, p: u64, req: usize, npages: u64, plan: &mut MissPlan) {
        let Some(c) = self.around.on_miss(p, req, npages) else {
            return;
        };
        plan.run = c.run.min(self.chunk_pages.max(req));
        if let Some(b) = c.before {
            plan.jobs.push(Job {
                start: b.start,
                len: (b.end - b.start) as usize,
                mark: true,
                stream: false,
            });
        }
    }

    /// A reader reached the marked page `m` (and `waited` for it or not): starts the next
    /// window, and at full window size as many more as keep the stream's `ahead` in flight; a
    /// reader that waited at full size raises `ahead`. Returns the jobs. A read-around
    /// cluster's marker only counts for its adaptation.
    pub(crate) fn on_marker(&self, m: u64, npages: u64, waited: Waited) -> Vec<Job> {
        let mut jobs = Vec::new();
        if self.around.on_marker(m) {
            return jobs;
        }
        let mut st = self.streams.lock();
        st.clock += 1;
        let now = st.clock;
        let Some(s) = st
            .slots
            .iter_mut()
            .find(|s| s.used != 0 && s.markers().contains(&m))
        else {
            return jobs;
        };
        s.used = now;
        s.start = m;
        s.drop_markers_through(m);
        let cap = self.cap(s.boost);
        if waited == Waited::Yes && s.size >= cap {
            s.ahead = (s.ahead as usize + 1).min(self.ahead_max(cap)) as u8;
        }
        // Bounded: each round adds a marker, and stops at `ahead` of them.
        for _ in 0..WINDOWS_AHEAD_MAX {
            let size = (s.size * 2).min(cap).max(1);
            let start = s.end;
            let end = (start + size as u64).min(npages);
            s.size = size;
            if start >= end {
                break;
            }
            s.end = end;
            s.push_marker(start);
            self.window_jobs(start, end, &mut jobs);
            if s.size < cap || s.markers_len >= s.ahead {
                break;
            }
        }
        jobs
    }

    /// True if `job` belongs to a window that no stream is still in front of: its reader went
    /// past (it read those pages itself when the workers lagged), so loading them now would only
    /// evict pages to read what was already read.
    fn is_stale(&self, job: &Job) -> bool {
        job.stream
            && !self
                .streams
                .lock()
                .slots
                .iter()
                .any(|s| s.used != 0 && s.size != 0 && s.start <= job.start && job.start <= s.end)
    }
}

// The model-checking build's primitives need a shuttle test: these run on std's only.
#[cfg(all(test, not(folio_model)))]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A prefetcher that is never called: these tests only plan windows.
    struct Idle;

    impl Prefetcher for Idle {
        fn readahead(&self) -> &Readahead {
            unreachable!("the planning tests start no worker")
        }

        fn prefetch(&self, _: u64, _: usize, _: bool) -> crate::error::Result<()> {
            unreachable!("the planning tests start no worker")
        }
    }

    /// Walks a stream over a large file with 2 MiB windows (512 pages) and 1 MiB I/Os, its
    /// reader reaching each marked page in turn (`waited` says how), and returns, for each
    /// reached marker after the ramp, how many full windows lie ahead of it.
    fn windows_ahead(waited: Waited) -> Vec<u64> {
        const PS: usize = 4096;
        const NPAGES: u64 = 1 << 20;
        const FULL: u64 = 512;
        let ra = Readahead::new(Weak::<Idle>::new(), PS, 1 << 20, 2 << 20, 4, 256);
        let (mut issued_end, mut markers) = (1u64, VecDeque::new());
        let take = |jobs: &[Job], issued_end: &mut u64, markers: &mut VecDeque<u64>| {
            for j in jobs {
                assert_eq!(j.start, *issued_end, "windows are contiguous: {jobs:?}");
                *issued_end += j.len as u64;
                if j.mark {
                    markers.push_back(j.start);
                }
            }
        };
        take(
            &ra.on_miss(0, 1, NPAGES).jobs,
            &mut issued_end,
            &mut markers,
        );
        let mut ahead = Vec::new();
        for round in 0..24 {
            let m = markers.pop_front().expect("a window in flight");
            let jobs = ra.on_marker(m, NPAGES, waited);
            take(&jobs, &mut issued_end, &mut markers);
            // Windows double from 32 pages (128 KiB): by round 8 every one in sight is full.
            if round >= 8 {
                assert_eq!((issued_end - m) % FULL, 0, "whole windows after {m}");
                assert_eq!(markers.len() as u64, (issued_end - m) / FULL - 1);
                ahead.push((issued_end - m) / FULL - 1);
            }
        }
        ahead
    }

    #[test]
    fn a_reader_that_never_waits_keeps_one_window_ahead() {
        assert!(windows_ahead(Waited::No).iter().all(|&a| a == 1));
    }

    #[test]
    fn a_reader_that_waits_at_full_size_gets_more_windows_ahead_up_to_four() {
        let ahead = windows_ahead(Waited::Yes);
        assert!(ahead.windows(2).all(|w| w[0] <= w[1]), "{ahead:?}");
        assert_eq!(ahead.last(), Some(&(WINDOWS_AHEAD_MAX as u64)), "{ahead:?}");
    }
}
