//! A panic on a connection's own thread (the inline paths: zero-copy hits, writes to cached
//! pages, sending lent bytes) must not leave a client waiting for ever: the request is answered
//! with an error, or the connection is closed and the client sees the end of the stream.
//!
//! The first test is the adversarial review's (review-io.md, item 11), kept as a regression
//! test. Each test takes well under a second.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_nbd::proto::*;
use folio_nbd::{BlockDevice, MemDevice, Resident, ServerConfig, SyncCursor};

mod common;
use common::*;

/// Where the device's inline path panics.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// `read_resident` itself panics at offset 8192.
    ReadResident,
    /// `try_write_at` panics at offset 8192.
    TryWrite,
    /// `read_resident` lends bytes whose `part` panics when the reply is sent.
    LentBytes,
}

/// A device whose inline paths (run on the connection's own thread) panic at offset 8192: a
/// bug in the device or in the cache's `try_read_range` / `try_write_range`.
struct InlinePanic(Arc<MemDevice>, Bug);

/// Lent bytes whose first part panics.
struct PanickingParts;

impl Resident for PanickingParts {
    fn part(&self, _i: usize) -> Option<&[u8]> {
        panic!("a bug in lent bytes");
    }
}

impl BlockDevice for InlinePanic {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn block_size(&self) -> usize {
        4096
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.0.flush()
    }
    fn flush_range(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.flush_range(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.write_zeroes(offset, len)
    }
    fn trim(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.0.trim(offset, len)
    }
    fn sync_cursor(self: Arc<Self>) -> Box<dyn SyncCursor> {
        self.0.clone().sync_cursor()
    }
    fn read_resident(
        &self,
        offset: u64,
        _len: usize,
    ) -> Option<std::io::Result<Box<dyn Resident + '_>>> {
        match self.1 {
            Bug::ReadResident => assert_ne!(offset, 8192, "a bug on the inline path"),
            Bug::LentBytes if offset == 8192 => return Some(Ok(Box::new(PanickingParts))),
            _ => {}
        }
        None
    }
    fn try_write_at(&self, _buf: &[u8], offset: u64) -> Option<std::io::Result<()>> {
        if self.1 == Bug::TryWrite {
            assert_ne!(offset, 8192, "a bug on the inline write path");
        }
        None
    }
}

fn server(bug: Bug) -> TestServer {
    let mem = Arc::new(MemDevice::new(SIZE));
    TestServer::with_device(
        mem.clone(),
        Arc::new(InlinePanic(mem, bug)),
        ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            ..ServerConfig::default()
        },
    )
}

/// What the client sees within 3 s after its request: a reply with this error, or the end of
/// the stream (`None`); panics if it sees neither (the client hangs).
fn answer_or_eof(c: &mut Client) -> Option<u32> {
    c.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let t = Instant::now();
    let mut h = [0u8; 16];
    let mut got = 0;
    while got < h.len() {
        match c.s.read(&mut h[got..]) {
            Ok(0) => return None,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!(
                    "no reply and no close after {:?}: the client hangs",
                    t.elapsed()
                )
            }
            Err(_) => return None, // reset: the connection is closed
        }
    }
    assert_eq!(
        u32::from_be_bytes(h[0..4].try_into().unwrap()),
        SIMPLE_REPLY_MAGIC
    );
    Some(u32::from_be_bytes(h[4..8].try_into().unwrap()))
}

#[test]
fn a_panic_on_the_inline_path_answers_or_closes_the_connection() {
    let srv = server(Bug::ReadResident);
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_READ, 0, 1, 8192, 100);
    // Answered with an error, as a pool job's panic is; the connection goes on serving.
    assert_eq!(answer_or_eof(&mut c), Some(EIO));
    assert_eq!(c.read(2, 0, 100).unwrap(), vec![0u8; 100]);
    assert_serving(srv.addr);
}

#[test]
fn a_panic_on_the_inline_write_path_is_answered_with_an_error() {
    let srv = server(Bug::TryWrite);
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_WRITE, 0, 1, 8192, 4096);
    c.send(&[7u8; 4096]);
    assert_eq!(answer_or_eof(&mut c), Some(EIO));
    assert_eq!(c.write(2, 0, &[1u8; 512], 0), 0);
    assert_serving(srv.addr);
}

/// A panic that unwinds the connection's thread itself (here while sending lent bytes) closes
/// the connection: the server's table of connections held a clone of the socket, which kept it
/// open after the thread died.
#[test]
fn a_panic_that_ends_the_connection_thread_closes_the_socket() {
    let srv = server(Bug::LentBytes);
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_READ, 0, 1, 8192, 100);
    assert_eq!(
        answer_or_eof(&mut c),
        None,
        "expected the end of the stream"
    );
    // The server goes on serving other connections, and stops cleanly.
    assert_serving(srv.addr);
    srv.stop().unwrap();
}
