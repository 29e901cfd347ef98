//! Raw benchmark results as JSON lines (`bench/results/*.jsonl`): one object per invocation with
//! the commit, the machine, the date, the parameters and every run of every contender.
//!
//! Owns: the line's envelope (the schema shared by every benchmark) and appending it. Does not
//! own: what a benchmark measures, or the tables made from these files. May block: on the
//! file and on `git rev-parse`.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

/// One row: a workload and a contender, with every run's value.
pub struct Row {
    /// e.g. `rand-read-4k-cold qd16 1conn`.
    pub workload: String,
    /// e.g. `folio`, `qemu-nbd`.
    pub contender: String,
    /// `IOPS`, `MiB/s`, ...
    pub unit: &'static str,
    /// Whether more is better.
    pub higher_is_better: bool,
    /// Every run's value.
    pub runs: Vec<f64>,
    /// Optional per-run details (e.g. `cpu_s_per_mreq`).
    pub extra: Value,
}

/// The current commit, or `unknown` outside a git checkout.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
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
    json!({"cpu": cpu, "cores": cores, "kernel": kernel})
}

/// Now, as RFC 3339 in UTC (civil date from the Unix day count, Howard Hinnant's algorithm).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The line for one invocation.
pub fn line(bench: &str, params: Value, rows: &[Row]) -> Value {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "workload": r.workload, "contender": r.contender, "unit": r.unit,
                "higher_is_better": r.higher_is_better, "runs": r.runs, "extra": r.extra,
            })
        })
        .collect();
    json!({
        "bench": bench, "commit": commit(), "date": now_rfc3339(), "machine": machine(),
        "params": params, "rows": rows,
    })
}

/// Appends `line` to `path` (creating it and its folder).
pub fn append(path: &Path, line: &Value) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc3339() {
        let d = super::now_rfc3339();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'), "{d}");
    }
}
