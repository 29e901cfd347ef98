//! `folio bench --hot`: the throughput of cache hits, against the alternatives.
//!
//! The whole image is first read into a Folio cache whose budget holds it (and into each
//! in-memory baseline), then only uniformly random hits are timed. Contenders, all over the same
//! hot image, each measured `--runs` times in the same process, interleaved, and reported as
//! medians:
//!
//! - `folio read_at 4K`: [`PageCache::read_at`] of one whole page (a copy);
//! - `pread 4K`: `pread(2)` of the same file, which the OS page cache holds;
//! - `mmap copy 4K`: a 4 KiB copy out of an `mmap` of the file (the memcpy limit);
//! - `Mutex<LruCache> 4K`: the seed's design, `Mutex<lru::LruCache<usize, Arc<[u8]>>>`: as the
//!   seed clones a frame handle under its lock, a hit clones the page's `Arc` under the lock and
//!   copies after releasing it;
//! - `quick_cache 4K`, `moka 4K`: concurrent in-memory caches of `Arc<[u8]>` pages (a hit clones
//!   the `Arc`, then copies), for context, each sized to hold exactly the image's pages;
//!
//! Every contender's misses during the timed runs are counted and reported (a cache contender
//! that misses reads the page with `pread` and inserts it), and the file's pages are checked
//! resident in the OS page cache (`mincore`) before the `pread` and `mmap` contenders are timed.
//! - `folio guard 64B`: [`PageCache::read_page`] and a 64-byte copy out of the guard (zero-copy
//!   access); `folio slice 64B`: [`PageCache::read_slice`] of those 64 bytes (a guard that knows
//!   its bytes, so they are prefetched while the hold is taken); `folio slices 64B x16`:
//!   [`PageCache::read_slices`] of 16 such ranges from random pages per call (pipelined
//!   lookups; each range counts as one operation); `folio read_at 64B`: the same 64
//!   bytes through `read_at`; `mmap copy 64B`: the same 64 bytes out of the `mmap` (the floor:
//!   one random memory access).
//!
//! Each thread count from 1 up to `--threads` (doubling) is measured, so `--threads 2` gives the
//! 1- and 2-thread figures side by side. Folio's cache runs `--policy` (the default unless
//! given; recorded in the results line as the cache names it).
//!
//! size: eight hit contenders, each a few lines, sharing one timed loop and its CPU accounting

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use folio::{CacheConfig, PageCache, PolicyKind};

use super::{open_cache, BenchArgs, BoxError, Image};

const PAGE: usize = 4096;

/// The contenders, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    FolioReadAt,
    Pread,
    Mmap,
    MutexLru,
    QuickCache,
    Moka,
    FolioGuard64,
    FolioSlice64,
    FolioSlices64,
    FolioReadAt64,
    Mmap64,
}

/// Ranges per [`PageCache::read_slices`] call of the batched-guard contender.
const SLICES_PER_CALL: usize = 16;

const CONTENDERS: [Contender; 11] = [
    Contender::FolioReadAt,
    Contender::Pread,
    Contender::Mmap,
    Contender::MutexLru,
    Contender::QuickCache,
    Contender::Moka,
    Contender::FolioGuard64,
    Contender::FolioSlice64,
    Contender::FolioSlices64,
    Contender::FolioReadAt64,
    Contender::Mmap64,
];

impl Contender {
    /// Reads per call of [`Hot::op`] (each counts as one operation).
    fn reads_per_call(self) -> u64 {
        match self {
            Contender::FolioSlices64 => SLICES_PER_CALL as u64,
            _ => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Contender::FolioReadAt => "folio read_at 4K",
            Contender::Pread => "pread 4K",
            Contender::Mmap => "mmap copy 4K",
            Contender::MutexLru => "Mutex<LruCache> 4K",
            Contender::QuickCache => "quick_cache 4K",
            Contender::Moka => "moka 4K",
            Contender::FolioGuard64 => "folio guard 64B",
            Contender::FolioSlice64 => "folio slice 64B",
            Contender::FolioSlices64 => "folio slices 64B x16",
            Contender::FolioReadAt64 => "folio read_at 64B",
            Contender::Mmap64 => "mmap copy 64B",
        }
    }

