//! Backends: where pages come from and go to.
//!
//! [`PageCacheBackend`] is the seed's trait, kept small because it is the test seam: the cache
//! only ever asks a backend to read or write runs of whole pages, to report and change its
//! length, and to make written data durable. Reads and writes are asynchronous in the seed's
//! sense: they return an [`IoWaiter`] that completes later (a positional-I/O backend completes it
//! before returning; an io_uring backend when the kernel reports completion).
//!
//! Buffers are [`FrameMut`] (lent to a read, which fills it) and [`Frame`] (lent to a write,
//! which only reads it). A frame handed to a backend belongs to that I/O until the waiter
//! completes: the cache keeps the page locked (reads) or under write-back (writes) for that long,
//! and never drops a waiter without waiting for it. The memory behind a frame is reference
//! counted, so it stays valid even if a waiter is leaked.
//!
//! # Ownership is checked, so the trait stays safe
//! A backend could keep a frame after completing its I/O and touch it later, while the cache
//! has handed the page to readers or to another I/O. Safe code cannot turn that into undefined
//! behaviour here:
//! - every [`FrameMut`] (which can write the frame) is counted while it exists; after a read
//!   completes, the cache publishes a frame only if its count is back to zero. A frame whose
//!   `FrameMut` did not come back (a backend that kept it, or an io_uring given up while the
//!   kernel may still write it) is *quarantined*: never used again, counted in
//!   [`Stats::quarantined_frames`](crate::Stats::quarantined_frames), logged;
//! - a [`Frame`] gives safe code only copies of its bytes ([`Frame::copy_to`], a copy that
//!   tolerates a concurrent writer, as the cache's optimistic reads do); a borrowed slice
//!   ([`Frame::as_slice`]) is `unsafe`, for backends that hand it to the kernel or to a system
//!   call that returns before the I/O completes.
//!
//! A backend that keeps a `Frame` can still read bytes the cache has since changed: that is a
//! broken backend, whose late writes the cache cannot undo (the io_uring backend that gives up a
//! ring with writes in it fails every later write for that reason).
//!
//! One file per backend: [`memory`](mod@memory) (tests and examples), [`file`](mod@file) (regular
//! files and block devices through positional I/O), [`uring`] (the same through io_uring, with many
//! I/Os in flight), [`faulty`](mod@faulty) (fault injection and power-cut simulation around any
//! other backend). [`open_best`] picks io_uring when the kernel allows it, else positional I/O.

pub mod extents;
pub mod faulty;
pub mod file;
pub mod memory;
pub mod uring;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::sync::{Condvar, Mutex};

use crate::error::{Error, IoOp, Result};

pub use extents::{Allocation, Extent};
pub use faulty::{FaultConfig, FaultyBackend};
pub use file::{FileBackend, IoMode};
pub use memory::MemoryBackend;
pub use uring::{uring_support, UringBackend};

/// Opens `path` with the fastest backend this process may use: [`UringBackend`] where io_uring
/// works, else [`FileBackend`] (with a warning that says why, printed once to stderr and logged).
/// Chosen at run time, so one binary serves old kernels, seccomp sandboxes and hosts with
/// `kernel.io_uring_disabled` set.
/// Setting `FOLIO_DISABLE_URING=1` forces the fallback.
pub fn open_best(
    path: impl AsRef<std::path::Path>,
    mode: IoMode,
) -> Result<Arc<dyn PageCacheBackend>> {
    let path = path.as_ref();
    match uring_support() {
        Ok(()) => match UringBackend::open(path, mode) {
            Ok(b) => return Ok(Arc::new(b)),
            Err(e) => warn_fallback(&e.to_string()),
        },
        Err(why) => warn_fallback(&why),
    }
    Ok(Arc::new(FileBackend::open(path, mode)?))
}

fn warn_fallback(why: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!(
            "folio: io_uring unavailable ({why}); falling back to positional I/O (FileBackend)"
        );
    });
    tracing::warn!(reason = why, "io_uring unavailable; using FileBackend");
}

