//! Hostile and broken clients against the in-process server: a client that never reads its
//! replies, a slowloris handshake, too many connections, idle connections, a request whose
//! handler panics, and shutdown with a client that will not go. Each test is bounded in time
//! (a few seconds at most) and size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::{CacheConfig, MemoryBackend, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{CacheDevice, MemDevice, ServerConfig};

mod common;
use common::*;

fn cfg() -> ServerConfig {
    ServerConfig {
        export_name: "test".into(),
        handshake_deadline: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

#[test]
fn a_client_that_never_reads_stalls_only_itself_and_releases_its_pages() {
    // The stalled client reads the first 16 MiB; the other one works on the last 4 MiB.
    const STALLED: usize = 16 << 20;
    const IMG: usize = STALLED + (4 << 20);
    let backend = Arc::new(MemoryBackend::from_bytes(vec![0x5au8; IMG]));
    let cache = Arc::new(PageCache::new(backend, CacheConfig::new(32 << 20)).unwrap());
    let mut warm = vec![0u8; IMG];
    cache.read_exact_at(&mut warm, 0).unwrap(); // every page cached: reads are inline hits
    let dev = Arc::new(CacheDevice::new(cache.clone()));
    let probe = Arc::new(MemDevice::new(0));
    let srv = TestServer::with_device(
        probe,
        dev,
        ServerConfig {
            unsent_bytes_max: 1 << 20,
            shutdown_grace: Duration::from_secs(1),
            ..cfg()
        },
    );
    // The stalled client: 1 MiB reads, pipelined, never reading a reply. Its socket buffers
    // fill, then the server's bounded queue of unsent replies, then the server stops reading.
    let (stalled, _, _) = Client::go(srv.addr, "test");
    let mut w = stalled.s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // Requests go out 1,000 at a time (28 KB) until the socket takes no more for 2 s; at most
    // 1,000,000 (28 MB, more than loopback's socket buffers ever hold).
    const BATCHES: u64 = 1000;
    let writer = std::thread::spawn(move || {
        let mut sent = 0u64;
        for b in 0..BATCHES {
            let mut batch = Vec::with_capacity(1000 * REQUEST_LEN);
            for i in b * 1000..(b + 1) * 1000 {
                let r = Request {
                    flags: 0,
                    kind: CMD_READ,
                    handle: i,
                    offset: (i % 16) << 20,
                    len: 1 << 20,
                };
                batch.extend_from_slice(&encode_request(&r));
            }
            if w.write_all(&batch).is_err() {
                break; // the server stopped reading: our send buffer is full
            }
            sent += 1000;
        }
        sent
    });
    let sent = writer.join().unwrap();
    assert!(
        sent < BATCHES * 1000,
        "the server kept reading a client that reads nothing"
    );
    // Meanwhile another client is served: 2,000 round trips, in a bounded time.
    let (mut c, _, _) = Client::go(srv.addr, "test");
    let t = Instant::now();
    for i in 0..1000u64 {
        let p = pattern(i as u8, 4096);
        let at = STALLED as u64 + (i % 1024) * 4096;
        assert_eq!(c.write(2 * i, at, &p, 0), 0);
        assert_eq!(c.read(2 * i + 1, at, 4096).unwrap(), p);
    }
    let served = t.elapsed();
    assert!(
        served < Duration::from_secs(20),
        "second client took {served:?}"
    );
    // The stalled client's replies hold no pages: every page it read can be evicted (they are
    // clean, so nothing but a hold keeps them).
    cache.evict_range(0..STALLED as u64).unwrap();
    let held: Vec<u64> = (0..(STALLED / 4096) as u64)
        .filter(|&p| cache.page_state(p).is_some())
        .collect();
    assert!(
        held.is_empty(),
        "pages still held for a client that does not read: {held:?}"
    );
    // Shutdown does not wait for it beyond the grace period.
    let t = Instant::now();
    srv.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        t.elapsed()
    );
    drop(stalled);
}

#[test]
fn a_slowloris_handshake_is_cut_at_the_deadline() {
    let srv = TestServer::start(ServerConfig {
        handshake_deadline: Duration::from_millis(1500),
        ..cfg()
    });
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    let start = Instant::now();
    // A byte every 100 ms, each well within any per-read timeout: flags, then an option
    // header that never ends.
    let mut bytes = FLAG_C_FIXED_NEWSTYLE.to_be_bytes().to_vec();
    bytes.extend_from_slice(&IHAVEOPT.to_be_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    let mut cut = None;
    for b in bytes {
        if s.write_all(&[b]).is_err() {
            cut = Some(start.elapsed());
            break;
        }
        s.set_nonblocking(true).unwrap();
        let mut x = [0u8; 1];
        let closed = matches!(s.read(&mut x), Ok(0));
        s.set_nonblocking(false).unwrap();
        if closed {
            cut = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = cut.expect("the server never cut the slow handshake");
    assert!(cut >= Duration::from_millis(1300), "cut too early: {cut:?}");
    assert!(cut < Duration::from_secs(5), "cut too late: {cut:?}");
    assert_serving(srv.addr);
}

#[test]
fn connections_are_capped_per_address_and_in_all() {
    let srv = TestServer::start(ServerConfig {
        connections_per_address_max: 2,
        ..cfg()
    });
    let (mut a, _, _) = Client::go(srv.addr, "test");
    let (_b, _, _) = Client::go(srv.addr, "test");
    // A third from the same address is closed before its greeting.
    let mut c = TcpStream::connect(srv.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 18];
    assert!(
        c.read_exact(&mut b).is_err(),
        "third connection got a greeting"
    );
    assert_eq!(a.read(1, 0, 512).unwrap().len(), 512);
    drop(a);
    // A seat frees when a connection ends (the server notices within its tick).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if c.read_exact(&mut b).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "seat never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_idle_connection_is_closed() {
    let srv = TestServer::start(ServerConfig {
        idle_timeout: Some(Duration::from_millis(500)),
        ..cfg()
    });
    let (mut c, _, _) = Client::go(srv.addr, "test");
    assert_eq!(c.read(1, 0, 512).unwrap().len(), 512);
    let t = Instant::now();
    assert!(c.is_closed());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_request_that_panics_is_answered_eio_and_the_session_goes_on() {
    let mem = Arc::new(MemDevice::new(SIZE));
    // A device whose reads at one offset panic.
    let dev = Hooked {
        read: Some(Box::new(|offset| {
            assert_ne!(offset, 8192, "a bug in the device")
        })),
        ..Hooked::new(mem.clone())
    };
    let srv = TestServer::with_device(mem, Arc::new(dev), cfg());
    let (mut c, _, _) = Client::go(srv.addr, "test");
    assert_eq!(c.read(1, 8192, 100), Err(EIO));
    assert_eq!(c.read(2, 4096, 100).unwrap().len(), 100);
    assert_serving(srv.addr);
}

#[test]
fn shutdown_closes_a_client_that_will_not_go_after_the_grace_period() {
    let srv = TestServer::start(ServerConfig {
        shutdown_grace: Duration::from_millis(500),
        ..cfg()
    });
    // A client mid-write: its payload never comes, so its request never ends.
    let (mut c, _, _) = Client::go(srv.addr, "test");
    c.request(CMD_WRITE, 0, 1, 0, 65536);
    c.send(&[1u8; 100]);
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    srv.stop().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(c.is_closed());
}

#[test]
fn options_during_shutdown_get_err_shutdown() {
    let srv = TestServer::start(cfg());
    let mut c = Client::connect(srv.addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    srv.stop.shutdown();
    std::thread::sleep(Duration::from_millis(50));
    c.option(OPT_LIST, &[]);
    assert_eq!(c.option_reply().1, REP_ERR_SHUTDOWN);
    c.option(0x4242, b"x");
    assert_eq!(c.option_reply().1, REP_ERR_SHUTDOWN);
    c.option(OPT_GO, &Client::info_data("test"));
    assert_eq!(c.option_reply().1, REP_ERR_SHUTDOWN);
    let _ = c.s.write_all(&[0]);
    drop(srv);
}
