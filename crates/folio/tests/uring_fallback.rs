//! `open_best` falls back to positional I/O where io_uring is unavailable. Its own test binary,
//! because it sets `FOLIO_DISABLE_URING` for the whole process (as a stand-in for a kernel
//! without io_uring or a seccomp filter).

use folio::{open_best, CacheConfig, IoMode, PageCache};

#[test]
fn open_best_falls_back_to_file_backend_when_io_uring_is_unavailable() {
    std::env::set_var("FOLIO_DISABLE_URING", "1");
    assert!(folio::backend::uring_support().is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.img");
    std::fs::write(&path, vec![3u8; 10_000]).unwrap();
    let backend = open_best(&path, IoMode::Buffered).unwrap();
    let cache = PageCache::new(backend, CacheConfig::with_budget_pages(8)).unwrap();
    let mut buf = vec![0u8; 10_000];
    cache.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|&b| b == 3));
    cache.write_all_at(b"ok", 9_998).unwrap();
    cache.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap().len(), 10_000);
}
