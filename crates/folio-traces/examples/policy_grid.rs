//! Miss ratios of policies on every trace of `testdata/traces` at 1/5/10/20/50% of the distinct
//! keys, beside libCacheSim's best row: `cargo run --release -p folio-traces --example policy_grid -- [TRACE,..]
//! [POLICY,..]` (defaults: every trace; the default policy and wtinylfu-adaptive). A policy is a
//! `PolicyKind` name, `s3fifo@SHARE` (S3-FIFO with a small queue of SHARE, e.g. 0.02, of the
//! frames) or `s3fifo-freq@SHARE` (the same with frequency admission to main). Also prints, per
//! cell, the best of the rows asked for (the adaptive default's ceiling:
//! `all s3fifo@0.02,s3fifo@0.05,s3fifo@0.1,s3fifo@0.25,s3fifo-freq@0.02,s3fifo-freq@0.05`). Runs
//! on all cores, one (policy, trace, size) per task.

#[path = "../tests/traces/mod.rs"]
mod traces;

use std::sync::Mutex;

use folio_o3::policy::{EvictionPolicy, MainAdmission, S3Fifo, S3FifoParams};
use folio_o3::sim;
use folio_o3::PolicyKind;

/// A policy of the grid: a shipped one, or S3-FIFO with a given small-queue share.
#[derive(Clone, Copy)]
enum Row {
    Kind(PolicyKind),
    Share(f64, MainAdmission),
}

impl Row {
    fn parse(s: &str) -> Row {
        if let Some(share) = s.strip_prefix("s3fifo@") {
            return Row::Share(share.parse().expect("share"), MainAdmission::Threshold);
        }
        match s.strip_prefix("s3fifo-freq@") {
            Some(share) => Row::Share(share.parse().expect("share"), MainAdmission::Frequency),
            None => Row::Kind(s.parse().expect("policy")),
        }
    }

    fn build(self, size: usize) -> Box<dyn EvictionPolicy> {
        match self {
            Row::Kind(kind) => kind.build(size),
            Row::Share(small_ratio, admission) => {
                let params = S3FifoParams {
                    small_ratio,
                    admission,
                    ..S3FifoParams::default()
                };
                Box::new(S3Fifo::with_params(size, params, "s3fifo@share"))
            }
        }
    }

    fn name(self) -> String {
        match self {
            Row::Kind(kind) => kind.name().to_string(),
            Row::Share(share, MainAdmission::Threshold) => format!("s3fifo@{share}"),
            Row::Share(share, _) => format!("s3fifo-freq@{share}"),
        }
    }
}
use traces::{Trace, TRACES};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trace_names: Vec<&str> = match args.first().map(String::as_str) {
        Some("all") | None => TRACES.iter().map(|t| t.name).collect(),
        Some(s) => s.split(',').collect(),
    };
    let policies: Vec<Row> = match args.get(1).map(String::as_str) {
        None => vec![
            Row::Kind(PolicyKind::default()),
            Row::Kind(PolicyKind::WTinyLfuAdaptive),
        ],
        Some("all") => PolicyKind::ALL.iter().map(|&k| Row::Kind(k)).collect(),
        Some(s) => s.split(',').map(Row::parse).collect(),
    };
    let mut means = vec![0.0f64; policies.len()];
    let mut best_mean = 0.0;
    let (mut ceiling_mean, mut ceiling_met) = (0.0, 0);
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
                    let st = sim::simulate(&*policies[p].build(sizes[s]), &pages);
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
        print!("  {:<20}", "best of the rows");
        for s in 0..5 {
            let b = results.iter().map(|r| r[s]).fold(f64::INFINITY, f64::min);
            ceiling_met += (b <= best[s] + 0.01) as usize;
            ceiling_mean += b;
            print!(" {b:.4}       ");
        }
        println!();
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
    println!(
        "  {:<20} {:.4} ({ceiling_met} of {cells} cells within 0.01 of the best)",
        "best of the rows",
        ceiling_mean / cells as f64
    );
}
