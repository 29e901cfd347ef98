//! The final flush at shutdown against a failing backend (review-io.md, item 12): writes
//! acknowledged to clients but not yet flushed must not vanish silently. A backend that
//! recovers within the retries loses nothing; one that does not makes `serve` fail with a
//! typed error naming the export and the bytes not written, and the data is still in the
//! cache. Well under a second.

use std::sync::Arc;
use std::time::Duration;

use folio::backend::{FaultConfig, FaultyBackend};
use folio::{CacheConfig, MemoryBackend, PageCache};
use folio_nbd::{CacheDevice, MemDevice, NotFlushed, ServerConfig};

mod common;
use common::*;

/// A server over a page cache on `faults` around a memory backend; a client writes 8 KiB at
/// 4096 and disconnects without a flush; the server stops. Returns what `serve` returned, the
/// memory backend and the device.
fn write_then_stop(
    faults: FaultConfig,
) -> (std::io::Result<()>, Arc<MemoryBackend>, Arc<CacheDevice>) {
    let mem = Arc::new(MemoryBackend::from_bytes(vec![0u8; SIZE]));
    let faulty = Arc::new(FaultyBackend::new(mem.clone(), faults).unwrap());
    // No background write-back: the final flush is the first to write the pages, so the
    // injected failures fall on its attempts.
    let config = CacheConfig::new(1 << 20).background_writeback(false);
    let cache = PageCache::new(faulty, config).unwrap();
    let dev = Arc::new(CacheDevice::new(Arc::new(cache)));
    // The memory device is not served; TestServer wants one to inspect.
    let srv = TestServer::with_device(
        Arc::new(MemDevice::new(SIZE)),
        dev.clone(),
        ServerConfig {
            export_name: "test".into(),
            handshake_deadline: Duration::from_secs(5),
            final_flush_attempts: 3,
            final_flush_retry_wait: Duration::from_millis(20),
            ..ServerConfig::default()
        },
    );
    let (mut c, _, _) = Client::go(srv.addr, "test");
    assert_eq!(c.write(1, 4096, &pattern(7, 8192), 0), 0);
    drop(c);
    (srv.stop(), mem, dev)
}

#[test]
fn a_final_flush_that_fails_then_recovers_loses_nothing() {
    // The first two writes fail (a store back after a few seconds, a disk freed). (A failed
    // *sync* is latched by the cache: no retry can make it succeed, see docs/design.md.)
    let (stopped, mem, _) = write_then_stop(FaultConfig::new(1).fail_write_at(0).fail_write_at(1));
    stopped.expect("a later attempt succeeds");
    assert_eq!(mem.durable_image()[4096..4096 + 8192], pattern(7, 8192)[..]);
}

#[test]
fn a_final_flush_that_keeps_failing_names_the_export_and_the_bytes_not_written() {
    // Every write-back fails: the pages stay dirty in the cache.
    let (stopped, mem, dev) = write_then_stop(FaultConfig::new(2).fail_writes(1.0));
    let err = stopped.expect_err("the server stopped as if everything had been written");
    let not = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<NotFlushed>())
        .unwrap_or_else(|| panic!("not a NotFlushed error: {err}"));
    assert_eq!(not.attempts, 3);
    assert_eq!(not.exports.len(), 1);
    assert_eq!(not.exports[0].name, "test");
    assert!(
        not.exports[0].unsynced_bytes >= Some(8192),
        "{:?}",
        not.exports[0].unsynced_bytes
    );
    let msg = err.to_string();
    assert!(
        msg.contains("DATA NOT WRITTEN") && msg.contains("\"test\""),
        "{msg}"
    );
    // Nothing reached the backend, and the data is still there to read out.
    assert!(mem.image()[4096..4096 + 8192].iter().all(|&b| b == 0));
    let mut back = vec![0u8; 8192];
    dev.cache().read_exact_at(&mut back, 4096).unwrap();
    assert_eq!(back, pattern(7, 8192));
}
