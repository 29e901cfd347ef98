//! Page accesses per second of each eviction policy, replaying the page-level CloudPhysics trace
//! (1,141,869 accesses) from memory through the simulator at 10% of its distinct pages; and of
//! both S3-FIFO parameterisations (the default among them) at 1% and 50% as well, since their
//! cost depends on the size (ghost traffic, working set).
//!
//! `cargo bench -p folio --bench policy` (the trace is in `testdata/traces`).

use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use folio::sim::{self, TraceFormat};
use folio::PolicyKind;

fn policies(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/traces/cloudphysics/cloudPhysicsIO.csv.zst");
    let trace = sim::read_pages(&path, TraceFormat::Csv, 4096).expect("the trace in testdata");
    let size = sim::distinct_pages(&trace) / 10;
    let mut group = c.benchmark_group("policy_replay");
    group
        .throughput(Throughput::Elements(trace.len() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &kind in PolicyKind::ALL {
        group.bench_with_input(BenchmarkId::new(kind.name(), size), &trace, |b, trace| {
            b.iter(|| {
                let stats = sim::simulate_kind(kind, size, trace);
                std::hint::black_box(stats.misses)
            })
        });
    }
    group.finish();

    let distinct = sim::distinct_pages(&trace);
    let mut group = c.benchmark_group("s3fifo_sizes");
    group
        .throughput(Throughput::Elements(trace.len() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for kind in [
        PolicyKind::S3Fifo,
        PolicyKind::S3Fifo25,
        PolicyKind::S3Fifo5,
    ] {
        for percent in [1, 10, 50] {
            let size = distinct * percent / 100;
            let id = BenchmarkId::new(kind.name(), format!("{percent}%"));
            group.bench_with_input(id, &trace, |b, trace| {
                b.iter(|| std::hint::black_box(sim::simulate_kind(kind, size, trace).misses))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, policies);
criterion_main!(benches);
