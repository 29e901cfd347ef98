//! `folio serve` driven by real NBD clients: qemu-io, qemu-img, nbdinfo, nbdcopy.
//!
//! Each test spawns the real `folio` binary on a free loopback port or a Unix socket in a
//! temporary directory; a guard kills it on drop. A test whose client binary is missing skips
//! visibly, and fails under `FOLIO_REQUIRE_ALL=1` (CI installs qemu-utils, libnbd-bin and fio
//! and sets it; see `folio-testkit`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// Whether `bin` is installed: a visible skip if not, a failure under `FOLIO_REQUIRE_ALL=1`.
fn have(bin: &str) -> bool {
    folio_testkit::require_bin(bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a server listens.
#[derive(Clone)]
enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

impl Addr {
    fn uri(&self, name: &str) -> String {
        match self {
            Addr::Tcp(p) => format!("nbd://127.0.0.1:{p}/{name}"),
            Addr::Unix(s) => format!("nbd+unix:///{name}?socket={}", s.display()),
        }
    }
}

/// A running `folio serve`; killed (SIGKILL) on drop unless already stopped.
struct Served {
    child: Option<Child>,
    addr: Addr,
}

impl Served {
    fn start(image: &Path, addr: Addr, extra: &[&str]) -> Served {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_folio"));
        cmd.arg("serve").arg(image).args(["--budget", "16MiB"]);
        match &addr {
            Addr::Tcp(p) => cmd.arg("--listen").arg(format!("127.0.0.1:{p}")),
            Addr::Unix(s) => cmd.arg("--unix").arg(s),
        };
        // The server's log goes next to the image (kept out of the test output).
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(image.with_extension("serve.log"))
            .unwrap();
        cmd.args(extra).stdout(Stdio::null()).stderr(log);
        let child = cmd.spawn().expect("spawn folio");
        let served = Served {
            child: Some(child),
            addr,
        };
        served.wait_ready();
        served
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = match &self.addr {
                Addr::Tcp(p) => TcpStream::connect(("127.0.0.1", *p)).is_ok(),
                Addr::Unix(s) => std::os::unix::net::UnixStream::connect(s).is_ok(),
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "folio serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn uri(&self) -> String {
        self.addr.uri("folio")
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("folio serve did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs a command; panics with its output unless it succeeds. Returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", uri]);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    let out = run(&mut c);
    assert!(
        !out.contains("Pattern verification failed") && !out.contains("failed"),
        "qemu-io {cmds:?}: {out}"
    );
    out
}

/// A file of `len` pseudo-random bytes.
fn random_image(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; MIB as usize];
    for _ in 0..len / MIB {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    p
}

fn zero_image(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}

#[test]
fn qemu_io_patterns_discard_and_zero_over_tcp_and_unix() {
    if !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 64 * MIB);
    for addr in [
        Addr::Tcp(free_port()),
        Addr::Unix(dir.path().join("nbd.sock")),
    ] {
        let srv = Served::start(&img, addr, &[]);
        let uri = srv.uri();
        qemu_io(
            &uri,
            &[
                "write -P 0x11 1 511",
                "write -P 0x22 4095 3",
                "write -P 0x33 12345 100000",
                "write -P 0x44 33554431 1048577",
            ],
        );
        // A fresh connection sees every pattern.
        qemu_io(
            &uri,
            &[
                "read -P 0x11 1 511",
                "read -P 0x22 4095 3",
                "read -P 0x33 12345 100000",
                "read -P 0x44 33554431 1048577",
                "read -P 0 0 1",
                "read -P 0 4098 8247",
            ],
        );
        // Discard and zero-write ranges; zeroed ranges read back as zeros.
        qemu_io(
            &uri,
            &[
                "discard 65536 65536",
                "write -z 12345 50000",
                "write -z -u 40960 8192",
                "read -P 0 12345 50000",
                "read -P 0x33 62345 3191",
            ],
        );
        qemu_io(
            &uri,
            &["read -P 0 40960 8192", "read -P 0x44 33554431 1048577"],
        );
    }
}

#[test]
fn qemu_img_convert_qcow2_and_raw_into_the_export_then_compare() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 32 * MIB;
    // A sparse qcow2 with a few written extents.
    let qcow = dir.path().join("src.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&qcow)
        .arg(size.to_string()));
    let mut c = Command::new("qemu-io");
    c.args(["-f", "qcow2"]).arg(&qcow);
    for cmd in [
        "write -P 0xa1 0 65536",
        "write -P 0xb2 1000000 333333",
        "write -P 0xc3 20000000 4096",
        "write -P 0xd4 33488896 65536",
    ] {
        c.arg("-c").arg(cmd);
    }
    run(&mut c);
    // The export starts full of random data, so zeros must be written, not assumed.
    let target = random_image(dir.path(), "target.raw", size);
    let srv = Served::start(&target, Addr::Tcp(free_port()), &[]);
    let uri = srv.uri();
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow)
        .arg(&uri));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "qcow2", "-F", "raw"])
        .arg(&qcow)
        .arg(&uri));
    // And a raw source.
    let raw = random_image(dir.path(), "src.raw", size);
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "-O", "raw"])
        .arg(&raw)
        .arg(&uri));
    run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&raw)
        .arg(&uri));
}

