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
use folio_nbd::{MemDevice, Resident, ServerConfig};

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

/// Lent bytes whose first part panics.
struct PanickingParts;

impl Resident for PanickingParts {
    fn part(&self, _i: usize) -> Option<&[u8]> {
        panic!("a bug in lent bytes");
    }
}

/// A server over a device whose inline paths (run on the connection's own thread) panic at
/// offset 8192, as `bug` says: a bug in the device or in the cache's `try_read_range` /
/// `try_write_range`.
fn server(bug: Bug) -> TestServer {
    let mem = Arc::new(MemDevice::new(SIZE));
    let mut dev = Hooked::new(mem.clone());
    match bug {
        Bug::ReadResident => {
            dev.resident = Some(Box::new(|offset| {
                assert_ne!(offset, 8192, "a bug on the inline path");
                None
            }))
        }
        Bug::TryWrite => {
            dev.try_write = Some(Box::new(|offset| {
                assert_ne!(offset, 8192, "a bug on the inline write path")
            }))
        }
        Bug::LentBytes => {
            dev.resident = Some(Box::new(|offset| {
                (offset == 8192).then(|| Ok(Box::new(PanickingParts) as Box<dyn Resident>))
            }))
        }
    }
    TestServer::with_device(
        mem,
        Arc::new(dev),
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
