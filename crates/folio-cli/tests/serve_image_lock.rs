//! `folio serve` locks the image files it serves (review-io.md, item 8): a second server over an
//! image another server is writing is refused with a clear error, as is one image behind two
//! exports; read-only servers share an image; the lock goes with the server. A real client
//! (qemu-io) checks the first server is unharmed. About 2 s.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod nbd;
use nbd::*;

/// Runs `folio serve ARGS` expecting it to refuse to start: its output, once it exited (at most
/// 10 s; a server that starts serving instead is killed and the test fails).
fn refused(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .arg("serve")
        .args(args)
        .args(["--budget", "16MiB", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn folio");
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "folio serve {args:?} is serving an image it should have refused:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "folio serve {args:?} exited 0");
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_second_server_over_a_served_image_is_refused() {
    if !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 8 * MIB);
    let mut first = Served::start(&img, Addr::Tcp(free_port()), &[]);
    qemu_io(&first.uri(), &["write -P 0x5a 0 65536"]);
    // Through the cache, without it, read-only: each refused while the first one writes.
    for extra in [&[][..], &["--no-cache"], &["--read-only"]] {
        let mut args = vec![path(&img)];
        args.extend_from_slice(extra);
        let out = refused(&args);
        assert!(
            stderr(&out).contains("in use"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    // The first server is unharmed.
    qemu_io(&first.uri(), &["read -P 0x5a 0 65536"]);
    assert!(first.terminate().success());
    // Its lock went with it.
    let again = Served::start(&img, Addr::Tcp(free_port()), &["--no-cache"]);
    qemu_io(&again.uri(), &["read -P 0x5a 0 65536"]);
}

#[test]
fn read_only_servers_share_an_image_and_exclude_a_writer() {
    if !have("qemu-io") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = random_image(dir.path(), "img.raw", 4 * MIB);
    let a = Served::start(&img, Addr::Tcp(free_port()), &["--read-only"]);
    let b = Served::start(&img, Addr::Tcp(free_port()), &["--read-only", "--no-cache"]);
    let first_bytes = |uri: &str| {
        run(Command::new("qemu-io").args(["-r", "-f", "raw", uri, "-c", "read -v 0 16"]))
            .lines()
            .next()
            .map(str::to_string)
    };
    let head = std::fs::read(&img).unwrap()[..4].to_vec();
    let shown = first_bytes(&a.uri()).unwrap();
    assert!(
        shown.contains(&format!("{:02x} {:02x}", head[0], head[1])),
        "{shown}"
    );
    assert_eq!(first_bytes(&b.uri()).unwrap(), shown);
    let out = refused(&[path(&img)]);
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
}

#[test]
fn one_image_behind_two_exports_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = zero_image(dir.path(), "img.raw", 4 * MIB);
    let link = dir.path().join("link.raw");
    std::os::unix::fs::symlink(&img, &link).unwrap();
    let a = format!("a={}", img.display());
    let b = format!("b={}", link.display());
    let out = refused(&["--export", &a, "--export", &b]);
    let err = stderr(&out);
    assert!(err.contains("exported twice"), "{err}");
    // The same path twice, too.
    let out = refused(&[path(&img), "--export", &b]);
    assert!(stderr(&out).contains("exported twice"), "{}", stderr(&out));
}
