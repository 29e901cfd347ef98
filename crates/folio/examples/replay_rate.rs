//! Page accesses per second of each policy on the page-level CloudPhysics trace, median of 3
//! replays, by wall time and by the thread's CPU time (the latter is what to quote on a shared,
//! oversubscribed machine, where wall time includes waiting for a core).
//!
//! `cargo run --release -p folio --example replay_rate [TRACE] [CACHE_PAGES] [POLICY,...]`
//! (`-` for a default; `REPLAY_REPS=1` for a single replay per sample, e.g. under callgrind).

use std::time::Instant;

use folio::sim;
use folio::PolicyKind;

/// CPU time of the calling thread in seconds, from /proc (Linux); 0 elsewhere.
fn thread_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().filter(|s| s != "-").unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/traces/cloudphysics/cloudPhysicsIO.csv.zst"
        )
        .to_string()
    });
    let (trace, _) = sim::read_trace(path.as_ref(), None, 4096).expect("trace");
    let size = args
        .next()
        .filter(|s| s != "-")
        .map(|s| s.parse().expect("cache pages"))
        .unwrap_or(sim::distinct_pages(&trace) / 10);
    let kinds: Vec<PolicyKind> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|n| n.parse().expect("policy name"))
            .collect(),
        None => PolicyKind::ALL.to_vec(),
    };
    let reps: usize = std::env::var("REPLAY_REPS")
        .ok()
        .map(|r| r.parse().expect("REPLAY_REPS"))
        .unwrap_or(8);
    println!("{} accesses, cache {size} pages", trace.len());
    println!(
        "{:<10} {:>14} {:>14}",
        "policy", "wall Macc/s", "cpu Macc/s"
    );
    for &kind in &kinds {
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            // Repeat so each sample spans well over the 10 ms CPU clock tick.
            let (t0, c0) = (Instant::now(), thread_cpu_secs());
            for _ in 0..reps {
                std::hint::black_box(sim::simulate_kind(kind, size, &trace).misses);
            }
            let n = (reps * trace.len()) as f64;
            wall.push(n / t0.elapsed().as_secs_f64() / 1e6);
            cpu.push(n / (thread_cpu_secs() - c0).max(1e-3) / 1e6);
        }
        println!(
            "{:<10} {:>14.1} {:>14.1}",
            kind.name(),
            median(wall),
            median(cpu)
        );
    }
}
