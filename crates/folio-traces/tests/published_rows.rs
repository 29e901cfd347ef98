//! Folio's own rows as the README prints them (four decimals, pinned here so that they cannot
//! drift from the code), the CloudPhysics trace's shape and layouts, and the default policy's
//! targets of issue 16 on all five traces: the cells where it is within 0.01 of libCacheSim's
//! best non-Belady row (and those where it is not, as the README says), and its mean miss ratio
//! below the mean of every classic policy's libCacheSim row.

mod traces;

use folio_o3::sim::{self, TraceFormat};
use folio_o3::PolicyKind;
use traces::{Trace, PERCENTS, TRACES};

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn row(kind: PolicyKind, trace: &Trace) -> [f64; 5] {
    let pages = trace.load();
    let sizes = Trace::sizes(sim::distinct_pages(&pages));
    sizes.map(|s| sim::simulate_kind(kind, s, &pages).miss_ratio())
}

fn assert_pinned(kind: PolicyKind, trace: &str, want: [f64; 5]) {
    let got = row(kind, Trace::by_name(trace));
    assert_eq!(
        got.map(round4),
        want,
        "{kind} on {trace}: {got:?} (the README prints {want:?})"
    );
}

/// The default policy's row on each trace, as the README prints it.
const DEFAULT_ROWS: [(&str, [f64; 5]); 5] = [
    ("cloudphysics", [0.8937, 0.8612, 0.8149, 0.7245, 0.4527]),
    ("arc_oltp", [0.5337, 0.3743, 0.3181, 0.2727, 0.2244]),
    ("arc_p6", [0.9426, 0.6574, 0.3504, 0.1581, 0.0777]),
    (
        "cloudphysics_w106",
        [0.1864, 0.1120, 0.0782, 0.0689, 0.0543],
    ),
    ("lirs_multi3", [0.8502, 0.6344, 0.5171, 0.4375, 0.2809]),
];

/// The fixed S3-FIFO with a 5% small queue, the default before the adaptive one, as the
/// README prints it: it missed 5 of the 25 cells.
const S3FIFO5_ROWS: [(&str, [f64; 5]); 5] = [
    ("cloudphysics", [0.8946, 0.8644, 0.8192, 0.7279, 0.4754]),
    ("arc_oltp", [0.5427, 0.3848, 0.3302, 0.2805, 0.2246]),
    ("arc_p6", [0.9403, 0.6925, 0.4398, 0.1569, 0.0782]),
    (
        "cloudphysics_w106",
        [0.1885, 0.1210, 0.0772, 0.0671, 0.0543],
    ),
    ("lirs_multi3", [0.8460, 0.6330, 0.5193, 0.4388, 0.2887]),
];

/// Cells (trace, size index) where the README says the default is NOT within 0.01 of the best
/// libCacheSim row: the target is missed there (none since frequency admission joined the
/// candidates; ARC P6 at 10% was missed before).
const MISSED: [(&str, usize); 0] = [];

#[test]
fn the_default_is_the_adaptive_s3fifo() {
    assert_eq!(PolicyKind::default(), PolicyKind::S3FifoAdaptive);
}

/// The adaptive default meets more cells than the fixed 5% share did, with a lower mean.
#[test]
fn the_default_beats_the_previous_default() {
    let (mut ours, mut theirs) = (0.0, 0.0);
    let (mut ours_met, mut theirs_met) = (0, 0);
    for ((name, row), (name5, row5)) in DEFAULT_ROWS.iter().zip(&S3FIFO5_ROWS) {
        assert_eq!(name, name5);
        let best = Trace::by_name(name).best();
        for i in 0..5 {
            ours += row[i] / 25.0;
            theirs += row5[i] / 25.0;
            ours_met += (row[i] <= best[i] + 0.01) as usize;
            theirs_met += (row5[i] <= best[i] + 0.01) as usize;
        }
    }
    assert_eq!((ours_met, theirs_met), (25, 20));
    assert!(ours < theirs, "mean {ours:.4} against {theirs:.4}");
}

#[test]
fn the_previous_default_s3fifo5_rows() {
    for (name, want) in S3FIFO5_ROWS {
        assert_pinned(PolicyKind::S3Fifo5, name, want);
    }
}

