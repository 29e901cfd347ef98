//! `folio bench`: workloads through the cache, with throughput, hit ratio and latency.
//!
//! With no arguments it creates a temporary 1 GiB image (deleted afterwards), runs a
//! Zipf-distributed mix of 4 KiB reads and writes through a cache whose budget is 25% of the
//! image, and prints the results (`--json`: one JSON object). `--hot` measures cache hits
//! instead (see [`hot`]); `folio bench io` runs the cold I/O scenarios beside fio and the OS
//! page cache (see [`io`]); `folio bench nbd` compares NBD servers (see [`nbd`]).

mod hot;
pub mod io;
mod mixed;
pub mod nbd;
mod nbd_servers;
pub mod record;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use folio::{CacheConfig, IoMode, PageCache, PolicyKind};

use crate::units::{parse_size, parse_size_or_percent, SizeOrPercent};

/// Which pages the mixed workload touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Zipf-distributed over the image's pages (skew `--zipf-theta`), hot pages scattered.
    Zipf,
    /// Uniformly random pages.
    Uniform,
    /// Sequential, wrapping around at the end (each thread starts at its own offset).
    Seq,
}

/// Sub-benchmarks of `folio bench`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum BenchCommand {
    /// Cold I/O: sequential and random reads and flush, beside fio and the OS page cache.
    Io(Box<io::IoArgs>),
    /// NBD servers side by side: folio serve, qemu-nbd and nbdkit under fio's nbd engine.
    Nbd(nbd::NbdArgs),
    /// Appends one results line built by a script: `{"params": {...}, "rows": [...]}` on stdin
    /// (schema: bench/README.md); the commit, date and machine are added.
    Record(RecordArgs),
}

/// Arguments of `folio bench record`.
#[derive(clap::Args, Debug, Clone)]
pub struct RecordArgs {
    /// The benchmark's name: the line goes to `<results>/<bench>.jsonl`.
    #[arg(long)]
    pub bench: String,
    /// The results directory (default: `bench/results` when run from the repository's root).
    #[arg(long)]
    pub results: Option<String>,
}

/// Arguments of `folio bench`.
#[derive(clap::Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// A sub-benchmark; without one, the mixed workload below.
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Image file to run on; created with `--size` bytes if missing. Default: a temporary image
    /// in the system temp directory, deleted afterwards.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Size of a created image [default: 1GiB, 256MiB with --hot].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Cache budget: bytes (`256MiB`) or a percentage of the image (`25%`).
    #[arg(long, default_value = "25%", value_parser = parse_size_or_percent)]
    pub budget: SizeOrPercent,
    /// Access pattern.
    #[arg(long, value_enum, default_value_t = Workload::Zipf)]
    pub workload: Workload,
    /// Share of operations that are reads (0 to 1).
    #[arg(long, default_value_t = 0.8)]
    pub read_ratio: f64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Operations in all (split over the threads).
    #[arg(long, default_value_t = 1_000_000)]
    pub ops: u64,
    /// Eviction policy (`default`, `clock`, ...).
    #[arg(long, default_value = "default")]
    pub policy: String,
    /// Cache page size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub page_size: usize,
    /// Bytes per read or write.
    #[arg(long, default_value_t = 4096)]
    pub io_size: usize,
    /// Skew of the Zipf distribution (0.99 is the YCSB default).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_theta: f64,
    /// Open the image with O_DIRECT (bypass the OS page cache).
    #[arg(long)]
    pub direct: bool,
    /// Seed of the workload's random numbers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Time only cache hits on an image held whole in the cache, against pread, mmap and other
    /// caches, at 1 thread and doubling up to `--threads` (see `bench/hot.rs`).
    #[arg(long)]
    pub hot: bool,
    /// Measurements per contender in `--hot` (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// `--hot` contenders to run, comma-separated (default: all; names as in `--json`).
    #[arg(long, value_delimiter = ',')]
    pub contenders: Vec<String>,
    /// Each thread calls `sync()` (through its own `SyncHandle`) after every N of its
    /// operations; 0 never. The syncs are part of the timed run.
    #[arg(long, default_value_t = 0)]
    pub sync_every: u64,
    /// Call `sync()` once after the operations, inside the timed run (e.g. "write 1 GiB, then
    /// make it durable").
    #[arg(long)]
    pub final_sync: bool,
    /// The background flusher: `on` (default) writes dirty pages back as they pass the dirty
    /// thresholds and throttles writers; `off` leaves write-back to eviction and syncs.
    #[arg(long, value_enum, default_value_t = Flusher::On)]
    pub flusher: Flusher,
    /// With `--direct`: io_uring queue depth, the most write-back (and read) I/Os in flight,
    /// with one flushing thread (default: the backend's own depth and the cache's threads).
    #[arg(long)]
    pub queue_depth: Option<usize>,
    /// Where the invocation's results line goes: a directory (`<dir>/<bench>.jsonl`, bench
    /// `mixed` or `hot`), or `none`. Default: `bench/results` when run from the repository's
    /// root, else nowhere.
    #[arg(long)]
    pub results: Option<String>,
    /// Mark the results line as a smoke run (left out of every verdict).
    #[arg(long)]
    pub smoke: bool,
}

