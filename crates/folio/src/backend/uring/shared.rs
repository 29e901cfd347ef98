//! The shared ring and the thread that alone enters it.
//!
//! # Owns
//! - the shared ring's in-flight table (`Table`: ops, free slots, SQEs queued for the ring
//!   thread, whether it sleeps, shutdown, given up) and the condition a submitter waits on for
//!   a free slot;
//! - the ring thread: building its ring (`SINGLE_ISSUER | DEFER_TASKRUN` where the kernel has
//!   them), the eventfd read that wakes it, moving queued SQEs into the ring, reaping CQEs,
//!   and giving the ring up after `RING_FAILURES_MAX` failed `io_uring_enter`s in a row;
//! - waking it: at once ([`Wake::Now`]) or at the next `unplug` ([`Wake::Deferred`]);
//! - shutdown: dropping the backend lets the ring thread drain, then joins it.
//!
//! # Does not own
//! - preparing ops (`op.rs`), finishing them (`complete.rs`), the batch rings (`batch.rs`).
//!
//! # May block
//! - `Inner::start` while `queue_depth` ops are in flight: it wakes the ring thread for what
//!   is queued, then waits for a slot with the table lock released; it returns
//!   [`Error::Closed`] once the backend is dropping;
//! - the ring thread, in `io_uring_enter` when nothing is queued, and when it finishes a short
//!   transfer (positional I/O);
//! - dropping the backend, until the ring thread has drained every op in flight and exited.
//!
//! The table lock guards bookkeeping only; the one system call made under it is the eventfd
//! write of a submitter that found the table full.

use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::complete::{fail_and_leak, ring_given_up, transient, RING_FAILURES_MAX};
use super::op::{InFlight, Op};
use super::UringBackend;
use crate::backend::{FileBackend, Result};
use crate::error::{Error, IoOp};

/// Whether queuing an SQE wakes the ring thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wake {
    /// At once: the submitter may wait for it next.
    Now,
    /// At the next `unplug` (or whenever the ring thread wakes for something else): the
    /// submitter queues more first.
    Deferred,
}

/// `user_data` of the eventfd read that wakes the ring thread.
const WAKE: u64 = u64::MAX;

/// `IORING_ENTER_GETEVENTS` from `<linux/io_uring.h>` (the io-uring crate keeps its `sys` module
/// private).
const IORING_ENTER_GETEVENTS: u32 = 1;

/// An SQE waiting for the ring thread. `squeue::Entry` holds raw pointers in its union, so it is
/// not `Send` by itself.
struct QueuedSqe(squeue::Entry);

// SAFETY: the entry's pointers point into buffers owned by the in-flight table (see `Op`), which
// outlive the entry; the entry is only copied into the ring by the ring thread.
unsafe impl Send for QueuedSqe {}

#[derive(Default)]
struct Table {
    ops: InFlight,
    /// SQEs handed to the ring thread, not yet in the ring.
    queued: Vec<QueuedSqe>,
    /// The ring thread is (about to be) blocked in the kernel: a submitter must wake it.
    sleeping: bool,
    shutdown: bool,
    /// The ring kept failing and its thread gave it up: every op was failed, new ones fail.
    broken: bool,
}

pub(super) struct Inner {
    pub(super) file: FileBackend,
    pub(super) queue_depth: usize,
    table: Mutex<Table>,
    slot_freed: Condvar,
    /// Written to wake the ring thread (it always has a read of it in flight).
    wake_fd: std::os::fd::OwnedFd,
    /// A ring was given up with writes in it: the kernel may still carry them out, late, over
    /// anything written since. From then on every write, sync and length change fails, so no
    /// newer data can be overwritten by them and no sync can claim the file is durable; the
    /// cache keeps the pages dirty. Reopening the file is the way back.
    pub(super) writes_lost: AtomicBool,
}

/// Builds a ring on the calling thread: single issuer with deferred task work where the kernel
/// has it (6.1+: completions are processed only when the ring thread asks, no cross-thread
/// wake-ups), else a plain ring.
fn build_ring(entries: u32) -> std::io::Result<IoUring> {
    IoUring::builder()
        .dontfork()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::builder().dontfork().build(entries))
}

