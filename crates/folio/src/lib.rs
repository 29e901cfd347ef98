//! Folio: a bounded, fault-tolerant userspace page cache.
//!
//! Folio keeps fixed-size pages of a file or block device in a fixed pool of memory, serves
//! reads and writes from them, loads missing pages from a [`PageCacheBackend`], writes dirty
//! pages back, and evicts pages chosen by an [`EvictionPolicy`] to stay within its budget.
//!
//! ```
//! use std::sync::Arc;
//! use folio::{CacheConfig, FileBackend, IoMode, PageCache};
//!
//! let dir = tempfile::tempdir()?;
//! let backend = Arc::new(FileBackend::open(dir.path().join("data.img"), IoMode::Buffered)?);
//! let cache = PageCache::new(backend, CacheConfig::new(64 << 20))?; // 64 MiB budget
//! cache.write_all_at(b"durable bytes", 1 << 20)?;
//! cache.sync()?; // written back and fdatasync'ed
//! let mut buf = [0u8; 13];
//! cache.read_exact_at(&mut buf, 1 << 20)?;
//! assert_eq!(&buf, b"durable bytes");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! See `docs/design.md` in the repository for the layers, the page state machine and the
//! concurrency rules.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub mod backend;
pub mod cache;
mod config;
mod cpu;
mod engine;
pub mod error;
mod index;
pub mod page;
mod page_no;
pub mod pager;
pub mod policy;
pub mod readahead;
mod readaround;
pub mod sim;
pub mod stats;
mod sync;
pub mod writeback;

pub use backend::{
    open_best, Commit, FaultConfig, FaultyBackend, FileBackend, Frame, FrameMut, Geometry, IoMode,
    IoWaiter, LocalIoWaiter, MemoryBackend, PageCacheBackend, PageCacheBackendExt, UringBackend,
};
pub use cache::SyncHandle;
pub use cache::{
    Budget, CacheConfig, CloseError, PageCache, PageReadGuard, PageWriteGuard, PinnedPage,
};
pub use error::{ConfigError, Error, IoOp, Result};
pub use page::PageState;
pub use page_no::PageNo;
pub use pager::Pager;
pub use policy::{Admission, EvictionPolicy, FrameId, PageKey, PolicyKind};
pub use readahead::Advice;
pub use stats::Stats;