    /// The workload and contender names of the results file.
    fn record_names(self) -> (&'static str, &'static str) {
        match self {
            Contender::FolioReadAt => ("4KiB", "folio read_at"),
            Contender::Pread => ("4KiB", "pread (OS page cache)"),
            Contender::Mmap => ("4KiB", "mmap copy"),
            Contender::MutexLru => ("4KiB", "Mutex<LruCache> (the seed)"),
            Contender::QuickCache => ("4KiB", "quick_cache"),
            Contender::Moka => ("4KiB", "moka"),
            Contender::FolioGuard64 => ("64B", "folio read_page guard"),
            Contender::FolioSlice64 => ("64B", "folio read_slice guard"),
            Contender::FolioSlices64 => ("64B", "folio read_slices x16"),
            Contender::FolioReadAt64 => ("64B", "folio read_at 64B"),
            Contender::Mmap64 => ("64B", "mmap copy 64B"),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Contender::FolioReadAt => "folio_read_at_4k",
            Contender::Pread => "pread_4k",
            Contender::Mmap => "mmap_copy_4k",
            Contender::MutexLru => "mutex_lru_4k",
            Contender::QuickCache => "quick_cache_4k",
            Contender::Moka => "moka_4k",
            Contender::FolioGuard64 => "folio_guard_64b",
            Contender::FolioSlice64 => "folio_slice_64b",
            Contender::FolioSlices64 => "folio_slices_64b_x16",
            Contender::FolioReadAt64 => "folio_read_at_64b",
            Contender::Mmap64 => "mmap_copy_64b",
        }
    }
}

/// Everything the contenders read from, filled before any timing.
struct Hot {
    cache: PageCache,
    file: File,
    map: memmap2::Mmap,
    lru: Mutex<lru::LruCache<usize, Arc<[u8]>>>,
    quick: quick_cache::sync::Cache<usize, Arc<[u8]>>,
    moka: moka::sync::Cache<usize, Arc<[u8]>>,
    pages: usize,
    fill_misses: u64,
    /// Misses of the in-memory cache contenders during timed runs, by contender index.
    misses: [AtomicU64; CONTENDERS.len()],
}

/// The pages of `map` that are resident in memory (`mincore`), and how many it has.
fn resident_pages(map: &memmap2::Mmap) -> Result<(usize, usize), BoxError> {
    let pages = map.len().div_ceil(PAGE);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a live mapping of `map.len()` bytes, and `vec` has one byte for each of
    // its pages, as `mincore` writes.
    let r = unsafe { libc::mincore(map.as_ptr() as *mut _, map.len(), vec.as_mut_ptr()) };
    if r != 0 {
        return Err(format!("mincore: {}", std::io::Error::last_os_error()).into());
    }
    Ok((vec.iter().filter(|&&b| b & 1 != 0).count(), pages))
}

/// A per-thread xorshift64* generator: cheap, so the timing is the contender's.
struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (multiply-shift; n < 2^32).
    #[inline]
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }
}

