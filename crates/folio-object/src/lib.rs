//! `folio-object`: a Folio page-cache backend over object storage.
//!
//! [`ObjectStoreBackend`] stores an image as fixed-size chunk objects (4 MiB by default) plus a
//! small manifest under a prefix of a bucket, in S3 or any S3-compatible store (through the
//! `object_store` crate; its in-memory store for tests). Put a [`folio::PageCache`] in front
//! of it and each machine keeps its hot pages in a bounded, scan-resistant cache while the data
//! lives in the store:
//!
//! ```
//! use std::sync::Arc;
//! use folio::{CacheConfig, PageCache};
//! use folio_object::{Manifest, ObjectStoreBackend, OpenOptions};
//!
//! let store = Arc::new(object_store::memory::InMemory::new());
//! let manifest = Manifest::new(64 << 20, 1 << 20)?; // 64 MiB image, 1 MiB chunks
//! let backend = ObjectStoreBackend::create(store, "images/vm1", manifest, &OpenOptions::default())?;
//! let cache = PageCache::new(Arc::new(backend), CacheConfig::new(8 << 20))?;
//! cache.write_all_at(b"hello, bucket", 5 << 20)?;
//! cache.sync()?; // every chunk it covers is PUT and acknowledged
//! let mut buf = [0u8; 13];
//! cache.read_exact_at(&mut buf, 5 << 20)?;
//! assert_eq!(&buf, b"hello, bucket");
//! cache.close()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it promises:
//! - **Durability**: a write's waiter completes only when the PUT of its chunk is acknowledged
//!   (so `sync` after it is durable); a failed PUT fails the waiter and the cache keeps the
//!   pages dirty and writes them again; `close` reports bytes whose write failed and was never
//!   redone ([`ObjectError::NotDurable`]).
//! - **One writer**: a lock object taken and renewed with conditional PUTs (`lease.rs`); a
//!   second writer is refused with [`ObjectError::Leased`]. Every write attempt is sent only
//!   while the lease is surely held and is abandoned when it may no longer be (`fence.rs`), and
//!   a newcomer waits out the old lease plus the old writer's request timeout, so no write of
//!   the old writer can land after another took the image over. The lease must outlive three
//!   request timeouts ([`ObjectError::LeaseTooShort`]); it is released (conditionally, never
//!   another writer's) only once none of our requests can still land.
//! - **No silent change, no late surprise**: every chunk object ends with a trailer naming the
//!   write that made it (`trailer.rs`), so object versions never repeat and every chunk read
//!   and rewrite is a compare-and-swap on the version Folio knows; a chunk changed behind its
//!   back is [`ObjectError::ChunkChanged`], a damaged one [`ObjectError::Checksum`]. Nothing is
//!   deleted during a session (a zeroed chunk becomes an empty object), so a request applied
//!   late can neither destroy nor resurrect data; a write whose outcome is unknown is resolved
//!   from the trailer before the chunk's next request (`rewrite.rs`).
//! - **Bounded**: GETs and chunk rewrites in flight are bounded ([`Limits`]); transient store
//!   errors are retried a bounded number of times ([`RetryPolicy`]), then reported
//!   ([`ObjectError::RetriesExhausted`]); a rewrite sends nothing past two retry budgets after
//!   it got its slot, and once a write gave up without an answer the store is known down and
//!   writes fail fast until it answers again (`health.rs`), so a sync against a dead store
//!   ends in bounded time while a slow one is waited for; per chunk, only a
//!   compact version entry outlives the chunk's I/O ([`MetadataStats`]).
//! - **Sparse**: absent and empty chunks read as zeros without a request; empty chunk objects
//!   are deleted at the next read-write open, under its fresh lease.
//!
//! Files: `layout.rs` (keys, manifest), `trailer.rs` (the chunk object format), `store.rs`
//! (requests, counters), `retry.rs` (retries, deadlines), `health.rs` (a store known down),
//! `fence.rs`, `lease.rs`, `image.rs` (shared state), `cell.rs` and `versions.rs` (per-chunk
//! state), `chunk.rs` (reads, the rewrite task), `rewrite.rs` (conditional PUTs, unknown
//! outcomes), `resize.rs`, `join.rs`, `options.rs`, `backend.rs` (open, close, the trait),
//! `reclaim.rs` (deleting empty chunk objects at open), `s3.rs` (the S3 client), `faulty.rs`
//! (fault injection).
#![warn(missing_docs)]

mod backend;
mod cell;
mod chunk;
mod error;
pub mod faulty;
mod fence;
mod health;
mod image;
mod join;
mod layout;
mod lease;
mod options;
#[cfg(test)]
mod probe_tests;
mod reclaim;
mod resize;
mod retry;
mod rewrite;
mod s3;
mod store;
mod trailer;
mod versions;

pub use backend::ObjectStoreBackend;
pub use error::{ObjResult, ObjectError};
pub use faulty::FaultyStore;
pub use image::{Access, Limits};
pub use layout::{Layout, Manifest, CHUNK_SIZE_DEFAULT};
pub use lease::LeaseMode;
pub use options::{MetadataStats, OpenOptions};
pub use reclaim::RECLAIM_PER_OPEN_MAX;
pub use retry::RetryPolicy;
pub use s3::{s3_store, S3Location, S3Options};
pub use store::StoreStats;
pub use trailer::CHUNK_TRAILER_LEN;

/// The object_store crate this backend is built on (for callers that build their own store).
pub use object_store;
