//! Hits on a fully cached file, one thread (`cargo bench --bench hot`), beside the OS page cache
//! (`pread`), a copy out of an `mmap` of the same file (the memcpy limit) and the seed's design,
//! a `Mutex<lru::LruCache<u64, Box<[u8]>>>`.
//!
//! A 256 MiB file is written, read once into a cache whose budget holds it (and into the OS
//! page cache and the LRU map), then each iteration reads one uniformly random page (from a
//! precomputed sequence, so the generator costs nothing). Rows: 4 KiB `read_at`, 64 B `read_at`,
//! 64 B through zero-copy `read_page` and `read_slice` guards, batches of 16 such reads through
//! `read_slices` (pipelined lookups) beside 16 `read_at` calls, and the baselines. Criterion
//! reports time per read; compare rows of the same run. The multi-threaded figures, with
//! quick_cache and moka, are `folio bench --hot`.

use std::fs::File;
use std::num::NonZeroUsize;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use folio::{CacheConfig, FileBackend, IoMode, PageCache};

const FILE: u64 = 256 << 20;
const PS: usize = 4096;
const PAGES: u64 = FILE / PS as u64;
/// Random page indices (and 64-byte slots) cycled through by every row: enough that the 64-byte
/// rows touch 64 MiB of lines, more than any CPU cache, as truly random pages would.
const SEQUENCE: usize = 1 << 20;

/// A fixed pseudo-random sequence of (page, 64-byte slot in the page).
fn sequence() -> Vec<(u64, usize)> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..SEQUENCE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % PAGES, ((x >> 40) as usize % (PS / 64)) * 64)
        })
        .collect()
}

fn hot(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hot.img");
    let bytes: Vec<u8> = (0..FILE).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);

    let cache = PageCache::new(
        Arc::new(FileBackend::open(&path, IoMode::Buffered).unwrap()),
        CacheConfig::new(FILE).readahead_bytes_max(0),
    )
    .unwrap();
    let file = File::open(&path).unwrap();
    // SAFETY: the file is private to this benchmark and nobody changes it while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
    let lru = Mutex::new(lru::LruCache::new(
        NonZeroUsize::new(PAGES as usize).unwrap(),
    ));
    let mut buf = vec![0u8; PS];
    for p in 0..PAGES {
        let off = p * PS as u64;
        cache.read_exact_at(&mut buf, off).unwrap();
        file.read_exact_at(&mut buf, off).unwrap();
        black_box(&map[off as usize..off as usize + PS]);
        lru.lock().unwrap().put(p, buf.clone().into_boxed_slice());
    }
    assert_eq!(
        cache.stats().resident_pages,
        PAGES,
        "the budget holds the file"
    );
    let seq = sequence();

    let mut g = c.benchmark_group("hot_read_4k");
    g.throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(3));
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % SEQUENCE;
        seq[i]
    };
    g.bench_function("folio read_at", |b| {
        b.iter(|| {
            let (p, _) = next();
            cache.read_exact_at(&mut buf, p * PS as u64).unwrap();
            black_box(buf[0])
        })
    });
    g.bench_function("pread (OS page cache)", |b| {
        b.iter(|| {
            let (p, _) = next();
            file.read_exact_at(&mut buf, p * PS as u64).unwrap();
            black_box(buf[0])
        })
    });
    g.bench_function("mmap copy", |b| {
        b.iter(|| {
            let off = next().0 as usize * PS;
            buf.copy_from_slice(&map[off..off + PS]);
            black_box(buf[0])
        })
    });
    g.bench_function("Mutex<LruCache>", |b| {
        b.iter(|| {
            let (p, _) = next();
            buf.copy_from_slice(lru.lock().unwrap().get(&p).unwrap());
            black_box(buf[0])
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hot_read_64b");
    g.throughput(Throughput::Elements(1))
        .measurement_time(Duration::from_secs(3));
    g.bench_function("folio read_at", |b| {
        b.iter(|| {
            let (p, at) = next();
            cache
                .read_exact_at(&mut buf[..64], p * PS as u64 + at as u64)
                .unwrap();
            black_box(buf[0])
        })
    });
    g.bench_function("folio read_page guard", |b| {
        b.iter(|| {
            let (p, at) = next();
            let guard = cache.read_page(p).unwrap();
            buf[..64].copy_from_slice(&guard[at..at + 64]);
            black_box(buf[0])
        })
    });
    g.bench_function("folio read_slice guard", |b| {
        b.iter(|| {
            let (p, at) = next();
            let guard = cache.read_slice(p * PS as u64 + at as u64, 64).unwrap();
            buf[..64].copy_from_slice(&guard);
            black_box(buf[0])
        })
    });
    g.bench_function("mmap copy", |b| {
        b.iter(|| {
            let (p, at) = next();
            let off = p as usize * PS + at;
            buf[..64].copy_from_slice(&map[off..off + 64]);
            black_box(buf[0])
        })
    });
    g.finish();

    // Batches of 16 independent 64-byte reads: `read_slices` pipelines the lookups.
    let mut g = c.benchmark_group("hot_read_64b_x16");
    g.throughput(Throughput::Elements(16))
        .measurement_time(Duration::from_secs(3));
    let mut batch = [(0u64, 64usize); 16];
    g.bench_function("folio read_slices", |b| {
        b.iter(|| {
            for s in &mut batch {
                let (p, at) = next();
                s.0 = p * PS as u64 + at as u64;
            }
            let guards = cache.read_slices(&batch).unwrap();
            for (g, out) in guards.iter().zip(buf.chunks_exact_mut(64)) {
                out.copy_from_slice(g);
            }
            black_box(buf[0])
        })
    });
    g.bench_function("folio read_at x16", |b| {
        b.iter(|| {
            for out in buf.chunks_exact_mut(64).take(16) {
                let (p, at) = next();
                cache.read_exact_at(out, p * PS as u64 + at as u64).unwrap();
            }
            black_box(buf[0])
        })
    });
    g.bench_function("mmap copy x16", |b| {
        b.iter(|| {
            for out in buf.chunks_exact_mut(64).take(16) {
                let (p, at) = next();
                let off = p as usize * PS + at;
                out.copy_from_slice(&map[off..off + 64]);
            }
            black_box(buf[0])
        })
    });
    g.finish();
}

criterion_group!(benches, hot);
criterion_main!(benches);
