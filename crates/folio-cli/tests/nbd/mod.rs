//! Shared by the tests that drive `folio serve` with real NBD clients: a server process on a
//! free loopback port or a Unix socket (killed on drop), client runners, test images.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const MIB: u64 = 1 << 20;

/// Whether `bin` is installed. A missing client is a visible skip (on stderr), and a failure
/// under `FOLIO_REQUIRE_ALL=1` (CI installs every client).
pub fn have(bin: &str) -> bool {
    // A visible skip if it is missing, a failure under FOLIO_REQUIRE_ALL=1 (folio-testkit).
    folio_testkit::require_bin(bin)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a server listens.
#[derive(Clone)]
pub enum Addr {
    Tcp(u16),
    Unix(PathBuf),
}

impl Addr {
    pub fn uri(&self, name: &str) -> String {
        match self {
            Addr::Tcp(p) => format!("nbd://127.0.0.1:{p}/{name}"),
            Addr::Unix(s) => format!("nbd+unix:///{name}?socket={}", s.display()),
        }
    }
}

/// A running `folio serve`; killed (SIGKILL) on drop unless already stopped.
pub struct Served {
    pub child: Option<Child>,
    pub addr: Addr,
}

impl Served {
    pub fn start(image: &Path, addr: Addr, extra: &[&str]) -> Served {
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

    pub fn wait_ready(&self) {
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

    pub fn uri(&self) -> String {
        self.addr.uri("folio")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
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
pub fn run(cmd: &mut Command) -> String {
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

pub fn qemu_io(uri: &str, cmds: &[&str]) -> String {
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
pub fn random_image(dir: &Path, name: &str, len: u64) -> PathBuf {
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

pub fn zero_image(dir: &Path, name: &str, len: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(len).unwrap();
    p
}
