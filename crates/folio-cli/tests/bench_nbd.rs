//! `folio bench nbd` end to end, small: folio and nbdkit on a 16 MiB image, one connection, the
//! cold cells and one warm cell of one second, and the results line it appends. A plumbing check (bounded to a
//! few seconds), not a measurement: it passes `--allow-warm-os-cache` so that it also runs
//! without root, which the results then record.

use std::process::Command;

#[test]
fn bench_nbd_runs_every_workload_and_appends_one_results_line() {
    for bin in ["fio", "nbdkit"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var_os("FOLIO_REQUIRE_ALL").is_none_or(|v| v != "1"),
                "`{bin}` is not installed and FOLIO_REQUIRE_ALL=1"
            );
            eprintln!("SKIPPED: `{bin}` is not installed");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let results_dir = dir.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "bench",
            "nbd",
            "--size",
            "16MiB",
            "--runtime",
            "1",
            "--cold-bytes",
            "4MiB",
        ])
        .args([
            "--conns",
            "1",
            "--contenders",
            "folio,nbdkit",
            "--allow-warm-os-cache",
        ])
        .args(["--only", "cold,rand-read-4k-warm"])
        .arg("--image")
        .arg(dir.path().join("img.raw"))
        .arg("--results")
        .arg(&results_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("nbdkit: nbdkit filters: none"), "{stderr}");
    let text = std::fs::read_to_string(results_dir.join("nbd.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1);
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["bench"], "nbd");
    assert_eq!(line["params"]["os_cache_dropped"], false);
    let rows = line["rows"].as_array().unwrap();
    // Both cold reads and the warm random read (after its warm-up pass), for each contender.
    assert_eq!(rows.len(), 6, "{line}");
    for r in rows {
        let v = r["runs"][0].as_f64().unwrap();
        assert!(v > 0.0, "{r}");
        assert!(
            r["extra"]["cpu_s_per_mreq"][0].as_f64().unwrap() >= 0.0,
            "{r}"
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("rand-read-4k-cold qd16 1conn"), "{table}");
}
