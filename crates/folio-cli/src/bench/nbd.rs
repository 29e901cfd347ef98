//! `folio bench nbd`: fio's nbd engine against `folio serve`, `qemu-nbd` and `nbdkit` on the
//! same image: random 4 KiB reads cold and warm, random 4 KiB writes, 1 MiB sequential reads
//! (cold and warm) and writes, queue depth 16, one and four connections. Reports IOPS (4 KiB)
//! or MiB/s (1 MiB) and the server's CPU seconds per million requests, and appends every run to
//! a results file (`bench/results/nbd.jsonl`).
//!
//! Cold means cold: the server is started fresh, the OS page cache is dropped first (the run
//! fails if it cannot be, e.g. without root; `--allow-warm-os-cache` says so in the results
//! instead), and a cold cell reads each byte of its region once (fio's random map, no time
//! limit). Warm cells follow a full sequential read of the image through the same server.
//!
//! Owns: the workloads, their order, and the results. Does not own: the servers' command lines
//! (`nbd_servers.rs`) or the results envelope (`record.rs`). May block: for as long as the runs
//! take (bounded by `--runtime` per time-based cell and by the image size per cold cell).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::nbd_servers::{Contender, Running};
use super::record::{append_line, line, results_dir, Row};
use super::{BoxError, Image};
use crate::units::parse_size;

/// Arguments of `folio bench nbd`.
#[derive(clap::Args, Debug, Clone)]
pub struct NbdArgs {
    /// Image to serve (created with --size bytes of random data if missing; default: a
    /// temporary one).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Size of a created image.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub size: u64,
    /// Memory budget of the servers that have one (folio's page cache, nbdkit's cache filter).
    /// Default: the image size, so warm cells are served from memory.
    #[arg(long, value_parser = parse_size)]
    pub budget: Option<u64>,
    /// Seconds each time-based cell (warm reads, writes) runs.
    #[arg(long, default_value_t = 8)]
    pub runtime: u64,
    /// Bytes each cold cell reads (each once), from the start of the image. Default: the image.
    #[arg(long, value_parser = parse_size)]
    pub cold_bytes: Option<u64>,
    /// Runs of every cell per contender in this invocation.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Contenders, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',',
          default_values_t = [Contender::Folio, Contender::QemuNbd, Contender::Nbdkit, Contender::NbdkitCache])]
    pub contenders: Vec<Contender>,
    /// Connection counts, comma-separated (fio jobs, one connection each).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4])]
    pub conns: Vec<usize>,
    /// Only the workloads whose names contain one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Queue depth per connection.
    #[arg(long, default_value_t = 16)]
    pub iodepth: usize,
    /// Where the invocation's results line goes: a directory (`<dir>/nbd.jsonl`), or `none`.
    /// Default: `bench/results` when run from the repository's root, else nowhere.
    #[arg(long)]
    pub results: Option<String>,
    /// Run cold cells without dropping the OS page cache (recorded in the results' params);
    /// without this flag, failing to drop it is an error.
    #[arg(long)]
    pub allow_warm_os_cache: bool,
    /// Print one JSON object (the results line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A workload.
#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    rw: &'static str,
    bs: u64,
    cold: bool,
}

/// In the order they run on one server start (after the cold random-read cell, which has a
/// server start of its own): the cold sequential read is also the warm-up pass.
const SECOND_START: [Workload; 5] = [
    Workload {
        name: "seq-read-1m-cold",
        rw: "read",
        bs: 1 << 20,
        cold: true,
    },
    Workload {
        name: "rand-read-4k-warm",
        rw: "randread",
        bs: 4096,
        cold: false,
    },
    Workload {
        name: "seq-read-1m-warm",
        rw: "read",
        bs: 1 << 20,
        cold: false,
    },
    Workload {
        name: "rand-write-4k",
        rw: "randwrite",
        bs: 4096,
        cold: false,
    },
    Workload {
        name: "seq-write-1m",
        rw: "write",
        bs: 1 << 20,
        cold: false,
    },
];
const FIRST_START: Workload = Workload {
    name: "rand-read-4k-cold",
    rw: "randread",
    bs: 4096,
    cold: true,
};

/// One fio result: IOPS, MiB/s, requests completed.
struct FioOut {
    iops: f64,
    mib_s: f64,
    ios: f64,
}