/// Alignment of every frame: enough for O_DIRECT on any device with logical blocks up to 4 KiB.
pub const FRAME_ALIGN: usize = 4096;

/// A transparent huge page on x86-64 and most arm64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// When the kernel commits the memory of a frame region (see [`CacheConfig::memory`]).
///
/// [`CacheConfig::memory`]: crate::CacheConfig::memory
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Commit {
    /// All of it when the cache is created (`MADV_POPULATE_WRITE`, or touching each page on
    /// kernels before 5.14): creation costs the time to zero the budget (about 0.1 s per GiB
    /// here), fails cleanly if the memory is not there, and the I/O path never takes a
    /// page fault. The default, after TigerBeetle's "allocate everything up front".
    #[default]
    UpFront,
    /// Frame by frame, as the cache first fills each one: a large budget costs nothing until it
    /// is used, but each first use of a frame pays a page fault that zeroes it (for a cache
    /// filling at device speed, that fault was more than half the CPU time).
    Lazy,
}

/// A zeroed, aligned, fixed-size allocation that frames point into.
///
/// The cache allocates one of these up front for its whole budget (no allocation on the I/O
/// path); [`FrameMut::alloc`] makes a one-frame region for callers that use a backend directly.
/// It is cut into slots of one frame each; per slot it counts the [`FrameMut`]s alive, so the
/// cache can tell that every writable handle it lent came back (see the module docs).
pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    slot_shift: u32,
    lent: Box<[AtomicU32]>,
}

