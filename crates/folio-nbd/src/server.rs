//! The server: accept loop, one thread per connection, the worker pool, shutdown.
//!
//! Threads: the accept loop (the caller's thread, polling the listener and a stop event), one
//! thread per connection that runs its handshake and then its transmission phase to completion
//! (hits answered inline, see `conn/`), and a shared pool of workers for whatever may block
//! (`pool.rs`). Owns: admitting connections (global and per-address caps), the whole-handshake
//! deadline, the warning about plain text beyond loopback, and shutdown: stop accepting, let
//! connections answer what they started (`ESHUTDOWN` for requests read but not started), close
//! those still open after the grace period by force, flush every export. Does not own: the
//! protocol or the devices. May block: `serve` (until shutdown), joining threads.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rustix::event::{PollFd, PollFlags};
use tracing::{error, info, warn};

use crate::config::{Export, ServerConfig, TlsMode};
use crate::conn::{serve as serve_conn, ConnCtx};
use crate::device::BlockDevice;
use crate::handshake::{handshake, HsCtx, Outcome};
use crate::limits::{Connections, Limits, Seat};
use crate::listener::{Listener, Peer, Stream};
use crate::mailbox::Mailbox;
use crate::pool::Pool;
use crate::wire::{Deadline, HsStream};

struct Shared {
    stopping: AtomicBool,
    forced: AtomicBool,
    stop_event: OwnedFd,
    conns: Mutex<HashMap<u64, Stream>>,
}

/// Stops a running [`Server::serve`] from another thread (a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Shared>);

impl ShutdownHandle {
    /// Stops accepting, lets connections answer what they started, flushes, and makes `serve`
    /// return (connections still open after the grace period are closed by force).
    pub fn shutdown(&self) {
        if self.0.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = rustix::io::write(&self.0.stop_event, &1u64.to_ne_bytes());
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }
}

/// An NBD server for one or more exports.
pub struct Server {
    exports: Arc<Vec<Export>>,
    cfg: Arc<ServerConfig>,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<Shared>,
}

impl Server {
    /// A server with one export, `dev`, named `cfg.export_name` (read-only if
    /// `cfg.read_only`).
    pub fn new(dev: Arc<dyn BlockDevice>, cfg: ServerConfig) -> Server {
        let export = Export {
            name: cfg.export_name.clone(),
            description: String::new(),
            dev,
            read_only: cfg.read_only,
        };
        Server::with_exports(vec![export], cfg).expect("one export is a valid list")
    }

