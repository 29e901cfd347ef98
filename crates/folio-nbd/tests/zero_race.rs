//! `WRITE_ZEROES` racing a delayed write-back: a page is written, a `FLUSH` on another
//! connection starts writing it back through a backend that holds the write for half a second,
//! and meanwhile `WRITE_ZEROES` zeroes the page. Whatever order the engine picks, the range
//! must read as zeros afterwards, in the cache and on the backend: the late write-back must not
//! bring the old bytes back over the hole.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::backend::{Frame, FrameMut, IoWaiter, MemoryBackend, PageCacheBackend};
use folio::{CacheConfig, IoOp, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{CacheDevice, Listener, Server, ServerConfig};

const SIZE: usize = 1 << 20;

/// A memory backend whose writes land `delay` after they are submitted, on another thread.
struct SlowWrites {
    inner: Arc<MemoryBackend>,
    started: Arc<AtomicUsize>,
    delay: Duration,
}

impl PageCacheBackend for SlowWrites {
    fn read_pages(&self, idx: u64, frames: Vec<FrameMut>) -> folio::Result<IoWaiter> {
        self.inner.read_pages(idx, frames)
    }
    fn write_pages(&self, idx: u64, frames: Vec<Frame>) -> folio::Result<IoWaiter> {
        let (waiter, completer) = IoWaiter::pending(IoOp::Write, idx * 4096);
        let (inner, delay) = (self.inner.clone(), self.delay);
        self.started.fetch_add(1, Ordering::SeqCst);
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            completer.complete(inner.write_pages(idx, frames).and_then(|w| w.wait()));
        });
        Ok(waiter)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> folio::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> folio::Result<()> {
        self.inner.sync()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> folio::Result<()> {
        self.inner.write_zeroes(offset, len)
    }
}

fn go(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
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
    s
}

fn send(s: &mut TcpStream, kind: u16, handle: u64, offset: u64, len: u32, payload: &[u8]) {
    let r = Request {
        flags: 0,
        kind,
        handle,
        offset,
        len,
    };
    let mut m = encode_request(&r).to_vec();
    m.extend_from_slice(payload);
    s.write_all(&m).unwrap();
}

fn reply(s: &mut TcpStream, handle: u64) -> u32 {
    let mut h = [0u8; 16];
    s.read_exact(&mut h).unwrap();
    assert_eq!(u64::from_be_bytes(h[8..16].try_into().unwrap()), handle);
    u32::from_be_bytes(h[4..8].try_into().unwrap())
}

#[test]
fn write_zeroes_racing_a_delayed_write_back_leaves_zeros() {
    let mem = Arc::new(MemoryBackend::from_bytes(vec![0u8; SIZE]));
    let started = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(SlowWrites {
        inner: mem.clone(),
        started: started.clone(),
        delay: Duration::from_millis(500),
    });
    let cache = PageCache::new(backend, CacheConfig::new(SIZE as u64)).unwrap();
    let listener = Listener::tcp("127.0.0.1:0").unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = Server::new(
        Arc::new(CacheDevice::new(Arc::new(cache))),
        ServerConfig::default(),
    );
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.serve(listener));

    let (mut a, mut b) = (go(addr), go(addr));
    send(&mut a, CMD_WRITE, 1, 8192, 8192, &[0xaa; 8192]);
    assert_eq!(reply(&mut a, 1), 0);
    // B's flush starts the write-back, which the backend holds for 500 ms.
    send(&mut b, CMD_FLUSH, 2, 0, 0, &[]);
    let t = Instant::now();
    while started.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "write-back never started"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Meanwhile A zeroes the pages under write-back (whole pages: dropped and zeroed on the
    // backend).
    send(&mut a, CMD_WRITE_ZEROES, 3, 8192, 8192, &[]);
    assert_eq!(reply(&mut a, 3), 0);
    assert_eq!(reply(&mut b, 2), 0);
    send(&mut a, CMD_FLUSH, 4, 0, 0, &[]);
    assert_eq!(reply(&mut a, 4), 0);
    send(&mut a, CMD_READ, 5, 8192, 8192, &[]);
    assert_eq!(reply(&mut a, 5), 0);
    let mut got = vec![0u8; 8192];
    a.read_exact(&mut got).unwrap();
    assert!(
        got.iter().all(|&x| x == 0),
        "the cache serves the old bytes"
    );
    assert!(
        mem.image()[8192..16384].iter().all(|&x| x == 0),
        "the late write-back brought the old bytes back on the backend"
    );
    stop.shutdown();
    thread.join().unwrap().unwrap();
    assert!(mem.durable_image()[8192..16384].iter().all(|&x| x == 0));
}
