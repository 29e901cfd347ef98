//! The server in-process on an ephemeral loopback port, driven by a raw-TCP client: good
//! sessions, bad input of every kind, concurrency, durability and shutdown.

use std::io::{Read, Write};

use folio_nbd::proto::*;
use folio_nbd::ServerConfig;

mod common;
use common::*;

#[test]
fn go_info_list_and_round_trip() {
    let srv = TestServer::default();
    // OPT_LIST, OPT_INFO (unknown and known name), then OPT_GO with the empty name.
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    c.option(OPT_LIST, &[]);
    let (_, kind, d) = c.option_reply();
    assert_eq!(kind, REP_SERVER);
    assert_eq!(&d[4..], b"test");
    assert_eq!(c.option_reply().1, REP_ACK);
    c.option(OPT_INFO, &Client::info_data("nope"));
    assert_eq!(c.option_reply().1, REP_ERR_UNKNOWN);
    c.option(OPT_INFO, &Client::info_data("test"));
    let mut saw_block = false;
    loop {
        let (_, kind, d) = c.option_reply();
        if kind == REP_ACK {
            break;
        }
        assert_eq!(kind, REP_INFO);
        if u16::from_be_bytes([d[0], d[1]]) == INFO_BLOCK_SIZE {
            let words: Vec<u32> = d[2..]
                .chunks(4)
                .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
                .collect();
            assert_eq!(words, vec![1, 4096, 32 << 20]);
            saw_block = true;
        }
    }
    assert!(saw_block);
    c.option(OPT_GO, &Client::info_data(""));
    while c.option_reply().1 != REP_ACK {}
    let p = pattern(1, 10_000);
    assert_eq!(c.write(1, 12_345, &p, 0), 0);
    assert_eq!(c.read(2, 12_345, 10_000).unwrap(), p);
    assert_eq!(c.simple(CMD_WRITE_ZEROES, 0, 3, 12_345, 100), 0);
    assert_eq!(c.read(4, 12_345, 100).unwrap(), vec![0; 100]);
    assert_eq!(
        c.simple(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE, 5, 12_445, 100),
        0
    );
    assert_eq!(c.read(6, 12_445, 100).unwrap(), vec![0; 100]);
    assert_eq!(c.simple(CMD_TRIM, 0, 7, 0, 4096), 0);
    assert_eq!(c.simple(CMD_FLUSH, 0, 8, 0, 0), 0);
    c.request(CMD_DISC, 0, 9, 0, 0);
    assert!(c.is_closed());
    srv.stop().unwrap();
}

#[test]
fn export_name_option_with_and_without_zeroes() {
    let srv = TestServer::default();
    for (flags, tail) in [(FLAG_C_FIXED_NEWSTYLE, 124usize), (FLAG_C_NO_ZEROES, 0)] {
        let mut c = Client::connect(srv.addr);
        c.send(&flags.to_be_bytes());
        c.option(OPT_EXPORT_NAME, b"test");
        let mut b = vec![0u8; 10 + tail];
        c.s.read_exact(&mut b).unwrap();
        assert_eq!(u64::from_be_bytes(b[0..8].try_into().unwrap()), SIZE as u64);
        let tflags = u16::from_be_bytes([b[8], b[9]]);
        assert_ne!(tflags & TFLAG_HAS_FLAGS, 0);
        assert_eq!(c.read(1, 0, 512).unwrap().len(), 512);
    }
    // An unknown name cannot be refused with an error: the connection closes.
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    c.option(OPT_EXPORT_NAME, b"other");
    assert!(c.is_closed());
    assert_serving(srv.addr);
}

