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