impl Hot {
    fn fill(image: &Image, len: u64, policy: PolicyKind, quiet: bool) -> Result<Hot, BoxError> {
        let pages = (len / PAGE as u64) as usize;
        if pages == 0 {
            return Err("the image is smaller than one page".into());
        }
        let budget = len.div_ceil(PAGE as u64) * PAGE as u64;
        let cache = open_cache(
            image,
            CacheConfig::new(budget).page_size(PAGE).policy(policy),
            false,
            None,
        )?;
        let file = File::open(image.path())?;
        // SAFETY: the benchmark's image is not modified while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let cap = std::num::NonZeroUsize::new(pages).ok_or("no pages")?;
        let mut lru = lru::LruCache::new(cap);
        // Both sized to the image's pages, as Folio's budget and the LRU are.
        let quick = quick_cache::sync::Cache::new(pages);
        let moka = moka::sync::Cache::new(pages as u64);
        let bar = super::progress(len, "loading hot set", quiet);
        let mut chunk = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < len {
            let n = ((len - pos) as usize).min(chunk.len());
            cache.read_exact_at(&mut chunk[..n], pos)?;
            for (i, page) in chunk[..n].chunks_exact(PAGE).enumerate() {
                let p = (pos / PAGE as u64) as usize + i;
                lru.put(p, Arc::<[u8]>::from(page));
                quick.insert(p, Arc::<[u8]>::from(page));
                moka.insert(p, Arc::<[u8]>::from(page));
            }
            pos += n as u64;
            bar.set_position(pos);
        }
        moka.run_pending_tasks();
        bar.finish_and_clear();
        // Warm the OS page cache and the mapping too.
        let mut sum = 0u8;
        for p in 0..pages {
            sum ^= map[p * PAGE];
        }
        black_box(sum);
        let fill_misses = cache.stats().misses;
        Ok(Hot {
            fill_misses,
            cache,
            file,
            map,
            lru: Mutex::new(lru),
            quick,
            moka,
            pages,
            misses: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    fn miss(&self, c: Contender) {
        let i = CONTENDERS.iter().position(|&x| x == c).unwrap_or(0);
        self.misses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// One operation of contender `c` on a random page; returns a byte of what it read.
    #[inline(always)]
    fn op(&self, c: Contender, rng: &mut Rng, buf: &mut [u8; PAGE]) -> Result<u8, BoxError> {
        let p = rng.below(self.pages);
        let off = p * PAGE;
        match c {
            Contender::FolioReadAt => {
                self.cache.read_exact_at(buf, off as u64)?;
            }
            Contender::Pread => {
                self.file.read_exact_at(buf, off as u64)?;
            }
            Contender::Mmap => {
                buf.copy_from_slice(&self.map[off..off + PAGE]);
            }
            Contender::MutexLru => {
                // As the seed: a handle cloned under the lock, the bytes copied after it.
                let hit = self.lru.lock().map_err(|_| "poisoned")?.get(&p).cloned();
                match hit {
                    Some(page) => buf.copy_from_slice(&page),
                    None => {
                        self.miss(c);
                        self.file.read_exact_at(buf, off as u64)?;
                        let page = Arc::<[u8]>::from(&buf[..]);
                        self.lru.lock().map_err(|_| "poisoned")?.put(p, page);
                    }
                }
            }
            Contender::QuickCache => match self.quick.get(&p) {
                Some(page) => buf.copy_from_slice(&page),
                None => {
                    self.miss(c);
                    self.file.read_exact_at(buf, off as u64)?;
                    self.quick.insert(p, Arc::<[u8]>::from(&buf[..]));
                }
            },
            Contender::Moka => match self.moka.get(&p) {
                Some(page) => buf.copy_from_slice(&page),
                None => {
                    self.miss(c);
                    self.file.read_exact_at(buf, off as u64)?;
                    self.moka.insert(p, Arc::<[u8]>::from(&buf[..]));
                }
            },
            Contender::FolioGuard64 => {
                let at = (rng.next() as usize & (PAGE / 64 - 1)) * 64;
                let g = self.cache.read_page(p as u64)?;
                buf[..64].copy_from_slice(&g[at..at + 64]);
            }
            Contender::FolioSlice64 => {
                let at = (rng.next() as usize & (PAGE / 64 - 1)) * 64;
                let g = self.cache.read_slice((off + at) as u64, 64)?;
                buf[..64].copy_from_slice(&g);
            }
            Contender::FolioSlices64 => {
                let mut slices = [(0u64, 64usize); SLICES_PER_CALL];
                slices[0].0 = (off + (rng.next() as usize & (PAGE / 64 - 1)) * 64) as u64;
                for s in &mut slices[1..] {
                    let p = rng.below(self.pages);
                    s.0 = (p * PAGE + (rng.next() as usize & (PAGE / 64 - 1)) * 64) as u64;
                }
                let guards = self.cache.read_slices(&slices)?;
                for (g, out) in guards.iter().zip(buf.chunks_exact_mut(64)) {
                    out.copy_from_slice(g);
                }
            }
            Contender::FolioReadAt64 => {
                let at = (rng.next() as usize & (PAGE / 64 - 1)) * 64;
                self.cache
                    .read_exact_at(&mut buf[..64], (off + at) as u64)?;
            }
            Contender::Mmap64 => {
                let at = (rng.next() as usize & (PAGE / 64 - 1)) * 64;
                buf[..64].copy_from_slice(&self.map[off + at..off + at + 64]);
            }
        }
        Ok(buf[0])
    }

    /// Throughput of `ops` operations of `c` over `threads` threads.
    fn measure(
        &self,
        c: Contender,
        threads: usize,
        ops: u64,
        seed: u64,
    ) -> Result<Sample, BoxError> {
        // Whole calls: a batched contender does `reads_per_call` reads per call. The calls are
        // dealt out in chunks from a shared count, so a thread that runs faster does more of
        // them and all finish within a chunk of each other: with a fixed share each, the wall
        // clock also timed the slowest thread running alone at the end.
        const CHUNK_CALLS: u64 = 1024;
        let per_call = c.reads_per_call();
        let calls = (ops / per_call).max(threads as u64);
        let warmup = (calls / threads as u64 / 20).max(1);
        let left = AtomicU64::new(calls);
        let barrier = Barrier::new(threads + 1);
        let (started, results) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, left) = (&barrier, &left);
                    scope.spawn(move || -> Result<(u64, f64), BoxError> {
                        // Whatever happens in the warm-up (an error, a panic), this thread
                        // reaches the barrier, or the others would wait for it forever.
                        let arrive = ArriveOnDrop(Some(barrier));
                        let seed = seed ^ 0x9E37_79B9_7F4A_7C15u64.wrapping_mul(t as u64 + 1);
                        let mut rng = Rng(seed | 1);
                        let mut buf = Box::new([0u8; PAGE]);
                        let mut acc = 0u8;
                        for _ in 0..warmup {
                            acc ^= self.op(c, &mut rng, &mut buf)?;
                        }
                        drop(arrive);
                        let cpu0 = thread_cpu_seconds();
                        let mut done = 0u64;
                        // Bounded: each round takes at least one call from a count that only
                        // falls.
                        loop {
                            let got = left
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    (n > 0).then(|| n - n.min(CHUNK_CALLS))
                                })
                                .map_or(0, |n| n.min(CHUNK_CALLS));
                            if got == 0 {
                                break;
                            }
                            for _ in 0..got {
                                acc ^= self.op(c, &mut rng, &mut buf)?;
                            }
                            done += got;
                        }
                        black_box(acc);
                        Ok((done * per_call, thread_cpu_seconds() - cpu0))
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
                .collect();
            (started, results)
        });
        let seconds = started.elapsed().as_secs_f64();
        let (mut cpu, mut total) = (0.0, 0u64);
        for r in results {
            let (done, cpu_seconds) = r?;
            total += done;
            cpu += done as f64 / cpu_seconds.max(1e-9);
        }
        Ok(Sample {
            wall: total as f64 / seconds,
            cpu,
        })
    }
}

/// Waits at its barrier when dropped (once).
struct ArriveOnDrop<'a>(Option<&'a Barrier>);

