//! The seed's [`Pager`]: how a memory object (a VMO) drives the cache page by page.
//!
//! `commit_page` makes a page resident and pins it, `update_page` records that the committed page
//! was modified, and `decommit_page` writes it back if dirty and drops it. Unlike the seed,
//! decommitting a dirty page whose write-back fails keeps the page (dirty) and returns the error,
//! and `update_page` on a page that is not resident is an error rather than a warning.

use std::ops::Range;

use crate::cache::{PageCache, PinnedPage};
use crate::error::{Error, Result};

/// Page-granular access for a memory object.
pub trait Pager {
    /// Makes page `idx` resident and returns it pinned.
    fn commit_page(&self, idx: u64) -> Result<PinnedPage<'_>>;
    /// Marks the resident page `idx` dirty.
    fn update_page(&self, idx: u64) -> Result<()>;
    /// Writes page `idx` back if it is dirty and drops it from the cache (it stays if pinned).
    fn decommit_page(&self, idx: u64) -> Result<()>;
}

impl PageCache {
    fn page_bytes(&self, idx: u64) -> Result<Range<u64>> {
        let ps = self.page_size() as u64;
        let start = idx.checked_mul(ps).ok_or(Error::Overflow {
            offset: idx,
            len: ps,
        })?;
        Ok(start..start.saturating_add(ps))
    }
}

impl Pager for PageCache {
    fn commit_page(&self, idx: u64) -> Result<PinnedPage<'_>> {
        self.pin_page(idx)
    }

    fn update_page(&self, idx: u64) -> Result<()> {
        if self.page_state(idx).is_none() {
            return Err(Error::NotResident { page: idx });
        }
        drop(self.write_page(idx)?);
        Ok(())
    }

    fn decommit_page(&self, idx: u64) -> Result<()> {
        let range = self.page_bytes(idx)?;
        self.evict_range(range)
    }
}
