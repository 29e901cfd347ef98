//! Listening sockets and accepted streams: TCP, Unix (mode 0600) and a socket handed over by
//! systemd (`LISTEN_FDS`).
//!
//! Owns: binding, accepting, per-stream socket options (no delay, keepalive), waking the
//! accept loop for shutdown. Does not own: what is spoken on a stream. May block: `accept`
//! (the accept loop polls first, so it only blocks on a connection that is there).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// A bound listening socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A Unix domain socket; the path (if known) is removed when the server stops.
    Unix(UnixListener, Option<PathBuf>),
}

/// Who is on the other end, for per-address limits and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A TCP peer's address.
    Ip(IpAddr),
    /// Any Unix socket client (all count as one address).
    Local,
}

impl Listener {
    /// Binds a TCP listener.
    pub fn tcp(addr: &str) -> io::Result<Listener> {
        Ok(Listener::Tcp(TcpListener::bind(addr)?))
    }

    /// Binds a Unix socket listener at `path` with mode 0600 (only this user may connect),
    /// replacing a stale socket file. The mode is set before the socket listens, so nobody can
    /// connect in between.
    pub fn unix(path: impl AsRef<Path>) -> io::Result<Listener> {
        let path = path.as_ref();
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let fd = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        rustix::net::bind(&fd, &rustix::net::SocketAddrUnix::new(path)?)?;
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(0o600))?;
        rustix::net::listen(&fd, 128)?;
        Ok(Listener::Unix(
            UnixListener::from(fd),
            Some(path.to_path_buf()),
        ))
    }

    /// The socket systemd passed (socket activation: `LISTEN_PID` is this process and
    /// `LISTEN_FDS` is at least 1; the first one, fd 3, is used), or `None` if there is none.
    pub fn from_systemd() -> io::Result<Option<Listener>> {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        let (Some(pid), Some(fds)) = (pid, fds) else {
            return Ok(None);
        };
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return Ok(None);
        }
        if fds.trim().parse::<u32>().map_or(true, |n| n == 0) {
            return Ok(None);
        }
        const SD_LISTEN_FDS_START: i32 = 3;
        // Check that fd 3 is an open listening socket before taking ownership of it.
        // SAFETY: a borrow for the duration of these calls; fd 3 is open (fcntl succeeds) and
        // nothing else in this process uses it (systemd's protocol hands it to us).
        let borrowed = unsafe { BorrowedFd::borrow_raw(SD_LISTEN_FDS_START) };
        rustix::io::fcntl_getfd(borrowed)?;
        let addr = rustix::net::getsockname(borrowed)?;
        // SAFETY: fd 3 is open (checked above), was passed to this process by its parent under
        // the socket-activation protocol, and is owned by nothing else here: from now on the
        // listener owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(SD_LISTEN_FDS_START) };
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        Ok(Some(match addr.address_family() {
            AddressFamily::UNIX => Listener::Unix(UnixListener::from(fd), None),
            AddressFamily::INET | AddressFamily::INET6 => Listener::Tcp(TcpListener::from(fd)),
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("fd 3 is a socket of family {other:?}, not TCP or Unix"),
                ))
            }
        }))
    }

    /// The TCP address, if TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// True if this is TCP on an address other hosts may reach (not loopback).
    pub fn is_reachable_beyond_loopback(&self) -> bool {
        self.tcp_addr().is_some_and(|a| !a.ip().is_loopback())
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Listener::Unix(_, Some(p)) => p.display().to_string(),
            Listener::Unix(_, None) => "unix (inherited)".into(),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l, _) => l.as_fd(),
        }
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l, _) => l.set_nonblocking(true),
        }
    }

    /// Accepts one connection (the listener is non-blocking: `WouldBlock` when none is there).
    pub(crate) fn accept(&self, keepalive: Option<Duration>) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nonblocking(false)?;
                s.set_nodelay(true)?;
                if let Some(idle) = keepalive {
                    set_keepalive(&s, idle)?;
                }
                Ok((Stream::Tcp(s), Peer::Ip(peer.ip())))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Ok((Stream::Unix(s), Peer::Local))
            }
        }
    }

    pub(crate) fn remove_socket_file(&self) {
        if let Listener::Unix(_, Some(p)) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// TCP keepalive: the first probe after `idle` without traffic, then every `idle`, 4 probes.
fn set_keepalive(s: &TcpStream, idle: Duration) -> io::Result<()> {
    let idle = idle.max(Duration::from_secs(1));
    rustix::net::sockopt::set_socket_keepalive(s, true)?;
    rustix::net::sockopt::set_tcp_keepidle(s, idle)?;
    rustix::net::sockopt::set_tcp_keepintvl(s, idle)?;
    rustix::net::sockopt::set_tcp_keepcnt(s, 4)?;
    Ok(())
}

/// An accepted stream.
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// Unix domain socket.
    Unix(UnixStream),
}

impl Stream {
    /// Another handle to the same socket.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    /// Shuts down one or both directions (errors ignored: the peer may be gone).
    pub fn shutdown(&self, how: std::net::Shutdown) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        };
    }

    /// Sets the read timeout of blocking reads.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(d),
            Stream::Unix(s) => s.set_read_timeout(d),
        }
    }

    /// Sets the write timeout of blocking writes.
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(d),
            Stream::Unix(s) => s.set_write_timeout(d),
        }
    }

    /// Blocking or non-blocking I/O.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nonblocking(on),
            Stream::Unix(s) => s.set_nonblocking(on),
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> i32 {
        self.as_fd().as_raw_fd()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
