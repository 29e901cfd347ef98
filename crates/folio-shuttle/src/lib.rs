//! Model checking of Folio's page state machine with [shuttle](https://docs.rs/shuttle).
//!
//! # How
//! This crate compiles Folio's own source files (`#[path]` modules below: the same files, not a
//! copy) with the module layout of the `folio` crate, except for `sync`: here it is
//! [`sync`](crate::sync), built on shuttle's atomics and mutex, where waiting is a yield to
//! shuttle's scheduler. Shuttle then runs each model test many times under a randomized or PCT
//! scheduler, which chooses the interleaving at every atomic operation and lock, and checks the
//! assertions (and the absence of deadlocks) on each.
//!
//! Why not a `shuttle` feature of `folio`: `cargo test --workspace` builds every member with the
//! union of the features any member enables, so a test crate that turned the feature on would put
//! shuttle's atomics into the benchmarks, the CLI and every other test of that run. Compiling the
//! sources a second time in this crate leaves the `folio` crate untouched (no feature, no cfg),
//! and still checks the code that ships.
//!
//! Keep this list in step with `crates/folio/src/lib.rs`: a module that the engine uses must be
//! listed here. Code that waits or locks must do it through `crate::sync` to be modelled
//! (a real lock held across a shuttle yield point would block the one OS thread shuttle runs on).
#![allow(dead_code, unused_imports, missing_docs, clippy::all)]

#[path = "../../folio/src/backend/mod.rs"]
pub mod backend;
#[path = "../../folio/src/cache/mod.rs"]
pub mod cache;
#[path = "../../folio/src/config.rs"]
mod config;
#[path = "../../folio/src/cpu.rs"]
mod cpu;
#[path = "../../folio/src/engine/mod.rs"]
mod engine;
#[path = "../../folio/src/error.rs"]
pub mod error;
#[path = "../../folio/src/index.rs"]
mod index;
#[path = "../../folio/src/page/mod.rs"]
pub mod page;
#[path = "../../folio/src/page_no.rs"]
mod page_no;
#[path = "../../folio/src/pager.rs"]
pub mod pager;
#[path = "../../folio/src/policy/mod.rs"]
pub mod policy;
#[path = "../../folio/src/readahead/mod.rs"]
pub mod readahead;
#[path = "../../folio/src/readaround.rs"]
mod readaround;
#[path = "../../folio/src/stats.rs"]
pub mod stats;
pub mod sync;
#[path = "../../folio/src/writeback.rs"]
pub mod writeback;

pub use backend::{MemoryBackend, PageCacheBackend};
pub use cache::{CacheConfig, PageCache};
pub use error::{Error, Result};
pub use page::PageState;
pub use policy::{EvictionPolicy, PolicyKind};

#[cfg(test)]
mod models;
#[cfg(test)]
mod range_models;
#[cfg(test)]
mod sim;