// SAFETY: `Region` is an owned heap allocation; access to its bytes is coordinated by the frame
// protocol (see `Frame`/`FrameMut` and `page/`), not by `Region` itself.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself exposes only raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of anonymous memory: zeroed, aligned to the system page (at least
    /// [`FRAME_ALIGN`]), committed as `commit` says, in slots of `slot` bytes (a power of two).
    pub(crate) fn new(len: usize, slot: usize, commit: Commit) -> Result<Arc<Region>> {
        let len = len.max(1);
        debug_assert!(slot.is_power_of_two());
        let slots = len.div_ceil(slot);
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // aliases nothing.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .map_err(|e| Error::InvalidConfig(format!("cannot map {len} bytes of frames: {e}")))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| Error::InvalidConfig("mmap returned null".to_string()))?;
        debug_assert_eq!(ptr.as_ptr() as usize % FRAME_ALIGN, 0);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if len >= HUGE_PAGE {
            // Transparent huge pages: a hit at a random page then needs no TLB miss and page
            // walk for its bytes (on a 256 MiB cache that was a walk on nearly every hit). The
            // kernel aligns large anonymous mappings to huge pages; the advice comes before the
            // first touch and is best effort. SAFETY: the range is the mapping just made, which
            // nothing uses yet; MADV_HUGEPAGE changes how it is backed, not its contents.
            let _ = unsafe {
                rustix::mm::madvise(ptr.as_ptr().cast(), len, rustix::mm::Advice::LinuxHugepage)
            };
        }
        let region = Arc::new(Region {
            ptr,
            len,
            slot_shift: slot.trailing_zeros(),
            lent: (0..slots).map(|_| AtomicU32::new(0)).collect(),
        });
        if commit == Commit::UpFront {
            region.populate()?;
        }
        Ok(region)
    }

    /// Commits every page of the region now.
    fn populate(&self) -> Result<()> {
        // SAFETY: the range is exactly this mapping, which nothing uses yet; populating commits
        // its pages without changing their (zero) contents.
        let advised = unsafe {
            rustix::mm::madvise(
                self.ptr.as_ptr().cast(),
                self.len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
        match advised {
            Ok(()) => Ok(()),
            // Kernels before 5.14 do not know the advice: touch each page instead.
            Err(rustix::io::Errno::INVAL) => {
                let step = FRAME_ALIGN; // at most the system page: every page is touched
                for offset in (0..self.len).step_by(step) {
                    // SAFETY: `offset < len`, inside the mapping, which nobody else uses yet;
                    // writing the zero that is already there commits the page.
                    unsafe { self.ptr.as_ptr().add(offset).write_volatile(0) };
                }
                Ok(())
            }
            Err(e) => Err(Error::InvalidConfig(format!(
                "cannot commit {} bytes of frame memory up front: {e} \
                 (use a smaller budget, or Commit::Lazy)",
                self.len
            ))),
        }
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// [`FrameMut`]s alive in slot `slot` (the frame at `slot << slot_shift`).
    pub(crate) fn lent(&self, slot: usize) -> u32 {
        // Acquire: whatever the last handle's owner wrote happens before our use of the bytes.
        self.lent[slot].load(Ordering::Acquire)
    }

    fn lend(&self, offset: usize) -> &AtomicU32 {
        &self.lent[offset >> self.slot_shift]
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with exactly this length; every frame handle holds an `Arc`
        // to the region, so none outlives the mapping.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            tracing::error!(error = %e, "munmap of the frame region failed");
        }
    }
}

/// A page buffer lent to a backend *read*: the backend fills it.
///
/// Whoever holds a `FrameMut` has exclusive access to its bytes until it is dropped, and must
/// drop it before completing the read: the cache never uses a frame whose `FrameMut` is still
/// alive (see the module docs).
pub struct FrameMut {
    ptr: NonNull<u8>,
    len: usize,
    _region: Arc<Region>,
}

// SAFETY: a `FrameMut` is a unique handle to its bytes (see the type docs); the region it points
// into is kept alive by the `Arc`.
unsafe impl Send for FrameMut {}
// SAFETY: shared references only give shared access to the bytes.
unsafe impl Sync for FrameMut {}

/// A page buffer lent to a backend *write*: the backend reads it.
///
/// While a `Frame` exists, nobody writes its bytes (the cache holds the page under write-back,
/// which excludes writers).
pub struct Frame {
    ptr: NonNull<u8>,
    len: usize,
    _region: Arc<Region>,
}

// SAFETY: a `Frame` only gives shared access to bytes nobody writes while it exists.
unsafe impl Send for Frame {}
// SAFETY: as above.
unsafe impl Sync for Frame {}

impl FrameMut {
    /// Allocates a standalone zeroed, [`FRAME_ALIGN`]-aligned buffer of `len` bytes, for using a
    /// backend directly.
    pub fn alloc(len: usize) -> Result<FrameMut> {
        let region = Region::new(len, len.max(1).next_power_of_two(), Commit::Lazy)?;
        // SAFETY: the region is new and this is the only handle to it.
        Ok(unsafe { FrameMut::from_region(&region, 0, len) })
    }

    /// Makes a handle to `len` bytes at `offset` of `region`.
    ///
    /// # Safety
    /// `offset + len <= region.len()`, and for the lifetime of the returned handle no other
    /// reference or handle may access those bytes.
    pub(crate) unsafe fn from_region(region: &Arc<Region>, offset: usize, len: usize) -> FrameMut {
        debug_assert!(offset + len <= region.len());
        region.lend(offset).fetch_add(1, Ordering::AcqRel);
        FrameMut {
            // SAFETY: in bounds per the caller's contract; the base pointer is non-null.
            ptr: unsafe { NonNull::new_unchecked(region.base().add(offset)) },
            len,
            _region: region.clone(),
        }
    }

    /// Length in bytes (the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: frames are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: exclusive handle to `len` valid bytes (type invariant).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: exclusive handle to `len` valid bytes (type invariant).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer for kernel I/O (io_uring). The pointer is valid while `self` lives.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Gives up write access: the same bytes as a [`Frame`].
    pub fn freeze(self) -> Frame {
        let this = std::mem::ManuallyDrop::new(self);
        let offset = this.ptr.as_ptr() as usize - this._region.base() as usize;
        this._region.lend(offset).fetch_sub(1, Ordering::AcqRel);
        Frame {
            ptr: this.ptr,
            len: this.len,
            // SAFETY: `this` is never dropped, so its region handle is moved out exactly once.
            _region: unsafe { std::ptr::read(&this._region) },
        }
    }
}

impl Frame {
    /// Makes a read-only handle to `len` bytes at `offset` of `region`.
    ///
    /// # Safety
    /// `offset + len <= region.len()`, and while the handle lives nobody may write those bytes.
    pub(crate) unsafe fn from_region(region: &Arc<Region>, offset: usize, len: usize) -> Frame {
        debug_assert!(offset + len <= region.len());
        Frame {
            // SAFETY: in bounds per the caller's contract; the base pointer is non-null.
            ptr: unsafe { NonNull::new_unchecked(region.base().add(offset)) },
            len,
            _region: region.clone(),
        }
    }

    /// Length in bytes (the page size).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: frames are never empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, borrowed.
    ///
    /// # Safety
    /// The borrow must end before the I/O this frame was lent to completes (before the
    /// backend completes its waiter): after that the cache may change the bytes. A system call
    /// made and returned before completing (as `pwritev` in [`FileBackend`]) qualifies.
    /// [`copy_to`](Self::copy_to) is the safe way to get the bytes.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` valid bytes, which nobody writes until the I/O completes (the cache
        // holds the page under write-back), and the caller ends the borrow before that.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies the bytes into `dst` (`dst.len()` of them, at most [`len`](Self::len)). Safe
    /// even from a backend that kept the frame past its I/O: the copy tolerates a concurrent
    /// writer (it may then see a mix of old and new bytes, never undefined behaviour).
    pub fn copy_to(&self, dst: &mut [u8]) {
        let n = dst.len().min(self.len);
        // SAFETY: `self.ptr .. + len` stays mapped while `self` lives (it holds the region).
        unsafe { crate::page::copy_racy_any(self.ptr.as_ptr(), &mut dst[..n]) };
    }

    /// The bytes, copied (see [`copy_to`](Self::copy_to)).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.copy_to(&mut v);
        v
    }

    /// Raw pointer for kernel I/O (io_uring). The pointer is valid while `self` lives.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for FrameMut {
    fn drop(&mut self) {
        let offset = self.ptr.as_ptr() as usize - self._region.base() as usize;
        // Release: our writes to the bytes happen before the cache sees the count drop.
        self._region.lend(offset).fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}

impl std::fmt::Debug for FrameMut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameMut").field("len", &self.len).finish()
    }
}

