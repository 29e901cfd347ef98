//! Frame memory: the [`Region`] that frames point into, and the two handles a backend is lent,
//! [`FrameMut`] (a read fills it) and [`Frame`] (a write reads it).
//!
//! # Owns
//! - mapping the region (anonymous memory, aligned to [`FRAME_ALIGN`], transparent huge pages
//!   where the kernel has them), committing it as [`Commit`] says, unmapping it when the last
//!   handle is gone;
//! - counting the [`FrameMut`]s alive in each slot (lent counting), so the cache can tell that
//!   every writable handle it lent came back (see the [`backend`](super) module docs);
//! - the handles' byte access: a [`Frame`] gives safe code only copies of its bytes.
//!
//! # Does not own
//! - which frame holds which page and who may touch its bytes: the page state word
//!   (`crate::page`) and the engine's hold tokens;
//! - quarantining a frame whose [`FrameMut`] did not come back (the engine's, which reads the
//!   count here).
//!
//! # May block
//! - [`Region::new`] with [`Commit::UpFront`]: commits the whole region (about 0.1 s per GiB);
//!   the first touch of a frame with [`Commit::Lazy`] takes a page fault. Nothing else blocks.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::error::{ConfigError, Error, Result};

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
/// cache can tell that every writable handle it lent came back (see the [`backend`](super) module docs).
/// The count at which a slot reads as lent for good (see [`Region::lend`]).
pub(crate) const LENT_FOR_GOOD: u32 = u8::MAX as u32;

pub(crate) struct Region {
    ptr: NonNull<u8>,
    len: usize,
    slot_shift: u32,
    lent: Box<[AtomicU8]>,
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
        .map_err(|e| frame_memory("map", len, e.into()))?;
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| frame_memory("map", len, std::io::Error::other("mmap returned null")))?;
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
            lent: (0..slots).map(|_| AtomicU8::new(0)).collect(),
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
            Err(e) => Err(frame_memory("commit", self.len, e.into())),
        }
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the per-slot counts (for `metadata_bytes`).
    pub(crate) const LENT_BYTES_PER_SLOT: usize = std::mem::size_of::<AtomicU8>();

    /// [`FrameMut`]s alive in slot `slot` (the frame at `slot << slot_shift`), or
    /// [`LENT_FOR_GOOD`] once that many were.
    pub(crate) fn lent(&self, slot: usize) -> u32 {
        // Acquire: whatever the last handle's owner wrote happens before our use of the bytes.
        u32::from(self.lent[slot].load(Ordering::Acquire))
    }

    /// Counts a handle of the slot at `offset` lent. One byte per slot: a count that reaches
    /// [`LENT_FOR_GOOD`] stays there, so the slot reads as lent for good (the cache then never
    /// reuses its frame) rather than wrap to "nothing lent" while handles live. The cache
    /// lends one handle per slot at a time; only a backend that keeps handles gets near it.
    fn lend(&self, offset: usize) {
        let _ = self.lent[offset >> self.slot_shift].fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |n| (u32::from(n) < LENT_FOR_GOOD).then(|| n + 1),
        );
    }

    /// Counts a handle of the slot at `offset` back (Release: the handle's writes to the bytes
    /// happen before the cache sees the count drop).
    fn give_back(&self, offset: usize) {
        let _ = self.lent[offset >> self.slot_shift].fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |n| {
                debug_assert!(n > 0, "a handle given back twice");
                (u32::from(n) < LENT_FOR_GOOD).then(|| n.saturating_sub(1))
            },
        );
    }
}

/// The frame memory of `bytes` bytes could not be mapped or committed (`action`).
fn frame_memory(action: &'static str, bytes: usize, source: std::io::Error) -> Error {
    ConfigError::FrameMemory {
        action,
        bytes,
        source: Arc::new(source),
    }
    .into()
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
/// alive (see the [`backend`](super) module docs).
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
        region.lend(offset);
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
        this._region.give_back(offset);
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
    /// made and returned before completing (as `pwritev` in [`FileBackend`](super::FileBackend)) qualifies.
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
        self._region.give_back(offset);
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

// The model-checking build's primitives need a shuttle test: these run on std's only.
#[cfg(all(test, not(folio_model)))]
mod tests {
    use super::*;

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

    #[cfg(not(folio_model))]
    #[test]
    fn a_slot_that_lent_the_most_handles_its_count_holds_stays_lent_for_good() {
        let region = Region::new(2 * 512, 512, Commit::Lazy).unwrap();
        // SAFETY: slot 1 of a region only this test uses; none of the handles is ever used to
        // access the bytes (they are only counted and dropped).
        let handles: Vec<FrameMut> = (0..LENT_FOR_GOOD + 10)
            .map(|_| unsafe { FrameMut::from_region(&region, 512, 512) })
            .collect();
        assert_eq!(region.lent(1), LENT_FOR_GOOD);
        drop(handles);
        assert_eq!(region.lent(1), LENT_FOR_GOOD, "never wraps to nothing lent");
        assert_eq!(region.lent(0), 0, "other slots are not touched");
    }
}