#[test]
fn malformed_handshakes_close_only_that_client() {
    let srv = TestServer::default();
    // A second client connected throughout keeps working.
    let (mut good, _, _) = Client::go(srv.addr, "test");
    // Unknown client flags.
    let mut c = Client::connect(srv.addr);
    c.send(&0x8000_0000u32.to_be_bytes());
    assert!(c.is_closed());
    // Bad option magic.
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    c.send(b"NOTMAGIC\0\0\0\x07\0\0\0\0");
    assert!(c.is_closed());
    // Oversized option.
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&OPT_GO.to_be_bytes());
    m.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&m);
    assert_eq!(c.option_reply().1, REP_ERR_TOO_BIG);
    assert!(c.is_closed());
    // Inconsistent OPT_GO body, then an unknown option: errors, and the session goes on.
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    c.option(OPT_GO, &[0, 0, 0, 9, b'x']);
    assert_eq!(c.option_reply().1, REP_ERR_INVALID);
    c.option(0x4242, b"whatever");
    assert_eq!(c.option_reply(), (0x4242, REP_ERR_UNSUP, vec![]));
    c.option(OPT_LIST, b"x");
    assert_eq!(c.option_reply().1, REP_ERR_INVALID);
    c.option(OPT_ABORT, &[]);
    assert_eq!(c.option_reply().1, REP_ACK);
    assert!(c.is_closed());
    // Garbage then hang-up mid-handshake.
    let mut c = Client::connect(srv.addr);
    c.send(&[1, 2]);
    drop(c);
    let p = pattern(3, 4096);
    assert_eq!(good.write(1, 0, &p, 0), 0);
    assert_eq!(good.read(2, 0, 4096).unwrap(), p);
    assert_serving(srv.addr);
}

#[test]
fn bad_requests_get_errors_and_the_session_goes_on() {
    let srv = TestServer::default();
    let (mut other, _, _) = Client::go(srv.addr, "test");
    let (mut c, size, _) = Client::go(srv.addr, "test");
    // Unknown command, unknown flag.
    assert_eq!(c.simple(99, 0, 1, 0, 0), EINVAL);
    assert_eq!(c.simple(CMD_READ, 0x4000, 2, 0, 512), EINVAL);
    // Reads: past the end, overflowing, oversized.
    assert_eq!(c.read(3, size - 100, 200), Err(EINVAL));
    assert_eq!(c.read(4, u64::MAX - 10, 512), Err(EINVAL));
    assert_eq!(c.read(5, 0, MAX_PAYLOAD + 1), Err(EINVAL));
    // Writes past the end: ENOSPC, payload skipped, stream still in sync.
    assert_eq!(c.write(6, size - 10, &[7u8; 100], 0), ENOSPC);
    assert_eq!(c.write(7, u64::MAX - 1, &[7u8; 100], 0), ENOSPC);
    assert_eq!(c.simple(CMD_TRIM, 0, 8, size, 1), EINVAL);
    assert_eq!(c.simple(CMD_WRITE_ZEROES, 0, 9, size - 1, 2), ENOSPC);
    // Still serving this connection.
    let p = pattern(5, 1000);
    assert_eq!(c.write(10, size - 1000, &p, CMD_FLAG_FUA), 0);
    assert_eq!(c.read(11, size - 1000, 1000).unwrap(), p);
    // A write over 32 MiB cannot be skipped cheaply: error, then the connection closes.
    c.request(CMD_WRITE, 0, 12, 0, MAX_PAYLOAD + 1);
    assert_eq!(c.reply(), (EINVAL, 12));
    assert!(c.is_closed());
    // Bad request magic closes.
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.send(&[0xffu8; REQUEST_LEN]);
    assert!(c.is_closed());
    // Disconnect mid-payload and mid-header.
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_WRITE, 0, 13, 0, 65536);
    c.send(&[1u8; 1000]);
    drop(c);
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.send(&REQUEST_MAGIC.to_be_bytes());
    drop(c);
    // The other client never noticed.
    assert_eq!(other.read(1, 0, 512).unwrap().len(), 512);
    assert_serving(srv.addr);
}

#[test]
fn read_only_export_refuses_writes() {
    let srv = TestServer::start(ServerConfig {
        export_name: "test".into(),
        read_only: true,
        ..ServerConfig::default()
    });
    let (mut c, _, flags) = Client::go(srv.addr, "test");
    assert_ne!(flags & TFLAG_READ_ONLY, 0);
    assert_eq!(c.write(1, 0, &[1u8; 512], 0), EPERM);
    assert_eq!(c.simple(CMD_TRIM, 0, 2, 0, 512), EPERM);
    assert_eq!(c.simple(CMD_WRITE_ZEROES, 0, 3, 0, 512), EPERM);
    assert_eq!(c.read(4, 0, 512).unwrap(), vec![0; 512]);
    assert_eq!(c.simple(CMD_FLUSH, 0, 5, 0, 0), 0);
}

