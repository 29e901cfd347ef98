//! The server: accept loop, handshake, transmission, worker pool, shutdown.
//!
//! Threads: one accept loop (the caller's thread), one reader thread per connection, and a
//! shared pool of worker threads. A connection's reader parses a request (reading a write's
//! payload), checks it, and hands it to the pool through a bounded channel; the worker carries
//! it out against the [`BlockDevice`] and writes the reply under the connection's writer mutex,
//! so replies can leave out of order and are matched by handle. Every queue is bounded: the
//! pool's channel, the requests in flight per connection (count and bytes), the number of
//! connections, the options per handshake and the size of each option.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

use crate::device::BlockDevice;
use crate::session::{handshake, transmission, Ctx, Handshake, Job, ReplySink};

/// Server settings.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Name of the (single) export; the empty name also selects it.
    pub export_name: String,
    /// Refuse writes, trims and zeroing with `EPERM`.
    pub read_only: bool,
    /// Worker threads shared by all connections.
    pub workers: usize,
    /// Requests queued for the workers (all connections together) before readers wait.
    pub queue_depth: usize,
    /// Requests in flight per connection before its reader waits.
    pub max_inflight: usize,
    /// Payload bytes in flight per connection before its reader waits.
    pub max_inflight_bytes: usize,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Options accepted in one handshake.
    pub max_options: usize,
    /// How long a handshake may stall on reading before the connection is dropped.
    pub handshake_timeout: Duration,
    /// How long a reply may stall on writing before the connection is dropped.
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            export_name: String::new(),
            read_only: false,
            workers: 16,
            queue_depth: 128,
            max_inflight: 64,
            max_inflight_bytes: 128 << 20,
            max_connections: 64,
            max_options: 256,
            handshake_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket (the path is removed when the server stops).
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds a TCP listener.
    pub fn tcp(addr: &str) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr)?))
    }

    /// Binds a Unix socket listener, replacing a stale socket file at `path`.
    pub fn unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        Ok(Listener::Unix(
            UnixListener::bind(path)?,
            path.to_path_buf(),
        ))
    }

    /// The TCP address, if TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }

    fn accept(&self) -> io::Result<(Box<dyn Transport>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix(l, p) => {
                let (s, _) = l.accept()?;
                Ok((Box::new(s), format!("unix:{}", p.display())))
            }
        }
    }

    fn wake(&self) -> Option<Wake> {
        match self {
            Listener::Tcp(l) => {
                let mut a = l.local_addr().ok()?;
                if a.ip().is_unspecified() {
                    a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                Some(Wake::Tcp(a))
            }
            Listener::Unix(_, p) => Some(Wake::Unix(p.clone())),
        }
    }
}

enum Wake {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A connected stream.
pub trait Transport: Read + Write + Send + Sync + 'static {
    /// Another handle to the same stream.
    fn try_clone_box(&self) -> io::Result<Box<dyn Transport>>;
    /// Shuts down one or both directions.
    fn shutdown(&self, how: std::net::Shutdown);
    /// Sets the read timeout.
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()>;
    /// Sets the write timeout.
    fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()>;
}

macro_rules! transport {
    ($t:ty) => {
        impl Transport for $t {
            fn try_clone_box(&self) -> io::Result<Box<dyn Transport>> {
                Ok(Box::new(self.try_clone()?))
            }
            fn shutdown(&self, how: std::net::Shutdown) {
                let _ = <$t>::shutdown(self, how);
            }
            fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, d)
            }
            fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
                <$t>::set_write_timeout(self, d)
            }
        }
    };
}
transport!(TcpStream);
transport!(UnixStream);

pub(crate) struct Shared {
    pub(crate) stopping: Arc<AtomicBool>,
    conns: Mutex<HashMap<u64, Box<dyn Transport>>>,
    wake: Mutex<Option<Wake>>,
}

/// Stops a running [`Server::serve`] from another thread (a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Stops accepting, lets in-flight requests finish, flushes, and makes `serve` return.
    pub fn shutdown(&self) {
        if self.0.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop with a throwaway connection.
        match &*self.0.wake.lock() {
            Some(Wake::Tcp(a)) => {
                let _ = TcpStream::connect_timeout(a, Duration::from_secs(1));
            }
            Some(Wake::Unix(p)) => {
                let _ = UnixStream::connect(p);
            }
            None => {}
        }
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }
}

/// An NBD server for one export.
pub struct Server {
    dev: Arc<dyn BlockDevice>,
    cfg: Arc<ServerConfig>,
    shared: Arc<Shared>,
}

