//! `folio bench io`: cold I/O scenarios through the cache, side by side with fio and the OS page
//! cache on the same file.
//!
//! Each run of a scenario drops the OS page cache for the image (`posix_fadvise(DONTNEED)`)
//! before each side and starts Folio with an empty cache. The figure printed is the median of
//! `--runs` runs (default 3); every run of every contender goes to the results file (see
//! [`super::record`]), one line per invocation.
//!
//! - `seq-read`: one thread reads the whole image in 4 KiB `read_at` calls. Baselines: fio
//!   `--rw=read --bs=1M --direct=1 --ioengine=io_uring --iodepth=8`, and a plain 4 KiB `pread`
//!   loop through the OS page cache (buffered, its own readahead), once as is and once after
//!   `posix_fadvise(POSIX_FADV_SEQUENTIAL)` (the kernel's larger readahead).
//! - `rand-read`: every page of the image (or `--ops` of them), once each in random order, on
//!   both sides. One thread with `--outstanding` (default 32) reads in flight
//!   (`read_exact_many` on batches of `--batch-reads` through a ring of that depth) against fio
//!   `--rw=randread --bs=4k --direct=1 --ioengine=io_uring --iodepth=32`; and `--threads`
//!   (default 32) threads of blocking `read_at` against fio's blocking engine with as many jobs
//!   (`--ioengine=psync --numjobs=32`, each job its own slice of the file). Also reports the
//!   bytes read from the device over bytes returned (readahead must stay off for random access).
//! - `flush`: writes `--flush-size` (default 256 MiB) of random pages sequentially in 4 KiB
//!   `write_at` calls into an empty cache, then times `sync()` (write-back and `fdatasync`),
//!   at each depth of `--flush-depths` (default 1, 8, 32, 64): Folio's ring has that depth (so at
//!   most that many writes of at most 1 MiB in flight) and fio runs `--rw=write --bs=1M
//!   --direct=1 --ioengine=io_uring --iodepth=<depth> --end_fsync=1`.
//!
//! size: three scenarios (seq-read, rand-read, flush) each beside its fio and OS page cache baselines; to split into one file per scenario

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;
use folio::{CacheConfig, FileBackend, IoMode, PageCache, PageCacheBackend, UringBackend};

use super::{drop_os_cache, record, BoxError, Image};
use crate::units::parse_size;

/// A cold I/O scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Every scenario below.
    All,
    /// Sequential 4 KiB reads of the whole image from one thread.
    SeqRead,
    /// Random 4 KiB reads from many threads.
    RandRead,
    /// Write-back of sequentially written dirty pages.
    Flush,
}

/// What to compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// Run the matching fio job (if fio is installed) and the OS page cache baseline.
    Fio,
    /// Folio only.
    None,
}

/// Which backend Folio uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    /// io_uring where available, else positional I/O.
    Auto,
    /// io_uring (fails if unavailable).
    Uring,
    /// Positional I/O (`preadv`/`pwritev`).
    File,
}

