//! The server over the real page cache (a `MemoryBackend`, so that what a power cut would keep
//! is observable): requests larger than the whole cache budget, FUA, multi-connection flush.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use folio::{CacheConfig, MemoryBackend, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{CacheDevice, Listener, Server, ServerConfig};

const SIZE: usize = 40 << 20;

fn go(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes())
        .unwrap();
    let mut m = IHAVEOPT.to_be_bytes().to_vec();
    m.extend_from_slice(&OPT_EXPORT_NAME.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&m).unwrap();
    let mut info = [0u8; 10];
    s.read_exact(&mut info).unwrap();
    assert_eq!(
        u64::from_be_bytes(info[0..8].try_into().unwrap()),
        SIZE as u64
    );
    s
}

fn req(s: &mut TcpStream, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
    let r = Request {
        flags,
        kind,
        handle,
        offset,
        len,
    };
    s.write_all(&encode_request(&r)).unwrap();
}

fn reply(s: &mut TcpStream, handle: u64) -> u32 {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(u64::from_be_bytes(h[8..16].try_into().unwrap()), handle);
    u32::from_be_bytes(h[4..8].try_into().unwrap())
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
    a.write_all(&big).unwrap();
    assert_eq!(reply(&mut a, 1), 0);
    req(&mut b, CMD_READ, 0, 2, 4097, MAX_PAYLOAD);
    assert_eq!(reply(&mut b, 2), 0);
    let mut got = vec![0u8; MAX_PAYLOAD as usize];
    b.read_exact(&mut got).unwrap();
    assert!(got == big, "32 MiB read differs");
    // Flush on B covers A's acknowledged write (CAN_MULTI_CONN).
    req(&mut b, CMD_FLUSH, 0, 3, 0, 0);
    assert_eq!(reply(&mut b, 3), 0);
    assert!(backend.durable_image()[4097..4097 + big.len()] == big[..]);
    // FUA write: durable on acknowledgement.
    req(&mut a, CMD_WRITE, CMD_FLAG_FUA, 4, SIZE as u64 - 5000, 5000);
    a.write_all(&[0xeeu8; 5000]).unwrap();
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
    a.read_exact(&mut two).unwrap();
    assert_eq!(two, [0, 0]);
    req(&mut a, CMD_WRITE, 0, 7, SIZE as u64 - 1, 2);
    a.write_all(&[1, 2]).unwrap();
    assert_eq!(reply(&mut a, 7), ENOSPC);
    // An unflushed write is made durable by the shutdown.
    req(&mut a, CMD_WRITE, 0, 8, 100, 3);
    a.write_all(&[7, 8, 9]).unwrap();
    assert_eq!(reply(&mut a, 8), 0);
    stop.shutdown();
    thread.join().unwrap().unwrap();
    assert_eq!(&backend.durable_image()[100..103], &[7, 8, 9]);
    assert_eq!(backend.image().len(), SIZE);
}
