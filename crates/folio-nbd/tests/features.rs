//! Protocol features over a raw client against the in-process server: FUA on every command,
//! an image whose size is not a multiple of 512, structured replies, `BLOCK_STATUS` over a
//! sparse file, several exports, each connection's own write-back error cursor, and TLS
//! required before any export is shown.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, FaultConfig, FaultyBackend, MemoryBackend, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{
    CacheDevice, Export, FileDevice, Listener, MemDevice, Server, ServerConfig, TlsMode,
};

mod common;
use common::*;

fn cfg() -> ServerConfig {
    ServerConfig {
        export_name: "test".into(),
        handshake_deadline: Duration::from_secs(5),
        ..ServerConfig::default()
    }
}

/// Starts a server for `exports`; returns its address and a stop guard.
fn serve(exports: Vec<Export>, cfg: ServerConfig) -> (std::net::SocketAddr, impl Drop) {
    struct Stop(
        folio_nbd::ShutdownHandle,
        Option<std::thread::JoinHandle<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.shutdown();
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }
    let listener = Listener::tcp("127.0.0.1:0").unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = Server::with_exports(exports, cfg).unwrap();
    let stop = server.shutdown_handle();
    let t = std::thread::spawn(move || {
        let _ = server.serve(listener);
    });
    (addr, Stop(stop, Some(t)))
}

#[test]
fn fua_is_accepted_on_every_command() {
    let srv = TestServer::default();
    let (mut c, _, _) = Client::go(srv.addr, "test");
    let p = pattern(3, 3000);
    assert_eq!(c.write(1, 5000, &p, CMD_FLAG_FUA), 0);
    c.request(CMD_READ, CMD_FLAG_FUA, 2, 5000, 3000);
    assert_eq!(c.reply(), (0, 2));
    let mut got = vec![0u8; 3000];
    c.s.read_exact(&mut got).unwrap();
    assert_eq!(got, p);
    assert_eq!(c.simple(CMD_FLUSH, CMD_FLAG_FUA, 3, 0, 0), 0);
    assert_eq!(c.simple(CMD_TRIM, CMD_FLAG_FUA, 4, 0, 4096), 0);
    assert_eq!(c.simple(CMD_WRITE_ZEROES, CMD_FLAG_FUA, 5, 0, 4096), 0);
    assert_eq!(c.simple(CMD_CACHE, CMD_FLAG_FUA, 6, 0, 4096), 0);
    assert_eq!(&srv.dev.durable_image()[5000..8000], &p[..]);
}

#[test]
fn an_image_whose_size_is_not_a_multiple_of_512_is_addressable_to_its_last_byte() {
    let size = 1_000_003usize;
    let dev = Arc::new(MemDevice::new(size));
    let srv = TestServer::with_device(dev.clone(), dev, cfg());
    let (mut c, got_size, _) = Client::go(srv.addr, "test");
    assert_eq!(got_size, size as u64);
    assert_eq!(c.write(1, size as u64 - 3, &[1, 2, 3], 0), 0);
    assert_eq!(c.read(2, size as u64 - 3, 3).unwrap(), vec![1, 2, 3]);
    assert_eq!(c.read(3, size as u64 - 2, 3), Err(EINVAL));
}

/// Negotiates structured replies and `base:allocation` on `name`, then `OPT_GO`.
fn go_structured(addr: std::net::SocketAddr, name: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
    c.option(OPT_STRUCTURED_REPLY, &[]);
    assert_eq!(c.option_reply().1, REP_ACK);
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&(META_BASE_ALLOCATION.len() as u32).to_be_bytes());
    d.extend_from_slice(META_BASE_ALLOCATION.as_bytes());
    c.option(OPT_SET_META_CONTEXT, &d);
    let (_, kind, data) = c.option_reply();
    assert_eq!(kind, REP_META_CONTEXT);
    assert_eq!(&data[4..], META_BASE_ALLOCATION.as_bytes());
    assert_eq!(c.option_reply().1, REP_ACK);
    c.option(OPT_GO, &Client::info_data(name));
    while c.option_reply().1 != REP_ACK {}
    c
}

/// Reads one structured chunk: (flags, type, handle, payload).
fn chunk(c: &mut Client) -> (u16, u16, u64, Vec<u8>) {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    c.s.read_exact(&mut h).unwrap();
    assert_eq!(
        u32::from_be_bytes(h[0..4].try_into().unwrap()),
        STRUCTURED_REPLY_MAGIC
    );
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut d = vec![0u8; len as usize];
    c.s.read_exact(&mut d).unwrap();
    (
        u16::from_be_bytes([h[4], h[5]]),
        u16::from_be_bytes([h[6], h[7]]),
        u64::from_be_bytes(h[8..16].try_into().unwrap()),
        d,
    )
}

