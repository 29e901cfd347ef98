//! The policies that reproduce libCacheSim 0.3.5 do so on every real trace, at the precision the
//! README claims: LRU, FIFO, CLOCK and SIEVE to four decimals (they are deterministic), the
//! libCacheSim flavour of W-TinyLFU and LIRS within 0.002 (their degenerate cells excepted: a
//! 1% window of a 74-page cache is no page in libCacheSim, which then caches nothing).
//! References are read from `testdata/traces/*/reference.md` at run time.

mod traces;

use folio_o3::sim;
use folio_o3::PolicyKind;
use traces::Trace;

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Checks `kinds` against their reference rows on `trace`.
fn check(trace: &str, kinds: &[(PolicyKind, &str, f64)]) {
    let t = Trace::by_name(trace);
    let pages = t.load();
    let sizes = Trace::sizes(sim::distinct_pages(&pages));
    let reference = t.reference();
    for &(kind, row, tolerance) in kinds {
        let want = reference[row];
        for i in 0..5 {
            if want[i] >= 1.0 {
                continue; // degenerate in libCacheSim
            }
            let got = sim::simulate_kind(kind, sizes[i], &pages).miss_ratio();
            if tolerance == 0.0 {
                assert_eq!(
                    round4(got),
                    want[i],
                    "{trace}: {kind} at {} pages: {got:.6}, libCacheSim {}",
                    sizes[i],
                    want[i]
                );
            } else {
                assert!(
                    (got - want[i]).abs() <= tolerance,
                    "{trace}: {kind} at {} pages: {got:.4}, libCacheSim {} (tolerance {tolerance})",
                    sizes[i],
                    want[i]
                );
            }
        }
    }
}

const EXACT: [(PolicyKind, &str, f64); 4] = [
    (PolicyKind::Lru, "LRU", 0.0),
    (PolicyKind::Fifo, "FIFO", 0.0),
    (PolicyKind::Clock, "CLOCK", 0.0),
    (PolicyKind::Sieve, "SIEVE", 0.0),
];

const CLOSE: [(PolicyKind, &str, f64); 2] = [
    (PolicyKind::WTinyLfuLcs, "W-TinyLFU", 0.002),
    (PolicyKind::Lirs, "LIRS", 0.002),
];

#[test]
fn cloudphysics_exact() {
    check("cloudphysics", &EXACT);
}

#[test]
fn cloudphysics_close() {
    check("cloudphysics", &CLOSE);
}

#[test]
fn oltp() {
    check("arc_oltp", &EXACT);
    check("arc_oltp", &CLOSE);
}

#[test]
fn p6_exact() {
    check("arc_p6", &EXACT);
}

#[test]
fn p6_wtinylfu() {
    check("arc_p6", &CLOSE[..1]);
}

#[test]
fn p6_lirs() {
    check("arc_p6", &CLOSE[1..]);
}

#[test]
fn w106_exact() {
    check("cloudphysics_w106", &EXACT);
}

#[test]
fn w106_close() {
    check("cloudphysics_w106", &CLOSE);
}

#[test]
fn multi3() {
    check("lirs_multi3", &EXACT);
    check("lirs_multi3", &CLOSE);
}