    /// A server with several exports; the first is also the default (the empty name).
    pub fn with_exports(exports: Vec<Export>, cfg: ServerConfig) -> io::Result<Server> {
        if exports.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no export"));
        }
        for (i, e) in exports.iter().enumerate() {
            if exports[..i].iter().any(|o| o.name == e.name) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("export name {:?} given twice", e.name),
                ));
            }
        }
        let stop_event = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Server {
            exports: Arc::new(exports),
            cfg: Arc::new(cfg),
            tls: None,
            shared: Arc::new(Shared {
                stopping: AtomicBool::new(false),
                forced: AtomicBool::new(false),
                stop_event,
                conns: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Offers TLS with this configuration (`OPT_STARTTLS`), as [`ServerConfig::tls`] says.
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Server {
        self.tls = Some(tls);
        self
    }

    /// A handle that stops [`Server::serve`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shared.clone())
    }

    /// Serves until [`ShutdownHandle::shutdown`], then drains, closes and flushes every export.
    ///
    /// A final flush that keeps failing (after `final_flush_attempts`) returns an error of
    /// kind `Other` holding a [`NotFlushed`](crate::NotFlushed) that names the exports whose
    /// acknowledged writes may not be durable; exit non-zero on it.
    pub fn serve(&self, listener: Listener) -> io::Result<()> {
        if self.cfg.tls != TlsMode::Off && self.tls.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS is enabled but no certificate was given",
            ));
        }
        if listener.is_reachable_beyond_loopback() && self.cfg.tls != TlsMode::Require {
            warn!(
                listen = %listener.describe(),
                "listening beyond loopback without requiring TLS: anyone who can reach this \
                 address can read{} the exports",
                if self.exports.iter().all(|e| e.read_only) { "" } else { " and write" }
            );
        }
        for e in self.exports.iter() {
            info!(listen = %listener.describe(), export = %e.name, size = e.dev.len(),
                  read_only = e.read_only, "serving");
        }
        listener.set_nonblocking()?;
        let pool = Arc::new(Pool::new(self.cfg.workers, self.cfg.queue_depth)?);
        let limits = Arc::new(Limits::new(&self.cfg));
        let conns = Arc::new(Connections::default());
        let next_id = AtomicU64::new(0);
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut accept_errors = 0u32;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let mut fds = [
                PollFd::from_borrowed_fd(listener.fd(), PollFlags::IN),
                PollFd::from_borrowed_fd(self.shared.stop_event.as_fd(), PollFlags::IN),
            ];
            let second = rustix::event::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            };
            match rustix::event::poll(&mut fds, Some(&second)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            threads.retain(|t| !t.is_finished());
            // Bounded: the backlog, or until accept fails.
            for _ in 0..1024 {
                let (stream, peer) = match listener.accept(self.cfg.keepalive) {
                    Ok(x) => {
                        accept_errors = 0;
                        x
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        // EMFILE and friends: back off instead of spinning.
                        accept_errors = accept_errors.saturating_add(1);
                        std::thread::sleep(Duration::from_millis(
                            10 * accept_errors.min(50) as u64,
                        ));
                        break;
                    }
                };
                let Some(seat) = conns.admit(
                    &peer,
                    self.cfg.connections_max,
                    self.cfg.connections_per_address_max,
                ) else {
                    warn!(
                        ?peer,
                        "too many connections (in all or from this address); closing"
                    );
                    continue;
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                match self.spawn(id, stream, peer, seat, &pool, &limits) {
                    Ok(t) => threads.push(t),
                    Err(e) => warn!(error = %e, "cannot start a connection"),
                }
            }
        }
        threads.retain(|t| !t.is_finished());
        info!(
            connections = threads.len(),
            "stopping: no new connections; answering what was started"
        );
        let deadline = Instant::now() + self.cfg.shutdown_grace;
        while threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if threads.iter().any(|t| !t.is_finished()) {
            warn!("shutdown grace period over; closing the remaining connections");
            self.shared.forced.store(true, Ordering::SeqCst);
            for c in self.shared.conns.lock().values() {
                c.shutdown(std::net::Shutdown::Both);
            }
        }
        for t in threads {
            let _ = t.join();
        }
        drop(pool);
        listener.remove_socket_file();
        crate::final_flush::flush_exports(&self.exports, &self.cfg).map_err(io::Error::other)?;
        info!("flushed; stopped");
        Ok(())
    }

    fn spawn(
        &self,
        id: u64,
        stream: Stream,
        peer: Peer,
        seat: Seat,
        pool: &Arc<Pool>,
        limits: &Arc<Limits>,
    ) -> io::Result<JoinHandle<()>> {
        let entry = TableEntry::insert(&self.shared, id, stream.try_clone()?);
        let (exports, cfg, tls, shared, pool, limits) = (
            self.exports.clone(),
            self.cfg.clone(),
            self.tls.clone(),
            self.shared.clone(),
            pool.clone(),
            limits.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name(format!("nbd-conn-{id}"))
            .spawn(move || {
                // Dropped last, also when a panic unwinds this thread.
                let _entry = entry;
                let _seat = seat;
                info!(?peer, id, "connection opened");
                let hs = HsCtx {
                    exports: &exports,
                    cfg: &cfg,
                    tls: tls.as_ref(),
                    stopping: &shared.stopping,
                };
                let r = run_connection(&hs, stream, &limits, &pool, &shared.forced);
                match r {
                    Ok(()) => info!(?peer, id, "connection closed"),
                    Err(e) => info!(?peer, id, error = %e, "connection closed"),
                }
            });
        // A thread that did not start dropped its closure, and with it the table entry.
        spawned
    }
}

/// A connection's entry in the server's table of sockets (through which shutdown closes the
/// connections still open after the grace period). Removed when the connection's thread ends,
/// however it ends: a panic that unwinds the thread drops this guard too, after the thread's
/// own socket, and the socket is shut down, so the client sees the end of the stream instead
/// of waiting on a socket the table kept open.
struct TableEntry {
    shared: Arc<Shared>,
    id: u64,
}

impl TableEntry {
    fn insert(shared: &Arc<Shared>, id: u64, stream: Stream) -> TableEntry {
        shared.conns.lock().insert(id, stream);
        TableEntry {
            shared: shared.clone(),
            id,
        }
    }
}

impl Drop for TableEntry {
    fn drop(&mut self) {
        let stream = self.shared.conns.lock().remove(&self.id);
        if std::thread::panicking() {
            error!(
                id = self.id,
                "the connection's thread panicked; connection closed"
            );
        }
        if let Some(s) = stream {
            s.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn run_connection(
    hs: &HsCtx<'_>,
    stream: Stream,
    limits: &Arc<Limits>,
    pool: &Pool,
    forced: &AtomicBool,
) -> io::Result<()> {
    let mut s = HsStream::Plain(Deadline {
        sock: stream,
        deadline: Instant::now() + hs.cfg.handshake_deadline,
    });
    let agreed = match handshake(hs, &mut s) {
        Ok(Outcome::Go(a)) => a,
        Ok(Outcome::Closed) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut wire = s.into_wire()?;
    let ctx = ConnCtx {
        export: &hs.exports[agreed.export],
        agreed,
        cfg: hs.cfg,
        limits,
        pool: Some(pool),
        stopping: hs.stopping,
        forced,
    };
    let mailbox = Arc::new(Mailbox::new(true)?);
    serve_conn(&ctx, &mut wire, &mailbox)
}
