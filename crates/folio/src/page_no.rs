//! [`PageNo`]: a page number, a type of its own so that it never passes for a byte offset.
//!
//! Owns the type and its conversions; nothing else. Never blocks.

/// A page number: page `n` covers bytes `n * page_size .. (n + 1) * page_size` of the file.
///
/// The public API's page-numbered methods ([`PageCache::read_page`](crate::PageCache::read_page),
/// [`write_page`](crate::PageCache::write_page), [`pin_page`](crate::PageCache::pin_page),
/// [`page_state`](crate::PageCache::page_state), the [`Pager`](crate::Pager)) take
/// `impl Into<PageNo>`, so a plain `u64` (or an integer literal) still works there, and the
/// errors that name a page ([`Error::TooManyHolds`](crate::Error::TooManyHolds) and the like)
/// carry a `PageNo`. Byte offsets stay `u64`.
///
/// Inside, the engine, the index, the policies and the backends keep page numbers as plain
/// `u64` (`PageKey` for the policies): their run, window and shift arithmetic on page numbers is
/// on the hot paths and in every file of the engine, and the facade converts at the boundary,
/// where a page number from a caller meets a byte offset.
///
/// ```
/// use folio::PageNo;
///
/// let p = PageNo::from(3);
/// assert_eq!(p.get(), 3);
/// assert_eq!(p.offset(4096), Some(12288));
/// assert_eq!(PageNo::containing(12288 + 17, 4096), p);
/// assert_eq!(p.to_string(), "3");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct PageNo(pub u64);

impl PageNo {
    /// Page `n`.
    pub const fn new(n: u64) -> PageNo {
        PageNo(n)
    }

    /// The page number as an integer.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The byte offset of the page's first byte with pages of `page_size` bytes, or `None` if
    /// that does not fit in a `u64`.
    pub const fn offset(self, page_size: usize) -> Option<u64> {
        self.0.checked_mul(page_size as u64)
    }

    /// The page that holds byte `offset`, with pages of `page_size` bytes (not zero).
    pub const fn containing(offset: u64, page_size: usize) -> PageNo {
        assert!(page_size > 0, "a page size of zero");
        PageNo(offset / page_size as u64)
    }
}

impl From<u64> for PageNo {
    fn from(n: u64) -> PageNo {
        PageNo(n)
    }
}

impl From<PageNo> for u64 {
    fn from(p: PageNo) -> u64 {
        p.0
    }
}

impl std::fmt::Display for PageNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}
