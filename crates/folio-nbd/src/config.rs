//! The server's configuration: exports, limits, timeouts and TLS.
//!
//! Owns: [`ServerConfig`], [`Export`], [`TlsMode`] and their defaults (with the reason for each
//! bound). Does not own: parsing command lines (`folio serve` in folio-cli), loading
//! certificates (`tls.rs`) or enforcing the limits (`limits.rs`, `conn/`, `server.rs`).
//! Never blocks.

use std::sync::Arc;
use std::time::Duration;

use crate::device::BlockDevice;

/// One export: a name clients ask for and the device behind it.
#[derive(Clone)]
pub struct Export {
    /// The name (`OPT_GO`, `OPT_EXPORT_NAME`); the first export is also the default (the
    /// empty name).
    pub name: String,
    /// Free text shown by `OPT_LIST` and `nbdinfo`.
    pub description: String,
    /// The device.
    pub dev: Arc<dyn BlockDevice>,
    /// Refuse writes, trims and zeroing with `EPERM`.
    pub read_only: bool,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("size", &self.dev.len())
            .field("read_only", &self.read_only)
            .finish()
    }
}

/// Whether clients must, may or cannot upgrade to TLS (`OPT_STARTTLS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// No TLS offered: `OPT_STARTTLS` is refused.
    #[default]
    Off,
    /// TLS offered; clients may also go on in plain text.
    Allow,
    /// Every option but `OPT_STARTTLS` and `OPT_ABORT` is refused (`REP_ERR_TLS_REQD`) until
    /// the client upgrades.
    Require,
}

/// Server settings. Every queue and count has a bound here.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Name of the export made by [`Server::new`](crate::Server::new); the empty name also
    /// selects it.
    pub export_name: String,
    /// The export made by [`Server::new`](crate::Server::new) refuses writes.
    pub read_only: bool,
    /// Threads carrying out misses, flushes, FUA, trims and zeroing for all connections
    /// (hits are answered on the connection's own thread).
    pub workers: usize,
    /// Jobs queued for the workers, all connections together; a full queue makes readers wait.
    pub queue_depth: usize,
    /// Requests one connection has in flight (dispatched or with replies not yet sent).
    pub inflight_max: usize,
    /// Payload and reply bytes one connection has in flight (at least the largest request).
    pub inflight_bytes_max: usize,
    /// Payload and reply bytes in flight over all connections; taken before any allocation.
    pub global_inflight_bytes_max: u64,
    /// Bytes that `TRIM`, `WRITE_ZEROES` and `CACHE` requests in flight may cover, over all
    /// connections (a 4 GiB zeroing is real work even with no payload).
    pub effect_bytes_max: u64,
    /// Bytes of payload buffers kept for reuse after inline writes, over all connections (each
    /// connection keeps at most 4, of at most 1 MiB each); beside `global_inflight_bytes_max`,
    /// the server's payload memory is bounded by the sum of the two. 0 keeps none.
    pub spare_bytes_max: u64,
    /// Reply bytes queued for a client that is not reading before the server stops reading
    /// that client's requests.
    pub unsent_bytes_max: usize,
    /// Connections served at once; more are closed at accept.
    pub connections_max: usize,
    /// Connections from one address (TCP peers; a Unix socket counts as one address).
    pub connections_per_address_max: usize,
    /// Options accepted in one handshake.
    pub options_max: usize,
    /// The whole handshake, greeting to transmission, must finish within this (qemu: 10 s, after
    /// CVE-2024-7409); a client sending a byte now and then is cut at the deadline.
    pub handshake_deadline: Duration,
    /// Close a connection with nothing in flight that sent no request for this long.
    pub idle_timeout: Option<Duration>,
    /// TCP keepalive: idle time before the first probe (also the interval between probes).
    pub keepalive: Option<Duration>,
    /// After shutdown begins, connections still open this long are closed by force.
    pub shutdown_grace: Duration,
    /// Flushes of each export at shutdown before the server gives up on it and reports the
    /// data not written ([`NotFlushed`](crate::NotFlushed)); at least 1.
    pub final_flush_attempts: u32,
    /// Wait before the second attempt of a failed final flush; doubled before each later one
    /// (at most 8 s).
    pub final_flush_retry_wait: Duration,
    /// TLS negotiation (`OPT_STARTTLS`); the certificates are given to the server separately.
    pub tls: TlsMode,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            export_name: String::new(),
            read_only: false,
            workers: default_workers(),
            queue_depth: 256,
            inflight_max: 64,
            inflight_bytes_max: 64 << 20,
            global_inflight_bytes_max: 1 << 30,
            effect_bytes_max: 16 << 30,
            // Four 1 MiB buffers for each of 8 connections writing 1 MiB blocks.
            spare_bytes_max: 32 << 20,
            unsent_bytes_max: 8 << 20,
            connections_max: 64,
            connections_per_address_max: 16,
            options_max: 256,
            handshake_deadline: Duration::from_secs(10),
            idle_timeout: None,
            keepalive: Some(Duration::from_secs(60)),
            shutdown_grace: Duration::from_secs(10),
            // 0.5 + 1 + 2 + 4 s of waiting: a store or disk back within ~8 s loses nothing.
            final_flush_attempts: 5,
            final_flush_retry_wait: Duration::from_millis(500),
            tls: TlsMode::Off,
        }
    }
}

/// Workers for blocking I/O: enough to keep 16 misses in flight on each of 4 connections on a
/// small machine (fio's and qemu's usual depth), more on bigger ones.
fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 16).clamp(32, 256)
}