/// Whether the cache runs its background flusher (`--flusher`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Flusher {
    /// The background flusher and dirty throttling (the library's default).
    On,
    /// No background write-back.
    Off,
}

/// A benchmark image: an existing file, or a temporary one deleted on drop.
pub struct Image {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Image {
    /// Opens `path`, creating it with `size` bytes of data if it does not exist, or creates a
    /// temporary image.
    pub fn prepare(path: Option<&Path>, size: u64, quiet: bool) -> Result<Image, BoxError> {
        match path {
            Some(p) if p.exists() => Ok(Image {
                path: p.to_path_buf(),
                _dir: None,
            }),
            Some(p) => {
                fill_image(p, size, quiet)?;
                Ok(Image {
                    path: p.to_path_buf(),
                    _dir: None,
                })
            }
            None => {
                let dir = tempfile::Builder::new().prefix("folio-bench").tempdir()?;
                let path = dir.path().join("bench.img");
                fill_image(&path, size, quiet)?;
                Ok(Image {
                    path,
                    _dir: Some(dir),
                })
            }
        }
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The image's length.
    pub fn len(&self) -> Result<u64, BoxError> {
        Ok(std::fs::metadata(&self.path)?.len())
    }
}

/// Writes `size` bytes of non-zero data (so reads are real reads, not holes).
fn fill_image(path: &Path, size: u64, quiet: bool) -> Result<(), BoxError> {
    let mut f = File::create(path)?;
    let chunk_len = 1usize << 20;
    let mut chunk = vec![0u8; chunk_len];
    let bar = progress(size, "creating image", quiet);
    let mut written = 0u64;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    while written < size {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = (size - written).min(chunk_len as u64) as usize;
        f.write_all(&chunk[..n])?;
        written += n as u64;
        bar.set_position(written);
    }
    f.sync_all()?;
    bar.finish_and_clear();
    Ok(())
}

/// A progress bar on stderr (hidden when `quiet` or when stderr is not a terminal).
pub fn progress(len: u64, what: &str, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>16} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Errors of the command line.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Tells the OS to drop its cached pages of `path` (cold-start measurements).
pub fn drop_os_cache(path: &Path) -> Result<(), BoxError> {
    let f = File::open(path)?;
    rustix::fs::fdatasync(&f)?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// Opens the image as a cache backend and builds the cache.
pub fn open_cache(
    image: &Image,
    config: CacheConfig,
    direct: bool,
    queue_depth: Option<usize>,
) -> Result<PageCache, BoxError> {
    let mode = if direct {
        IoMode::Direct
    } else {
        IoMode::Buffered
    };
    // With O_DIRECT, io_uring where the kernel allows it: many write-back runs in flight
    // (random writes with syncs: 0.68x fio instead of 0.52x). Buffered, positional I/O: a
    // pwrite into the OS page cache is a copy, and the hop to the ring thread costs more
    // (the default mixed run: 523k ops/s instead of 294k).
    let backend: std::sync::Arc<dyn folio::PageCacheBackend> = if direct {
        match queue_depth {
            Some(depth) if folio::backend::uring_support().is_ok() => std::sync::Arc::new(
                folio::UringBackend::open_with_depth(image.path(), mode, depth)?,
            ),
            Some(_) => return Err("--queue-depth needs io_uring, which is unavailable".into()),
            None => folio::backend::open_best(image.path(), mode)?,
        }
    } else {
        std::sync::Arc::new(folio::FileBackend::open(image.path(), mode)?)
    };
    Ok(PageCache::new(backend, config)?)
}

/// Runs `folio bench`.
pub fn run(args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    run_inner(args).map_err(|e| e as Box<dyn std::error::Error>)
}

fn run_inner(args: &BenchArgs) -> Result<(), BoxError> {
    match &args.command {
        Some(BenchCommand::Io(io_args)) => return io::run(io_args),
        Some(BenchCommand::Nbd(nbd_args)) => return nbd::run(nbd_args),
        Some(BenchCommand::Record(r)) => {
            return record::record_from_stdin(&r.bench, r.results.as_deref())
        }
        None => {}
    }
    if args.hot {
        return hot::run(args);
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        return Err(format!("--read-ratio {} is not between 0 and 1", args.read_ratio).into());
    }
    if args.threads == 0 || args.ops == 0 || args.io_size == 0 {
        return Err("--threads, --ops and --io-size must be positive".into());
    }
    let policy: PolicyKind = args.policy.parse()?;
    let image = Image::prepare(
        args.image.as_deref(),
        args.size.unwrap_or(1 << 30),
        args.json,
    )?;
    let len = image.len()?;
    if len < args.io_size as u64 {
        return Err(format!("the image ({len} bytes) is smaller than one I/O").into());
    }
    let budget = args.budget.resolve(len).max(args.page_size as u64);
    let mut config = CacheConfig::new(budget)
        .page_size(args.page_size)
        .policy(policy)
        .background_writeback(args.flusher == Flusher::On);
    if args.queue_depth.is_some() {
        // At most `--queue-depth` write-backs in flight: one flushing thread (at depth 1 the
        // cache would otherwise split a flush over its write-back threads).
        config = config.writeback_threads(1);
    }
    let cache = open_cache(&image, config, args.direct, args.queue_depth)?;
    let report = mixed::run(&cache, args, len)?;
    let stats = cache.stats();
    cache.close().map_err(folio::Error::from)?;
    let hit_ratio = stats.hit_ratio();
    if let Some(dir) = record::results_dir(args.results.as_deref()) {
        let workload = format!(
            "{:?} {:.0}% reads of {} B, {} thread(s)",
            args.workload,
            args.read_ratio * 100.0,
            args.io_size,
            args.threads
        )
        .to_lowercase();
        let row = record::Row::new(
            &workload,
            "folio",
            "ops/s",
            vec![report.ops as f64 / report.seconds],
        )
        .extra(serde_json::json!({
            "hit_ratio": hit_ratio,
            "p50_us": report.p50_us,
            "p99_us": report.p99_us,
            "syncs": stats.syncs,
            "throttled_ms": stats.throttled_ns as f64 / 1e6,
        }));
        let params = serde_json::json!({
            "image_bytes": len,
            "budget_bytes": budget,
            "policy": policy.name(),
            "ops": report.ops,
            "sync_every": args.sync_every,
            "final_sync": args.final_sync,
            "flusher": args.flusher == Flusher::On,
            "direct": args.direct,
            "queue_depth": args.queue_depth,
            "seed": args.seed,
            "smoke": args.smoke,
        });
        record::append(&dir, "mixed", params, &[row])?;
    }
    if args.json {
        let obj = serde_json::json!({
            "workload": format!("{:?}", args.workload).to_lowercase(),
            "image_bytes": len,
            "budget_bytes": budget,
            "policy": policy.name(),
            "threads": args.threads,
            "read_ratio": args.read_ratio,
            "io_size": args.io_size,
            "ops": report.ops,
            "seconds": report.seconds,
            "ops_per_sec": report.ops as f64 / report.seconds,
            "hit_ratio": hit_ratio,
            "p50_us": report.p50_us,
            "p99_us": report.p99_us,
            "max_us": report.max_us,
            "backend_bytes_read": stats.read_bytes,
            "backend_bytes_written": stats.writeback_bytes,
            "evictions": stats.evictions,
            "eviction_writebacks": stats.eviction_writebacks,
            "write_behind_pages": stats.write_behind_pages,
            "writeback_ios": stats.writeback_ios,
            "flusher_rounds": stats.flusher_rounds,
            "sync_every": args.sync_every,
            "final_sync": args.final_sync,
            "flusher": args.flusher == Flusher::On,
            "syncs": stats.syncs,
            "throttled_ms": stats.throttled_ns as f64 / 1e6,
        });
        println!("{obj}");
    } else {
        println!(
            "folio bench: {:?} workload, {} threads, {:.0}% reads of {} B over a {} MiB image, \
             budget {} MiB ({}), policy {}",
            args.workload,
            args.threads,
            args.read_ratio * 100.0,
            args.io_size,
            len >> 20,
            budget >> 20,
            if args.direct { "O_DIRECT" } else { "buffered" },
            policy.name()
        );
        println!("  ops          {:>12}", report.ops);
        println!("  seconds      {:>12.3}", report.seconds);
        println!(
            "  ops/s        {:>12.0}",
            report.ops as f64 / report.seconds
        );
        println!("  hit ratio    {:>12.4}", hit_ratio);
        println!("  p50 latency  {:>9.2} us", report.p50_us);
        println!("  p99 latency  {:>9.2} us", report.p99_us);
        println!(
            "  backend      {:>9} MiB read, {} MiB written, {} evictions",
            stats.read_bytes >> 20,
            stats.writeback_bytes >> 20,
            stats.evictions
        );
        if args.sync_every > 0 || args.final_sync {
            println!(
                "  syncs        {:>12} (every {} ops per thread{}), throttled {:.1} ms",
                stats.syncs,
                args.sync_every,
                if args.final_sync {
                    ", and once at the end"
                } else {
                    ""
                },
                stats.throttled_ns as f64 / 1e6
            );
        }
    }
    Ok(())
}
