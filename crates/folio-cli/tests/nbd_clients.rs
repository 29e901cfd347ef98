//! `folio serve` driven by real NBD clients: qemu-io, qemu-img, nbdinfo, nbdcopy.
//!
//! Each test spawns the real `folio` binary on a free loopback port or a Unix socket in a
//! temporary directory; a guard kills it on drop. A test whose client binary is missing says so
//! on stderr and returns, or fails under `FOLIO_REQUIRE_ALL=1` (see `nbd/mod.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod nbd;
use nbd::*;

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
