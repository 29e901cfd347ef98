//! Test-only helpers shared by the Folio crates' tests (a dev-dependency, never published).
//!
//! **Skips are visible and counted, and fail in CI.** A test that needs something the machine
//! may lack (io_uring, O_DIRECT, an NBD client, fio...) asks [`require`] (or [`require_bin`])
//! instead of returning early on its own:
//!
//! - if the dependency is there, the test runs;
//! - if not, and `FOLIO_REQUIRE_ALL=1` is set (`.ci/run` sets it), the test **fails** with the
//!   reason;
//! - otherwise the test is skipped: one line on the process's real stderr (written past the
//!   test harness's output capture, so `cargo test` shows it even for a passing test), numbered,
//!   and a summary of every skip of the test binary when it exits.
//!
//! Why a crate of its own rather than a module of `folio` behind a feature: the library's public
//! API stays free of test policy, no feature has to be unified across the workspace, and the
//! tests of every crate (`folio`, `folio-cli`, `folio-nbd`) can use one convention.
//!
//! What it does not own: what each test needs (the tests probe that and pass the reason here).
//! Nothing here blocks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// The environment variable under which a missing dependency fails a test instead of skipping
/// it.
pub const REQUIRE_ALL_ENV: &str = "FOLIO_REQUIRE_ALL";

/// Whether `FOLIO_REQUIRE_ALL` asks for every dependency (set to anything but `0` or empty).
pub fn require_all() -> bool {
    std::env::var_os(REQUIRE_ALL_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Skips of this process so far.
static SKIPS: AtomicU64 = AtomicU64::new(0);
/// What was skipped, for the summary at exit (bounded: the first 64 lines are kept).
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());
const SKIPPED_KEPT_MAX: usize = 64;

/// Skips this process has recorded.
pub fn skips() -> u64 {
    SKIPS.load(Ordering::SeqCst)
}

/// Whether the test may go on with `what` (e.g. "io_uring"), given whether it is `available`.
///
/// `Ok(())`: true. `Err(why)`: under `FOLIO_REQUIRE_ALL=1` this panics (the test fails, naming
/// `what` and `why`); otherwise it records a visible skip of the calling test (named after the
/// current thread, which the test harness names after the test) and returns false, and the
/// caller returns (or leaves out the part that needs `what`).
#[track_caller]
pub fn require(what: &str, available: Result<(), String>) -> bool {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test's helper thread");
    require_with(require_all(), true, test, what, available)
}

#[track_caller]
fn require_with(
    fail: bool,
    announce: bool,
    test: &str,
    what: &str,
    available: Result<(), String>,
) -> bool {
    let why = match available {
        Ok(()) => return true,
        Err(why) => why,
    };
    if fail {
        panic!(
            "{test}: {what} is unavailable ({why}), and {REQUIRE_ALL_ENV}=1 makes a missing \
             dependency a failure"
        );
    }
    let n = SKIPS.fetch_add(1, Ordering::SeqCst) + 1;
    if !announce {
        return false;
    }
    let line = format!("{test}: {what} unavailable ({why})");
    // Straight to the process's stderr: `eprintln!` inside a test is captured by the harness
    // and shown only when the test fails, which would make the skip silent.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (#{n} in this test binary) {line}; set {REQUIRE_ALL_ENV}=1 to fail instead"
    );
    if let Ok(mut kept) = SKIPPED.lock() {
        if kept.len() < SKIPPED_KEPT_MAX {
            kept.push(line);
        }
    }
    summary_at_exit();
    false
}

/// [`require`] for an executable on `PATH` (`qemu-img`, `fio`, ...).
#[track_caller]
pub fn require_bin(bin: &str) -> bool {
    require(bin, find_bin(bin))
}

/// `Ok` if `bin` runs from `PATH`, else why not.
pub fn find_bin(bin: &str) -> Result<(), String> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v '{bin}'"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if found.success() {
        Ok(())
    } else {
        Err(format!("`{bin}` is not installed"))
    }
}