/// Arguments of `folio bench io`.
#[derive(clap::Args, Debug, Clone)]
pub struct IoArgs {
    /// Scenario to run.
    #[arg(long, value_enum, default_value_t = Scenario::All)]
    pub scenario: Scenario,
    /// Baselines to run beside Folio.
    #[arg(long, value_enum, default_value_t = Compare::Fio)]
    pub compare: Compare,
    /// Runs of each measurement; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Image file (created with `--size` bytes if missing; default a temporary file, deleted).
    #[arg(long)]
    pub image: Option<std::path::PathBuf>,
    /// Size of a created image.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Folio's backend.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// io_uring queue depth.
    #[arg(long, default_value_t = 64)]
    pub queue_depth: usize,
    /// io_uring backend: reads of at most this many pages go through `preadv` on the calling
    /// thread (0: every read through the ring).
    #[arg(long, default_value_t = folio::backend::uring::INLINE_READ_PAGES_MAX_DEFAULT)]
    pub inline_read_pages: usize,
    /// Use the OS page cache under Folio instead of O_DIRECT.
    #[arg(long)]
    pub buffered: bool,
    /// Cache budget for the read scenarios.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub budget: u64,
    /// Largest readahead window.
    #[arg(long, default_value = "2MiB", value_parser = parse_size)]
    pub readahead_max: u64,
    /// Threads of `rand-read` (0: only the one-thread row, for profiling it alone).
    #[arg(long, default_value_t = 32)]
    pub threads: usize,
    /// Reads kept in flight by the one-thread `rand-read` row, which calls `read_exact_many`
    /// on a ring of this depth (as fio's `--iodepth`).
    #[arg(long, default_value_t = 32)]
    pub outstanding: usize,
    /// Reads per `read_exact_many` call in the one-thread `rand-read` row. Each call ends by
    /// waiting for its last reads with fewer and fewer in flight, which fio never does; at
    /// 2048 (64 x 32) that tail is under 2% of the reads (at 256 it measured about 5% slower).
    #[arg(long, default_value_t = 2048)]
    pub batch_reads: usize,
    /// Reads of `rand-read`, all of distinct pages, on each side (Folio's and fio's). Default:
    /// every page of the image once, in random order, as fio's random map does.
    #[arg(long)]
    pub ops: Option<u64>,
    /// Bytes written and flushed by `flush`.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub flush_size: u64,
    /// Depths of the flush scenario: writes in flight on each side.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    pub flush_depths: Vec<usize>,
    /// Print one JSON object per scenario instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where the invocation's results line goes: a directory (`<dir>/io.jsonl`), or `none`.
    /// Default: `bench/results` when run from the repository's root, else nowhere.
    #[arg(long)]
    pub results: Option<String>,
    /// Mark the results line as a smoke run (left out of every verdict).
    #[arg(long)]
    pub smoke: bool,
}

const PS: usize = 4096;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn fio_available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs fio with `args` on `path` (io_uring, O_DIRECT unless `args` say otherwise) and returns
/// (bytes/s, IOPS) of the `rw` side ("read"/"write"), over all jobs.
fn fio(path: &Path, args: &[&str], rw: &str) -> Result<(f64, f64), BoxError> {
    let engine = if args.iter().any(|a| a.starts_with("--ioengine=")) {
        None
    } else {
        Some("--ioengine=io_uring")
    };
    let out = Command::new("fio")
        .arg("--name=folio-baseline")
        .arg(format!("--filename={}", path.display()))
        .args(["--direct=1", "--output-format=json", "--group_reporting"])
        .args(engine)
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let side = &v["jobs"][0][rw];
    let bw = side["bw_bytes"].as_f64().ok_or("fio: no bw_bytes")?;
    let iops = side["iops"].as_f64().ok_or("fio: no iops")?;
    Ok((bw, iops))
}

struct Opened {
    backend: Arc<dyn PageCacheBackend>,
    name: &'static str,
}

fn open_backend(path: &Path, args: &IoArgs) -> Result<Opened, BoxError> {
    let mode = if args.buffered {
        IoMode::Buffered
    } else {
        IoMode::Direct
    };
    let uring = |path: &Path| -> Result<Opened, BoxError> {
        Ok(Opened {
            backend: Arc::new(
                UringBackend::open_with_depth(path, mode, args.queue_depth)?
                    .inline_read_pages_max(args.inline_read_pages),
            ),
            name: "io_uring",
        })
    };
    match args.backend {
        BackendChoice::Uring => uring(path),
        BackendChoice::File => Ok(Opened {
            backend: Arc::new(FileBackend::open(path, mode)?),
            name: "pread",
        }),
        BackendChoice::Auto => match folio::backend::uring_support() {
            Ok(()) => uring(path),
            Err(why) => {
                eprintln!("folio: io_uring unavailable ({why}); using positional I/O");
                Ok(Opened {
                    backend: Arc::new(FileBackend::open(path, mode)?),
                    name: "pread",
                })
            }
        },
    }
}

fn cache(path: &Path, args: &IoArgs, budget: u64) -> Result<(PageCache, &'static str), BoxError> {
    let opened = open_backend(path, args)?;
    // The background flusher is off: the flush scenario times `sync()` of pages it has just
    // dirtied, which the flusher would otherwise already have written (and throttled) during
    // the untimed writes; the read scenarios dirty nothing.
    let config = CacheConfig::new(budget)
        .readahead_bytes_max(args.readahead_max as usize)
        .background_writeback(false);
    Ok((PageCache::new(opened.backend, config)?, opened.name))
}

/// A contender's runs for the results file.
fn rec(workload: &str, contender: &str, unit: &'static str, runs: &[f64]) -> record::Row {
    record::Row::new(workload, contender, unit, runs.to_vec())
}

