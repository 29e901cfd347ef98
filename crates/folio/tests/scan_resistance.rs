//! The default policy keeps a hot set through a sequential scan of never-seen pages ten times
//! the cache; LRU does not.

use folio::sim::Simulator;
use folio::PolicyKind;

const CACHE: usize = 1000;
const HOT: u64 = 400;

/// Hot-set hit ratio over one pass of the hot set.
fn hot_pass(sim: &mut Simulator<'_>) -> f64 {
    let hits = (0..HOT).filter(|&k| sim.access(k)).count();
    hits as f64 / HOT as f64
}

/// (hit ratio before the scan, hit ratio after it).
fn before_after(kind: PolicyKind) -> (f64, f64) {
    let policy = kind.build(CACHE);
    let mut sim = Simulator::new(&*policy);
    let mut cold = 1_000_000u64;
    // Steady state: hot set re-referenced, mixed with one-time cold pages filling the rest.
    for _ in 0..20 {
        hot_pass(&mut sim);
        for _ in 0..CACHE * 3 / 10 {
            sim.access(cold);
            cold += 1;
        }
    }
    let before = hot_pass(&mut sim);
    for p in 0..10 * CACHE as u64 {
        sim.access(10_000_000 + p);
    }
    let after = hot_pass(&mut sim);
    println!("{kind}: hot-set hit ratio {before:.3} before the scan, {after:.3} after");
    (before, after)
}

#[test]
fn default_policy_survives_a_scan() {
    let (before, after) = before_after(PolicyKind::default());
    assert!(
        before > 0.95,
        "default: hot hit ratio before the scan only {before}"
    );
    assert!(
        after >= before - 0.05,
        "default: hot hit ratio fell from {before} to {after} across the scan"
    );
}

#[test]
fn lru_fails_the_scan() {
    let (before, after) = before_after(PolicyKind::Lru);
    assert!(
        before > 0.95,
        "lru: hot hit ratio before the scan only {before}"
    );
    assert!(
        after < 0.05,
        "lru kept {after} of the hot set through a scan"
    );
}
