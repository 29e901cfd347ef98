//! What every scenario of `folio bench io` shares: running fio, opening the cache under test,
//! medians, the results-file rows and the printed report.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use folio::{CacheConfig, FileBackend, IoMode, PageCache, PageCacheBackend, UringBackend};

use super::{BackendChoice, IoArgs};
use crate::bench::{record, BoxError};

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(super) fn fio_available() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs fio with `args` on `path` (io_uring, O_DIRECT unless `args` say otherwise) and returns
/// (bytes/s, IOPS) of the `rw` side ("read"/"write"), over all jobs.
pub(super) fn fio(path: &Path, args: &[&str], rw: &str) -> Result<(f64, f64), BoxError> {
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

pub(super) struct Opened {
    pub(super) backend: Arc<dyn PageCacheBackend>,
    pub(super) name: &'static str,
}

pub(super) fn open_backend(path: &Path, args: &IoArgs) -> Result<Opened, BoxError> {
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

pub(super) fn cache(
    path: &Path,
    args: &IoArgs,
    budget: u64,
) -> Result<(PageCache, &'static str), BoxError> {
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
pub(super) fn rec(
    workload: &str,
    contender: &str,
    unit: &'static str,
    runs: &[f64],
) -> record::Row {
    record::Row::new(workload, contender, unit, runs.to_vec())
}

/// One line of the report.
pub(super) struct Row {
    pub(super) what: String,
    pub(super) value: f64,
    pub(super) unit: &'static str,
}

pub(super) fn print_rows(
    scenario: &str,
    rows: &[Row],
    target: Option<(&str, &str, f64)>,
    args: &IoArgs,
) {
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
