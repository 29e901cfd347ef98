//! The readahead worker pool: a bounded queue of background loads and the threads that run them.
//!
//! # Owns
//! - the job queue and its bounds: [`QUEUE_MAX`] jobs of streams, and room for one `WillNeed` of
//!   the whole cache on top for forced jobs; jobs beyond them are dropped and counted;
//! - the workers: started on the first [`dispatch`](Readahead::dispatch) (`readahead_workers`
//!   of them; fewer if threads cannot be spawned, none and no readahead if none can), each
//!   taking one job at a time, skipping it if stale, loading it through `Prefetcher::prefetch`;
//! - stopping and joining them ([`shutdown`](Readahead::shutdown)), dropping pending jobs.
//!
//! # Does not own
//! - what the jobs are and whether one is stale: the stream table ([`readahead`](super));
//! - loading the pages: the engine's, behind `Prefetcher`.
//!
//! # May block
//! - `dispatch`: the queue's lock, briefly; the first call spawns the workers;
//! - a worker: on the queue's condition variable for a job, then in the backend read of its run;
//! - `shutdown`: joins the workers, so it waits for the runs they are loading.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::{Job, Prefetcher, Readahead};
use crate::sync::{Condvar, JoinHandle, Mutex};

/// Readahead jobs queued at most (beyond this readahead is dropped).
pub(super) const QUEUE_MAX: usize = 256;

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    stop: bool,
}

pub(super) struct Pool {
    queue: Arc<(Mutex<Queue>, Condvar)>,
    workers: Vec<JoinHandle<()>>,
}

impl Readahead {
    /// Queues background loads. Readahead is best effort: jobs beyond the queue's bound are
    /// dropped (`force` queues them anyway: `WillNeed`).
    pub(crate) fn dispatch(&self, jobs: Vec<Job>, force: bool) {
        if jobs.is_empty() {
            return;
        }
        let mut pool = self.pool.lock();
        if pool.is_none() {
            *pool = self.start_pool();
        }
        let Some(pool) = pool.as_ref() else {
            return;
        };
        let (q, cv) = &*pool.queue;
        let mut q = q.lock();
        if q.stop {
            return;
        }
        let max = if force { self.forced_max } else { QUEUE_MAX };
        let room = max.saturating_sub(q.jobs.len());
        let dropped = jobs.len().saturating_sub(room);
        q.jobs.extend(jobs.into_iter().take(room));
        debug_assert!(q.jobs.len() <= self.forced_max);
        if dropped > 0 {
            self.dropped
                .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
        }
        cv.notify_all();
    }

    /// Jobs dropped so far because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn start_pool(&self) -> Option<Pool> {
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        let mut workers = Vec::new();
        for i in 0..self.workers.max(1) {
            let queue = queue.clone();
            let cache = self.cache.clone();
            let spawned = crate::sync::spawn("folio-readahead", move || worker(queue, cache));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    tracing::warn!(error = %e, worker = i, "cannot start a readahead worker");
                    break;
                }
            }
        }
        if workers.is_empty() {
            return None;
        }
        Some(Pool { queue, workers })
    }

    /// Stops and joins the workers (pending jobs are dropped). Called when the cache is dropped,
    /// from the dropping thread, so a worker never holds the last reference to the cache.
    pub(crate) fn shutdown(&self) {
        let Some(pool) = self.pool.lock().take() else {
            return;
        };
        {
            let (q, cv) = &*pool.queue;
            let mut q = q.lock();
            q.stop = true;
            q.jobs.clear();
            cv.notify_all();
        }
        for h in pool.workers {
            if h.join().is_err() {
                tracing::error!("a readahead worker panicked");
            }
        }
    }
}

fn worker(queue: Arc<(Mutex<Queue>, Condvar)>, cache: Weak<dyn Prefetcher>) {
    let (q, cv) = &*queue;
    loop {
        let job = {
            let mut g = q.lock();
            loop {
                if g.stop {
                    return;
                }
                if let Some(j) = g.jobs.pop_front() {
                    break j;
                }
                g = cv.wait(g);
            }
        };
        let Some(cache) = cache.upgrade() else {
            return;
        };
        if cache.readahead().is_stale(&job) {
            continue;
        }
        if let Err(e) = cache.prefetch(job.start, job.len, job.mark) {
            // Nothing was cached; a reader that needs these pages reads them itself.
            tracing::debug!(error = %e, start = job.start, len = job.len, "readahead failed");
        }
    }
}
