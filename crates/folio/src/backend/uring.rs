//! [`UringBackend`]: a regular file or a block device through io_uring.
//!
//! # Design
//! One ring per backend, `queue_depth` entries. Any thread may submit; one *reaper* thread
//! waits for completions and completes the [`IoWaiter`]s it handed out.
//!
//! - **Submission.** A submitter reserves a slot in the in-flight table (blocking while
//!   `queue_depth` operations are in flight), pushes its SQE under a short lock, and then
//!   *combines*: whoever gets the submit lock makes one `io_uring_enter` for every SQE queued so
//!   far, including those pushed by threads that found the lock taken (they return at once). So
//!   when many threads submit together, several SQEs go to the kernel per system call.
//! - **Completion.** The reaper blocks in `io_uring_enter(GETEVENTS, min_complete = 1)`, takes
//!   each CQE's operation out of the in-flight table, finishes it (zero-fill past the end of the
//!   file, the rare short transfer completed synchronously) and completes its waiter.
//! - **Buffer ownership.** The frames of an operation (and its `iovec` array) live in the
//!   in-flight table from before the SQE is pushed until the reaper has taken its CQE. Dropping
//!   the waiter does not cancel anything and frees nothing; the memory behind frames is
//!   reference-counted besides.
//! - **Shutdown.** Dropping the backend stops new submissions, wakes the reaper with a no-op, lets
//!   it drain every operation still in flight, and joins it: no leaked thread, no freed buffer
//!   under a live I/O.
//! - **Geometry** is [`FileBackend`]'s (it is used for the file descriptors, the length,
//!   `set_len`, `sync` and hole punching): reads past the end of the file are zero-filled, writes
//!   are clipped at the end (the file never grows), and with [`IoMode::Direct`] the unaligned tail
//!   of a file whose length is not a multiple of 512 goes through a buffered descriptor.
//!
//! Where io_uring is unavailable (old kernel, seccomp, `kernel.io_uring_disabled`),
//! [`UringBackend::open`] fails with [`Error::Unsupported`]-style I/O error and
//! [`open_best`](super::open_best) falls back to [`FileBackend`].

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use io_uring::{opcode, squeue, types, IoUring};
use parking_lot::{Condvar, Mutex};

use super::file::{preadv_full, pwritev_full, DIRECT_ALIGN};
use super::{io_geometry, FileBackend, Frame, FrameMut, IoCompleter, IoMode, IoWaiter};
use super::{PageCacheBackend, Result};
use crate::error::{Error, IoOp};

/// Default number of operations in flight per ring.
pub const DEFAULT_QUEUE_DEPTH: usize = 64;

/// `user_data` of the no-op that wakes the reaper at shutdown.
const WAKE: u64 = u64::MAX;

/// The buffers of one operation, owned by the in-flight table until its CQE is reaped.
enum Buffers {
    Read(Vec<FrameMut>),
    Write(Vec<Frame>),
}

/// The `iovec`s of one operation. They point into the frames of the same operation.
struct Iovecs {
    _keep: Box<[libc::iovec]>,
}

// SAFETY: the raw pointers in the iovecs point into frames owned by the same `Op` (which are
// `Send`); they are only dereferenced by the kernel while the op is in flight.
unsafe impl Send for Iovecs {}

/// One operation in flight.
struct Op {
    buffers: Buffers,
    _iovecs: Iovecs,
    offset: u64,
    /// Bytes the SQE asked for.
    submitted: usize,
    /// Bytes that must come back (reads: up to the end of the file; writes: all).
    expected: usize,
    completer: IoCompleter,
}

#[derive(Default)]
struct Table {
    ops: Vec<Option<Op>>,
    free: Vec<usize>,
    in_flight: usize,
}

struct Inner {
    file: FileBackend,
    ring: IoUring,
    queue_depth: usize,
    /// Serialises pushes to the submission queue (the SQ tail has one writer at a time).
    sq: Mutex<()>,
    /// Held by the thread that makes the `io_uring_enter` for everybody's queued SQEs.
    submit_lock: Mutex<()>,
    /// SQEs pushed but not yet handed to the kernel by a combiner.
    queued: AtomicUsize,
    table: Mutex<Table>,
    slot_freed: Condvar,
    shutdown: AtomicBool,
}

/// A file or block device driven through io_uring. See the [module docs](self).
pub struct UringBackend {
    inner: Arc<Inner>,
    reaper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend")
            .field("mode", &self.inner.file.mode())
            .field("queue_depth", &self.inner.queue_depth)
            .field("len", &self.inner.file.len())
            .finish()
    }
}

