//! What a connection's bytes travel over: a plain socket, TLS (rustls) over it, or memory (for
//! the fuzz target and property tests).
//!
//! Owns: the handshake stream ([`HsStream`]: blocking, every read and write bounded by the
//! handshake's deadline, upgraded in place by `OPT_STARTTLS`) and the transmission wire
//! ([`Wire`]: non-blocking, vectored writes, TLS records pushed out as the socket accepts
//! them). Does not own: the protocol. May block: [`HsStream`]'s reads and writes, until the
//! deadline at most; a [`Wire`] never blocks (it returns `WouldBlock`).

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::listener::Stream;

/// A socket whose every blocking read and write must finish before `deadline`.
pub(crate) struct Deadline {
    pub(crate) sock: Stream,
    pub(crate) deadline: Instant,
}

impl Deadline {
    fn arm(&self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "handshake deadline passed",
            ));
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.set_write_timeout(Some(left))
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.sock.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes written to memory (the in-memory session's output).
#[derive(Clone, Default)]
pub(crate) struct MemOut(pub(crate) Arc<Mutex<Vec<u8>>>);

impl Write for MemOut {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The stream the handshake speaks over.
pub(crate) enum HsStream<'i> {
    /// A plain socket.
    Plain(Deadline),
    /// TLS over a socket, after `OPT_STARTTLS`.
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, Deadline>>),
    /// Memory: input bytes and an output buffer.
    Mem(&'i [u8], MemOut),
}

impl HsStream<'_> {
    /// Upgrades a plain socket to TLS (the TLS handshake itself happens on the next read or
    /// write, within the same deadline).
    pub(crate) fn start_tls(&mut self, cfg: &Arc<rustls::ServerConfig>) -> io::Result<()> {
        let placeholder = HsStream::Mem(&[], MemOut::default());
        match std::mem::replace(self, placeholder) {
            HsStream::Plain(sock) => {
                let conn = rustls::ServerConnection::new(cfg.clone()).map_err(io::Error::other)?;
                let mut tls = rustls::StreamOwned::new(conn, sock);
                // Finish the TLS handshake now, so its failures end the connection here.
                while tls.conn.is_handshaking() {
                    tls.conn.complete_io(&mut tls.sock)?;
                }
                *self = HsStream::Tls(Box::new(tls));
                Ok(())
            }
            other => {
                *self = other;
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TLS is only started once, over a socket",
                ))
            }
        }
    }

    /// True once TLS is on.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, HsStream::Tls(_))
    }

    /// The transmission wire over the same connection.
    pub(crate) fn into_wire(self) -> io::Result<Wire> {
        Ok(match self {
            HsStream::Plain(d) => {
                d.sock.set_nonblocking(true)?;
                Wire::Plain(d.sock)
            }
            HsStream::Tls(t) => {
                let t = *t;
                t.sock.sock.set_nonblocking(true)?;
                Wire::Tls(Box::new(t.conn), t.sock.sock)
            }
            HsStream::Mem(input, out) => Wire::Mem(input.iter().copied().collect(), out),
        })
    }
}

impl Read for HsStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            HsStream::Plain(s) => s.read(buf),
            HsStream::Tls(s) => s.read(buf),
            HsStream::Mem(input, _) => input.read(buf),
        }
    }
}

impl Write for HsStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            HsStream::Plain(s) => s.write(buf),
            HsStream::Tls(s) => s.write(buf),
            HsStream::Mem(_, out) => out.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            HsStream::Plain(_) | HsStream::Mem(..) => Ok(()),
            HsStream::Tls(s) => s.flush(),
        }
    }
}

/// The transmission phase's connection: non-blocking.
pub(crate) enum Wire {
    /// A plain socket.
    Plain(Stream),
    /// TLS: the session and its socket.
    Tls(Box<rustls::ServerConnection>, Stream),
    /// Memory: what is left of the input, and the output.
    Mem(std::collections::VecDeque<u8>, MemOut),
}

impl Wire {
    /// Reads what is there: `Ok(0)` at the end of the stream, `WouldBlock` if nothing is.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.read(buf),
            Wire::Tls(conn, sock) => loop {
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // Bounded: each pass either returns or consumes at least one TLS read.
                if conn.read_tls(sock)? == 0 {
                    return Ok(0);
                }
                let state = conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                    return Ok(0);
                }
            },
            Wire::Mem(input, _) => input.read(buf),
        }
    }

    /// Writes some of `bufs`; `WouldBlock` if the socket takes nothing now.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Wire::Plain(s) => s.write_vectored(bufs),
            Wire::Tls(conn, sock) => {
                // Encrypted records waiting for the socket go first.
                if !Self::push_tls(conn, sock)? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = conn.writer().write_vectored(bufs)?;
                Self::push_tls(conn, sock)?;
                if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            }
            Wire::Mem(_, out) => out.write_vectored(bufs),
        }
    }

    /// Pushes encrypted records to the socket; true if none are left.
    fn push_tls(conn: &mut rustls::ServerConnection, sock: &mut Stream) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Sends what the wire itself still holds (TLS records); true if nothing is left.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Wire::Tls(conn, sock) => Self::push_tls(conn, sock),
            _ => Ok(true),
        }
    }

    /// Bytes the wire holds that the socket has not taken yet.
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            Wire::Tls(conn, _) => conn.wants_write(),
            _ => false,
        }
    }

    /// The socket to poll, if any (memory never blocks).
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Wire::Plain(s) | Wire::Tls(_, s) => Some(s.as_fd()),
            Wire::Mem(..) => None,
        }
    }

    /// Sends a TLS close_notify where there is TLS (best effort).
    pub(crate) fn close(&mut self) {
        if let Wire::Tls(conn, sock) = self {
            conn.send_close_notify();
            let _ = Self::push_tls(conn, sock);
        }
    }
}
