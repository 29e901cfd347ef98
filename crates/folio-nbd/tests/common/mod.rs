//! A raw NBD client and an in-process server on an ephemeral loopback port, shared by the
//! protocol tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use folio_nbd::proto::*;
use folio_nbd::{BlockDevice, Listener, MemDevice, Server, ServerConfig, ShutdownHandle};

pub const SIZE: usize = 1 << 20;

/// A running server; stopped and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stop: ShutdownHandle,
    pub thread: Option<JoinHandle<std::io::Result<()>>>,
    pub dev: Arc<MemDevice>,
}

impl TestServer {
    pub fn start(cfg: ServerConfig) -> TestServer {
        let dev = Arc::new(MemDevice::new(SIZE));
        TestServer::with_device(dev.clone(), dev, cfg)
    }

    /// A server for `served` (`dev` is what the test inspects; often the same device).
    pub fn with_device(
        dev: Arc<MemDevice>,
        served: Arc<dyn BlockDevice>,
        cfg: ServerConfig,
    ) -> TestServer {
        let listener = Listener::tcp("127.0.0.1:0").unwrap();
        let addr = listener.tcp_addr().unwrap();
        let server = Server::new(served, cfg);
        let stop = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.serve(listener));
        TestServer {
            addr,
            stop,
            thread: Some(thread),
            dev,
        }
    }

    pub fn default() -> TestServer {
        TestServer::start(ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            ..ServerConfig::default()
        })
    }

    pub fn stop(mut self) -> std::io::Result<()> {
        self.stop.shutdown();
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub struct Client {
    pub s: TcpStream,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut c = Client { s };
        let mut hello = [0u8; 18];
        c.s.read_exact(&mut hello).unwrap();
        assert_eq!(
            u64::from_be_bytes(hello[0..8].try_into().unwrap()),
            NBDMAGIC
        );
        assert_eq!(
            u64::from_be_bytes(hello[8..16].try_into().unwrap()),
            IHAVEOPT
        );
        assert_eq!(
            u16::from_be_bytes([hello[16], hello[17]]),
            FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES
        );
        c
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    pub fn option(&mut self, opt: u32, data: &[u8]) {
        let mut m = IHAVEOPT.to_be_bytes().to_vec();
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        self.send(&m);
    }

    /// Reads one option reply: (option, type, data).
    pub fn option_reply(&mut self) -> (u32, u32, Vec<u8>) {
        let mut h = [0u8; 20];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(u64::from_be_bytes(h[0..8].try_into().unwrap()), REPLY_MAGIC);
        let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        (
            u32::from_be_bytes(h[8..12].try_into().unwrap()),
            u32::from_be_bytes(h[12..16].try_into().unwrap()),
            d,
        )
    }

    pub fn info_data(name: &str) -> Vec<u8> {
        let mut d = (name.len() as u32).to_be_bytes().to_vec();
        d.extend_from_slice(name.as_bytes());
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        d
    }

    /// Full handshake with OPT_GO; returns (size, transmission flags).
    pub fn go(addr: SocketAddr, name: &str) -> (Client, u64, u16) {
        let mut c = Client::connect(addr);
        c.send(&(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).to_be_bytes());
        c.option(OPT_GO, &Client::info_data(name));
        let (mut size, mut flags) = (0, 0);
        loop {
            let (opt, kind, d) = c.option_reply();
            assert_eq!(opt, OPT_GO);
            match kind {
                REP_INFO if u16::from_be_bytes([d[0], d[1]]) == INFO_EXPORT => {
                    size = u64::from_be_bytes(d[2..10].try_into().unwrap());
                    flags = u16::from_be_bytes([d[10], d[11]]);
                }
                REP_INFO => {}
                REP_ACK => break,
                other => panic!("unexpected reply {other:#x}"),
            }
        }
        (c, size, flags)
    }

    pub fn request(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) {
        let r = Request {
            flags,
            kind,
            handle,
            offset,
            len,
        };
        self.send(&encode_request(&r));
    }

    /// Reads a simple reply header: (error, handle).
    pub fn reply(&mut self) -> (u32, u64) {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).unwrap();
        assert_eq!(
            u32::from_be_bytes(h[0..4].try_into().unwrap()),
            SIMPLE_REPLY_MAGIC
        );
        (
            u32::from_be_bytes(h[4..8].try_into().unwrap()),
            u64::from_be_bytes(h[8..16].try_into().unwrap()),
        )
    }

    pub fn write(&mut self, handle: u64, offset: u64, data: &[u8], flags: u16) -> u32 {
        self.request(CMD_WRITE, flags, handle, offset, data.len() as u32);
        self.send(data);
        let (err, h) = self.reply();
        assert_eq!(h, handle);
        err
    }

    pub fn read(&mut self, handle: u64, offset: u64, len: u32) -> Result<Vec<u8>, u32> {
        self.request(CMD_READ, 0, handle, offset, len);
        let (err, h) = self.reply();
        assert_eq!(h, handle);
        if err != 0 {
            return Err(err);
        }
        let mut d = vec![0u8; len as usize];
        self.s.read_exact(&mut d).unwrap();
        Ok(d)
    }

    pub fn simple(&mut self, kind: u16, flags: u16, handle: u64, offset: u64, len: u32) -> u32 {
        self.request(kind, flags, handle, offset, len);
        let (err, h) = self.reply();
        assert_eq!(h, handle);
        err
    }

    /// True if the server closed the connection (EOF or reset) within the timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.s.read(&mut b), Ok(0) | Err(_))
    }
}

pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Proves a server is alive: a fresh client writes and reads back.
pub fn assert_serving(addr: SocketAddr) {
    let (mut c, size, _) = Client::go(addr, "test");
    assert_eq!(size, SIZE as u64);
    let p = pattern(9, 3000);
    assert_eq!(c.write(1, 777, &p, 0), 0);
    assert_eq!(c.read(2, 777, 3000).unwrap(), p);
}

/// What a [`Hooked`] device's `read_resident` returns for an offset (`None`: not resident).
pub type ResidentHook =
    dyn Fn(u64) -> Option<std::io::Result<Box<dyn folio_nbd::Resident>>> + Send + Sync;

/// A memory device whose chosen methods first run a test's hook, which may panic or wait: the
/// tests' faulty devices. Everything else goes to `mem`.
pub struct Hooked {
    pub mem: Arc<MemDevice>,
    /// Run before `read_at` (the blocking path, on the pool), with the offset.
    pub read: Option<Box<dyn Fn(u64) + Send + Sync>>,
    /// `read_resident` (the inline hit path); by default nothing is resident.
    pub resident: Option<Box<ResidentHook>>,
    /// Run before `try_write_at` (the inline write path), which then declines.
    pub try_write: Option<Box<dyn Fn(u64) + Send + Sync>>,
}

impl Hooked {
    /// No hooks yet.
    pub fn new(mem: Arc<MemDevice>) -> Hooked {
        Hooked {
            mem,
            read: None,
            resident: None,
            try_write: None,
        }
    }
}

impl BlockDevice for Hooked {
    fn len(&self) -> u64 {
        self.mem.len()
    }
    fn block_size(&self) -> usize {
        4096
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if let Some(hook) = &self.read {
            hook(offset);
        }
        self.mem.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.mem.write_at(buf, offset)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.mem.flush()
    }
    fn flush_range(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.mem.flush_range(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.mem.write_zeroes(offset, len)
    }
    fn trim(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.mem.trim(offset, len)
    }
    fn sync_cursor(self: Arc<Self>) -> Box<dyn folio_nbd::SyncCursor> {
        self.mem.clone().sync_cursor()
    }
    fn read_resident(
        &self,
        offset: u64,
        _len: usize,
    ) -> Option<std::io::Result<Box<dyn folio_nbd::Resident + '_>>> {
        let hook = self.resident.as_ref()?;
        hook(offset).map(|r| r.map(|b| b as Box<dyn folio_nbd::Resident + '_>))
    }
    fn try_write_at(&self, _buf: &[u8], offset: u64) -> Option<std::io::Result<()>> {
        if let Some(hook) = &self.try_write {
            hook(offset);
        }
        None
    }
}

/// A gate that reads wait at while it is closed, at most 20 s (a test never hangs on it): holds
/// a request in flight on a worker (see [`Gate::device`]).
pub struct Gate {
    closed: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
    /// Reads that reached the gate.
    arrived: std::sync::atomic::AtomicUsize,
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            closed: std::sync::Mutex::new(true),
            cv: std::sync::Condvar::new(),
            arrived: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// A device over `mem` whose `read_at` waits at this gate.
    pub fn device(self: &Arc<Gate>, mem: Arc<MemDevice>) -> Hooked {
        let gate = self.clone();
        Hooked {
            read: Some(Box::new(move |_| gate.pass())),
            ..Hooked::new(mem)
        }
    }

    fn pass(&self) {
        self.arrived
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let g = self.closed.lock().unwrap();
        let _ = self
            .cv
            .wait_timeout_while(g, Duration::from_secs(20), |closed| *closed)
            .unwrap();
    }

    pub fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.cv.notify_all();
    }

    /// Waits until `n` reads reached the gate (at most 10 s).
    pub fn wait_arrived(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.arrived.load(std::sync::atomic::Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "reads never reached the gate"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// CPU time (user + system) a thread of this process named `name` has used so far, from
/// `/proc/self/task/*/stat` (10 ms resolution); `None` if no such thread is alive.
pub fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(task) = task else { continue };
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "tid (comm) state ppid ..." : comm may hold spaces; fields after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after comm.
        let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        return Some(Duration::from_millis(ticks * 10));
    }
    None
}
