//! Cold I/O through the cache, io_uring against positional I/O (`cargo bench --bench io`).
//!
//! Each iteration drops the OS page cache for a 64 MiB file (`posix_fadvise(DONTNEED)`) and
//! builds an empty cache over it with O_DIRECT, then either reads the whole file in 4 KiB
//! `read_at` calls from one thread (readahead at work) or reads 2048 distinct random pages from 8
//! threads. The full-size comparison with fio is `folio bench io`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use folio::{CacheConfig, FileBackend, IoMode, PageCache, PageCacheBackend, UringBackend};

const FILE: u64 = 64 << 20;
const PS: usize = 4096;

fn drop_os_cache(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

fn open(path: &Path, uring: bool) -> Arc<dyn PageCacheBackend> {
    let mode = if FileBackend::open(path, IoMode::Direct).is_ok() {
        IoMode::Direct
    } else {
        IoMode::Buffered
    };
    if uring {
        Arc::new(UringBackend::open(path, mode).unwrap())
    } else {
        Arc::new(FileBackend::open(path, mode).unwrap())
    }
}

fn io(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.img");
    let bytes: Vec<u8> = (0..FILE).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    let mut backends = vec![("pread", false)];
    match folio::backend::uring_support() {
        Ok(()) => backends.push(("io_uring", true)),
        Err(why) => eprintln!("skipping io_uring: {why}"),
    }

    let mut g = c.benchmark_group("cold_seq_read_4k");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(FILE));
    for &(name, uring) in &backends {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    drop_os_cache(&path);
                    let cache =
                        PageCache::new(open(&path, uring), CacheConfig::new(FILE / 2)).unwrap();
                    let mut buf = vec![0u8; PS];
                    let started = Instant::now();
                    let mut pos = 0;
                    while pos < FILE {
                        pos += cache.read_at(&mut buf, pos).unwrap() as u64;
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    g.finish();

    let reads = 2048u64;
    let mut g = c.benchmark_group("cold_rand_read_4k_8_threads");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(reads));
    for &(name, uring) in &backends {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for it in 0..iters {
                    drop_os_cache(&path);
                    let cache = Arc::new(
                        PageCache::new(open(&path, uring), CacheConfig::new(FILE / 2)).unwrap(),
                    );
                    let next = Arc::new(AtomicU64::new(0));
                    let pages = FILE / PS as u64;
                    let started = Instant::now();
                    let threads: Vec<_> = (0..8)
                        .map(|_| {
                            let (cache, next) = (cache.clone(), next.clone());
                            std::thread::spawn(move || {
                                let mut buf = vec![0u8; PS];
                                loop {
                                    let i = next.fetch_add(1, Ordering::Relaxed);
                                    if i >= reads {
                                        return;
                                    }
                                    // A bijection of the page numbers (odd multiplier).
                                    let p = (i * 2654435761 + it * 7919) % pages;
                                    cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in threads {
                        t.join().unwrap();
                    }
                    total += started.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, io);
criterion_main!(benches);
