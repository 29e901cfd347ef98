//! Zero-copy access: [`PageReadGuard`], [`PageWriteGuard`] and [`PinnedPage`].
//!
//! Owns the guard types and what their `Drop` releases; the holds themselves are taken by the
//! engine.

use std::ops::{Deref, DerefMut, Range};

use crate::engine::{Dirty, Engine, ExclusiveHold, SharedHold, Took};
use crate::error::{Error, Result};
use crate::page::{EXCLUSIVE, READERS_MASK, WRITEBACK, WRITER_WAITING};
use crate::page_no::PageNo;
use crate::policy::FrameId;

/// A read guard: shared access to a page's bytes, or to a slice of them. See
/// [`PageCache::read_page`](crate::PageCache::read_page) and
/// [`PageCache::read_slice`](crate::PageCache::read_slice).
pub struct PageReadGuard<'a> {
    hold: SharedHold<'a>,
    /// The bytes covered, within the page.
    in_page: Range<usize>,
}

impl<'a> PageReadGuard<'a> {
    /// A guard on `in_page` (within the page) of the page `hold` holds.
    pub(crate) fn new(hold: SharedHold<'a>, in_page: Range<usize>) -> PageReadGuard<'a> {
        debug_assert!(in_page.end <= hold.bytes().len());
        PageReadGuard { hold, in_page }
    }
}

impl Deref for PageReadGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.hold.bytes()[self.in_page.clone()]
    }
}

/// A write guard: exclusive access to a page's bytes; the page is dirty when it is dropped. See
/// [`PageCache::write_page`](crate::PageCache::write_page).
pub struct PageWriteGuard<'a> {
    engine: &'a Engine,
    /// Always `Some` until the guard drops (and releases it).
    hold: Option<ExclusiveHold<'a>>,
    page: u64,
}

impl<'a> PageWriteGuard<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        hold: ExclusiveHold<'a>,
        page: u64,
    ) -> PageWriteGuard<'a> {
        PageWriteGuard {
            engine,
            hold: Some(hold),
            page,
        }
    }
}

impl Deref for PageWriteGuard<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.hold.as_ref().expect("held until drop").bytes()
    }
}

impl DerefMut for PageWriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.hold.as_mut().expect("held until drop").bytes_mut()
    }
}

impl Drop for PageWriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(mut hold) = self.hold.take() {
            self.engine.zero_past_end(self.page, &mut hold);
            hold.release(Dirty::Yes);
        }
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
    /// The page pinned.
    pub fn page_no(&self) -> PageNo {
        PageNo(self.page)
    }

    /// The page pinned, as an integer.
    #[deprecated(note = "use `page_no`, a `PageNo`")]
    pub fn index(&self) -> u64 {
        self.page
    }

    /// Shared access to the bytes (waits for a writer). If the page was discarded while pinned,
    /// these are the bytes it had. Fails with `TooManyHolds` if the page already has the most
    /// readers its state word counts, and with `HeldByCaller` if this thread holds the page's
    /// write guard (it would wait for itself).
    pub fn read(&self) -> Result<PageReadGuard<'_>> {
        let meta = &self.engine.frames[self.frame as usize];
        let blocking = EXCLUSIVE | WRITER_WAITING;
        // A pinned frame keeps its tag and is VALID or ORPHAN: it can only be busy (a writer)
        // or have the most readers the state word counts. Bounded by its writers.
        loop {
            match self.engine.acquire_shared(self.frame, self.page, true) {
                Took::Held(h) => return Ok(PageReadGuard::new(h, 0..self.engine.page_size)),
                Took::Not(_) if meta.state() & READERS_MASK == READERS_MASK => {
                    return Err(Error::TooManyHolds {
                        page: self.page.into(),
                    })
                }
                Took::Not(_) if self.engine.waits_for_itself(self.frame, blocking) => {
                    return Err(Error::HeldByCaller {
                        page: self.page.into(),
                    })
                }
                Took::Not(_) => {
                    meta.wait_while(|s| s & blocking != 0 && s & READERS_MASK != READERS_MASK)
                }
            }
        }
    }

    /// Exclusive access to the bytes (waits for readers and write-back); marks the page dirty.
    /// Fails with `HeldByCaller` if this thread holds a guard of the page (it would wait for
    /// itself).
    pub fn write(&self) -> Result<PageWriteGuard<'_>> {
        let meta = &self.engine.frames[self.frame as usize];
        let blocking = EXCLUSIVE | READERS_MASK | WRITEBACK;
        // Bounded by the page's other holders and its write-back.
        loop {
            match self.engine.acquire_exclusive(self.frame, self.page, true) {
                Took::Held(h) => return Ok(PageWriteGuard::new(self.engine, h, self.page)),
                Took::Not(_) if self.engine.waits_for_itself(self.frame, blocking) => {
                    return Err(Error::HeldByCaller {
                        page: self.page.into(),
                    })
                }
                Took::Not(_) => {
                    meta.announce_writer();
                    meta.wait_while(|s| s & blocking != 0)
                }
            }
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
