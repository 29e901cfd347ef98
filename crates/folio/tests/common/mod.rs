//! Test backends: a wrapper over `MemoryBackend` that can slow down, count, block and fail I/O;
//! where the optional dependencies (io_uring, O_DIRECT) are checked (visibly, see
//! `folio-testkit`); and waits on events instead of sleeps.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use folio::{Error, Frame, FrameMut, IoOp, IoWaiter, MemoryBackend, PageCacheBackend, Result};
use parking_lot::{Condvar, Mutex};

/// Where calls of one kind can be held: while closed, a call waits at it until it opens.
#[derive(Default)]
pub struct Gate {
    closed: AtomicBool,
    open: Mutex<bool>,
    opened: Condvar,
    /// Calls waiting at the gate now.
    pub waiting: AtomicU64,
}

impl Gate {
    pub fn close(&self) {
        *self.open.lock() = false;
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        *self.open.lock() = true;
        self.opened.notify_all();
    }

    /// Waits here while the gate is closed.
    fn pass(&self) {
        if self.closed.load(Ordering::SeqCst) {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock();
            while !*open {
                self.opened.wait(&mut open);
            }
            self.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// A scriptable backend for tests.
#[derive(Default)]
pub struct TestBackend {
    pub inner: MemoryBackend,
    pub read_delay_ms: AtomicU64,
    pub reads: AtomicU64,
    pub pages_read: AtomicU64,
    pub writes: AtomicU64,
    pub fail_writes: AtomicBool,
    pub fail_reads: AtomicBool,
    pub fail_syncs: AtomicBool,
    /// Holds writes while closed (`close_gate`, `open_gate`).
    pub write_gate: Gate,
    /// Holds reads while closed.
    pub read_gate: Gate,
}

impl TestBackend {
    pub fn new(bytes: Vec<u8>) -> Arc<TestBackend> {
        Arc::new(TestBackend {
            inner: MemoryBackend::from_bytes(bytes),
            ..Default::default()
        })
    }

    pub fn close_gate(&self) {
        self.write_gate.close();
    }

    pub fn open_gate(&self) {
        self.write_gate.open();
    }

    /// Writes waiting at the write gate now.
    pub fn waiting_at_gate(&self) -> u64 {
        self.write_gate.waiting.load(Ordering::SeqCst)
    }

    fn injected(op: IoOp) -> Error {
        Error::io(op, 0, std::io::Error::other("injected failure"))
    }
}

impl PageCacheBackend for TestBackend {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.pages_read
            .fetch_add(frames.len() as u64, Ordering::SeqCst);
        let d = self.read_delay_ms.load(Ordering::SeqCst);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        self.read_gate.pass();
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(Self::injected(IoOp::Read));
        }
        self.inner.read_pages(idx, frames)
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.write_gate.pass();
        if self.fail_writes.load(Ordering::SeqCst) {
            return Ok(IoWaiter::ready(Err(Self::injected(IoOp::Write))));
        }
        self.inner.write_pages(idx, frames)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.set_len(len)
    }

    fn sync(&self) -> Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(Self::injected(IoOp::Sync));
        }
        self.inner.sync()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.write_zeroes(offset, len)
    }
}

/// A deterministic byte pattern for page `p`, version `v`.
pub fn pattern(p: u64, v: u64, len: usize) -> Vec<u8> {
    let mut x = p.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
pub mod device;

/// Whether this process can use io_uring. If not, the calling test's io_uring part is skipped
/// visibly (and fails under `FOLIO_REQUIRE_ALL=1`; a stray `FOLIO_DISABLE_URING` is reported the
/// same way, never silently obeyed).
pub fn uring_available() -> bool {
    folio_testkit::require("io_uring", folio::backend::uring_support())
}

/// A temporary directory on a filesystem that accepts `O_DIRECT` (the system's temporary
/// directory, or the build's own when that is tmpfs). Where none does, the O_DIRECT part is
/// skipped visibly (failing under `FOLIO_REQUIRE_ALL=1`) and `None` is returned.
pub fn direct_io_dir() -> Option<tempfile::TempDir> {
    match folio_testkit::direct_io_tempdir(std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))) {
        Ok(dir) => Some(dir),
        Err(why) => {
            folio_testkit::require("O_DIRECT", Err(why));
            None
        }
    }
}

/// Polls `cond` every 2 ms until it holds, for up to `max` (a bound against hangs, not a
/// timing assumption: callers wait for an event, and `max` is minutes-long in spirit).
pub fn wait_for(max: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= max {
            return cond();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The kernel's id of the calling thread.
pub fn thread_id() -> i32 {
    // SAFETY: `gettid` has no preconditions.
    unsafe { libc::gettid() }
}

/// Waits (up to 60 s) until thread `tid` of this process is asleep in the kernel (state `S` or
/// `D` in `/proc/self/task/<tid>/stat`): a thread that can only sleep by waiting for what the
/// test holds back (a page under write-back, a read at a closed gate) is then waiting for it.
pub fn wait_until_asleep(tid: i32) {
    assert!(
        std::path::Path::new(&format!("/proc/self/task/{tid}")).exists(),
        "thread {tid} has exited"
    );
    wait_until_asleep_or_gone(tid);
}

/// Waits (up to 60 s) until every thread of this process named `name` (e.g. the cache's
/// `folio-readahead` workers) has been seen asleep at least once from now on: work they had
/// been handed before the call has then been taken off their queue and finished (a worker
/// sleeps only on an empty queue or waiting for a page, which nothing holds in the callers).
pub fn wait_until_named_threads_asleep(name: &str) {
    let tasks: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|tid: &i32| {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| c.trim_end() == name)
        })
        .collect();
    for tid in tasks {
        // A thread that has exited meanwhile reads as asleep (its stat is gone).
        if std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
            wait_until_asleep_or_gone(tid);
        }
    }
}

fn wait_until_asleep_or_gone(tid: i32) {
    let path = format!("/proc/self/task/{tid}/stat");
    let asleep = wait_for(Duration::from_secs(60), || {
        match std::fs::read_to_string(&path) {
            Err(_) => true,
            Ok(stat) => {
                // The state follows the command name, which is in parentheses and may contain
                // spaces.
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                matches!(state.and_then(|s| s.chars().next()), Some('S' | 'D'))
            }
        }
    });
    assert!(asleep, "thread {tid} never went to sleep");
}