impl UringBackend {
    /// Opens (creating if missing) the file at `path` with [`DEFAULT_QUEUE_DEPTH`].
    pub fn open(path: impl AsRef<Path>, mode: IoMode) -> Result<UringBackend> {
        UringBackend::open_with_depth(path, mode, DEFAULT_QUEUE_DEPTH)
    }

    /// Opens the file at `path` with at most `queue_depth` operations in flight (1 to 4096).
    pub fn open_with_depth(
        path: impl AsRef<Path>,
        mode: IoMode,
        queue_depth: usize,
    ) -> Result<UringBackend> {
        let file = FileBackend::open(path, mode)?;
        UringBackend::from_file_backend(file, queue_depth)
    }

    /// Drives an open [`FileBackend`]'s file through a new ring.
    pub fn from_file_backend(file: FileBackend, queue_depth: usize) -> Result<UringBackend> {
        let queue_depth = queue_depth.clamp(1, 4096);
        if std::env::var_os("FOLIO_DISABLE_URING").is_some_and(|v| v != "0") {
            return Err(Error::Unsupported(
                "io_uring (disabled by FOLIO_DISABLE_URING)",
            ));
        }
        let ring = IoUring::builder()
            .dontfork()
            .build(queue_depth as u32)
            .map_err(|e| Error::io(IoOp::Read, 0, e))?;
        let inner = Arc::new(Inner {
            file,
            ring,
            queue_depth,
            sq: Mutex::new(()),
            submit_lock: Mutex::new(()),
            queued: AtomicUsize::new(0),
            table: Mutex::new(Table::default()),
            slot_freed: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let reaper_inner = inner.clone();
        let reaper = std::thread::Builder::new()
            .name("folio-uring".into())
            .spawn(move || reaper_inner.reap())
            .map_err(|e| Error::io(IoOp::Read, 0, e))?;
        Ok(UringBackend {
            inner,
            reaper: Some(reaper),
        })
    }

    /// The I/O mode.
    pub fn mode(&self) -> IoMode {
        self.inner.file.mode()
    }

    /// The most operations in flight at once.
    pub fn queue_depth(&self) -> usize {
        self.inner.queue_depth
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        self.inner.shutdown.store(true, Ordering::SeqCst);
        // Wake submitters waiting for a slot (they fail with `Closed`) and the reaper.
        self.inner.slot_freed.notify_all();
        let nop = opcode::Nop::new().build().user_data(WAKE);
        if self.inner.push(&nop).is_err() {
            tracing::error!("io_uring: could not queue the shutdown wake-up");
        }
        self.inner.enter_queued();
        if let Some(h) = self.reaper.take() {
            if h.join().is_err() {
                tracing::error!("io_uring reaper thread panicked");
            }
        }
    }
}

fn errno_error(op: IoOp, offset: u64, res: i32) -> Error {
    Error::io(op, offset, std::io::Error::from_raw_os_error(-res))
}

impl Inner {
    /// Reserves a slot for `op`, pushes `sqe` (with the slot as `user_data`) and submits.
    fn start(&self, op: Op, sqe: squeue::Entry) -> Result<()> {
        let slot = {
            let mut t = self.table.lock();
            loop {
                if self.shutdown.load(Ordering::SeqCst) {
                    return Err(Error::Closed);
                }
                if t.in_flight < self.queue_depth {
                    break;
                }
                self.slot_freed.wait(&mut t);
            }
            t.in_flight += 1;
            match t.free.pop() {
                Some(s) => {
                    t.ops[s] = Some(op);
                    s
                }
                None => {
                    t.ops.push(Some(op));
                    t.ops.len() - 1
                }
            }
        };
        // From here the op (and so its buffers) stays in the table until the reaper takes it.
        if let Err(e) = self.push(&sqe.user_data(slot as u64)) {
            // Never reached the kernel: undo.
            let op = self.take(slot);
            drop(op);
            return Err(e);
        }
        self.enter_queued();
        Ok(())
    }

    /// Removes the op in `slot` from the table.
    fn take(&self, slot: usize) -> Option<Op> {
        let mut t = self.table.lock();
        let op = t.ops.get_mut(slot).and_then(Option::take);
        if op.is_some() {
            t.free.push(slot);
            t.in_flight -= 1;
            self.slot_freed.notify_one();
        }
        op
    }

    fn push(&self, sqe: &squeue::Entry) -> Result<()> {
        let _g = self.sq.lock();
        // SAFETY: `self.sq` serialises every user of the submission queue, so this is its only
        // live handle. The SQE's buffers (frames and iovecs) are owned by the in-flight table
        // until the reaper takes the CQE (see `start`), or the SQE is a no-op without buffers.
        let pushed = unsafe {
            let mut sq = self.ring.submission_shared();
            let r = sq.push(sqe);
            sq.sync();
            r
        };
        pushed.map_err(|_| {
            // Cannot happen: in-flight ops are capped at the ring size.
            Error::io(
                IoOp::Read,
                0,
                std::io::Error::other("io_uring submission queue full"),
            )
        })?;
        self.queued.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Hands every queued SQE to the kernel, batching with concurrent submitters: if another
    /// thread is entering, it will see our SQE (it loops until nothing is queued).
    fn enter_queued(&self) {
        loop {
            if self.queued.load(Ordering::SeqCst) == 0 {
                return;
            }
            let Some(_g) = self.submit_lock.try_lock() else {
                return;
            };
            while self.queued.swap(0, Ordering::SeqCst) > 0 {
                loop {
                    match self.ring.submit() {
                        Ok(_) => break,
                        Err(e)
                            if matches!(
                                e.raw_os_error(),
                                Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                            ) =>
                        {
                            std::thread::yield_now()
                        }
                        Err(e) => {
                            // The SQEs stay in the ring; the reaper's next enter submits them.
                            tracing::error!(error = %e, "io_uring_enter failed");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// The reaper thread: completes ops until shutdown with nothing in flight.
    fn reap(&self) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(e) => {
                    tracing::error!(error = %e, "io_uring_enter (reaper) failed");
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            let mut done = Vec::new();
            {
                // SAFETY: the reaper is the only thread that touches the completion queue.
                let cq = unsafe { self.ring.completion_shared() };
                for cqe in cq {
                    if cqe.user_data() != WAKE {
                        done.push((cqe.user_data() as usize, cqe.result()));
                    }
                }
            }
            for (slot, res) in done {
                // The kernel is done with the op's buffers: it may now leave the table.
                if let Some(op) = self.take(slot) {
                    self.finish(op, res);
                }
            }
            if self.shutdown.load(Ordering::SeqCst) && self.table.lock().in_flight == 0 {
                return;
            }
        }
    }

    /// Completes an op whose CQE carried `res`.
    fn finish(&self, op: Op, res: i32) {
        let Op {
            buffers,
            offset,
            submitted,
            expected,
            completer,
            ..
        } = op;
        let result = match buffers {
            Buffers::Read(mut frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Read, offset, res))
                } else {
                    self.finish_read(&mut frames, offset, res as usize, expected)
                }
            }
            Buffers::Write(frames) => {
                if res < 0 {
                    Err(errno_error(IoOp::Write, offset, res))
                } else {
                    self.finish_write(&frames, offset, res as usize, submitted)
                }
            }
        };
        completer.complete(result);
    }

    fn finish_read(
        &self,
        frames: &mut [FrameMut],
        offset: u64,
        mut done: usize,
        expected: usize,
    ) -> Result<()> {
        if done < expected {
            // A short read inside the file (rare): read the rest synchronously, buffered, since
            // the remainder need not be aligned.
            let mut bufs = sub_slices_mut(frames, done);
            let more = preadv_full(self.file.buffered_file(), &mut bufs, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Read, offset, e))?;
            done += more;
        }
        // Past the end of the file: zeros.
        for b in sub_slices_mut(frames, done) {
            b.fill(0);
        }
        if done < expected {
            return Err(Error::ShortIo {
                op: IoOp::Read,
                offset,
                done,
                wanted: expected,
            });
        }
        Ok(())
    }

    fn finish_write(
        &self,
        frames: &[Frame],
        offset: u64,
        done: usize,
        submitted: usize,
    ) -> Result<()> {
        if done < submitted {
            if done == 0 {
                return Err(Error::io(
                    IoOp::Write,
                    offset,
                    std::io::Error::new(std::io::ErrorKind::WriteZero, "write wrote nothing"),
                ));
            }
            let rest: Vec<&[u8]> = sub_slices(frames, done, submitted);
            pwritev_full(self.file.buffered_file(), &rest, offset + done as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
        }
        Ok(())
    }
}

/// The parts of `frames` from byte `from` (of their concatenation) on.
fn sub_slices_mut(frames: &mut [FrameMut], from: usize) -> Vec<&mut [u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames.iter_mut() {
        let len = f.len();
        if pos + len > from {
            let skip = from.saturating_sub(pos);
            out.push(&mut f.as_mut_slice()[skip..]);
        }
        pos += len;
    }
    out
}

/// The parts of `frames` from byte `from` to byte `to` (of their concatenation).
fn sub_slices(frames: &[Frame], from: usize, to: usize) -> Vec<&[u8]> {
    let mut pos = 0;
    let mut out = Vec::new();
    for f in frames {
        let (start, end) = (pos, pos + f.len());
        pos = end;
        if end <= from || start >= to {
            continue;
        }
        let a = from.max(start) - start;
        let b = to.min(end) - start;
        out.push(&f.as_slice()[a..b]);
    }
    out
}

impl PageCacheBackend for UringBackend {
    fn read_pages(&self, idx: u64, mut frames: Vec<FrameMut>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let wanted = page_size * frames.len();
        let len = inner.file.len();
        let expected = len.saturating_sub(offset).min(wanted as u64) as usize;
        if expected == 0 {
            for f in &mut frames {
                f.as_mut_slice().fill(0);
            }
            return Ok(IoWaiter::ready(Ok(())));
        }
        let iovecs: Box<[libc::iovec]> = frames
            .iter_mut()
            .map(|f| libc::iovec {
                iov_base: f.as_mut_ptr().cast(),
                iov_len: f.len(),
            })
            .collect();
        let sqe = opcode::Readv::new(
            types::Fd(inner.file.file().as_raw_fd()),
            iovecs.as_ptr(),
            iovecs.len() as u32,
        )
        .offset(offset)
        .build();
        let (waiter, completer) = IoWaiter::pending(IoOp::Read, offset);
        let op = Op {
            buffers: Buffers::Read(frames),
            _iovecs: Iovecs { _keep: iovecs },
            offset,
            submitted: wanted,
            expected,
            completer,
        };
        inner.start(op, sqe)?;
        Ok(waiter)
    }

    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        let (page_size, offset) = io_geometry(idx, frames.iter().map(|f| f.len()))?;
        let inner = &*self.inner;
        inner.file.check_direct(offset, page_size, frames.len())?;
        let len = inner.file.len();
        if offset >= len {
            return Ok(IoWaiter::ready(Ok(())));
        }
        // Never grow the file: clip the write at its length.
        let mut total = ((len - offset) as usize).min(page_size * frames.len());
        if inner.file.mode() == IoMode::Direct && total % DIRECT_ALIGN != 0 {
            // The unaligned tail of the file goes through the buffered descriptor, now; the
            // aligned prefix through the ring.
            let aligned = total - total % DIRECT_ALIGN;
            let tail = sub_slices(&frames, aligned, total);
            pwritev_full(inner.file.buffered_file(), &tail, offset + aligned as u64)
                .map_err(|e| Error::io(IoOp::Write, offset, e))?;
            total = aligned;
            if total == 0 {
                return Ok(IoWaiter::ready(Ok(())));
            }
        }
        let iovecs: Box<[libc::iovec]> = sub_slices(&frames, 0, total)
            .into_iter()
            .map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            })
            .collect();
        let sqe = opcode::Writev::new(
            types::Fd(inner.file.file().as_raw_fd()),
            iovecs.as_ptr(),
            iovecs.len() as u32,
        )
        .offset(offset)
        .build();
        let (waiter, completer) = IoWaiter::pending(IoOp::Write, offset);
        let op = Op {
            buffers: Buffers::Write(frames),
            _iovecs: Iovecs { _keep: iovecs },
            offset,
            submitted: total,
            expected: total,
            completer,
        };
        inner.start(op, sqe)?;
        Ok(waiter)
    }

    fn len(&self) -> u64 {
        self.inner.file.len()
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.inner.file.set_len(len)
    }

    fn sync(&self) -> Result<()> {
        self.inner.file.sync()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.inner.file.write_zeroes(offset, len)
    }

    fn alignment(&self) -> usize {
        self.inner.file.alignment()
    }
}

/// Whether this process can use io_uring: `Err` with the reason if not. Probed once.
pub fn uring_support() -> std::result::Result<(), String> {
    static PROBE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    if std::env::var_os("FOLIO_DISABLE_URING").is_some_and(|v| v != "0") {
        return Err("disabled by FOLIO_DISABLE_URING".into());
    }
    PROBE
        .get_or_init(|| match IoUring::new(2) {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ENOSYS) => format!("the kernel has no io_uring ({e})"),
                Some(libc::EPERM | libc::EACCES) => {
                    format!("io_uring is not permitted (kernel.io_uring_disabled or seccomp: {e})")
                }
                _ => format!("io_uring_setup failed: {e}"),
            }),
        })
        .clone()
}
