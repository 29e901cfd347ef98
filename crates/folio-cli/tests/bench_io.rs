//! `folio bench io` runs every scenario end to end (tiny sizes, Folio only) and prints JSON.

use std::process::Command;

#[test]
fn bench_io_runs_every_scenario_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bench.img");
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["bench", "io", "--compare", "none", "--runs", "1", "--json"])
        .args(["--size", "8MiB", "--ops", "500", "--threads", "4"])
        .args(["--flush-size", "2MiB", "--budget", "4MiB"])
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    let rand = &lines[1];
    assert_eq!(rand["scenario"], "rand-read");
    let ratio = rand["device bytes / bytes returned"].as_f64().unwrap();
    assert!(ratio < 1.05, "random reads read ahead: {ratio}");
}
