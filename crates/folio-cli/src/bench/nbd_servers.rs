//! The NBD servers `folio bench nbd` compares: `folio serve`, `qemu-nbd` and `nbdkit` (file
//! plugin, with and without its cache filter), each a child process on a loopback port.
//!
//! Owns: each contender's command line (same image, same memory budget where the server has
//! one), starting and stopping it, and reading its CPU time from `/proc`. Does not own: the
//! workloads (`nbd.rs`). May block: waiting for a server to accept connections or to exit.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::BoxError;

/// A server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Contender {
    /// `folio serve` (O_DIRECT through io_uring, page cache of `--budget`).
    Folio,
    /// `qemu-nbd --cache=writeback --aio=io_uring` (the OS page cache).
    QemuNbd,
    /// `nbdkit file` (the OS page cache).
    Nbdkit,
    /// `nbdkit --filter=cache file`, `cache-max-size` = `--budget`, caching reads too.
    NbdkitCache,
}

impl Contender {
    /// The name in results.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Folio => "folio",
            Contender::QemuNbd => "qemu-nbd",
            Contender::Nbdkit => "nbdkit",
            Contender::NbdkitCache => "nbdkit-cache",
        }
    }

    /// The filters this contender runs in nbdkit (printed with the results).
    pub fn nbdkit_filters(self, budget: u64) -> Option<String> {
        match self {
            Contender::Nbdkit => Some("none".into()),
            Contender::NbdkitCache => Some(format!(
                "cache (cache=writeback, cache-max-size={budget}, cache-on-read=true)"
            )),
            _ => None,
        }
    }

    /// Checks that what this contender needs is installed (an error, not a skip: a comparison
    /// with a contender missing is not the comparison asked for).
    pub fn check(self) -> Result<(), BoxError> {
        let probe = match self {
            Contender::Folio => return Ok(()),
            Contender::QemuNbd => Command::new("qemu-nbd").arg("--version").output(),
            Contender::Nbdkit => Command::new("nbdkit")
                .args(["file", "--dump-plugin"])
                .output(),
            Contender::NbdkitCache => Command::new("nbdkit")
                .args(["--filter=cache", "file", "--dump-plugin"])
                .output(),
        };
        match probe {
            Ok(o) if o.status.success() => Ok(()),
            _ => Err(format!(
                "{} is not available (install qemu-utils / nbdkit)",
                self.name()
            )
            .into()),
        }
    }
}

/// A running server.
pub struct Running {
    child: Option<Child>,
    /// Its NBD URI.
    pub uri: String,
    port: u16,
}

/// Clock ticks per second of `/proc/PID/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl Running {
    /// Starts `c` serving `image` on `port` as export `bench`; logs go to `log`.
    pub fn start(
        c: Contender,
        image: &Path,
        port: u16,
        budget: u64,
        log: &Path,
    ) -> Result<Running, BoxError> {
        let img = image.to_str().ok_or("image path is not UTF-8")?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = match c {
            Contender::Folio => {
                let mut cmd = Command::new(std::env::current_exe()?);
                cmd.args(["serve", img, "--listen", &listen, "--export-name", "bench"])
                    .args(["--budget", &budget.to_string()]);
                cmd
            }
            Contender::QemuNbd => {
                let mut cmd = Command::new("qemu-nbd");
                cmd.args(["-f", "raw", "-b", "127.0.0.1", "-p", &port.to_string()])
                    .args(["-x", "bench", "-t", "--shared=16"])
                    .args(["--cache=writeback", "--aio=io_uring", img]);
                cmd
            }
            Contender::Nbdkit | Contender::NbdkitCache => {
                let mut cmd = Command::new("nbdkit");
                cmd.args([
                    "-f",
                    "-i",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-e",
                    "bench",
                ]);
                if c == Contender::NbdkitCache {
                    cmd.arg("--filter=cache");
                }
                cmd.arg("file").arg(format!("file={img}"));
                if c == Contender::NbdkitCache {
                    cmd.args(["cache=writeback", "cache-on-read=true"])
                        .arg(format!("cache-max-size={budget}"));
                }
                cmd
            }
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn()?;
        let mut r = Running {
            child: Some(child),
            uri: format!("nbd://127.0.0.1:{port}/bench"),
            port,
        };
        r.wait_ready(c)?;
        Ok(r)
    }

    fn wait_ready(&mut self, c: Contender) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|ch| ch.try_wait().ok().flatten())
            {
                return Err(format!("{} exited at start: {st}", c.name()).into());
            }
            if Instant::now() > deadline {
                return Err(format!("{} did not start within 30 s", c.name()).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User plus system CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> Result<f64, BoxError> {
        let pid = self.child.as_ref().ok_or("server stopped")?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command name (which may hold spaces) end with ')'.
        let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
        Ok((utime + stime) / clock_ticks())
    }

    /// SIGTERM, then waits (SIGKILL after 60 s).
    pub fn stop(mut self) -> Result<(), BoxError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<(), BoxError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("server did not stop within 60 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