/// The state shared by an [`IoWaiter`] and its [`IoCompleter`].
struct Completion {
    result: Mutex<Option<Result<()>>>,
    /// Set (under the lock, after `result`) once the I/O completed: lets
    /// [`IoWaiter::is_complete`] answer without the lock, as a caller with a window of reads in
    /// flight polls all of them for each one it finishes.
    completed: AtomicBool,
    done: Condvar,
}

/// The seed's `BioWaiter`: the pending result of one backend I/O.
///
/// [`IoWaiter::wait`] blocks until the I/O completes and returns its result. Dropping a waiter
/// does not cancel the I/O: the buffers stay owned by the backend until it completes.
#[must_use = "an I/O's result must be waited for"]
pub struct IoWaiter {
    inner: WaiterInner,
}

enum WaiterInner {
    Ready(Result<()>),
    Pending(Arc<Completion>),
    Driven(Arc<Completion>, Arc<dyn IoDriver>),
}

/// What makes a [driven](IoWaiter::driven) waiter's I/O progress: a queue of operations that no
/// thread of its own completes (an io_uring the waiting thread reaps itself, as `fio` does), so
/// whoever waits does the completing.
pub trait IoDriver: Send + Sync {
    /// Completes at least one outstanding operation, blocking until one finishes; returns at
    /// once if none is outstanding.
    fn drive(&self);
}

