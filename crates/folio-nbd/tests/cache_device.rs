//! The server over the real page cache (a `MemoryBackend`, so that what a power cut would keep
//! is observable): requests larger than the whole cache budget, FUA, multi-connection flush.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, MemoryBackend, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{CacheDevice, Listener, Server, ServerConfig};

mod common;
use common::Client;

const SIZE: usize = 40 << 20;

/// A client after `OPT_GO` on the default export, with a long read timeout (32 MiB requests).
fn go(addr: std::net::SocketAddr) -> Client {
    let (c, size, _) = Client::go(addr, "");
    assert_eq!(size, SIZE as u64);
    c.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c
}

fn req(c: &mut Client, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
    c.request(kind, flags, handle, offset, len);
}

fn reply(c: &mut Client, handle: u64) -> u32 {
    let (err, h) = c.reply();
    assert_eq!(h, handle);
    err
}

#[test]
fn cache_device_serves_large_requests_and_makes_flushes_durable() {
    let backend = Arc::new(MemoryBackend::from_bytes(vec![0u8; SIZE]));
    // A 2 MiB cache serving 32 MiB requests.
    let cache = PageCache::new(backend.clone(), CacheConfig::new(2 << 20)).unwrap();
    let dev = Arc::new(CacheDevice::new(Arc::new(cache)));
    let listener = Listener::tcp("127.0.0.1:0").unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = Server::new(dev, ServerConfig::default());
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.serve(listener));

    let mut a = go(addr);
    let mut b = go(addr);
    let big: Vec<u8> = (0..MAX_PAYLOAD as usize)
        .map(|i| (i % 251) as u8 ^ (i >> 20) as u8)
        .collect();
    req(&mut a, CMD_WRITE, 0, 1, 4097, MAX_PAYLOAD);
    a.s.write_all(&big).unwrap();
    assert_eq!(reply(&mut a, 1), 0);
    req(&mut b, CMD_READ, 0, 2, 4097, MAX_PAYLOAD);
    assert_eq!(reply(&mut b, 2), 0);
    let mut got = vec![0u8; MAX_PAYLOAD as usize];
    b.s.read_exact(&mut got).unwrap();
    assert!(got == big, "32 MiB read differs");
    // Flush on B covers A's acknowledged write (CAN_MULTI_CONN).
    req(&mut b, CMD_FLUSH, 0, 3, 0, 0);
    assert_eq!(reply(&mut b, 3), 0);
    assert!(backend.durable_image()[4097..4097 + big.len()] == big[..]);
    // FUA write: durable on acknowledgement.
    req(&mut a, CMD_WRITE, CMD_FLAG_FUA, 4, SIZE as u64 - 5000, 5000);
    a.s.write_all(&[0xeeu8; 5000]).unwrap();
    assert_eq!(reply(&mut a, 4), 0);
    assert!(backend.durable_image()[SIZE - 5000..]
        .iter()
        .all(|&x| x == 0xee));
    // Zeroing through the cache, and a write past the end refused before the cache grows.
    req(&mut a, CMD_WRITE_ZEROES, 0, 5, 4097, 1 << 20);
    assert_eq!(reply(&mut a, 5), 0);
    req(&mut a, CMD_READ, 0, 6, 4096, 2);
    assert_eq!(reply(&mut a, 6), 0);
    let mut two = [0u8; 2];
    a.s.read_exact(&mut two).unwrap();
    assert_eq!(two, [0, 0]);
    req(&mut a, CMD_WRITE, 0, 7, SIZE as u64 - 1, 2);
    a.s.write_all(&[1, 2]).unwrap();
    assert_eq!(reply(&mut a, 7), ENOSPC);
    // An unflushed write is made durable by the shutdown.
    req(&mut a, CMD_WRITE, 0, 8, 100, 3);
    a.s.write_all(&[7, 8, 9]).unwrap();
    assert_eq!(reply(&mut a, 8), 0);
    stop.shutdown();
    thread.join().unwrap().unwrap();
    assert_eq!(&backend.durable_image()[100..103], &[7, 8, 9]);
    assert_eq!(backend.image().len(), SIZE);
}
