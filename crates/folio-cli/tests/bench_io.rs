//! `folio bench io` runs every scenario end to end (tiny sizes, Folio only), prints JSON and
//! appends one results line with every run.

use std::process::Command;

#[test]
fn bench_io_runs_every_scenario_and_prints_json() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("bench.img");
    let results = dir.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["bench", "io", "--compare", "none", "--runs", "2", "--json"])
        .args(["--size", "8MiB", "--ops", "500", "--threads", "4"])
        .args([
            "--flush-size",
            "2MiB",
            "--budget",
            "4MiB",
            "--flush-depths",
            "1,8",
        ])
        .arg("--image")
        .arg(&image)
        .arg("--results")
        .arg(&results)
        .arg("--smoke")
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
    // seq-read, rand-read, and the flush at each depth.
    assert_eq!(lines.len(), 4, "{stdout}");
    let rand = &lines[1];
    assert_eq!(rand["scenario"], "rand-read");
    let ratio = rand["device bytes / bytes returned"].as_f64().unwrap();
    assert!(ratio < 1.05, "random reads read ahead: {ratio}");
    assert!(lines[2]["scenario"]
        .as_str()
        .unwrap()
        .contains("1 writes in flight"));
    assert!(lines[3]["scenario"]
        .as_str()
        .unwrap()
        .contains("8 writes in flight"));

    // One results line for the invocation, with every run of every row.
    let text = std::fs::read_to_string(results.join("io.jsonl")).unwrap();
    let recorded: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recorded.len(), 1, "{text}");
    let line = &recorded[0];
    assert_eq!(line["bench"], "io");
    assert_eq!(line["params"]["smoke"], true);
    for key in ["commit", "date"] {
        assert!(!line[key].as_str().unwrap().is_empty(), "{key}: {line}");
    }
    assert!(line["machine"]["cores"].as_u64().unwrap() >= 1);
    let workloads: Vec<&str> = line["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["contender"], "folio", "Folio only: {r}");
            assert_eq!(r["runs"].as_array().unwrap().len(), 2, "every run: {r}");
            r["workload"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        workloads,
        [
            "seq-read 4KiB reads, 1 thread",
            "rand-read 4KiB, 1 thread, 32 in flight",
            "rand-read 4KiB, 4 threads blocking",
            "flush 2MiB, 1 in flight",
            "flush 2MiB, 8 in flight",
        ]
    );
}