impl Drop for ArriveOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            b.wait();
        }
    }
}

/// One measurement: operations per second of wall-clock time, and the sum over threads of each
/// thread's operations per second of its own CPU time. The second is what the threads would
/// achieve with a core each: on a machine shared with other work it stays meaningful where the
/// wall-clock rate measures mostly the scheduler. Cache and memory-bus interference remain in it.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: f64,
    cpu: f64,
}

fn thread_cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `folio bench --hot`.
pub fn run(args: &BenchArgs) -> Result<(), BoxError> {
    if args.threads == 0 || args.ops == 0 || args.runs == 0 {
        return Err("--threads, --ops and --runs must be positive".into());
    }
    let size = args.size.unwrap_or(256 << 20);
    let image = super::Image::prepare(args.image.as_deref(), size, args.json)?;
    let len = image.len()?;
    // `--policy` (e.g. issue 16's comparison of the default with the previous one).
    let policy: PolicyKind = args.policy.parse()?;
    let hot = Hot::fill(&image, len, policy, args.json)?;
    let mut thread_counts = vec![];
    let mut t = 1;
    while t < args.threads {
        thread_counts.push(t);
        t *= 2;
    }
    thread_counts.push(args.threads);
    let wanted =
        |c: Contender| args.contenders.is_empty() || args.contenders.iter().any(|k| k == c.key());
    if !CONTENDERS.iter().any(|&c| wanted(c)) {
        return Err(format!("no contender among {:?}", args.contenders).into());
    }
    // samples[threads][contender] = each run's measurement (NaN if not run).
    let mut samples = vec![vec![Vec::new(); CONTENDERS.len()]; thread_counts.len()];
    // Folio's misses during each contender's timed runs.
    let mut folio_misses = [0u64; CONTENDERS.len()];
    // The fewest of the file's pages found resident before a pread or mmap measurement.
    let mut resident_min = usize::MAX;
    for run in 0..args.runs {
        for (ti, &threads) in thread_counts.iter().enumerate() {
            for (ci, &c) in CONTENDERS.iter().enumerate() {
                let seed = args.seed.wrapping_add(run as u64 * 1000 + threads as u64);
                if wanted(c) && matches!(c, Contender::Pread | Contender::Mmap | Contender::Mmap64)
                {
                    let (resident, pages) = resident_pages(&hot.map)?;
                    resident_min = resident_min.min(resident);
                    if resident < pages {
                        eprintln!(
                            "folio: warning: only {resident} of {pages} pages of the image are \
                             in the OS page cache before {}: its figure includes misses",
                            c.name()
                        );
                    }
                }
                let misses_before = hot.cache.stats().misses;
                let sample = if wanted(c) {
                    hot.measure(c, threads, args.ops, seed)?
                } else {
                    Sample {
                        wall: f64::NAN,
                        cpu: f64::NAN,
                    }
                };
                samples[ti][ci].push(sample);
                folio_misses[ci] += hot.cache.stats().misses - misses_before;
            }
        }
    }
    // Misses during the timed runs, per contender: Folio's own for its contenders, the cache's
    // for the in-memory caches; `pread` and `mmap` have none by the residency check.
    let misses_of = |ci: usize| -> u64 {
        match CONTENDERS[ci] {
            Contender::MutexLru | Contender::QuickCache | Contender::Moka => {
                hot.misses[ci].load(Ordering::Relaxed)
            }
            Contender::Pread | Contender::Mmap | Contender::Mmap64 => 0,
            _ => folio_misses[ci],
        }
    };
    if let Some(dir) = super::record::results_dir(args.results.as_deref()) {
        let mut rows = Vec::new();
        let threads_name = |t: usize| {
            if t == 1 {
                "1 thread".to_string()
            } else {
                format!("{t} threads")
            }
        };
        for (ti, &threads) in thread_counts.iter().enumerate() {
            for (ci, &c) in CONTENDERS.iter().enumerate() {
                if !wanted(c) {
                    continue;
                }
                let (size, name) = c.record_names();
                let runs = &samples[ti][ci];
                rows.push(
                    super::record::Row::new(
                        &format!("hit {size}, {}", threads_name(threads)),
                        name,
                        "ops/s",
                        runs.iter().map(|s| s.wall).collect(),
                    )
                    .extra(serde_json::json!({
                        "runs_ops_per_cpu_sec": runs.iter().map(|s| s.cpu).collect::<Vec<_>>(),
                        "misses_timed_all_thread_counts": misses_of(ci),
                    })),
                );
            }
        }
        if thread_counts.len() > 1 && wanted(Contender::FolioReadAt) {
            let last = thread_counts.len() - 1;
            let folio = CONTENDERS
                .iter()
                .position(|&x| x == Contender::FolioReadAt)
                .unwrap_or(0);
            let runs = |ti: usize| samples[ti][folio].iter().map(|s| s.wall).collect();
            rows.push(super::record::Row::new(
                "hit 4KiB read_at, scaling",
                &threads_name(thread_counts[last]),
                "ops/s",
                runs(last),
            ));
            rows.push(super::record::Row::new(
                "hit 4KiB read_at, scaling",
                &threads_name(1),
                "ops/s",
                runs(0),
            ));
        }
        let params = serde_json::json!({
            "image_bytes": len,
            "page_size": PAGE,
            "ops": args.ops,
            "runs": args.runs,
            "threads": thread_counts,
            "metadata_bytes_per_page":
                hot.cache.metadata_bytes() as f64 / hot.cache.capacity_pages() as f64,
            "resident_pages_min": (resident_min != usize::MAX).then_some(resident_min),
            "image_pages": hot.pages,
            "policy": hot.cache.policy_name(),
            "smoke": args.smoke,
        });
        super::record::append(&dir, "hot", params, &rows)?;
    }
    let med = |f: fn(&Sample) -> f64| -> Vec<Vec<f64>> {
        samples
            .iter()
            .map(|row| {
                row.iter()
                    .map(|s| median(&mut s.iter().map(f).collect::<Vec<_>>()))
                    .collect()
            })
            .collect()
    };
    let wall = med(|s| s.wall);
    let cpu = med(|s| s.cpu);
    let idx = |c: Contender| CONTENDERS.iter().position(|&x| x == c).unwrap_or(0);
    let folio = idx(Contender::FolioReadAt);
    let stats = hot.cache.stats();
    if args.json {
        let mut rows = Vec::new();
        for (ti, &threads) in thread_counts.iter().enumerate() {
            for (ci, &c) in CONTENDERS.iter().enumerate() {
                let runs = &samples[ti][ci];
                rows.push(serde_json::json!({
                    "contender": c.key(),
                    "threads": threads,
                    "ops_per_sec": wall[ti][ci],
                    "ops_per_cpu_sec": cpu[ti][ci],
                    "runs_ops_per_sec": runs.iter().map(|s| s.wall).collect::<Vec<_>>(),
                    "runs_ops_per_cpu_sec": runs.iter().map(|s| s.cpu).collect::<Vec<_>>(),
                    "misses_timed_all_thread_counts": misses_of(ci),
                    "folio_over_this": wall[ti][folio] / wall[ti][ci],
                    "folio_over_this_cpu": cpu[ti][folio] / cpu[ti][ci],
                }));
            }
        }
        let obj = serde_json::json!({
            "benchmark": "hot",
            "image_bytes": len,
            "page_size": PAGE,
            "ops": args.ops,
            "runs": args.runs,
            "metadata_bytes_per_page":
                hot.cache.metadata_bytes() as f64 / hot.cache.capacity_pages() as f64,
            "folio_misses_timed": stats.misses - hot.fill_misses,
            "policy": hot.cache.policy_name(),
            "results": rows,
        });
        println!("{obj}");
        return Ok(());
    }
    println!(
        "folio bench --hot: uniformly random hits on a {} MiB image held whole in each contender, \
         {} ops per measurement, median of {} runs",
        len >> 20,
        args.ops,
        args.runs
    );
    println!(
        "  (wall: ops per second; cpu: sum over threads of ops per second of the thread's own CPU \
         time, robust to other load on the machine; ratios: Folio read_at 4K over this)"
    );
    for (ti, &threads) in thread_counts.iter().enumerate() {
        println!("\n  {threads} thread(s)         wall ops/s  ratio     cpu ops/s  ratio");
        for (ci, &c) in CONTENDERS.iter().enumerate() {
            println!(
                "  {:<20} {:>12.0} {:>6.2}x {:>12.0} {:>6.2}x",
                c.name(),
                wall[ti][ci],
                wall[ti][folio] / wall[ti][ci],
                cpu[ti][ci],
                cpu[ti][folio] / cpu[ti][ci],
            );
        }
        for (what, c) in [
            ("guard", Contender::FolioGuard64),
            ("slice", Contender::FolioSlice64),
            ("slices x16", Contender::FolioSlices64),
        ] {
            let (g, r64) = (idx(c), idx(Contender::FolioReadAt64));
            println!(
                "  {what} 64B over read_at 4K: {:.2}x wall, {:.2}x cpu; over read_at 64B: \
                 {:.2}x wall, {:.2}x cpu",
                wall[ti][g] / wall[ti][folio],
                cpu[ti][g] / cpu[ti][folio],
                wall[ti][g] / wall[ti][r64],
                cpu[ti][g] / cpu[ti][r64],
            );
        }
    }
    if thread_counts.len() > 1 {
        let last = thread_counts.len() - 1;
        println!(
            "\n  folio read_at 4K, {} threads over 1 thread: {:.2}x wall, {:.2}x cpu",
            thread_counts[last],
            wall[last][folio] / wall[0][folio],
            cpu[last][folio] / cpu[0][folio],
        );
    }
    println!(
        "  metadata: {:.1} bytes per page; folio misses during timing: {}",
        hot.cache.metadata_bytes() as f64 / hot.cache.capacity_pages() as f64,
        stats.misses - hot.fill_misses
    );
    let counted: Vec<String> = CONTENDERS
        .iter()
        .enumerate()
        .filter(|&(_, &c)| wanted(c))
        .map(|(ci, c)| format!("{} {}", c.key(), misses_of(ci)))
        .collect();
    println!(
        "  misses during timing, per contender: {}",
        counted.join(", ")
    );
    Ok(())
}
