//! Typed errors.
//!
//! Every failure a caller or a backend can cause comes back as an [`Error`]; nothing a caller or a
//! backend controls is `unwrap`ped. Errors are `Clone` because one backend failure may have to be
//! delivered to several parties: the thread that issued the I/O, the threads that waited for the
//! same page, and (for write-back) every later `flush`/`sync` caller through the error sequence
//! (see [`crate::cache::PageCache::sync`]).

use std::sync::Arc;

use crate::page_no::PageNo;

/// Which kind of backend operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// Reading pages into the cache.
    Read,
    /// Writing dirty pages back.
    Write,
    /// Making written data durable (`fdatasync`).
    Sync,
    /// Changing the backend's length.
    Resize,
    /// Zeroing or punching a hole in a range.
    Zero,
}

impl std::fmt::Display for IoOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Sync => "sync",
            IoOp::Resize => "resize",
            IoOp::Zero => "zero",
        })
    }
}

/// What is wrong with a configuration: a [`CacheConfig`](crate::CacheConfig) that fails its
/// checks, a page size a backend cannot use, or a budget or thread the machine cannot give.
/// Comes wrapped in [`Error::Config`]; everything else (I/O, ranges, holds) is an [`Error`] of
/// its own.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The page size is not a power of two from `min` to `max`.
    #[error("page size {page_size} is not a power of two from {min} to {max}")]
    PageSize {
        /// The page size asked for.
        page_size: usize,
        /// The smallest page size ([`PAGE_SIZE_MIN`](crate::cache::PAGE_SIZE_MIN)).
        min: usize,
        /// The largest page size ([`PAGE_SIZE_MAX`](crate::cache::PAGE_SIZE_MAX)).
        max: usize,
    },
    /// The budget holds no page.
    #[error("a budget of {budget_bytes} bytes holds no page of {page_size} bytes")]
    BudgetTooSmall {
        /// The budget in bytes (a budget in pages, times the page size).
        budget_bytes: u64,
        /// The page size.
        page_size: usize,
    },
    /// The budget needs more frames than a cache may have (or than the address space holds).
    #[error("{frames} frames is too many (at most {frames_max})")]
    BudgetTooLarge {
        /// Frames the budget asks for.
        frames: usize,
        /// The most frames possible ([`FRAMES_MAX`](crate::cache::FRAMES_MAX), or fewer when
        /// pages that large would not fit in the address space).
        frames_max: usize,
    },
    /// The dirty thresholds are not `1 <= background_percent <= dirty_percent <= 100`.
    #[error(
        "dirty thresholds must satisfy 1 <= background ({background_percent}%) \
         <= hard limit ({dirty_percent}%) <= 100"
    )]
    DirtyPercent {
        /// [`dirty_background_percent`](crate::CacheConfig::dirty_background_percent).
        background_percent: u8,
        /// [`dirty_percent`](crate::CacheConfig::dirty_percent).
        dirty_percent: u8,
    },
    /// [`writeback_threads`](crate::CacheConfig::writeback_threads) is not from 1 to
    /// `threads_max`.
    #[error("write-back threads must be from 1 to {threads_max}, not {threads}")]
    WritebackThreads {
        /// Threads asked for.
        threads: usize,
        /// The most allowed.
        threads_max: usize,
    },
    /// [`writeback_interval`](crate::CacheConfig::writeback_interval) is zero.
    #[error("the write-back interval must be positive")]
    WritebackIntervalZero,
    /// An eviction policy's name is not known.
    #[error("unknown policy {name:?}; known: default, {}", .known.join(", "))]
    UnknownPolicy {
        /// The name given.
        name: String,
        /// The names known (besides `default`).
        known: Vec<&'static str>,
    },
    /// The frames of one backend I/O are empty or differ in length: one I/O has one page size.
    #[error(
        "frames of one I/O must be non-empty and of one length (got {first} and {other} bytes)"
    )]
    FrameLengths {
        /// The first frame's length (0 if there is none).
        first: usize,
        /// A frame's length that differs from it.
        other: usize,
    },
    /// The backend cannot use pages of this size (an object store's chunk size that the page
    /// size does not divide, for example).
    #[error("the backend cannot use pages of {page_size} bytes: {reason}")]
    PageSizeUnsupported {
        /// The page size.
        page_size: usize,
        /// Why not.
        reason: String,
    },
    /// The frame memory (the whole budget) cannot be mapped or committed: use a smaller
    /// budget, or [`Commit::Lazy`](crate::Commit::Lazy).
    #[error(
        "cannot {action} {bytes} bytes of frame memory: {source} \
         (use a smaller budget, or Commit::Lazy)"
    )]
    FrameMemory {
        /// `"map"` or `"commit"`.
        action: &'static str,
        /// Bytes asked for.
        bytes: usize,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A thread the configuration asks for cannot be started (the flusher of
    /// [`background_writeback`](crate::CacheConfig::background_writeback), say).
    #[error("cannot start the {name} thread: {source}")]
    Thread {
        /// The thread's name.
        name: &'static str,
        /// The operating system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// The error type of every fallible Folio operation.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed an operation.
    #[error("backend {op} failed at byte {offset}: {source}")]
    Io {
        /// The operation.
        op: IoOp,
        /// Byte offset of the operation in the backend (0 for sync).
        offset: u64,
        /// The operating system's (or the backend's) error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The backend transferred fewer bytes than asked for where that cannot be a legal end of file.
    #[error("backend {op} at byte {offset} was short: {done} of {wanted} bytes")]
    ShortIo {
        /// The operation.
        op: IoOp,
        /// Byte offset of the operation.
        offset: u64,
        /// Bytes transferred.
        done: usize,
        /// Bytes requested.
        wanted: usize,
    },
    /// `offset + len` does not fit in a `u64`.
    #[error("offset {offset} + length {len} overflows u64")]
    Overflow {
        /// Start of the request.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A request that must lie within one page (a zero-copy slice) crosses a page boundary.
    #[error("{len} bytes at {offset} cross a page boundary (pages are {page_size} bytes)")]
    CrossesPage {
        /// Start of the request.
        offset: u64,
        /// Its length.
        len: usize,
        /// The cache's page size.
        page_size: usize,
    },
    /// A request reaches past the end where that is not allowed.
    #[error("range {start}..{end} is past the end of the device ({size} bytes)")]
    OutOfRange {
        /// Start of the request.
        start: u64,
        /// End of the request (exclusive).
        end: u64,
        /// Current length.
        size: u64,
    },
    /// A request violates the alignment an O_DIRECT backend needs.
    #[error("request at {offset} of {len} bytes is not aligned to {align} bytes")]
    Misaligned {
        /// Byte offset.
        offset: u64,
        /// Byte length.
        len: usize,
        /// Required alignment.
        align: usize,
    },
    /// Every frame of the cache is pinned or locked, so no page can be loaded.
    #[error("all {frames} frames are pinned; no page can be evicted")]
    NoFreeFrame {
        /// Frames in the cache.
        frames: usize,
    },
    /// A write-back failed since this caller last checked; the pages are still dirty in the
    /// cache and will be retried by the next flush.
    #[error("write-back failed since the last check (error #{seq}): {source}")]
    WritebackFailed {
        /// The error sequence number of the (latest) failure.
        seq: u64,
        /// The latest failure.
        #[source]
        source: Box<Error>,
    },
    /// A sync of the backend failed earlier, so writes made since the last good sync may never
    /// become durable (a file system may drop them and let the next `fsync` succeed): no sync
    /// of this cache returns Ok again. The data is still in the cache and readable; reopen the
    /// backend and check it.
    #[error(
        "durability lost: a backend sync failed earlier ({source}); reopen and check the data"
    )]
    DurabilityLost {
        /// The failed sync.
        #[source]
        source: Box<Error>,
    },
    /// The backend has been dropped (the seed `unwrap`ped a dead `Weak` here).
    #[error("the backend is gone")]
    BackendGone,
    /// The backend does not support the operation (for example growing a block device).
    #[error("the backend does not support {0}")]
    Unsupported(&'static str),
    /// The configuration is invalid, or asks for what this machine or backend cannot give: see
    /// [`ConfigError`]. (It was `InvalidConfig(String)`.)
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A page already has as many holders of one kind (read guards and reads, or pins) as its
    /// state word can count (65,535): release some first.
    #[error("page {page} already has the most holders its state word can count")]
    TooManyHolds {
        /// The page.
        page: PageNo,
    },
    /// The call would wait for a guard this thread holds on the page (a `sync` or a write of a
    /// page the caller holds a write guard on, say): it would wait for itself for ever. Drop
    /// the guard first.
    #[error("page {page} is held by a guard of this thread: the call would wait for itself")]
    HeldByCaller {
        /// The page.
        page: PageNo,
    },
    /// This thread holds a guard, and page `page` stayed held by another holder for
    /// `frame_wait_max` while the call waited for it: the two may be waiting for each other
    /// (two threads that each hold a guard and sync, say), so the call fails instead of
    /// waiting on. Drop the guards and retry.
    #[error("page {page} stayed held while this thread holds a guard: the wait could deadlock")]
    WouldDeadlock {
        /// The page.
        page: PageNo,
    },
    /// The cache has been closed.
    #[error("the cache is closed")]
    Closed,
    /// A page that must be resident (committed through the `Pager`) is not in the cache.
    #[error("page {page} is not in the cache")]
    NotResident {
        /// The page.
        page: PageNo,
    },
}

impl Error {
    /// Wraps an I/O error from the backend.
    pub fn io(op: IoOp, offset: u64, source: std::io::Error) -> Self {
        Error::Io {
            op,
            offset,
            source: Arc::new(source),
        }
    }

    /// Converts to the closest `std::io::Error`, for callers that speak `std::io` (the NBD
    /// server maps these to protocol error codes).
    pub fn to_io_error(&self) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match self {
            Error::Io { source, .. } => {
                if let Some(code) = source.raw_os_error() {
                    return std::io::Error::from_raw_os_error(code);
                }
                source.kind()
            }
            Error::ShortIo { .. } => ErrorKind::UnexpectedEof,
            Error::Overflow { .. } | Error::Misaligned { .. } | Error::Config(_) => {
                ErrorKind::InvalidInput
            }
            Error::OutOfRange { .. } | Error::CrossesPage { .. } => ErrorKind::InvalidInput,
            Error::NoFreeFrame { .. } | Error::TooManyHolds { .. } => ErrorKind::OutOfMemory,
            Error::HeldByCaller { .. } | Error::WouldDeadlock { .. } => ErrorKind::Deadlock,
            Error::WritebackFailed { source, .. } | Error::DurabilityLost { source } => {
                return source.to_io_error()
            }
            Error::BackendGone | Error::Closed => ErrorKind::BrokenPipe,
            Error::NotResident { .. } => ErrorKind::NotFound,
            Error::Unsupported(_) => ErrorKind::Unsupported,
        };
        std::io::Error::new(kind, self.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        e.to_io_error()
    }
}

/// Folio's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