/// The completing side of a pending [`IoWaiter`], held by the backend.
///
/// Dropping it without calling [`IoCompleter::complete`] completes the waiter with an error, so a
/// backend bug cannot leave a waiter hanging forever.
pub struct IoCompleter {
    completion: Option<Arc<Completion>>,
    op: IoOp,
    offset: u64,
}

impl IoWaiter {
    /// A waiter that is already complete (synchronous backends).
    pub fn ready(result: Result<()>) -> IoWaiter {
        IoWaiter {
            inner: WaiterInner::Ready(result),
        }
    }

    /// A pending waiter and the completer that finishes it. `op` and `offset` describe the I/O
    /// for the error reported if the completer is dropped unfinished.
    pub fn pending(op: IoOp, offset: u64) -> (IoWaiter, IoCompleter) {
        let completion = Arc::new(Completion {
            result: Mutex::new(None),
            completed: AtomicBool::new(false),
            done: Condvar::new(),
        });
        (
            IoWaiter {
                inner: WaiterInner::Pending(completion.clone()),
            },
            IoCompleter {
                completion: Some(completion),
                op,
                offset,
            },
        )
    }

    /// A pending waiter whose [`wait`](Self::wait) calls `driver` until the I/O completes, and
    /// the completer that the driver completes.
    pub fn driven(op: IoOp, offset: u64, driver: Arc<dyn IoDriver>) -> (IoWaiter, IoCompleter) {
        let (waiter, completer) = IoWaiter::pending(op, offset);
        let WaiterInner::Pending(c) = waiter.inner else {
            unreachable!("IoWaiter::pending returns a pending waiter")
        };
        let waiter = IoWaiter {
            inner: WaiterInner::Driven(c, driver),
        };
        (waiter, completer)
    }

    /// True once the I/O has completed (waiting would not block).
    pub fn is_complete(&self) -> bool {
        match &self.inner {
            WaiterInner::Ready(_) => true,
            WaiterInner::Pending(c) | WaiterInner::Driven(c, _) => {
                c.completed.load(Ordering::Acquire)
            }
        }
    }

    /// Blocks until this I/O or, for a [driven](Self::driven) waiter, any other I/O of the same
    /// driver completes, whichever is first (a caller with many reads in flight then finishes
    /// whichever completed, as `fio` refills any free slot). Returns whether this one is
    /// complete.
    pub fn wait_progress(&self) -> bool {
        match &self.inner {
            WaiterInner::Ready(_) => true,
            WaiterInner::Pending(c) => {
                let mut guard = c.result.lock();
                while guard.is_none() {
                    guard = c.done.wait(guard);
                }
                true
            }
            WaiterInner::Driven(c, driver) => {
                if !c.completed.load(Ordering::Acquire) {
                    driver.drive();
                }
                c.completed.load(Ordering::Acquire)
            }
        }
    }

    /// Blocks until the I/O completes; returns its result.
    pub fn wait(self) -> Result<()> {
        match self.inner {
            WaiterInner::Ready(r) => r,
            WaiterInner::Pending(c) => {
                let mut guard = c.result.lock();
                loop {
                    if let Some(r) = guard.take() {
                        return r;
                    }
                    guard = c.done.wait(guard);
                }
            }
            WaiterInner::Driven(c, driver) => loop {
                if let Some(r) = c.result.lock().take() {
                    return r;
                }
                // Our operation is outstanding until its completer runs, so each call completes
                // something or blocks until it can.
                driver.drive();
            },
        }
    }
}

