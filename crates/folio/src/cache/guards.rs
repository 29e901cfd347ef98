//! Zero-copy access: [`PageReadGuard`], [`PageWriteGuard`] and [`PinnedPage`].
//!
//! Owns the guard types and what their `Drop` releases; the holds themselves are taken by the
//! engine.

use std::ops::{Deref, DerefMut};

use crate::engine::Engine;
use crate::page::{Acquire, EXCLUSIVE, READERS_MASK, WRITEBACK};
use crate::policy::FrameId;

/// A read guard: shared access to a page's bytes. See [`PageCache::read_page`](crate::PageCache::read_page).
pub struct PageReadGuard<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) frame: FrameId,
    /// The first byte the guard covers, inside the frame.
    pub(crate) bytes: *const u8,
    /// Bytes covered: the page, or a slice of it.
    pub(crate) len: usize,
}

impl Deref for PageReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold a reader hold on the frame for the guard's lifetime.
        // `bytes .. bytes + len` lies inside the frame (checked where the guard is made).
        unsafe { std::slice::from_raw_parts(self.bytes, self.len) }
    }
}

impl Drop for PageReadGuard<'_> {
    fn drop(&mut self) {
        self.engine.unlock_shared(self.frame);
    }
}

/// A write guard: exclusive access to a page's bytes; the page is dirty when it is dropped. See
/// [`PageCache::write_page`](crate::PageCache::write_page).
pub struct PageWriteGuard<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) frame: FrameId,
    pub(crate) page: u64,
    pub(crate) bytes: *mut u8,
}

impl Deref for PageWriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: we hold the frame EXCLUSIVE for the guard's lifetime.
        unsafe { std::slice::from_raw_parts(self.bytes, self.engine.page_size) }
    }
}

impl DerefMut for PageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: we hold the frame EXCLUSIVE for the guard's lifetime; `&mut self` makes this
        // the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.bytes, self.engine.page_size) }
    }
}

impl Drop for PageWriteGuard<'_> {
    fn drop(&mut self) {
        self.engine.zero_past_end(self.page, self.frame);
        self.engine.unlock_exclusive(self.frame, true);
    }
}

/// A pinned page: resident until dropped, readable and writable through guards. The `Pager`'s
/// committed page.
pub struct PinnedPage<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) frame: FrameId,
    pub(crate) page: u64,
}

impl PinnedPage<'_> {
    /// The page index.
    pub fn index(&self) -> u64 {
        self.page
    }

    /// Engine access to the bytes (waits for a writer). If the page was discarded while pinned,
    /// these are the bytes it had.
    pub fn read(&self) -> PageReadGuard<'_> {
        let meta = &self.engine.frames[self.frame as usize];
        // A pinned frame keeps its tag and is VALID or ORPHAN: it can only be busy.
        while meta.lock_shared_in(self.page, true) != Acquire::Acquired {
            meta.wait_while(|s| s & EXCLUSIVE != 0);
        }
        PageReadGuard {
            engine: self.engine,
            frame: self.frame,
            bytes: self.engine.frame_ptr(self.frame),
            len: self.engine.page_size,
        }
    }

    /// Exclusive access to the bytes (waits for readers and write-back); marks the page dirty.
    pub fn write(&self) -> PageWriteGuard<'_> {
        let meta = &self.engine.frames[self.frame as usize];
        while meta.lock_exclusive_in(self.page, true) != Acquire::Acquired {
            meta.wait_while(|s| s & (EXCLUSIVE | READERS_MASK | WRITEBACK) != 0);
        }
        PageWriteGuard {
            engine: self.engine,
            frame: self.frame,
            page: self.page,
            bytes: self.engine.frame_ptr(self.frame),
        }
    }

    /// Marks the page dirty (the seed's `update_page`).
    pub fn mark_dirty(&self) {
        drop(self.write());
    }
}

impl Drop for PinnedPage<'_> {
    fn drop(&mut self) {
        let r = self.engine.frames[self.frame as usize].unpin();
        self.engine.released(self.frame, r);
    }
}