/// One line of the report.
struct Row {
    what: String,
    value: f64,
    unit: &'static str,
}

fn print_rows(scenario: &str, rows: &[Row], target: Option<(&str, &str, f64)>, args: &IoArgs) {
    let find = |w: &str| rows.iter().find(|r| r.what == w).map(|r| r.value);
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("scenario".into(), scenario.into());
        obj.insert("runs".into(), args.runs.into());
        for r in rows {
            obj.insert(r.what.clone(), r.value.into());
        }
        if let Some((a, b, _)) = target {
            if let (Some(x), Some(y)) = (find(a), find(b)) {
                obj.insert(format!("ratio {a} / {b}"), (x / y).into());
            }
        }
        println!("{}", serde_json::Value::Object(obj));
        return;
    }
    println!("{scenario} (median of {} runs)", args.runs);
    for r in rows {
        if r.unit.is_empty() {
            println!("  {:<34} {:>12.4}", r.what, r.value);
        } else {
            println!("  {:<34} {:>12.1} {}", r.what, r.value, r.unit);
        }
    }
    if let Some((a, b, goal)) = target {
        if let (Some(x), Some(y)) = (find(a), find(b)) {
            println!("  ratio {a} / {b}: {:.2} (target >= {goal:.2})", x / y);
        }
    }
}

/// MiB/s of reading `path` whole in 4 KiB `pread`s through the OS page cache, after `advice`.
fn os_sequential(
    path: &Path,
    len: u64,
    advice: Option<rustix::fs::Advice>,
) -> Result<f64, BoxError> {
    let f = File::open(path)?;
    if let Some(advice) = advice {
        rustix::fs::fadvise(&f, 0, None, advice)?;
    }
    let secs = read_whole(len, |buf, pos| f.read_at(buf, pos))?;
    Ok(len as f64 / secs / 1048576.0)
}

/// Seconds to read `len` bytes from offset 0 in 4 KiB `read_at` calls (stopping early at EOF).
fn read_whole<E: Into<BoxError>>(
    len: u64,
    mut read_at: impl FnMut(&mut [u8], u64) -> Result<usize, E>,
) -> Result<f64, BoxError> {
    let mut buf = vec![0u8; PS];
    let started = Instant::now();
    let mut pos = 0u64;
    while pos < len {
        let n = read_at(&mut buf, pos).map_err(Into::into)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
    }
    Ok(started.elapsed().as_secs_f64())
}

const SEQ_WORKLOAD: &str = "seq-read 4KiB reads, 1 thread";

fn seq_read(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let (mut folio_bw, mut os_bw, mut fio_bw, mut overhead) = (vec![], vec![], vec![], vec![]);
    let mut os_seq_bw = vec![];
    let mut backend_name = "";
    for _ in 0..args.runs {
        if with_fio {
            drop_os_cache(path)?;
            let (bw, _) = fio(
                path,
                &[
                    "--rw=read",
                    "--bs=1M",
                    "--iodepth=8",
                    "--readonly",
                    &format!("--size={len}"),
                ],
                "read",
            )?;
            fio_bw.push(bw / 1048576.0);
            drop_os_cache(path)?;
            os_bw.push(os_sequential(path, len, None)?);
            drop_os_cache(path)?;
            os_seq_bw.push(os_sequential(
                path,
                len,
                Some(rustix::fs::Advice::Sequential),
            )?);
        }
        drop_os_cache(path)?;
        let (cache, name) = cache(path, args, args.budget)?;
        backend_name = name;
        let secs = read_whole(len, |buf, pos| cache.read_at(buf, pos))?;
        folio_bw.push(len as f64 / secs / 1048576.0);
        overhead.push(cache.stats().read_bytes as f64 / len as f64);
        drop(cache);
    }
    out.push(
        rec(SEQ_WORKLOAD, "folio", "MiB/s", &folio_bw).extra(serde_json::json!({
            "backend": backend_name,
            "device_bytes_per_byte_returned": overhead.clone(),
        })),
    );
    if with_fio {
        out.push(rec(
            SEQ_WORKLOAD,
            "fio read bs=1M iodepth=8",
            "MiB/s",
            &fio_bw,
        ));
        out.push(rec(
            SEQ_WORKLOAD,
            "OS page cache pread 4KiB",
            "MiB/s",
            &os_bw,
        ));
        out.push(rec(
            SEQ_WORKLOAD,
            "OS page cache pread 4KiB + FADV_SEQUENTIAL",
            "MiB/s",
            &os_seq_bw,
        ));
    }
    let mut rows = vec![Row {
        what: format!("folio ({backend_name}) 4K read_at"),
        value: median(folio_bw),
        unit: "MiB/s",
    }];
    if with_fio {
        rows.push(Row {
            what: "fio read 1M qd8 direct".into(),
            value: median(fio_bw),
            unit: "MiB/s",
        });
        rows.push(Row {
            what: "OS page cache 4K pread".into(),
            value: median(os_bw),
            unit: "MiB/s",
        });
        rows.push(Row {
            what: "OS page cache 4K pread, FADV_SEQ".into(),
            value: median(os_seq_bw),
            unit: "MiB/s",
        });
    }
    rows.push(Row {
        what: "device bytes / bytes returned".into(),
        value: median(overhead),
        unit: "",
    });
    let a = rows[0].what.clone();
    print_rows(
        "seq-read",
        &rows,
        with_fio.then_some((a.as_str(), "fio read 1M qd8 direct", 0.9)),
        args,
    );
    if with_fio && !args.json {
        for (i, what) in [(2, "OS page cache"), (3, "OS page cache, FADV_SEQ")] {
            let f = rows[0].value / rows[i].value;
            println!("  ratio folio / {what}: {f:.2} (target >= 1.00)");
        }
    }
    Ok(())
}