/// An [`IoWaiter`] that never leaves the thread that started its I/O: neither `Send` nor
/// `Sync`, so it can only be waited for, polled or dropped there.
///
/// From [`start_read_pages_local`](PageCacheBackend::start_read_pages_local) and
/// [`start_write_pages_local`](PageCacheBackend::start_write_pages_local). Knowing that only the
/// starting thread ever waits lets a backend use a queue only that thread may enter (an io_uring
/// set up `SINGLE_ISSUER | DEFER_TASKRUN`, whose completion work runs in the waiter's own
/// `io_uring_enter` instead of interrupting it). Any [`IoWaiter`] converts into one.
#[must_use = "an I/O's result must be waited for"]
pub struct LocalIoWaiter {
    waiter: IoWaiter,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl LocalIoWaiter {
    /// As [`IoWaiter::is_complete`].
    pub fn is_complete(&self) -> bool {
        self.waiter.is_complete()
    }

    /// As [`IoWaiter::wait_progress`].
    pub fn wait_progress(&self) -> bool {
        self.waiter.wait_progress()
    }

    /// As [`IoWaiter::wait`].
    pub fn wait(self) -> Result<()> {
        self.waiter.wait()
    }
}

impl From<IoWaiter> for LocalIoWaiter {
    fn from(waiter: IoWaiter) -> LocalIoWaiter {
        LocalIoWaiter {
            waiter,
            _this_thread: std::marker::PhantomData,
        }
    }
}

impl std::fmt::Debug for LocalIoWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalIoWaiter")
            .field("complete", &self.is_complete())
            .finish()
    }
}

impl IoCompleter {
    /// Completes the waiter with `result`.
    pub fn complete(mut self, result: Result<()>) {
        self.finish(result);
    }

    fn finish(&mut self, result: Result<()>) {
        if let Some(c) = self.completion.take() {
            let mut slot = c.result.lock();
            *slot = Some(result);
            c.completed.store(true, Ordering::Release);
            drop(slot);
            c.done.notify_all();
        }
    }
}

impl Drop for IoCompleter {
    fn drop(&mut self) {
        let (op, offset) = (self.op, self.offset);
        self.finish(Err(Error::io(
            op,
            offset,
            std::io::Error::other("the backend abandoned the I/O"),
        )));
    }
}

/// The source and destination of pages: a file, a block device, memory, or a wrapper around one
/// of those (fault injection, tracing).
///
/// Page `idx` covers bytes `idx * page_size .. (idx + 1) * page_size`, where `page_size` is the
/// length of the frames passed in. A backend must:
/// - fill the part of a read that lies past [`len`](Self::len) with zeros (a file whose length is
///   not a page multiple has a partial last page);
/// - never grow itself on a write: bytes of a write past `len` are not written;
/// - complete every waiter it returns, with an error if the I/O failed.
pub trait PageCacheBackend: Send + Sync {
    /// Reads the contiguous pages `idx .. idx + frames.len()` into `frames`, asynchronously.
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter>;

    /// As [`read_pages`](Self::read_pages), when the caller has more reads to submit before it
    /// waits for this one (a batch of misses). A backend that does small reads inline, on the
    /// calling thread, should queue this one instead, so the batch is in flight at once; it may
    /// hold the queued reads back until [`unplug`](Self::unplug), which the caller calls before
    /// it waits for any of them (Linux's block plugging).
    fn start_read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> Result<IoWaiter> {
        self.read_pages(idx, frames)
    }

    /// As [`start_read_pages`](Self::start_read_pages), when the calling thread itself will wait
    /// for the read (or drop its waiter), which the returned [`LocalIoWaiter`] enforces: a
    /// backend may then complete it on a queue that only this thread enters. The page cache's
    /// batched misses ([`read_exact_many`](crate::PageCache::read_exact_many)) come this way.
    /// Default: [`start_read_pages`](Self::start_read_pages).
    fn start_read_pages_local(&self, idx: u64, frames: Vec<FrameMut>) -> Result<LocalIoWaiter> {
        self.start_read_pages(idx, frames).map(LocalIoWaiter::from)
    }

    /// As [`start_write_pages`](Self::start_write_pages), waited for on the calling thread (see
    /// [`start_read_pages_local`](Self::start_read_pages_local)). The page cache's flushes come
    /// this way. Default: [`start_write_pages`](Self::start_write_pages).
    fn start_write_pages_local(&self, idx: u64, frames: Vec<Frame>) -> Result<LocalIoWaiter> {
        self.start_write_pages(idx, frames).map(LocalIoWaiter::from)
    }