#[test]
fn default_rows_and_the_cells_within_001_of_the_best() {
    for (name, want) in DEFAULT_ROWS {
        let trace = Trace::by_name(name);
        let got = row(PolicyKind::default(), trace);
        assert_eq!(got.map(round4), want, "default on {name}: {got:?}");
        let best = trace.best();
        for i in 0..5 {
            let within = got[i] <= best[i] + 0.01;
            let claimed_missed = MISSED.contains(&(name, i));
            assert_eq!(
                within, !claimed_missed,
                "default on {name} at {}%: {:.4} against best {:.4}",
                PERCENTS[i], got[i], best[i]
            );
        }
    }
}

#[test]
fn default_mean_is_below_every_classic_policys_mean() {
    // Over every cell where the classic row is not degenerate (W-TinyLFU's 1% on multi3).
    let classics = [
        "LRU",
        "CLOCK",
        "ARC",
        "S3-FIFO",
        "SIEVE",
        "W-TinyLFU",
        "LIRS",
    ];
    let refs: Vec<_> = TRACES.iter().map(|t| t.reference()).collect();
    for classic in classics {
        let (mut ours, mut theirs, mut n) = (0.0, 0.0, 0);
        for (t, (name, row)) in DEFAULT_ROWS.iter().enumerate() {
            assert_eq!(TRACES[t].name, *name);
            for i in 0..5 {
                let r = refs[t][classic][i];
                if r >= 1.0 {
                    continue;
                }
                ours += row[i];
                theirs += r;
                n += 1;
            }
        }
        assert!(n >= 24);
        let (ours, theirs) = (ours / n as f64, theirs / n as f64);
        assert!(
            ours < theirs,
            "default mean {ours:.4} not below {classic}'s {theirs:.4} over {n} cells"
        );
    }
}

#[test]
fn cloudphysics_shape_and_layouts() {
    let t = Trace::by_name("cloudphysics");
    let pages = t.load();
    assert_eq!(pages.len(), 1_141_869);
    let distinct = sim::distinct_pages(&pages);
    assert_eq!(distinct, 269_210);
    assert_eq!(Trace::sizes(distinct), [2692, 13460, 26921, 53842, 134605]);
    let dir = traces::dir().join("cloudphysics");
    let vscsi = sim::read_pages(
        &dir.join("cloudPhysicsIO.vscsi.zst"),
        TraceFormat::Vscsi,
        4096,
    )
    .expect("vscsi parses");
    assert_eq!(vscsi, pages);
    let og = sim::read_pages(
        &dir.join("cloudPhysicsIO.oracleGeneral.bin.zst"),
        TraceFormat::OracleGeneral,
        4096,
    )
    .expect("oracleGeneral parses");
    assert_eq!(og.len(), 113_872);
}

#[test]
fn cloudphysics_rows_of_folios_own_policies() {
    // libCacheSim's S3-FIFO parameters: within 0.0002 of its row (README claim).
    let t = Trace::by_name("cloudphysics");
    let s3 = row(PolicyKind::S3Fifo, t);
    let reference = t.reference()["S3-FIFO"];
    for i in 0..5 {
        assert!((s3[i] - reference[i]).abs() <= 0.0002, "s3fifo {s3:?}");
    }
    for (kind, want) in [
        (PolicyKind::Clock2, [0.8968, 0.8867, 0.8726, 0.8046, 0.4745]),
        (PolicyKind::S3Fifo, [0.8940, 0.8662, 0.8192, 0.7298, 0.4603]),
        (
            PolicyKind::S3Fifo25,
            [0.8933, 0.8679, 0.8211, 0.7300, 0.4393],
        ),
        (PolicyKind::Arc, [0.8978, 0.8555, 0.8245, 0.7793, 0.4998]),
        (PolicyKind::TwoQ, [0.8941, 0.8756, 0.8443, 0.7238, 0.4439]),
        (
            PolicyKind::WTinyLfu,
            [0.9037, 0.8577, 0.8384, 0.7751, 0.5123],
        ),
        (
            PolicyKind::WTinyLfuAdaptive,
            [0.8971, 0.8605, 0.8394, 0.7863, 0.5123],
        ),
    ] {
        assert_pinned(kind, "cloudphysics", want);
    }
}