/// A temporary directory whose filesystem accepts `O_DIRECT`: the system's temporary directory
/// if it does (tmpfs does not), else one under `fallback` (pass the test's
/// `env!("CARGO_TARGET_TMPDIR")`, which is on the build's disk). `Err` says why neither does.
pub fn direct_io_tempdir(fallback: &Path) -> Result<tempfile::TempDir, String> {
    let mut why = Vec::new();
    let system = std::env::temp_dir();
    for parent in [system.as_path(), fallback] {
        if let Err(e) = std::fs::create_dir_all(parent) {
            why.push(format!("{}: {e}", parent.display()));
            continue;
        }
        let dir = match tempfile::Builder::new()
            .prefix("folio-direct")
            .tempdir_in(parent)
        {
            Ok(d) => d,
            Err(e) => {
                why.push(format!("{}: {e}", parent.display()));
                continue;
            }
        };
        match probe_direct(dir.path()) {
            Ok(()) => return Ok(dir),
            Err(e) => why.push(format!("{}: {e}", parent.display())),
        }
    }
    Err(format!(
        "no directory accepts O_DIRECT ({})",
        why.join("; ")
    ))
}

/// Opens a file in `dir` with `O_DIRECT` and writes one aligned block through it.
fn probe_direct(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = dir.join(".direct-probe");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    // An aligned buffer: 4096 bytes at a 4096-aligned address inside an 8 KiB vector.
    let mut raw = vec![0u8; 8192];
    let skip = raw.as_ptr().align_offset(4096);
    let block = &mut raw[skip..skip + 4096];
    block.fill(0xA5);
    let written = f.write_at(block, 0);
    drop(f);
    let _ = std::fs::remove_file(&path);
    match written? {
        4096 => Ok(()),
        n => Err(std::io::Error::other(format!("short O_DIRECT write: {n}"))),
    }
}

/// Prints every skip of the process when it exits (registered by the first skip).
fn summary_at_exit() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        extern "C" fn print_summary() {
            let n = SKIPS.load(Ordering::SeqCst);
            let kept = match SKIPPED.lock() {
                Ok(k) => k.clone(),
                Err(_) => Vec::new(),
            };
            let mut err = std::io::stderr();
            let _ = writeln!(
                err,
                "\nSKIPPED: {n} test part(s) of this binary did not run for a missing \
                 dependency (set {REQUIRE_ALL_ENV}=1 to make that a failure):"
            );
            for line in kept {
                let _ = writeln!(err, "  - {line}");
            }
        }
        // SAFETY: `atexit` only stores the pointer of a function that lives as long as the
        // program; the function takes no arguments and does not unwind (every write's error
        // is ignored, the lock's poison is handled).
        unsafe {
            libc::atexit(print_summary);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_available_dependency_runs_and_counts_nothing() {
        let before = skips();
        assert!(require("x", Ok(())));
        assert_eq!(skips(), before);
    }

    /// The self-tests' skips are counted but not announced: they are not real skips.
    const SELF_TEST: &str = "folio-testkit's own test (not a real skip)";

    #[test]
    fn a_missing_dependency_skips_visibly_and_counted() {
        let before = skips();
        assert!(!require_with(
            false,
            false,
            SELF_TEST,
            "x",
            Err("absent".into())
        ));
        assert!(skips() > before, "the skip was counted");
    }

    #[test]
    fn a_missing_dependency_fails_under_require_all() {
        let outcome = std::panic::catch_unwind(|| {
            require_with(true, false, SELF_TEST, "x", Err("absent".into()))
        });
        let msg = outcome.expect_err("FOLIO_REQUIRE_ALL=1 must fail the test");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("absent") && msg.contains(REQUIRE_ALL_ENV),
            "{msg}"
        );
    }

    #[test]
    fn finds_sh_and_not_a_made_up_binary() {
        assert!(find_bin("sh").is_ok());
        assert!(find_bin("folio-no-such-binary-xyz").is_err());
    }

    #[test]
    fn a_direct_io_directory_takes_o_direct_writes() {
        let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tmp");
        match direct_io_tempdir(&fallback) {
            Ok(dir) => probe_direct(dir.path()).unwrap(),
            Err(why) => assert!(!require("O_DIRECT", Err(why))),
        }
    }
}
