//! Miss ratios on the real CloudPhysics trace against libCacheSim 0.3.5's reference table
//! (`shared/traces/README.md`).

use std::path::PathBuf;
use std::sync::OnceLock;

use folio::sim::{self, CacheSize, TraceFormat};
use folio::{PageKey, PolicyKind};

/// Cache sizes of the reference table: 1/5/10/20/50% of 269,210 distinct pages.
const SIZES: [usize; 5] = [2692, 13460, 26921, 53842, 134605];

const LRU: [f64; 5] = [0.8969, 0.8871, 0.8741, 0.8129, 0.4733];
const FIFO: [f64; 5] = [0.8977, 0.8873, 0.8729, 0.8109, 0.4570];
const CLOCK: [f64; 5] = [0.8970, 0.8868, 0.8729, 0.8021, 0.4985];
const S3FIFO: [f64; 5] = [0.8938, 0.8662, 0.8192, 0.7298, 0.4603];
const SIEVE: [f64; 5] = [0.9032, 0.8653, 0.8329, 0.7457, 0.4446];
/// Best row other than Belady's at each size (S3-FIFO, W-TinyLFU, W-TinyLFU, S3-FIFO, W-TinyLFU).
const BEST: [f64; 5] = [0.8938, 0.8630, 0.8175, 0.7298, 0.4384];

fn shared_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    assert!(
        dir.join("traces/cloudphysics").is_dir(),
        "the shared traces are missing: expected {} (the repository is cloned next to `shared/`)",
        dir.display()
    );
    dir
}

fn trace() -> &'static [PageKey] {
    static TRACE: OnceLock<Vec<PageKey>> = OnceLock::new();
    TRACE.get_or_init(|| {
        let path = shared_dir().join("traces/cloudphysics/cloudPhysicsIO.csv");
        sim::read_pages(&path, TraceFormat::Csv, 4096).expect("reference trace parses")
    })
}

fn miss_ratios(kind: PolicyKind) -> [f64; 5] {
    SIZES.map(|size| sim::simulate_kind(kind, size, trace()).miss_ratio())
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn assert_exact(kind: PolicyKind, reference: [f64; 5]) {
    let got = miss_ratios(kind);
    for i in 0..5 {
        assert_eq!(
            round4(got[i]),
            reference[i],
            "{kind} at {} pages: {:.6} vs reference {:.4}",
            SIZES[i],
            got[i],
            reference[i]
        );
    }
}

fn assert_close(kind: PolicyKind, reference: [f64; 5], tolerance: f64) {
    let got = miss_ratios(kind);
    for i in 0..5 {
        assert!(
            (got[i] - reference[i]).abs() <= tolerance,
            "{kind} at {} pages: {:.4} vs reference {:.4} (tolerance {tolerance})",
            SIZES[i],
            got[i],
            reference[i]
        );
    }
}

#[test]
fn trace_shape_matches_readme() {
    let t = trace();
    assert_eq!(t.len(), 1_141_869);
    let distinct = sim::distinct_pages(t);
    assert_eq!(distinct, 269_210);
    let pct = [1.0, 5.0, 10.0, 20.0, 50.0].map(|p| CacheSize::Percent(p).resolve(distinct));
    assert_eq!(pct, SIZES);
}

#[test]
fn other_layouts_give_the_same_pages() {
    let dir = shared_dir().join("traces/cloudphysics");
    let vscsi = sim::read_pages(&dir.join("cloudPhysicsIO.vscsi"), TraceFormat::Vscsi, 4096)
        .expect("vscsi parses");
    assert_eq!(vscsi, trace());
    let og = sim::read_pages(
        &dir.join("cloudPhysicsIO.oracleGeneral.bin"),
        TraceFormat::OracleGeneral,
        4096,
    )
    .expect("oracleGeneral parses");
    assert_eq!(og.len(), 113_872);
}

#[test]
fn lru_reproduces_reference() {
    assert_exact(PolicyKind::Lru, LRU);
}

#[test]
fn fifo_reproduces_reference() {
    assert_exact(PolicyKind::Fifo, FIFO);
}

#[test]
fn clock_reproduces_reference() {
    assert_exact(PolicyKind::Clock, CLOCK);
}

#[test]
fn s3fifo_close_to_reference() {
    assert_close(PolicyKind::S3Fifo, S3FIFO, 0.005);
}

#[test]
fn sieve_close_to_reference() {
    assert_close(PolicyKind::Sieve, SIEVE, 0.005);
}

#[test]
fn default_beats_lru_and_is_near_the_best() {
    let kind = PolicyKind::default();
    let got = miss_ratios(kind);
    for i in 0..5 {
        assert!(
            got[i] < LRU[i],
            "default {kind} at {} pages: {:.4} does not beat LRU {:.4}",
            SIZES[i],
            got[i],
            LRU[i]
        );
        assert!(
            got[i] <= BEST[i] + 0.01,
            "default {kind} at {} pages: {:.4} is not within 0.01 of the best row {:.4}",
            SIZES[i],
            got[i],
            BEST[i]
        );
    }
}

/// `cargo test -p folio --test reference_traces -- --ignored --nocapture table` prints every
/// policy's row.
#[test]
#[ignore]
fn table() {
    for &kind in PolicyKind::ALL {
        let r = miss_ratios(kind);
        println!(
            "{:8} {:.4} {:.4} {:.4} {:.4} {:.4}",
            kind.name(),
            r[0],
            r[1],
            r[2],
            r[3],
            r[4]
        );
    }
}