    /// Starts the reads and writes that the calling thread queued with the `start_*` methods
    /// (default: nothing to do).
    fn unplug(&self) {}

    /// As [`write_pages`](Self::write_pages), when the caller has more writes to submit before
    /// it waits for this one (a flush). As with [`start_read_pages`](Self::start_read_pages), the
    /// backend may hold it back until [`unplug`](Self::unplug), which the caller calls before it
    /// waits for any of them.
    fn start_write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter> {
        self.write_pages(idx, frames)
    }

    /// Writes `frames` to the contiguous pages `idx .. idx + frames.len()`, asynchronously.
    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> Result<IoWaiter>;

    /// Length of the backend in bytes.
    fn len(&self) -> u64;

    /// True if the backend is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the length in bytes: shrinking drops data past the end, growing reads as zeros.
    fn set_len(&self, len: u64) -> Result<()>;

    /// Makes every completed write durable (`fdatasync`).
    fn sync(&self) -> Result<()>;

    /// Makes `offset .. offset + len` read as zeros, cheaply if the backend can (hole punching).
    /// Returns [`Error::Unsupported`] if it cannot; the cache then writes zero pages instead.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        let _ = (offset, len);
        Err(Error::Unsupported("write_zeroes"))
    }

    /// Which bytes of `offset .. offset + len` are data and which are holes, as at most
    /// `extents_max` [`Extent`]s from `offset` on (they may cover less than `len`). Only what
    /// the backend itself holds: written-back data, not dirty pages still in a cache. The
    /// default, "all data", is always correct; file backends ask the file system
    /// (`SEEK_DATA`/`SEEK_HOLE`).
    fn allocation(&self, offset: u64, len: u64, extents_max: usize) -> Result<Vec<Extent>> {
        let _ = extents_max;
        let len = len.min(self.len().saturating_sub(offset));
        Ok(if len == 0 {
            Vec::new()
        } else {
            vec![Extent {
                len,
                allocation: Allocation::Data,
            }]
        })
    }

    /// The largest number of pages this backend wants in one [`read_pages`](Self::read_pages) or
    /// [`write_pages`](Self::write_pages) call.
    fn max_io_pages(&self) -> usize {
        256
    }

    /// The alignment (bytes) that offsets, lengths and buffers of I/O must have (O_DIRECT).
    fn alignment(&self) -> usize {
        1
    }

    /// How many operations this backend keeps in flight at once. 1 (the default) means its
    /// calls do the I/O before they return (the waiter is already complete): the cache then
    /// writes back large flushes from several threads to get a queue depth. Above 1 the cache
    /// submits up to this many operations from one thread and waits for them afterwards.
    fn queue_depth(&self) -> usize {
        1
    }

    /// Number of pages of `page_size` bytes, counting a partial last page.
    fn npages(&self, page_size: usize) -> u64 {
        self.len().div_ceil(page_size as u64)
    }

    /// Reads one page (the seed's `read_page`).
    fn read_page(&self, idx: u64, frame: FrameMut) -> Result<IoWaiter> {
        self.read_pages(idx, vec![frame])
    }

    /// Writes one page (the seed's `write_page`).
    fn write_page(&self, idx: u64, frame: Frame) -> Result<IoWaiter> {
        self.write_pages(idx, vec![frame])
    }

    /// Reads one page and waits for it (the seed's `read_page_sync`).
    fn read_page_sync(&self, idx: u64, frame: FrameMut) -> Result<()> {
        self.read_page(idx, frame)?.wait()
    }

    /// Writes one page and waits for it (the seed's `write_page_sync`).
    fn write_page_sync(&self, idx: u64, frame: Frame) -> Result<()> {
        self.write_page(idx, frame)?.wait()
    }
}

