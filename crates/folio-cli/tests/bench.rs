//! `folio bench` end to end: the real binary on a real (small) image.

use std::process::Command;

fn folio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_folio"))
}

#[test]
fn bench_json_reports_the_promised_fields() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("b.img");
    let out = folio()
        .args([
            "bench",
            "--size",
            "8MiB",
            "--ops",
            "20000",
            "--threads",
            "2",
            "--json",
        ])
        .arg("--image")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "ops",
        "seconds",
        "ops_per_sec",
        "hit_ratio",
        "p50_us",
        "p99_us",
    ] {
        assert!(v[field].is_number(), "missing {field} in {v}");
    }
    assert_eq!(v["ops"], 20000);
    let hit = v["hit_ratio"].as_f64().unwrap();
    // Zipf over 2048 pages with a 25% budget: most accesses hit, not all.
    assert!(hit > 0.3 && hit < 1.0, "hit ratio {hit}");
    assert_eq!(std::fs::metadata(&image).unwrap().len(), 8 << 20);
}

#[test]
fn bench_rejects_bad_arguments_cleanly() {
    let out = folio()
        .args(["bench", "--read-ratio", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-ratio"));
    let out = folio()
        .args(["bench", "--policy", "nonsense", "--size", "1MiB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy"));
    let out = folio().args(["bench", "--size", "lots"]).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bench_hot_and_record_append_one_line_per_invocation() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let mut cmd = folio();
    cmd.args(["bench", "--hot", "--size", "2MiB", "--ops", "4000"])
        .args(["--runs", "2", "--threads", "2", "--policy", "s3fifo25"])
        .args(["--smoke", "--results"])
        .arg(&results)
        .arg("--image")
        .arg(dir.path().join("h.img"));
    let out = output_within(cmd, std::time::Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(results.join("hot.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["bench"], "hot");
    // The cache measured runs the policy asked for (its own name, not the argument echoed).
    assert_eq!(line["params"]["policy"], "s3fifo25");
    let rows = line["rows"].as_array().unwrap();
    let row = |workload: &str, contender: &str| {
        rows.iter()
            .find(|r| r["workload"] == workload && r["contender"] == contender)
            .unwrap_or_else(|| panic!("no {workload} / {contender} in {line}"))
    };
    for (w, c) in [
        ("hit 4KiB, 1 thread", "folio read_at"),
        ("hit 4KiB, 2 threads", "Mutex<LruCache> (the seed)"),
        ("hit 64B, 1 thread", "folio read_slices x16"),
        ("hit 4KiB read_at, scaling", "2 threads"),
    ] {
        assert_eq!(row(w, c)["runs"].as_array().unwrap().len(), 2);
    }
    // Every contender's misses are counted; Folio and the LRU hold the whole image, so none.
    for r in rows
        .iter()
        .filter(|r| r["contender"] != "1 thread" && r["contender"] != "2 threads")
    {
        let misses = &r["extra"]["misses_timed_all_thread_counts"];
        assert!(misses.is_u64(), "{r}");
        let c = r["contender"].as_str().unwrap();
        if c.starts_with("folio") || c.starts_with("Mutex") {
            assert_eq!(misses, 0, "{r}");
        }
    }

    // A script's line: the provenance is added.
    let mut child = folio()
        .args(["bench", "record", "--bench", "demo", "--results"])
        .arg(&results)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            br#"{"params": {"smoke": true}, "rows": [{"workload": "w", "contender": "folio",
                "unit": "IOPS", "runs": [1.0, 2.0]}]}"#,
        )
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(results.join("demo.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["bench"], "demo");
    assert_eq!(line["rows"][0]["runs"], serde_json::json!([1.0, 2.0]));
    assert!(line["machine"]["kernel"].is_string() && line["date"].is_string());
}

/// Runs `cmd` to completion, killing it (and failing) if it takes longer than `max`: a hung
/// benchmark fails the test instead of stalling the suite.
fn output_within(mut cmd: Command, max: std::time::Duration) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    // Drain the pipes on threads, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).map(|_| v)
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut v).map(|_| v)
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > max {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{cmd:?} did not finish within {max:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}