struct Pool {
    tx: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(workers: usize, depth: usize) -> io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(depth.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("nbd-worker-{i}"))
                    .spawn(move || loop {
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => {
                                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                                    .is_err()
                                {
                                    warn!("a request handler panicked");
                                }
                            }
                            Err(_) => break,
                        }
                    })?,
            );
        }
        Ok(Pool {
            tx: Some(tx),
            workers: handles,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Server {
    /// A server for `dev`.
    pub fn new(dev: Arc<dyn BlockDevice>, cfg: ServerConfig) -> Server {
        Server {
            dev,
            cfg: Arc::new(cfg),
            shared: Arc::new(Shared {
                stopping: Arc::new(AtomicBool::new(false)),
                conns: Mutex::new(HashMap::new()),
                wake: Mutex::new(None),
            }),
        }
    }

    /// A handle that stops [`Server::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Serves until [`ShutdownHandle::shutdown`]: then stops accepting, closes the receiving
    /// side of every connection, waits for their in-flight requests to be answered, and
    /// flushes the device.
    pub fn serve(&self, listener: Listener) -> io::Result<()> {
        *self.shared.wake.lock() = listener.wake();
        info!(
            listen = %listener.describe(),
            export = %self.cfg.export_name,
            size = self.dev.len(),
            read_only = self.cfg.read_only,
            "serving"
        );
        let pool = Arc::new(Pool::new(self.cfg.workers, self.cfg.queue_depth)?);
        let next_id = AtomicU64::new(0);
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut accept_errors = 0u32;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let (stream, peer) = match listener.accept() {
                Ok(x) => {
                    accept_errors = 0;
                    x
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    accept_errors = accept_errors.saturating_add(1);
                    std::thread::sleep(Duration::from_millis(10 * accept_errors.min(50) as u64));
                    continue;
                }
            };
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            threads.retain(|t| !t.is_finished());
            if threads.len() >= self.cfg.max_connections {
                warn!(%peer, "too many connections; closing the new one");
                continue;
            }
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            match stream.try_clone_box() {
                Ok(c) => {
                    self.shared.conns.lock().insert(id, c);
                }
                Err(e) => {
                    warn!(%peer, error = %e, "cannot clone the socket");
                    continue;
                }
            }
            let (dev, cfg, shared, pool) = (
                self.dev.clone(),
                self.cfg.clone(),
                self.shared.clone(),
                pool.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("nbd-conn-{id}"))
                .spawn(move || {
                    info!(%peer, id, "connection opened");
                    let ctx = Ctx {
                        dev,
                        cfg,
                        stopping: shared.stopping.clone(),
                    };
                    match serve_stream(&ctx, stream, &pool) {
                        Ok(()) => info!(%peer, id, "connection closed"),
                        Err(e) => info!(%peer, id, error = %e, "connection closed"),
                    }
                    shared.conns.lock().remove(&id);
                });
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    warn!(error = %e, "cannot spawn a connection thread");
                    self.shared.conns.lock().remove(&id);
                }
            }
        }
        threads.retain(|t| !t.is_finished());
        info!(
            connections = threads.len(),
            "stopping: no new connections; finishing requests in flight"
        );
        for c in self.shared.conns.lock().values() {
            c.shutdown(std::net::Shutdown::Read);
        }
        for t in threads {
            let _ = t.join();
        }
        drop(pool);
        if let Listener::Unix(_, p) = &listener {
            let _ = std::fs::remove_file(p);
        }
        let flushed = self.dev.flush();
        match &flushed {
            Ok(()) => info!("flushed; stopped"),
            Err(e) => warn!(error = %e, "final flush failed"),
        }
        flushed
    }
}

fn serve_stream(ctx: &Ctx, stream: Box<dyn Transport>, pool: &Arc<Pool>) -> io::Result<()> {
    stream.set_read_timeout(Some(ctx.cfg.handshake_timeout))?;
    stream.set_write_timeout(Some(ctx.cfg.write_timeout))?;
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone_box()?);
    let mut writer = stream;
    match handshake(ctx, &mut reader, &mut writer)? {
        Handshake::Closed => Ok(()),
        Handshake::Transmission => {
            writer.set_read_timeout(None)?;
            let closer = writer.try_clone_box()?;
            let sink = Arc::new(ReplySink::new(
                Box::new(writer),
                Some(Box::new(move || closer.shutdown(std::net::Shutdown::Both))),
            ));
            let tx = pool.tx.clone();
            let dispatch = move |job: Job| match &tx {
                Some(tx) => tx.send(job).map_err(|_| ()),
                None => Err(()),
            };
            transmission(ctx, &mut reader, sink, &dispatch)
        }
    }
}