/// Checks that `frames` all have the length of the first and returns it with the byte offset of
/// page `idx`. Shared by the backends in this module.
pub(crate) fn io_geometry(idx: u64, lens: impl Iterator<Item = usize>) -> Result<(usize, u64)> {
    let mut page_size = None;
    let mut count = 0u64;
    for len in lens {
        match page_size {
            None => page_size = Some(len),
            Some(p) if p != len => {
                return Err(Error::InvalidConfig(format!(
                    "frames of one I/O differ in length ({p} and {len})"
                )))
            }
            Some(_) => {}
        }
        count += 1;
    }
    let page_size = page_size.unwrap_or(0);
    let offset = idx.checked_mul(page_size as u64).ok_or(Error::Overflow {
        offset: idx,
        len: page_size as u64,
    })?;
    offset
        .checked_add(count * page_size as u64)
        .ok_or(Error::Overflow {
            offset,
            len: count * page_size as u64,
        })?;
    Ok((page_size, offset))
}

// The model-checking build's primitives need a shuttle test: these run on std's only.
#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

    /// A driver over a queue of completers that completes one per `drive`, counting calls.
    #[derive(Default)]
    struct OneAtATime {
        queue: Mutex<std::collections::VecDeque<IoCompleter>>,
        drives: std::sync::atomic::AtomicUsize,
    }

    impl IoDriver for OneAtATime {
        fn drive(&self) {
            self.drives
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(c) = self.queue.lock().pop_front() {
                c.complete(Ok(()));
            }
        }
    }

    // The model-checking build's racy copy yields to shuttle, which needs a shuttle test.
    #[cfg(not(folio_model))]
    #[test]
    fn a_region_counts_the_writable_handles_lent_out_of_each_slot() {
        let region = Region::new(4 * 512, 512, Commit::Lazy).unwrap();
        // SAFETY: disjoint slots of a region only this test uses.
        let (a, b) = unsafe {
            (
                FrameMut::from_region(&region, 0, 512),
                FrameMut::from_region(&region, 3 * 512, 512),
            )
        };
        assert_eq!((region.lent(0), region.lent(3)), (1, 1));
        drop(a);
        assert_eq!(region.lent(0), 0);
        // A frozen handle cannot write: it no longer counts.
        let frozen = b.freeze();
        assert_eq!(region.lent(3), 0);
        assert_eq!(frozen.to_vec(), vec![0u8; 512]);
        // SAFETY: as above.
        let kept = unsafe { FrameMut::from_region(&region, 512, 512) };
        std::mem::forget(kept);
        assert_eq!(region.lent(1), 1, "a leaked handle stays lent for good");
    }

    #[test]
    fn driven_waiters_complete_by_driving_whoever_waits() {
        let driver = Arc::new(OneAtATime::default());
        let mut waiters = Vec::new();
        for i in 0..3u64 {
            let (w, c) = IoWaiter::driven(IoOp::Read, i, driver.clone());
            driver.queue.lock().push_back(c);
            waiters.push(w);
        }
        let last = waiters.pop().unwrap();
        // Waiting for the last drives the first two to completion on the way.
        assert!(!last.is_complete());
        assert!(!last.wait_progress(), "one drive completes only the first");
        assert!(waiters[0].is_complete() && !waiters[1].is_complete());
        last.wait().unwrap();
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 3);
        // Completed waiters return at once, without driving.
        for w in waiters {
            assert!(w.wait_progress());
            w.wait().unwrap();
        }
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[test]
    fn a_dropped_completer_fails_its_driven_waiter() {
        let driver = Arc::new(OneAtATime::default());
        let (w, c) = IoWaiter::driven(IoOp::Write, 4096, driver.clone());
        drop(c);
        let e = w.wait().unwrap_err();
        assert!(e.to_string().contains("abandoned"), "{e}");
        assert_eq!(driver.drives.load(std::sync::atomic::Ordering::Relaxed), 0);
    }
}
