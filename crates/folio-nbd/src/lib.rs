//! `folio-nbd`: an NBD (Network Block Device) server over [`BlockDevice`]s — normally the
//! Folio page cache ([`CacheDevice`]).
//!
//! Speaks fixed-newstyle negotiation (`OPT_GO`, `OPT_INFO`, `OPT_EXPORT_NAME`, `OPT_LIST`,
//! `OPT_ABORT`, `OPT_STARTTLS`, `OPT_STRUCTURED_REPLY`, `OPT_LIST_META_CONTEXT`,
//! `OPT_SET_META_CONTEXT` with `base:allocation`), simple and structured replies, and the
//! commands `READ`, `WRITE`, `FLUSH`, `TRIM`, `WRITE_ZEROES` (`NO_HOLE`, `FAST_ZERO`),
//! `CACHE`, `BLOCK_STATUS` and `DISC`, `FUA` on all of them; several exports; TLS (rustls).
//!
//! Layers, each pointing only down: `server` (accept loop, shutdown, `final_flush`) → `conn`
//! (one connection's transmission phase, run to completion on its thread) → `handshake`,
//! `outq`, `exec`, `pool`, `mailbox`, `spare`, `limits`, `wire` → `device`, `cache_device`,
//! `proto`, `config`, `listener`, `tls`. `image_lock` is for whoever opens image files
//! (`folio serve`). `session` wires memory into the same handshake and connection code for the
//! fuzz target and property tests.
#![warn(missing_docs)]

mod cache_device;
pub mod config;
mod conn;
pub mod device;
mod exec;
mod final_flush;
mod handshake;
pub mod image_lock;
mod limits;
pub mod listener;
mod mailbox;
mod outq;
mod pool;
pub mod proto;
pub mod server;
mod session;
mod spare;
pub mod tls;
mod wire;

pub use cache_device::CacheDevice;
pub use config::{Export, ServerConfig, TlsMode};
pub use device::{BlockDevice, FileDevice, MemDevice, Resident, SyncCursor};
pub use final_flush::{ExportNotFlushed, NotFlushed};
pub use image_lock::{check_distinct_images, lock_image, ImageAccess, ImageLockError};
pub use listener::{Listener, Peer, Stream};
pub use server::{Server, ShutdownHandle};
pub use session::run_session;
pub use tls::load_tls;