#[test]
fn nbdinfo_lists_the_export_and_nbdcopy_copies_it_out() {
    if !have("nbdinfo") || !have("nbdcopy") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let size = 24 * MIB;
    let img = random_image(dir.path(), "img.raw", size);
    let port = free_port();
    let srv = Served::start(&img, Addr::Tcp(port), &["--export-name", "disk0"]);
    let list = run(Command::new("nbdinfo")
        .arg("--list")
        .arg(format!("nbd://127.0.0.1:{port}")));
    assert!(list.contains("export=\"disk0\""), "{list}");
    assert!(list.contains(&format!("export-size: {size}")), "{list}");
    let uri = srv.addr.uri("disk0");
    let got = run(Command::new("nbdinfo").arg("--size").arg(&uri));
    assert_eq!(got.trim(), size.to_string());
    let json = run(Command::new("nbdinfo").arg("--json").arg(&uri));
    assert!(json.contains("\"can_multi_conn\": true"), "{json}");
    assert!(json.contains("\"block_size_maximum\": 33554432"), "{json}");
    let out = dir.path().join("copy.raw");
    // nbdcopy uses several connections and many requests in flight.
    run(Command::new("nbdcopy")
        .args(["--connections=4", "--requests=32"])
        .arg(&uri)
        .arg(&out));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&img).unwrap(),
        "copy differs"
    );
    // And copying in through nbdcopy, then out again.
    let src = random_image(dir.path(), "src.raw", size);
    run(Command::new("nbdcopy").arg(&src).arg(&uri));
    let out2 = dir.path().join("copy2.raw");
    run(Command::new("nbdcopy").arg(&uri).arg(&out2));
    assert!(
        std::fs::read(&out2).unwrap() == std::fs::read(&src).unwrap(),
        "copy-in differs"
    );
}

/// Starts qemu-io running `cmds` then sleeping (so that it never flushes at exit), and waits
/// until its output shows `marker`, i.e. until the commands before it were acknowledged.
fn qemu_io_then_hang(uri: &str, cmds: &[&str], marker: &str) -> Child {
    let mut c = Command::new("stdbuf");
    c.args(["-oL", "qemu-io", "-f", "raw", uri]);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    c.args(["-c", "sleep 30000"]);
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match lines.next() {
            Some(Ok(l)) if l.contains(marker) => break,
            Some(Ok(_)) => {}
            _ => panic!("qemu-io ended before printing {marker:?}"),
        }
        assert!(Instant::now() < deadline, "qemu-io too slow");
    }
    child
}