#[test]
fn structured_replies_and_block_status_over_a_sparse_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.raw");
    let size = 8u64 << 20;
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(size).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&[7u8; 65536], 2 << 20).unwrap();
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let export = Export {
        name: "sparse".into(),
        description: "a sparse file".into(),
        dev: Arc::new(FileDevice::new(file).unwrap()),
        read_only: false,
    };
    let (addr, _stop) = serve(vec![export], cfg());
    let mut c = go_structured(addr, "sparse");
    // A read: one OFFSET_DATA chunk flagged done.
    c.request(CMD_READ, 0, 1, 2 << 20, 100);
    let (flags, kind, handle, d) = chunk(&mut c);
    assert_eq!(
        (flags, kind, handle),
        (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 1)
    );
    assert_eq!(u64::from_be_bytes(d[0..8].try_into().unwrap()), 2 << 20);
    assert_eq!(&d[8..], &[7u8; 100][..]);
    // An error: one ERROR chunk.
    c.request(CMD_READ, 0, 2, size - 1, 2);
    let (flags, kind, handle, d) = chunk(&mut c);
    assert_eq!(
        (flags, kind, handle),
        (REPLY_FLAG_DONE, REPLY_TYPE_ERROR, 2)
    );
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), EINVAL);
    // Block status: hole, data, hole (where the file system has holes; else all data).
    c.request(CMD_BLOCK_STATUS, 0, 3, 0, size as u32);
    let (flags, kind, handle, d) = chunk(&mut c);
    assert_eq!(
        (flags, kind, handle),
        (REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, 3)
    );
    assert_eq!(
        u32::from_be_bytes(d[0..4].try_into().unwrap()),
        CONTEXT_BASE_ALLOCATION
    );
    let desc: Vec<(u32, u32)> = d[4..]
        .chunks(8)
        .map(|x| {
            (
                u32::from_be_bytes(x[0..4].try_into().unwrap()),
                u32::from_be_bytes(x[4..8].try_into().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        desc.iter().map(|x| x.0 as u64).sum::<u64>(),
        size,
        "{desc:?}"
    );
    let mut at = 0u64;
    for &(len, flags) in &desc {
        if (at..at + len as u64).contains(&(2 << 20)) {
            assert_eq!(flags, 0, "written bytes reported as a hole: {desc:?}");
        }
        at += len as u64;
    }
    if desc.len() > 1 {
        assert_eq!(desc[0], (2 << 20, STATE_HOLE | STATE_ZERO), "{desc:?}");
    } else {
        eprintln!("NOTE: this file system reports no holes; block status says all data");
    }
    // REQ_ONE: one descriptor.
    c.request(CMD_BLOCK_STATUS, CMD_FLAG_REQ_ONE, 4, 0, size as u32);
    let (_, _, _, d) = chunk(&mut c);
    assert_eq!(d.len(), 4 + 8);
    // FAST_ZERO with NO_HOLE cannot be fast: ENOTSUP, nothing written.
    c.request(
        CMD_WRITE_ZEROES,
        CMD_FLAG_FAST_ZERO | CMD_FLAG_NO_HOLE,
        5,
        2 << 20,
        4096,
    );
    let (_, kind, _, d) = chunk(&mut c);
    assert_eq!(kind, REPLY_TYPE_ERROR);
    assert_eq!(u32::from_be_bytes(d[0..4].try_into().unwrap()), ENOTSUP);
    c.request(CMD_READ, 0, 6, 2 << 20, 1);
    assert_eq!(chunk(&mut c).3[8], 7);
}

#[test]
fn block_status_without_the_context_is_refused() {
    let srv = TestServer::default();
    let (mut c, _, _) = Client::go(srv.addr, "test");
    assert_eq!(c.simple(CMD_BLOCK_STATUS, 0, 1, 0, 4096), EINVAL);
}

#[test]
fn several_exports_are_listed_and_served_separately() {
    let (a, b) = (
        Arc::new(MemDevice::new(1 << 20)),
        Arc::new(MemDevice::new(2 << 20)),
    );
    let export = |name: &str, dev: &Arc<MemDevice>| Export {
        name: name.into(),
        description: format!("disk {name}"),
        dev: dev.clone(),
        read_only: false,
    };
    let (addr, _stop) = serve(vec![export("a", &a), export("b", &b)], cfg());
    let mut c = Client::connect(addr);
    c.send(&FLAG_C_FIXED_NEWSTYLE.to_be_bytes());
    c.option(OPT_LIST, &[]);
    let mut names = Vec::new();
    loop {
        let (_, kind, d) = c.option_reply();
        if kind == REP_ACK {
            break;
        }
        assert_eq!(kind, REP_SERVER);
        let n = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
        names.push(String::from_utf8(d[4..4 + n].to_vec()).unwrap());
    }
    assert_eq!(names, ["a", "b"]);
    let (mut ca, size_a, _) = Client::go(addr, "a");
    let (mut cb, size_b, _) = Client::go(addr, "b");
    assert_eq!((size_a, size_b), (1 << 20, 2 << 20));
    assert_eq!(ca.write(1, 0, b"AAAA", 0), 0);
    assert_eq!(cb.write(1, 0, b"BBBB", 0), 0);
    assert_eq!(&a.image()[..4], b"AAAA");
    assert_eq!(&b.image()[..4], b"BBBB");
    // The empty name is the first export.
    let (_, size, _) = Client::go(addr, "");
    assert_eq!(size, 1 << 20);
}

#[test]
fn each_connection_hears_of_a_failed_write_back_once() {
    let size = 1usize << 20;
    let mem = Arc::new(MemoryBackend::from_bytes(vec![0u8; size]));
    let faulty = FaultyBackend::new(mem, FaultConfig::new(7).fail_write_at(0)).unwrap();
    let cache = PageCache::new(Arc::new(faulty), CacheConfig::new(1 << 20)).unwrap();
    let export = Export {
        name: "test".into(),
        description: String::new(),
        dev: Arc::new(CacheDevice::new(Arc::new(cache))),
        read_only: false,
    };
    let (addr, _stop) = serve(vec![export], cfg());
    let (mut a, _, _) = Client::go(addr, "test");
    let (mut b, _, _) = Client::go(addr, "test");
    assert_eq!(a.write(1, 0, &[9u8; 4096], 0), 0);
    // B's flush meets the failed write-back of A's data...
    assert_eq!(b.simple(CMD_FLUSH, 0, 2, 0, 0), EIO);
    // ...and A, whose write it was, hears of it too: B did not consume it.
    assert_eq!(a.simple(CMD_FLUSH, 0, 3, 0, 0), EIO);
    // Once each: the data stayed dirty and the next write-back succeeds.
    assert_eq!(a.simple(CMD_FLUSH, 0, 4, 0, 0), 0);
    assert_eq!(b.simple(CMD_FLUSH, 0, 5, 0, 0), 0);
    assert_eq!(a.read(6, 0, 4).unwrap(), vec![9; 4]);
}

#[test]
fn a_server_that_must_speak_tls_refuses_to_start_without_a_certificate() {
    // The TLS handshake itself, with real clients and certificates: folio-cli's nbd_features.
    let export = Export {
        name: "test".into(),
        description: String::new(),
        dev: Arc::new(MemDevice::new(1 << 20)),
        read_only: false,
    };
    let tls = ServerConfig {
        tls: TlsMode::Require,
        ..cfg()
    };
    let server = Server::with_exports(vec![export], tls).unwrap();
    let err = server
        .serve(Listener::tcp("127.0.0.1:0").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn shutdown_reports_only_write_back_failures_nobody_was_told_about() {
    for told in [true, false] {
        let mem = Arc::new(MemoryBackend::from_bytes(vec![0u8; 1 << 20]));
        let faulty = FaultyBackend::new(mem.clone(), FaultConfig::new(3).fail_write_at(0)).unwrap();
        let cache = PageCache::new(Arc::new(faulty), CacheConfig::new(1 << 20)).unwrap();
        let listener = Listener::tcp("127.0.0.1:0").unwrap();
        let addr = listener.tcp_addr().unwrap();
        // One attempt: a retry would write the data and stop cleanly (tests/final_flush.rs).
        let one_attempt = ServerConfig {
            final_flush_attempts: 1,
            ..cfg()
        };
        let server = Server::new(Arc::new(CacheDevice::new(Arc::new(cache))), one_attempt);
        let stop = server.shutdown_handle();
        let t = std::thread::spawn(move || server.serve(listener));
        let (mut c, _, _) = Client::go(addr, "test");
        assert_eq!(c.write(1, 0, &[5u8; 4096], 0), 0);
        if told {
            // The client hears of the failure, and the next flush writes the data.
            assert_eq!(c.simple(CMD_FLUSH, 0, 2, 0, 0), EIO);
            assert_eq!(c.simple(CMD_FLUSH, 0, 3, 0, 0), 0);
        }
        drop(c);
        stop.shutdown();
        let result = t.join().unwrap();
        // Told: the data is durable and nothing is owed to anyone. Not told: the final flush is
        // the first to meet the failure, and says so.
        assert_eq!(result.is_ok(), told, "told={told}: {result:?}");
        if told {
            assert_eq!(&mem.durable_image()[..4096], &[5u8; 4096][..]);
        }
    }
}
