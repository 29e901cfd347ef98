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
//! One file per scenario (`seq_read.rs`, `rand_read.rs`, `flush.rs`), and what they share
//! (fio, the cache under test, the report) in `harness.rs`; this file holds the arguments and
//! runs the scenarios asked for.

mod flush;
mod harness;
mod rand_read;
mod seq_read;

use clap::ValueEnum;

use super::{record, BoxError, Image};
use crate::units::parse_size;
use harness::fio_available;

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
        seq_read::seq_read(&image, args, with_fio, &mut rows)?;
    }
    if all || args.scenario == Scenario::RandRead {
        rand_read::rand_read(&image, args, with_fio, &mut rows)?;
    }
    if all || args.scenario == Scenario::Flush {
        flush::flush(&image, args, with_fio, &mut rows)?;
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
