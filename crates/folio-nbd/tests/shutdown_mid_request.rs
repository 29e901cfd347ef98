//! Shutdown while a request is half received: its header was read, its payload was not (a
//! write the server will carry out, or a refused write whose payload it skips). The request
//! must still be answered (`ESHUTDOWN`, or the refusal) once its payload is in, before the
//! connection closes. About 1 s.

use std::io::{Read, Write};
use std::time::Duration;

use folio_nbd::proto::*;

mod common;
use common::*;

/// Sends a write's header and the first 1,000 bytes of its 64 KiB payload, stops the server,
/// sends the rest, and returns the reply (error, handle), or `None` if the connection ended
/// without one.
fn half_sent_write_at_shutdown(srv: &TestServer, offset: u64) -> Option<(u32, u64)> {
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_WRITE, 0, 7, offset, 65536);
    c.send(&[0x5a; 1000]);
    std::thread::sleep(Duration::from_millis(200)); // the header is read; the payload is not all in
    srv.stop.shutdown();
    std::thread::sleep(Duration::from_millis(300)); // the connection has seen the shutdown
                                                    // A server that closed the connection may refuse the rest: that shows as no reply below.
    let _ = c.s.write_all(&[0x5a; 65536 - 1000]);
    let mut h = [0u8; 16];
    c.s.read_exact(&mut h).ok()?;
    assert_eq!(
        u32::from_be_bytes(h[0..4].try_into().unwrap()),
        SIMPLE_REPLY_MAGIC
    );
    let reply = (
        u32::from_be_bytes(h[4..8].try_into().unwrap()),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
    );
    // Then the connection ends (nothing after it was started).
    let mut rest = Vec::new();
    let _ = c.s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{} more bytes after the reply", rest.len());
    Some(reply)
}

#[test]
fn a_write_whose_payload_was_partly_received_at_shutdown_gets_eshutdown() {
    let srv = TestServer::default();
    let got = half_sent_write_at_shutdown(&srv, 0);
    assert_eq!(got, Some((ESHUTDOWN, 7)), "no reply to the write");
    // ESHUTDOWN: not carried out.
    assert!(srv.dev.image()[..65536].iter().all(|&b| b == 0));
    srv.stop().unwrap();
}

#[test]
fn a_refused_write_being_skipped_at_shutdown_gets_its_refusal() {
    let srv = TestServer::default();
    // Past the end: refused with ENOSPC, and its payload skipped.
    let got = half_sent_write_at_shutdown(&srv, SIZE as u64 - 4096);
    assert_eq!(got, Some((ENOSPC, 7)), "no reply to the refused write");
    srv.stop().unwrap();
}
