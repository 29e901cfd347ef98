//! `folio-nbd`: an NBD (Network Block Device) server for one export backed by a
//! [`BlockDevice`] — normally the Folio page cache ([`CacheDevice`]).
//!
//! Speaks fixed-newstyle negotiation with `OPT_GO`, `OPT_INFO`, `OPT_EXPORT_NAME`, `OPT_LIST` and
//! `OPT_ABORT`, simple replies only, and the commands `READ`, `WRITE` (+`FUA`), `FLUSH`, `TRIM`,
//! `WRITE_ZEROES` (+`FUA`, `NO_HOLE`) and `DISC`. See `server` for the threading model.
#![warn(missing_docs)]

pub mod device;
pub mod proto;
pub mod server;
mod session;

pub use device::{BlockDevice, CacheDevice, FileDevice, MemDevice};
pub use server::{Listener, Server, ServerConfig, ShutdownHandle, Transport};
pub use session::run_session;