impl Inner {
    /// The state of a new backend over `file`, and the ring thread that alone enters its shared
    /// ring (made on that thread, with room for `queue_depth` ops and the wake-up read).
    pub(super) fn start_ring_thread(
        file: FileBackend,
        queue_depth: usize,
    ) -> Result<(Arc<Inner>, JoinHandle<()>)> {
        // SAFETY: plain system call; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::io(IoOp::Read, 0, std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let wake_fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        let inner = Arc::new(Inner {
            file,
            queue_depth,
            table: Mutex::new(Table::default()),
            slot_freed: Condvar::new(),
            wake_fd,
            writes_lost: AtomicBool::new(false),
        });
        // The ring is created on, owned by and only used from its thread (single issuer).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ring_inner = inner.clone();
        let ring_thread = std::thread::Builder::new()
            .name("folio-uring".into())
            .spawn(move || {
                // The ring has room for every op in flight plus the wake-up read.
                match build_ring(queue_depth as u32 + 1) {
                    Ok(ring) => {
                        let _ = tx.send(Ok(()));
                        ring_inner.run(ring);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| Error::io(IoOp::Read, 0, e))?;
        let started = rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the io_uring thread exited at start")));
        if let Err(e) = started {
            let _ = ring_thread.join();
            return Err(Error::io(IoOp::Read, 0, e));
        }
        Ok((inner, ring_thread))
    }

    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our eventfd.
        let n = unsafe { libc::write(self.wake_fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if n != 8 {
            let e = std::io::Error::last_os_error();
            tracing::error!(error = %e, "cannot wake the io_uring thread");
        }
    }

    /// Puts `op` in the in-flight table and hands `sqe` (with the slot as `user_data`) to the
    /// ring thread, waking it now or (`Wake::Deferred`) at the next [`unplug`](Self::unplug).
    /// Blocks while `queue_depth` ops are in flight (after waking the ring thread for the ops
    /// already queued, so the wait cannot be for ops that nobody submits).
    pub(super) fn start(&self, op: Op, sqe: squeue::Entry, wake: Wake) -> Result<()> {
        let wake_now = {
            let mut t = self.table.lock();
            loop {
                if t.shutdown {
                    return Err(Error::Closed);
                }
                if t.broken {
                    return Err(Error::io(IoOp::Read, 0, ring_given_up()));
                }
                if t.ops.len() < self.queue_depth {
                    break;
                }
                if std::mem::replace(&mut t.sleeping, false) {
                    self.wake();
                }
                self.slot_freed.wait(&mut t);
            }
            let slot = t.ops.insert(op);
            // From here the op (and so its buffers) stays in the table until the ring thread
            // has reaped its CQE.
            t.queued.push(QueuedSqe(sqe.user_data(slot as u64)));
            wake == Wake::Now && std::mem::replace(&mut t.sleeping, false)
        };
        if wake_now {
            self.wake();
        }
        Ok(())
    }

    /// Wakes the ring thread if SQEs are queued for it and it is asleep.
    pub(super) fn unplug(&self) {
        let wake = {
            let mut t = self.table.lock();
            !t.queued.is_empty() && std::mem::replace(&mut t.sleeping, false)
        };
        if wake {
            self.wake();
        }
    }

    /// Removes the op in `slot` from the table.
    fn take(&self, slot: usize) -> Option<Op> {
        let mut t = self.table.lock();
        let op = t.ops.take(slot);
        if op.is_some() {
            self.slot_freed.notify_one();
        }
        op
    }

    /// The ring thread: submits queued SQEs in batches (one `io_uring_enter` for all that queued
    /// up meanwhile), waits for completions and completes their waiters, until shutdown with
    /// nothing in flight.
    fn run(&self, mut ring: IoUring) {
        let mut wake_buf = Box::new(0u64);
        let mut wake_armed = false;
        let mut batch: Vec<QueuedSqe> = Vec::new();
        let mut done: Vec<(u64, i32)> = Vec::new();
        // `io_uring_enter` failures in a row (other than interruptions); bounded.
        let mut failures = 0;
        loop {
            let block = {
                let mut t = self.table.lock();
                std::mem::swap(&mut batch, &mut t.queued);
                if t.shutdown && t.ops.len() == 0 {
                    break;
                }
                // Block only if nothing is queued; then submitters must wake us.
                t.sleeping = batch.is_empty();
                t.sleeping
            };
            {
                let (_, mut sq, _) = ring.split();
                if !wake_armed {
                    let read = opcode::Read::new(
                        types::Fd(self.wake_fd.as_raw_fd()),
                        (&mut *wake_buf as *mut u64).cast(),
                        8,
                    )
                    .build()
                    .user_data(WAKE);
                    // SAFETY: `wake_buf` is a heap allocation owned by this thread that outlives
                    // the read: this loop only returns once the read has completed or the ring
                    // (and with it every request) is gone, and the box is dropped after the ring.
                    if unsafe { sq.push(&read) }.is_ok() {
                        wake_armed = true;
                    }
                }
                for QueuedSqe(sqe) in batch.drain(..) {
                    // SAFETY: the SQE's buffers are owned by the in-flight table until its CQE is
                    // reaped below (see `start`). The ring has room for every op in flight (at
                    // most `queue_depth`) plus the wake-up read, so the push cannot fail.
                    let pushed = unsafe { sq.push(&sqe) };
                    debug_assert!(pushed.is_ok(), "io_uring submission queue full");
                }
            }
            let entered = if block {
                ring.submit_and_wait(1)
            } else {
                let to_submit = ring.submission().len() as u32;
                // SAFETY: a plain `io_uring_enter(to_submit, 0, GETEVENTS)` on our own ring, no
                // argument. GETEVENTS even though we do not wait: with DEFER_TASKRUN, completion
                // work only runs in such an enter, and submitters that keep the queue non-empty
                // must not starve their own completions.
                unsafe {
                    ring.submitter().enter::<libc::sigset_t>(
                        to_submit,
                        0,
                        IORING_ENTER_GETEVENTS,
                        None,
                    )
                }
            };
            match entered {
                Err(e) if !transient(&e) => {
                    tracing::error!(error = %e, "io_uring_enter failed");
                    failures += 1;
                    if failures >= RING_FAILURES_MAX {
                        self.give_up();
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                _ => failures = 0,
            }
            for cqe in ring.completion() {
                done.push((cqe.user_data(), cqe.result()));
            }
            for (data, res) in done.drain(..) {
                if data == WAKE {
                    wake_armed = false;
                    continue;
                }
                // The kernel is done with the op's buffers: it may now leave the table.
                if let Some(op) = self.take(data as usize) {
                    self.finish(op, res);
                }
            }
        }
        drop(ring);
        if wake_armed {
            // The kernel may still hold the wake-up read's buffer while it tears the ring down:
            // leak these 8 bytes rather than free them under it.
            std::mem::forget(wake_buf);
        }
    }

    /// The ring thread, after `RING_FAILURES_MAX` failures in a row: fails every op in
    /// flight and everyone waiting for a slot, leaks the ops' buffers (the kernel may still own
    /// them) and makes later submissions fail, so that nobody waits for the ring forever.
    fn give_up(&self) {
        let mut t = self.table.lock();
        tracing::error!(
            ops = t.ops.len(),
            "giving up an io_uring that keeps failing"
        );
        t.broken = true;
        t.queued.clear();
        fail_and_leak(self, t.ops.take_all());
        self.slot_freed.notify_all();
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        self.inner.table.lock().shutdown = true;
        // Wake submitters waiting for a slot (they fail with `Closed`) and the ring thread,
        // which drains every op still in flight before it exits.
        self.inner.slot_freed.notify_all();
        self.inner.wake();
        if let Some(h) = self.ring_thread.take() {
            if h.join().is_err() {
                tracing::error!("io_uring thread panicked");
            }
        }
    }
}