fn fio(
    uri: &str,
    w: &Workload,
    conns: usize,
    args: &NbdArgs,
    size: u64,
    cold_bytes: u64,
) -> Result<FioOut, BoxError> {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=nbd",
        "--ioengine=nbd",
        "--group_reporting",
        "--output-format=json",
    ])
    .arg(format!("--uri={uri}"))
    .arg(format!("--rw={}", w.rw))
    .arg(format!("--bs={}", w.bs))
    .arg(format!("--iodepth={}", args.iodepth))
    .arg(format!("--numjobs={conns}"));
    if w.cold {
        // Each job reads its share of the region once (fio's random map for random reads).
        let share = (cold_bytes / conns as u64) / w.bs * w.bs;
        cmd.arg(format!("--size={share}"))
            .arg(format!("--offset_increment={share}"));
    } else {
        cmd.arg(format!("--size={size}"))
            .args(["--time_based", "--randrepeat=0"])
            .arg(format!("--runtime={}", args.runtime));
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // fio may print notes before the JSON object.
    let start = text.find('{').ok_or("no JSON from fio")?;
    let j: Value = serde_json::from_str(&text[start..])?;
    let side = if w.rw.contains("write") {
        "write"
    } else {
        "read"
    };
    let s = &j["jobs"][0][side];
    Ok(FioOut {
        iops: s["iops"].as_f64().unwrap_or(0.0),
        mib_s: s["bw"].as_f64().unwrap_or(0.0) / 1024.0,
        ios: s["total_ios"].as_f64().unwrap_or(0.0),
    })
}

/// Writes back dirty data and empties the OS page cache, or fails.
fn drop_os_cache(args: &NbdArgs) -> Result<(), BoxError> {
    let _ = Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3") {
        Ok(()) => Ok(()),
        Err(_) if args.allow_warm_os_cache => Ok(()),
        Err(e) => Err(format!(
            "cannot drop the OS page cache ({e}): cold cells would not be cold; run as root, \
             or pass --allow-warm-os-cache (recorded in the results)"
        )
        .into()),
    }
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A measured cell.
struct Cell {
    workload: String,
    contender: Contender,
    value: f64,
    cpu_s_per_mreq: f64,
    unit: &'static str,
}

fn measure(
    server: &Running,
    w: &Workload,
    conns: usize,
    args: &NbdArgs,
    size: u64,
    cold_bytes: u64,
) -> Result<(f64, f64), BoxError> {
    let cpu0 = server.cpu_seconds()?;
    let r = fio(&server.uri, w, conns, args, size, cold_bytes)?;
    let cpu = server.cpu_seconds()? - cpu0;
    let value = if w.bs >= 1 << 20 { r.mib_s } else { r.iops };
    Ok((value, cpu / (r.ios.max(1.0) / 1e6)))
}

fn warm_pass(uri: &str, size: u64) -> Result<(), BoxError> {
    let st = Command::new("fio")
        .args([
            "--name=warm",
            "--ioengine=nbd",
            "--rw=read",
            "--bs=1M",
            "--iodepth=8",
        ])
        .arg(format!("--uri={uri}"))
        .arg(format!("--size={size}"))
        .arg("--output=/dev/null")
        .status()?;
    if !st.success() {
        return Err("fio warm-up pass failed".into());
    }
    Ok(())
}

/// One contender at one connection count: two server starts, every workload.
fn run_contender(
    c: Contender,
    conns: usize,
    image: &Path,
    args: &NbdArgs,
    budget: u64,
    log: &Path,
    cells: &mut Vec<Cell>,
) -> Result<(), BoxError> {
    let size = std::fs::metadata(image)?.len();
    let cold_bytes = args.cold_bytes.unwrap_or(size).min(size);
    let wanted = |w: &Workload| {
        args.only.is_empty() || args.only.iter().any(|o| w.name.contains(o.as_str()))
    };
    let mut record = |w: &Workload, (value, cpu): (f64, f64)| {
        let unit = if w.bs >= 1 << 20 { "MiB/s" } else { "IOPS" };
        eprintln!(
            "  {:<10} {:<22} {conns} conn: {value:>10.0} {unit}, {cpu:.2} CPU s / M req",
            c.name(),
            w.name
        );
        cells.push(Cell {
            workload: format!("{} qd{} {conns}conn", w.name, args.iodepth),
            contender: c,
            value,
            cpu_s_per_mreq: cpu,
            unit,
        });
    };
    if wanted(&FIRST_START) {
        drop_os_cache(args)?;
        let s = Running::start(c, image, free_port()?, budget, log)?;
        record(
            &FIRST_START,
            measure(&s, &FIRST_START, conns, args, size, cold_bytes)?,
        );
        s.stop()?;
    }
    if SECOND_START.iter().any(wanted) {
        drop_os_cache(args)?;
        let s = Running::start(c, image, free_port()?, budget, log)?;
        // Bounded: five workloads.
        let mut warm = false;
        for w in SECOND_START.iter().filter(|w| wanted(w)) {
            if !w.cold && !warm {
                warm_pass(&s.uri, size)?;
                warm = true;
            }
            record(w, measure(&s, w, conns, args, size, cold_bytes)?);
            // A cold read of the whole image is also a full warm-up pass.
            warm |= w.cold && cold_bytes >= size;
        }
        s.stop()?;
    }
    Ok(())
}