#[test]
fn many_requests_in_flight_are_matched_by_handle() {
    let srv = TestServer::default();
    let (mut c, _, _) = Client::go(srv.addr, "test");
    // Pipeline 200 writes without waiting (more than max_inflight), then collect replies.
    let mut expected = std::collections::HashSet::new();
    let mut batch = Vec::new();
    for i in 0..200u64 {
        let r = Request {
            flags: 0,
            kind: CMD_WRITE,
            handle: 1000 + i,
            offset: i * 4096,
            len: 4096,
        };
        batch.extend_from_slice(&encode_request(&r));
        batch.extend_from_slice(&pattern(i as u8, 4096));
        expected.insert(1000 + i);
    }
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&batch).unwrap());
    for _ in 0..200 {
        let (err, h) = c.reply();
        assert_eq!(err, 0);
        assert!(expected.remove(&h), "unexpected or duplicate handle {h}");
    }
    writer.join().unwrap();
    // Pipelined reads: each reply's data belongs to its handle.
    for i in 0..50u64 {
        c.request(CMD_READ, 0, i, i * 4096, 4096);
    }
    for _ in 0..50 {
        let (err, h) = c.reply();
        assert_eq!(err, 0);
        let mut d = vec![0u8; 4096];
        c.s.read_exact(&mut d).unwrap();
        assert_eq!(d, pattern(h as u8, 4096));
    }
}

#[test]
fn flush_and_fua_make_writes_durable_across_connections() {
    let srv = TestServer::default();
    let (mut a, _, flags) = Client::go(srv.addr, "test");
    assert_ne!(flags & TFLAG_CAN_MULTI_CONN, 0);
    let (mut b, _, _) = Client::go(srv.addr, "test");
    // FUA: durable when acknowledged.
    let p = pattern(7, 5000);
    assert_eq!(a.write(1, 100, &p, CMD_FLAG_FUA), 0);
    assert_eq!(&srv.dev.durable_image()[100..5100], &p[..]);
    // Multi-conn: a write acknowledged on A is durable after a flush on B.
    let q = pattern(8, 5000);
    assert_eq!(a.write(2, 200_000, &q, 0), 0);
    assert_ne!(&srv.dev.durable_image()[200_000..205_000], &q[..]);
    assert_eq!(b.simple(CMD_FLUSH, 0, 3, 0, 0), 0);
    assert_eq!(&srv.dev.durable_image()[200_000..205_000], &q[..]);
}

#[test]
fn shutdown_answers_requests_in_flight_and_flushes() {
    let srv = TestServer::default();
    let (mut c, _, _) = Client::go(srv.addr, "test");
    let p = pattern(4, 65536);
    assert_eq!(c.write(1, 0, &p, 0), 0);
    // Queue more writes, then stop the server while they may still be in flight.
    for i in 0..15u64 {
        c.request(CMD_WRITE, 0, 100 + i, 65536 * (i + 1), 65536);
        c.send(&p);
    }
    let dev = srv.dev.clone();
    let stopper = std::thread::spawn(move || srv.stop());
    // Every request the server started is carried out and answered with success; requests it
    // read but had not started get ESHUTDOWN; requests it never read get no reply; then the
    // connection closes.
    let mut acked = vec![0u64];
    loop {
        let mut h = [0u8; 16];
        if c.s.read_exact(&mut h).is_err() {
            break;
        }
        let err = u32::from_be_bytes(h[4..8].try_into().unwrap());
        let handle = u64::from_be_bytes(h[8..16].try_into().unwrap());
        assert!(err == 0 || err == ESHUTDOWN, "error {err}");
        if err == 0 {
            acked.push(handle - 99);
        }
    }
    stopper.join().unwrap().unwrap();
    // Stopping flushed everything that was acknowledged.
    let img = dev.durable_image();
    for i in acked {
        let i = i as usize;
        assert_eq!(&img[i * 65536..(i + 1) * 65536], &p[..]);
    }
}
