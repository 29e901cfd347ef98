//! `WRITE_ZEROES` racing a delayed write-back: a page is written, a `FLUSH` on another
//! connection starts writing it back through a backend that holds the write for half a second,
//! and meanwhile `WRITE_ZEROES` zeroes the page. Whatever order the engine picks, the range
//! must read as zeros afterwards, in the cache and on the backend: the late write-back must not
//! bring the old bytes back over the hole.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio::backend::{Frame, FrameMut, IoWaiter, MemoryBackend, PageCacheBackend};
use folio::{CacheConfig, IoOp, PageCache};
use folio_nbd::proto::*;
use folio_nbd::{CacheDevice, Listener, Server, ServerConfig};

mod common;
use common::Client;

const IMAGE_BYTES: usize = 1 << 20;

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

fn send(c: &mut Client, kind: u16, handle: u64, offset: u64, len: u32, payload: &[u8]) {
    c.request(kind, 0, handle, offset, len);
    c.send(payload);
}

fn reply(c: &mut Client, handle: u64) -> u32 {
    let (err, h) = c.reply();
    assert_eq!(h, handle);
    err
}

#[test]
fn write_zeroes_racing_a_delayed_write_back_leaves_zeros() {
    let mem = Arc::new(MemoryBackend::from_bytes(vec![0u8; IMAGE_BYTES]));
    let started = Arc::new(AtomicUsize::new(0));
    let backend = Arc::new(SlowWrites {
        inner: mem.clone(),
        started: started.clone(),
        delay: Duration::from_millis(500),
    });
    let cache = PageCache::new(backend, CacheConfig::new(IMAGE_BYTES as u64)).unwrap();
    let listener = Listener::tcp("127.0.0.1:0").unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = Server::new(
        Arc::new(CacheDevice::new(Arc::new(cache))),
        ServerConfig::default(),
    );
    let stop = server.shutdown_handle();
    let thread = std::thread::spawn(move || server.serve(listener));

    let (mut a, _, _) = Client::go(addr, "");
    let (mut b, _, _) = Client::go(addr, "");
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
    a.s.read_exact(&mut got).unwrap();
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