/// A permutation of `0 .. n` (pages), deterministic.
fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let j = (x % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn rand_read(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let pages = len / PS as u64;
    let ops = args.ops.unwrap_or(pages).clamp(1, pages);
    let threads = args.threads;
    let depth = args.outstanding.max(1);
    let (mut folio_iops, mut fio_iops, mut ratio) = (vec![], vec![], vec![]);
    let (mut batched_iops, mut fio_psync_iops) = (vec![], vec![]);
    let mut backend_name = "";
    for run in 0..args.runs {
        if with_fio {
            drop_os_cache(path)?;
            let (_, iops) = fio(
                path,
                &[
                    "--rw=randread",
                    "--bs=4k",
                    &format!("--iodepth={depth}"),
                    "--readonly",
                    &format!("--number_ios={ops}"),
                    &format!("--size={len}"),
                ],
                "read",
            )?;
            fio_iops.push(iops);
            if threads > 0 {
                // Blocking reads from `threads` jobs, like Folio's blocking threads: each job
                // reads its own slice of the file, every page of it once in random order.
                let slice = len / threads as u64 / PS as u64 * PS as u64;
                let per_job = (ops / threads as u64).clamp(1, slice / PS as u64);
                drop_os_cache(path)?;
                let (_, iops) = fio(
                    path,
                    &[
                        "--rw=randread",
                        "--bs=4k",
                        "--ioengine=psync",
                        &format!("--numjobs={threads}"),
                        "--thread",
                        "--readonly",
                        &format!("--size={slice}"),
                        &format!("--offset_increment={slice}"),
                        &format!("--number_ios={per_job}"),
                    ],
                    "read",
                )?;
                fio_psync_iops.push(iops);
            }
        }
        drop_os_cache(path)?;
        let order = Arc::new(shuffled(pages, 0x9E37_79B9 + run as u64));
        if threads > 0 {
            let (cache, _) = cache(path, args, args.budget)?;
            let cache = Arc::new(cache);
            let next = Arc::new(AtomicU64::new(0));
            let started = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (cache, next, order) = (cache.clone(), next.clone(), order.clone());
                    std::thread::spawn(move || -> Result<(), folio::Error> {
                        let mut buf = vec![0u8; PS];
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= ops {
                                return Ok(());
                            }
                            cache.read_exact_at(&mut buf, order[i as usize] * PS as u64)?;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| "a reader panicked")??;
            }
            let secs = started.elapsed().as_secs_f64();
            folio_iops.push(ops as f64 / secs);
            drop(cache);
        }

        drop_os_cache(path)?;
        let batched_args = IoArgs {
            queue_depth: depth,
            ..args.clone()
        };
        let (one, name) = self::cache(path, &batched_args, args.budget)?;
        backend_name = name;
        let mut bufs = vec![vec![0u8; PS]; args.batch_reads.max(1)];
        let started = Instant::now();
        for chunk in order[..ops as usize].chunks(bufs.len()) {
            let mut batch: Vec<(u64, &mut [u8])> = chunk
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&p, b)| (p * PS as u64, &mut b[..]))
                .collect();
            one.read_exact_many(&mut batch)?;
        }
        batched_iops.push(ops as f64 / started.elapsed().as_secs_f64());
        ratio.push(one.stats().read_bytes as f64 / (ops * PS as u64) as f64);
    }
    let one = format!("rand-read 4KiB, 1 thread, {depth} in flight");
    out.push(
        rec(&one, "folio", "IOPS", &batched_iops).extra(serde_json::json!({
            "backend": backend_name,
            "device_bytes_per_byte_returned": ratio.clone(),
            "reads_per_call": args.batch_reads,
        })),
    );
    let many = format!("rand-read 4KiB, {threads} threads blocking");
    if threads > 0 {
        out.push(rec(&many, "folio", "IOPS", &folio_iops));
    }
    if with_fio {
        out.push(rec(
            &one,
            &format!("fio randread io_uring iodepth={depth}"),
            "IOPS",
            &fio_iops,
        ));
        if threads > 0 {
            out.push(rec(
                &many,
                &format!("fio randread psync numjobs={threads}"),
                "IOPS",
                &fio_psync_iops,
            ));
        }
    }
    let mut rows = Vec::new();
    if threads > 0 {
        rows.push(Row {
            what: format!("folio ({backend_name}) {threads} threads"),
            value: median(folio_iops.clone()),
            unit: "IOPS",
        });
    }
    // The target's like-for-like: one thread keeping 32 reads outstanding, as fio's job does.
    let a = format!(
        "folio ({backend_name}) 1 thread, {} in flight",
        args.outstanding.max(1)
    );
    rows.push(Row {
        what: a.clone(),
        value: median(batched_iops.clone()),
        unit: "IOPS",
    });
    if with_fio {
        // Ratios within each run, fio's job just before Folio's, are steadier than the ratio
        // of medians on a host whose device speed drifts between runs.
        let per_run = |folio: &[f64], base: &[f64]| {
            median(folio.iter().zip(base).map(|(f, o)| f / o).collect())
        };
        if threads > 0 {
            rows.push(Row {
                what: format!("{threads} threads / fio psync, per-run ratios"),
                value: per_run(&folio_iops, &fio_psync_iops),
                unit: "",
            });
            rows.push(Row {
                what: format!("fio randread psync {threads} jobs"),
                value: median(fio_psync_iops),
                unit: "IOPS",
            });
        }
        rows.push(Row {
            what: "1 thread / fio, median of per-run ratios".into(),
            value: per_run(&batched_iops, &fio_iops),
            unit: "",
        });
        rows.push(Row {
            what: "fio randread 4k qd32 direct".into(),
            value: median(fio_iops),
            unit: "IOPS",
        });
    }
    rows.push(Row {
        what: "device bytes / bytes returned".into(),
        value: median(ratio),
        unit: "",
    });
    print_rows(
        "rand-read",
        &rows,
        with_fio.then_some((a.as_str(), "fio randread 4k qd32 direct", 0.9)),
        args,
    );
    Ok(())
}

