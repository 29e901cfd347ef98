//! The seed's [`Pager`]: how a memory object (a VMO) drives the cache page by page.
//!
//! `commit_page` makes a page resident and pins it, `update_page` records that the committed page
//! was modified, and `decommit_page` writes it back if dirty and drops it. Unlike the seed,
//! decommitting a dirty page whose write-back fails keeps the page (dirty) and returns the error,
//! and `update_page` on a page that is not resident is an error rather than a warning.

use std::ops::Range;

use crate::cache::{PageCache, PinnedPage};
use crate::error::{Error, Result};
use crate::page_no::PageNo;

/// Page-granular access for a memory object. Page numbers are [`PageNo`]s; a `u64` converts.
/// (The methods are generic over that conversion, so the trait is not object-safe: take a
/// `&PageCache` or a type parameter, not a `dyn Pager`.)
pub trait Pager {
    /// Makes page `page` resident and returns it pinned.
    fn commit_page(&self, page: impl Into<PageNo>) -> Result<PinnedPage<'_>>;
    /// Marks the resident page `page` dirty.
    fn update_page(&self, page: impl Into<PageNo>) -> Result<()>;
    /// Writes page `page` back if it is dirty and drops it from the cache (it stays if pinned).
    fn decommit_page(&self, page: impl Into<PageNo>) -> Result<()>;
}

impl PageCache {
    fn page_bytes(&self, page: PageNo) -> Result<Range<u64>> {
        let ps = self.page_size() as u64;
        let start = page.offset(self.page_size()).ok_or(Error::Overflow {
            offset: page.get(),
            len: ps,
        })?;
        Ok(start..start.saturating_add(ps))
    }
}

impl Pager for PageCache {
    fn commit_page(&self, page: impl Into<PageNo>) -> Result<PinnedPage<'_>> {
        self.pin_page(page)
    }

    fn update_page(&self, page: impl Into<PageNo>) -> Result<()> {
        let page = page.into();
        if self.page_state(page).is_none() {
            return Err(Error::NotResident { page });
        }
        drop(self.write_page(page)?);
        Ok(())
    }

    fn decommit_page(&self, page: impl Into<PageNo>) -> Result<()> {
        let range = self.page_bytes(page.into())?;
        self.evict_range(range)
    }
}