/// Runs the benchmark.
pub fn run(args: &NbdArgs) -> Result<(), BoxError> {
    for bin in ["fio"] {
        if Command::new(bin).arg("--version").output().is_err() {
            return Err(format!("{bin} is not installed").into());
        }
    }
    let engines = Command::new("fio").arg("--enghelp").output()?;
    if !String::from_utf8_lossy(&engines.stdout).contains("nbd") {
        return Err("this fio has no nbd engine".into());
    }
    for c in &args.contenders {
        c.check()?;
    }
    let image = Image::prepare(args.image.as_deref(), args.size, args.json)?;
    let size = image.len()?;
    let budget = args.budget.unwrap_or(size);
    let logdir = tempfile::Builder::new()
        .prefix("folio-bench-nbd")
        .tempdir()?;
    for c in &args.contenders {
        if let Some(f) = c.nbdkit_filters(budget) {
            eprintln!("{}: nbdkit filters: {f}", c.name());
        }
    }
    let mut cells = Vec::new();
    for run in 0..args.runs.max(1) {
        for &conns in &args.conns {
            for &c in &args.contenders {
                eprintln!(
                    "run {} of {}: {} with {conns} connection(s)",
                    run + 1,
                    args.runs,
                    c.name()
                );
                let log = logdir.path().join(format!("{}.log", c.name()));
                run_contender(c, conns, image.path(), args, budget, &log, &mut cells)?;
            }
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for cell in &cells {
        match rows
            .iter_mut()
            .find(|r| r.workload == cell.workload && r.contender == cell.contender.name())
        {
            Some(r) => {
                r.runs.push(cell.value);
                r.extra["cpu_s_per_mreq"]
                    .as_array_mut()
                    .expect("made below")
                    .push(json!(cell.cpu_s_per_mreq));
            }
            None => rows.push(Row {
                workload: cell.workload.clone(),
                contender: cell.contender.name().into(),
                unit: cell.unit,
                higher_is_better: true,
                runs: vec![cell.value],
                extra: json!({"cpu_s_per_mreq": [cell.cpu_s_per_mreq]}),
            }),
        }
    }
    let filters: Vec<Value> = args
        .contenders
        .iter()
        .filter_map(|c| c.nbdkit_filters(budget).map(|f| json!({c.name(): f})))
        .collect();
    let params = json!({
        "image_bytes": size, "budget_bytes": budget, "runtime_s": args.runtime,
        "cold_bytes": args.cold_bytes.unwrap_or(size).min(size), "iodepth": args.iodepth,
        "runs": args.runs, "os_cache_dropped": !args.allow_warm_os_cache,
        "nbdkit_filters": filters,
        "qemu_nbd": "--cache=writeback --aio=io_uring", "folio": "O_DIRECT, io_uring",
    });
    let l = line("nbd", params, &rows);
    if let Some(dir) = results_dir(args.results.as_deref()) {
        append_line(&dir, "nbd", &l)?;
    }
    if args.json {
        println!("{l}");
    } else {
        print_table(&rows);
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_table(rows: &[Row]) {
    let mut workloads: Vec<&str> = Vec::new();
    for r in rows {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    println!(
        "{:<32} {:>12} {:>12} {:>12} {:>12}  {:>8} {:>8}",
        "workload (median of runs)",
        "folio",
        "qemu-nbd",
        "nbdkit",
        "nbdkit-cache",
        "÷qemu",
        "÷nbdkit"
    );
    for w in workloads {
        let get = |c: &str| {
            rows.iter()
                .find(|r| r.workload == w && r.contender == c)
                .map(|r| median(&r.runs))
        };
        let f = get("folio");
        let q = get("qemu-nbd");
        let best_kit = match (get("nbdkit"), get("nbdkit-cache")) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        println!(
            "{:<32} {:>12} {:>12} {:>12} {:>12}  {:>8} {:>8}",
            w,
            cell(f),
            cell(q),
            cell(get("nbdkit")),
            cell(get("nbdkit-cache")),
            ratio(f, q),
            ratio(f, best_kit)
        );
    }
}
