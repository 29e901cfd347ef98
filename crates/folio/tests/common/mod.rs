//! Test backends: a wrapper over `MemoryBackend` that can slow down, count, block and fail I/O.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use folio::{Error, Frame, FrameMut, IoOp, IoWaiter, MemoryBackend, PageCacheBackend, Result};
use parking_lot::{Condvar, Mutex};

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
    /// While true, writes block until `open_gate` is called.
    pub gate_closed: AtomicBool,
    gate: Mutex<bool>,
    gate_cv: Condvar,
    /// Number of writes currently blocked at the gate.
    pub waiting_at_gate: AtomicU64,
}

impl TestBackend {
    pub fn new(bytes: Vec<u8>) -> Arc<TestBackend> {
        Arc::new(TestBackend {
            inner: MemoryBackend::from_bytes(bytes),
            ..Default::default()
        })
    }

    pub fn close_gate(&self) {
        *self.gate.lock() = false;
        self.gate_closed.store(true, Ordering::SeqCst);
    }

    pub fn open_gate(&self) {
        self.gate_closed.store(false, Ordering::SeqCst);
        *self.gate.lock() = true;
        self.gate_cv.notify_all();
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
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(Self::injected(IoOp::Read));
        }
        self.inner.read_pages(idx, frames)
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self.gate_closed.load(Ordering::SeqCst) {
            self.waiting_at_gate.fetch_add(1, Ordering::SeqCst);
            let mut open = self.gate.lock();
            while !*open {
                self.gate_cv.wait(&mut open);
            }
            self.waiting_at_gate.fetch_sub(1, Ordering::SeqCst);
        }
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