/// Fills `page` with random bytes (xorshift64 from `x`, which moves on).
fn random_page(page: &mut [u8], x: &mut u64) {
    for word in page.chunks_exact_mut(8) {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        word.copy_from_slice(&x.to_le_bytes());
    }
}

fn flush(
    image: &Image,
    args: &IoArgs,
    with_fio: bool,
    out: &mut Vec<record::Row>,
) -> Result<(), BoxError> {
    let path = image.path();
    let len = image.len()?;
    let size = args.flush_size.min(len) / PS as u64 * PS as u64;
    if args.flush_depths.is_empty() || args.flush_depths.contains(&0) {
        return Err("--flush-depths must be positive".into());
    }
    for &depth in &args.flush_depths {
        let (mut folio_bw, mut fio_bw) = (vec![], vec![]);
        let mut backend_name = "";
        let depth_args = IoArgs {
            queue_depth: depth,
            ..args.clone()
        };
        let mut x = 0x005E_EDF1_u64 ^ depth as u64;
        for _ in 0..args.runs {
            if with_fio {
                drop_os_cache(path)?;
                let (bw, _) = fio(
                    path,
                    &[
                        "--rw=write",
                        "--bs=1M",
                        &format!("--iodepth={depth}"),
                        "--end_fsync=1",
                        &format!("--size={size}"),
                    ],
                    "write",
                )?;
                fio_bw.push(bw / 1048576.0);
            }
            drop_os_cache(path)?;
            // Room for every dirty page, plus slack; writes of at most 1 MiB, as fio's; one
            // flushing thread, so at most `depth` writes are in flight (with a queue depth of
            // 1 the cache would otherwise split a flush over `writeback_threads` threads).
            let opened = open_backend(path, &depth_args)?;
            backend_name = opened.name;
            let config = CacheConfig::new(size + (16 << 20))
                .readahead_bytes_max(args.readahead_max as usize)
                .io_bytes_max(1 << 20)
                .writeback_threads(1)
                .background_writeback(false);
            let cache = PageCache::new(opened.backend, config)?;
            // Random page contents, as fio's buffers (untimed).
            let mut page = vec![0u8; PS];
            let mut pos = 0u64;
            while pos < size {
                random_page(&mut page, &mut x);
                cache.write_all_at(&page, pos)?;
                pos += PS as u64;
            }
            // The timed sync must write every page: none may have been written back before.
            let before = cache.stats();
            if before.dirty_pages != size / PS as u64 || before.writeback_pages != 0 {
                return Err(format!(
                    "flush: {} of {} pages dirty before the timed sync ({} written back early)",
                    before.dirty_pages,
                    size / PS as u64,
                    before.writeback_pages
                )
                .into());
            }
            let started = Instant::now();
            cache.sync()?;
            let secs = started.elapsed().as_secs_f64();
            let after = cache.stats();
            if after.writeback_pages - before.writeback_pages != size / PS as u64 {
                return Err("flush: the sync did not write every page once".into());
            }
            folio_bw.push(size as f64 / secs / 1048576.0);
        }
        let workload = format!("flush {}MiB, {depth} in flight", size >> 20);
        out.push(
            rec(&workload, "folio", "MiB/s", &folio_bw)
                .extra(serde_json::json!({ "backend": backend_name })),
        );
        let fio_name = "fio write bs=1M + fsync";
        if with_fio {
            out.push(rec(&workload, fio_name, "MiB/s", &fio_bw));
        }
        let mut rows = vec![Row {
            what: format!("folio ({backend_name}) sync()"),
            value: median(folio_bw),
            unit: "MiB/s",
        }];
        if with_fio {
            rows.push(Row {
                what: fio_name.into(),
                value: median(fio_bw),
                unit: "MiB/s",
            });
        }
        let a = rows[0].what.clone();
        print_rows(
            &format!("flush of {} MiB, {depth} writes in flight", size >> 20),
            &rows,
            with_fio.then_some((a.as_str(), fio_name, 0.9)),
            args,
        );
    }
    Ok(())
}

