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
//!   pages dirty and writes them again; `close` reports blocks whose write failed and was never
//!   redone ([`ObjectError::NotDurable`]).
//! - **One writer**: a lock object taken with a conditional PUT and renewed (`lease.rs`); a
//!   second writer is refused with [`ObjectError::Leased`].
//! - **No silent change**: every chunk read and rewrite is conditional on the ETag Folio knows;
//!   a chunk changed behind its back is [`ObjectError::ChunkChanged`], and a whole-chunk read
//!   is checked against the CRC32C stored with it ([`ObjectError::Checksum`]).
//! - **Bounded**: GETs and chunk rewrites in flight are bounded ([`Limits`]); transient store
//!   errors are retried a bounded number of times ([`RetryPolicy`]), then reported
//!   ([`ObjectError::RetriesExhausted`]).
//! - **Sparse**: all-zero chunks are deleted, absent chunks read as zeros without a request.
//!
//! Files: `layout.rs` (keys, manifest), `store.rs` (requests, counters, checksums), `retry.rs`,
//! `image.rs` (shared state), `chunk.rs` (chunk reads and rewrites), `resize.rs`, `lease.rs`,
//! `join.rs`, `backend.rs` (the trait), `s3.rs` (the S3 client), `faulty.rs` (fault injection).
#![warn(missing_docs)]

mod backend;
mod cell;
mod chunk;
mod error;
pub mod faulty;
mod fence;
mod image;
mod join;
mod layout;
mod lease;
mod resize;
mod retry;
mod rewrite;
mod s3;
mod store;
mod trailer;
mod versions;

pub use backend::{MetadataStats, ObjectStoreBackend, OpenOptions, RECLAIM_PER_OPEN_MAX};
pub use error::{ObjResult, ObjectError};
pub use faulty::FaultyStore;
pub use image::{Access, Limits};
pub use layout::{Layout, Manifest, CHUNK_SIZE_DEFAULT};
pub use lease::LeaseMode;
pub use retry::RetryPolicy;
pub use s3::{s3_store, S3Location, S3Options};
pub use store::StoreStats;
pub use trailer::CHUNK_TRAILER_LEN;

/// The object_store crate this backend is built on (for callers that build their own store).
pub use object_store;
