//! Runs the built `folio` binary's `sim` command on the traces in `testdata/traces`.

use std::path::PathBuf;
use std::process::Command;

fn traces() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/traces")
}

fn trace_path() -> PathBuf {
    traces().join("cloudphysics/cloudPhysicsIO.csv.zst")
}

fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

#[test]
fn json_lru_at_one_percent_matches_reference() {
    let out = folio()
        .args([
            "sim",
            "--sizes",
            "1%",
            "--json",
            "--policy",
            "lru,default",
            "--trace",
        ])
        .arg(trace_path())
        .output()
        .expect("folio runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "folio sim failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let lru = lines
        .iter()
        .find(|v| v["policy"] == "lru")
        .expect("an lru line");
    assert_eq!(lru["cache_pages"], 2692);
    assert_eq!(lru["accesses"], 1_141_869);
    let ratio = lru["miss_ratio"].as_f64().unwrap();
    assert!((ratio - 0.8969).abs() < 0.00005, "lru miss ratio {ratio}");
    let misses = lru["misses"].as_u64().unwrap();
    assert!((misses as f64 / 1_141_869.0 - ratio).abs() < 1e-12);
}

#[test]
fn table_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("mrc.svg");
    let out = folio()
        .args([
            "sim",
            "--sizes",
            "2692,13460",
            "--policy",
            "lru,sieve,s3fifo",
            "--trace",
        ])
        .arg(trace_path())
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("folio runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("0.8969"), "{stdout}");
    assert!(
        stdout.contains("sieve") && stdout.contains("accesses/s"),
        "{stdout}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("miss ratio") && svg.contains("s3fifo"));
}

/// Each published layout, compressed as published, read by name (and `.trace` files by
/// content), split into the reference's number of accesses; one panel per trace in the plot.
#[test]
fn new_formats_compressed_and_one_panel_per_trace() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("mrc.svg");
    let t = traces();
    let files = [
        t.join("arc_oltp/OLTP.lis.zst"),
        t.join("cloudphysics_w106/w106.trace.xz"),
        t.join("lirs_multi3/multi3.trace.gz"),
    ];
    let list = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let out = folio()
        .args([
            "sim", "--sizes", "1%", "--json", "--policy", "lru", "--trace",
        ])
        .arg(&list)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("folio runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "folio sim failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // (accesses, distinct keys, LRU at 1% in the reference tables)
    let want = [
        (914_145u64, 186_880u64, 0.5837),
        (5_292_456, 275_171, 0.2021),
        (30_241, 7_454, 0.9486),
    ];
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, (accesses, distinct, lru)) in lines.iter().zip(want) {
        assert_eq!(line["accesses"], accesses, "{line}");
        assert_eq!(line["distinct_pages"], distinct, "{line}");
        let r = line["miss_ratio"].as_f64().unwrap();
        assert!((r - lru).abs() < 0.00005, "{line}");
    }
    let svg = std::fs::read_to_string(svg).unwrap();
    for name in ["OLTP.lis.zst", "w106.trace.xz", "multi3.trace.gz"] {
        assert!(svg.contains(name), "no panel for {name}");
    }
}

#[test]
fn corrupt_compressed_trace_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.lis.zst");
    std::fs::write(&bad, b"\x28\xb5\x2f\xfd garbage that is not a zstd frame").unwrap();
    assert_clean_error(&bad, "lis", &["cannot decompress", "broken.lis.zst"]);
}

fn assert_clean_error(file: &std::path::Path, format: &str, needles: &[&str]) {
    let out = folio()
        .args(["sim", "--format", format, "--sizes", "10", "--trace"])
        .arg(file)
        .output()
        .expect("folio runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad trace accepted");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "error lacks {n:?}: {stderr}");
    }
}

#[test]
fn malformed_and_truncated_traces_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "version,time,op,size,lbn\n1,1,28,4096,8\n1,2,28,oops,9\n",
    )
    .unwrap();
    assert_clean_error(&csv, "csv", &["record 2", "byte offset 39"]);

    // The real vscsi trace cut in the middle of its 101st record.
    let real = trace_path().with_file_name("cloudPhysicsIO.vscsi.zst");
    let bytes = folio::sim::Compression::Zstd
        .decode(std::fs::read(real).unwrap())
        .unwrap();
    let cut = dir.path().join("cut.vscsi");
    std::fs::write(&cut, &bytes[..100 * 32 + 13]).unwrap();
    assert_clean_error(
        &cut,
        "vscsi",
        &["truncated", "record 101", "byte offset 3200"],
    );

    let lines = dir.path().join("pages.txt");
    std::fs::write(&lines, "1\n2\n-3\n").unwrap();
    assert_clean_error(&lines, "lines", &["record 3", "byte offset 4"]);
}