#[test]
fn flushed_and_fua_writes_survive_sigkill() {
    if !have("qemu-io") || !have("stdbuf") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 32 * MIB);
    let sock = dir.path().join("nbd.sock");
    // FLUSH: write, flush, then a read whose output proves the flush was acknowledged.
    let mut srv = Served::start(&img, Addr::Unix(sock.clone()), &[]);
    let mut client = qemu_io_then_hang(
        &srv.uri(),
        &["write -P 0x5a 4097 100000", "flush", "read -P 0x5a 4097 10"],
        "read 10/10",
    );
    srv.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let srv = Served::start(&img, Addr::Unix(sock.clone()), &[]);
    qemu_io(
        &srv.uri(),
        &["read -P 0x5a 4097 100000", "read -P 0 0 4097"],
    );
    drop(srv);
    // FUA: a write with -f is durable once acknowledged, with no flush at all.
    let mut srv = Served::start(&img, Addr::Unix(sock.clone()), &[]);
    let mut client = qemu_io_then_hang(
        &srv.uri(),
        &["write -f -P 0x6b 9000001 77777"],
        "wrote 77777/77777",
    );
    srv.kill9();
    let _ = client.kill();
    let _ = client.wait();
    let srv = Served::start(&img, Addr::Unix(sock), &[]);
    qemu_io(
        &srv.uri(),
        &["read -P 0x6b 9000001 77777", "read -P 0x5a 4097 100000"],
    );
}

/// A minimal raw client: OPT_EXPORT_NAME, then one WRITE without any flush.
fn raw_write_no_flush(port: u16, offset: u64, data: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).unwrap();
    s.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
    let mut m = 0x4948_4156_454f_5054u64.to_be_bytes().to_vec();
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&5u32.to_be_bytes());
    m.extend_from_slice(b"folio");
    s.write_all(&m).unwrap();
    let mut info = [0u8; 10];
    s.read_exact(&mut info).unwrap();
    let mut req = 0x2560_9513u32.to_be_bytes().to_vec();
    req.extend_from_slice(&0u16.to_be_bytes());
    req.extend_from_slice(&1u16.to_be_bytes());
    req.extend_from_slice(&42u64.to_be_bytes());
    req.extend_from_slice(&offset.to_be_bytes());
    req.extend_from_slice(&(data.len() as u32).to_be_bytes());
    req.extend_from_slice(data);
    s.write_all(&req).unwrap();
    let mut reply = [0u8; 16];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[4..8], &[0, 0, 0, 0], "write failed");
    s
}

#[test]
fn sigterm_flushes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 8 * MIB);
    let port = free_port();
    let mut srv = Served::start(&img, Addr::Tcp(port), &["--verbose"]);
    let data = vec![0x7eu8; 70_000];
    // The client stays connected and never flushes.
    let mut conn = raw_write_no_flush(port, 123_457, &data);
    let st = srv.terminate();
    assert!(st.success(), "exit status {st}");
    let mut b = [0u8; 1];
    assert!(
        matches!(conn.read(&mut b), Ok(0) | Err(_)),
        "connection still open"
    );
    let file = std::fs::read(&img).unwrap();
    assert!(file[123_457..123_457 + 70_000].iter().all(|&b| b == 0x7e));
    // The Unix socket file is removed on a clean exit.
    let sock = dir.path().join("s.sock");
    let mut srv = Served::start(&img, Addr::Unix(sock.clone()), &[]);
    assert!(srv.terminate().success());
    assert!(!sock.exists());
}

#[test]
fn read_only_export_refuses_qemu_io_writes() {
    if !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = random_image(dir.path(), "img.raw", 4 * MIB);
    let before = std::fs::read(&img).unwrap();
    let srv = Served::start(&img, Addr::Tcp(free_port()), &["--read-only"]);
    let out = Command::new("qemu-io")
        .args(["-f", "raw", &srv.uri(), "-c", "write -P 1 0 4096"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("wrote 4096"), "{text}");
    drop(srv);
    assert!(std::fs::read(&img).unwrap() == before);
}
