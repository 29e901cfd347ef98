//! The worker pool: threads that carry out the requests a connection's thread must not wait
//! for (misses, flushes, FUA, trims, zeroing, block status, prefetch).
//!
//! Owns: the threads and their bounded queue; a hand-off wakes exactly one idle worker (one
//! mutex and condition variable, `notify_one`). Does not own: what a job does or where its
//! reply goes (the job knows). May block: workers block on their jobs' I/O; submitting never
//! blocks (a full queue refuses the job, and the connection retries later).

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::warn;

/// A unit of work. Its own code turns a panic into an error reply (see `conn/`).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    cv: Condvar,
    depth_max: usize,
}

/// Threads and a bounded queue of jobs.
pub(crate) struct Pool {
    queue: Arc<Queue>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(crate) fn new(workers: usize, depth_max: usize) -> std::io::Result<Pool> {
        let queue = Arc::new(Queue {
            jobs: Mutex::new((VecDeque::new(), false)),
            cv: Condvar::new(),
            depth_max: depth_max.max(1),
        });
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let q = queue.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("nbd-worker-{i}"))
                    .spawn(move || work(&q))?,
            );
        }
        Ok(Pool {
            queue,
            workers: handles,
        })
    }

    /// Queues `job`, or gives it back if the queue is full.
    pub(crate) fn try_submit(&self, job: Job) -> Result<(), Job> {
        let mut q = self.queue.jobs.lock();
        if q.0.len() >= self.queue.depth_max || q.1 {
            return Err(job);
        }
        q.0.push_back(job);
        drop(q);
        self.queue.cv.notify_one();
        Ok(())
    }
}

fn work(q: &Queue) {
    loop {
        let job = {
            let mut g = q.jobs.lock();
            loop {
                if let Some(j) = g.0.pop_front() {
                    break j;
                }
                if g.1 {
                    return;
                }
                q.cv.wait(&mut g);
            }
        };
        // The job answers its own panics; this only keeps the worker alive if it cannot.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            warn!("a request job panicked outside its handler");
        }
    }
}

impl Drop for Pool {
    /// Runs the jobs still queued, then joins the workers.
    fn drop(&mut self) {
        self.queue.jobs.lock().1 = true;
        self.queue.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
