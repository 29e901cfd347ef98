//! The results file of the benchmarks: each invocation appends one JSON line, with every run of
//! every contender, to `<dir>/<bench>.jsonl` (schema: `bench/README.md`).
//!
//! Owns: where results go (`--results`), the line's provenance (commit, date, machine) and its
//! writing. Does not own: what a benchmark measures (its rows) nor the verdicts
//! (`bench/report.py` reads the files). Blocks only on the append and on `git`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::BoxError;

/// One contender's runs in one workload of an invocation.
pub struct Row {
    /// What was measured, e.g. `rand-read-4k qd32 1thread`.
    pub workload: String,
    /// Who: `folio`, `fio`, `pread`, ...
    pub contender: String,
    /// `IOPS`, `MiB/s`, `ops/s`, ...
    pub unit: &'static str,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// Every run's value, in run order.
    pub runs: Vec<f64>,
    /// Free-form details (latencies, CPU time, misses, ...).
    pub extra: Value,
}

impl Row {
    /// A row of `runs` in `unit`, higher is better, no extra.
    pub fn new(workload: &str, contender: &str, unit: &'static str, runs: Vec<f64>) -> Row {
        Row {
            workload: workload.to_string(),
            contender: contender.to_string(),
            unit,
            higher_is_better: true,
            runs,
            extra: json!({}),
        }
    }

    /// The same row with `extra`.
    pub fn extra(mut self, extra: Value) -> Row {
        self.extra = extra;
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "workload": self.workload,
            "contender": self.contender,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "runs": self.runs,
            "extra": self.extra,
        })
    }
}

/// Where an invocation's results line goes: `--results DIR`, `--results none`, or by default
/// `bench/results` when the current directory is the repository's root (it has
/// `bench/targets.toml`), else nowhere.
pub fn results_dir(arg: Option<&str>) -> Option<PathBuf> {
    match arg {
        Some("none") => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Path::new("bench/targets.toml")
            .exists()
            .then(|| PathBuf::from("bench/results")),
    }
}

/// The line for an invocation of `bench` with `params` and `rows`, with its provenance.
pub fn line(bench: &str, params: Value, rows: &[Row]) -> Value {
    json!({
        "bench": bench,
        "commit": commit(),
        "date": rfc3339_now(),
        "machine": machine(),
        "params": params,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    })
}

/// Appends one line for an invocation of `bench` with `params` and `rows` to
/// `<dir>/<bench>.jsonl`, and says where on stderr.
pub fn append(dir: &Path, bench: &str, params: Value, rows: &[Row]) -> Result<(), BoxError> {
    append_line(dir, bench, &line(bench, params, rows))
}

/// Appends `line` (made by [`line()`]) to `<dir>/<bench>.jsonl`, and says where on stderr.
pub fn append_line(dir: &Path, bench: &str, line: &Value) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{bench}.jsonl"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    // One write of the whole line: concurrent appenders never interleave within it.
    f.write_all(format!("{line}\n").as_bytes())?;
    eprintln!("folio: results appended to {}", path.display());
    Ok(())
}

/// The commit of the working tree (`git rev-parse HEAD`, with `-dirty` when it has uncommitted
/// changes other than the results files and their generated tables), `FOLIO_COMMIT` if set,
/// or `unknown`.
fn commit() -> String {
    if let Ok(c) = std::env::var("FOLIO_COMMIT") {
        return c;
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(sha) => {
            // The results files and the tables generated from them change during a round of
            // measurements; they are not the code being measured.
            let dirty = git(&[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)bench/results",
                ":(exclude)README.md",
                ":(exclude)docs/benchmarks.md",
            ])
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{sha}-dirty")
            } else {
                sha
            }
        }
        None => "unknown".into(),
    }
}

/// CPU model, cores and kernel of this machine.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    json!({ "cpu": cpu, "cores": cores, "kernel": kernel })
}

/// Now, in UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `secs` since the Unix epoch as an RFC 3339 UTC date (days to civil date: Howard Hinnant's
/// algorithm).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `folio bench record`: appends a line built by a script (e.g. `scripts/bench-writeback.sh`)
/// from `{"params": {...}, "rows": [...]}` on stdin, adding the provenance.
pub fn record_from_stdin(bench: &str, dir: Option<&str>) -> Result<(), BoxError> {
    let Some(dir) = results_dir(dir) else {
        return Err(
            "no results directory (run from the repository's root or pass --results DIR)".into(),
        );
    };
    let input: Value = serde_json::from_reader(std::io::stdin())?;
    let rows = input["rows"]
        .as_array()
        .ok_or("stdin: no \"rows\" array")?
        .iter()
        .map(|r| -> Result<Row, BoxError> {
            let text = |k: &str| {
                r[k].as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("a row has no \"{k}\""))
            };
            let unit: &'static str = match r["unit"].as_str() {
                Some("IOPS") => "IOPS",
                Some("MiB/s") => "MiB/s",
                Some("ops/s") => "ops/s",
                Some(other) => return Err(format!("unknown unit {other}").into()),
                None => return Err("a row has no \"unit\"".into()),
            };
            let runs = r["runs"]
                .as_array()
                .ok_or("a row has no \"runs\"")?
                .iter()
                .map(|v| v.as_f64().ok_or("a run is not a number"))
                .collect::<Result<Vec<f64>, _>>()?;
            Ok(Row {
                workload: text("workload")?,
                contender: text("contender")?,
                unit,
                higher_is_better: r["higher_is_better"].as_bool().unwrap_or(true),
                runs,
                extra: r.get("extra").cloned().unwrap_or_else(|| json!({})),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    append(&dir, bench, input["params"].clone(), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
