//! `folio serve --no-cache` (`FileDevice`): every connection shares one open file, and Linux
//! reports a failed write-back to the first `fdatasync` on that file only. A flush on one
//! connection must not consume the failure that another connection's writes met: once a sync
//! failed, every later `FLUSH` and `FUA` on every connection fails, and so does the server's
//! final flush at shutdown (review-io.md, item 7). Well under a second.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use folio_nbd::proto::*;
use folio_nbd::{FileDevice, MemDevice, ServerConfig};

mod common;
use common::*;

#[test]
fn a_failed_sync_fails_every_later_flush_on_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img.raw");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(SIZE as u64)
        .unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    // The second sync fails once, as Linux reports a write-back error: once per open file,
    // then 0 again although the failed pages may never reach the disk.
    let syncs = Arc::new(AtomicUsize::new(0));
    let counted = syncs.clone();
    let dev = FileDevice::with_sync_fn(file, move |f| {
        if counted.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        f.sync_data()
    })
    .unwrap();
    // The memory device is not served; TestServer wants one to inspect.
    let srv = TestServer::with_device(
        Arc::new(MemDevice::new(SIZE)),
        Arc::new(dev),
        ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            // A latched failure fails every attempt: no need to wait between them here.
            final_flush_retry_wait: Duration::from_millis(1),
            ..ServerConfig::default()
        },
    );
    let (mut a, _, _) = Client::go(srv.addr, "test");
    let (mut b, _, _) = Client::go(srv.addr, "test");
    // A healthy sync first.
    assert_eq!(a.write(1, 0, &pattern(1, 4096), 0), 0);
    assert_eq!(a.simple(CMD_FLUSH, 0, 2, 0, 0), 0);
    // A writes; B's flush meets the failed write-back of A's bytes.
    assert_eq!(a.write(3, 4096, &pattern(2, 4096), 0), 0);
    assert_eq!(b.simple(CMD_FLUSH, 0, 4, 0, 0), EIO);
    // A's own flush must not succeed: its write may not be on disk.
    assert_eq!(
        a.simple(CMD_FLUSH, 0, 5, 0, 0),
        EIO,
        "A was told its write is durable"
    );
    // Nor FUA, nor any later flush on any connection, old or new.
    assert_eq!(a.write(6, 8192, &pattern(3, 4096), CMD_FLAG_FUA), EIO);
    assert_eq!(b.simple(CMD_FLUSH, 0, 7, 0, 0), EIO);
    let (mut c, _, _) = Client::go(srv.addr, "test");
    assert_eq!(c.simple(CMD_FLUSH, 0, 8, 0, 0), EIO);
    // The bytes are still served (from the kernel's page cache).
    assert_eq!(c.read(9, 4096, 4096).unwrap(), pattern(2, 4096));
    drop((a, b, c));
    // And the server does not stop as if everything had been written.
    let stopped = srv.stop();
    assert!(
        stopped.is_err(),
        "the final flush reported success after a failed sync"
    );
}
