//! Folio: a bounded, fault-tolerant userspace page cache.
//!
//! See `docs/design.md` in the repository for the layers, the page state machine and the
//! concurrency rules.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod error;
pub mod policy;
pub mod sim;

pub use backend::{
    FileBackend, Frame, FrameMut, IoMode, IoWaiter, MemoryBackend, PageCacheBackend,
};
pub use error::{Error, IoOp, Result};
pub use policy::{Admission, EvictionPolicy, FrameId, PageKey, PolicyKind};
