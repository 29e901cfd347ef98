//! Miss ratios of policies on every trace of `testdata/traces` at 1/5/10/20/50% of the distinct
//! keys, beside libCacheSim's best row: `cargo run --release -p folio-traces --example policy_grid -- [TRACE,..]
//! [POLICY,..]` (defaults: every trace; the default policy and wtinylfu-adaptive). Runs on all
//! cores, one (trace, size) per task.

#[path = "../tests/traces/mod.rs"]
mod traces;

use std::sync::Mutex;

use folio_o3::sim;
use folio_o3::PolicyKind;
use traces::{Trace, TRACES};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trace_names: Vec<&str> = match args.first().map(String::as_str) {
        Some("all") | None => TRACES.iter().map(|t| t.name).collect(),
        Some(s) => s.split(',').collect(),
    };
    let policies: Vec<PolicyKind> = match args.get(1).map(String::as_str) {
        None => vec![PolicyKind::default(), PolicyKind::WTinyLfuAdaptive],
        Some("all") => PolicyKind::ALL.to_vec(),
        Some(s) => s.split(',').map(|p| p.parse().expect("policy")).collect(),
    };
    let mut means = vec![0.0f64; policies.len()];
    let mut best_mean = 0.0;
    let mut cells = 0usize;
    for name in trace_names {
        let trace = Trace::by_name(name);
        let pages = trace.load();
        let distinct = sim::distinct_pages(&pages);
        let sizes = Trace::sizes(distinct);
        let best = trace.best();
        let jobs: Vec<(usize, usize)> = (0..policies.len())
            .flat_map(|p| (0..5).map(move |s| (p, s)))
            .collect();
        let results = Mutex::new(vec![[0.0f64; 5]; policies.len()]);
        let next = Mutex::new(0usize);
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let j = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(&(p, s)) = jobs.get(j) else {
                        break;
                    };
                    let st = sim::simulate_kind(policies[p], sizes[s], &pages);
                    results.lock().unwrap()[p][s] = st.miss_ratio();
                });
            }
        });
        let results = results.into_inner().unwrap();
        println!(
            "{name}: {} accesses, {distinct} distinct, sizes {sizes:?}",
            pages.len()
        );
        print!("  {:<20}", "best libCacheSim");
        for b in best {
            print!(" {b:.4}       ");
        }
        println!();
        for (p, r) in results.iter().enumerate() {
            print!("  {:<20}", policies[p].name());
            for s in 0..5 {
                let d = r[s] - best[s];
                let mark = if d > 0.01 { '!' } else { ' ' };
                print!(" {:.4} {:+.3}{mark}", r[s], d);
                means[p] += r[s];
            }
            println!();
        }
        best_mean += best.iter().sum::<f64>();
        cells += 5;
    }
    println!(
        "mean over {cells} cells: best {:.4}",
        best_mean / cells as f64
    );
    for (p, m) in means.iter().enumerate() {
        println!("  {:<20} {:.4}", policies[p].name(), m / cells as f64);
    }
}