/// Runs `folio bench io`.
pub fn run(args: &IoArgs) -> Result<(), BoxError> {
    if args.runs == 0 {
        return Err("--runs must be positive".into());
    }
    let with_fio = args.compare == Compare::Fio && {
        let ok = fio_available();
        if !ok {
            eprintln!("folio: fio is not installed; running Folio only");
        }
        ok
    };
    let image = Image::prepare(args.image.as_deref(), args.size, args.json)?;
    let all = args.scenario == Scenario::All;
    let mut rows = Vec::new();
    if all || args.scenario == Scenario::SeqRead {
        seq_read(&image, args, with_fio, &mut rows)?;
    }
    if all || args.scenario == Scenario::RandRead {
        rand_read(&image, args, with_fio, &mut rows)?;
    }
    if all || args.scenario == Scenario::Flush {
        flush(&image, args, with_fio, &mut rows)?;
    }
    if let Some(dir) = record::results_dir(args.results.as_deref()) {
        let params = serde_json::json!({
            "scenario": format!("{:?}", args.scenario).to_lowercase(),
            "runs": args.runs,
            "image_bytes": image.len()?,
            "budget_bytes": args.budget,
            "readahead_max_bytes": args.readahead_max,
            "queue_depth": args.queue_depth,
            "outstanding": args.outstanding,
            "batch_reads": args.batch_reads,
            "threads": args.threads,
            "ops": args.ops,
            "flush_bytes": args.flush_size,
            "flush_depths": args.flush_depths,
            "direct": !args.buffered,
            "backend": format!("{:?}", args.backend).to_lowercase(),
            "baselines": with_fio,
            "smoke": args.smoke,
        });
        record::append(&dir, "io", params, &rows)?;
    }
    Ok(())
}
