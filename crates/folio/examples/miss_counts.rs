//! Exact miss counts of every policy on the page-level CloudPhysics trace at many cache sizes,
//! one line per (policy, size): the check that a performance change leaves behaviour untouched
//! (diff the output before and after). Metadata bytes per page go to stderr.
//!
//! `cargo run --release -p folio --example miss_counts [TRACE]`

use folio::sim;
use folio::PolicyKind;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/traces/cloudphysics/cloudPhysicsIO.csv.zst"
        )
        .to_string()
    });
    let (trace, _) = sim::read_trace(path.as_ref(), None, 4096).expect("trace");
    let distinct = sim::distinct_pages(&trace);
    // The reference sizes (1/5/10/20/50%) plus tiny, odd and over-full ones.
    let mut sizes = vec![1, 2, 3, 7, 10, 33, 100, 1000, 4099];
    sizes.extend(
        [1.0, 2.5, 5.0, 10.0, 20.0, 35.0, 50.0, 75.0, 100.0, 120.0]
            .map(|p: f64| ((distinct as f64 * p / 100.0).floor() as usize).max(1)),
    );
    for &kind in PolicyKind::ALL {
        let bytes = kind.build(sizes[13]).metadata_bytes_per_page();
        eprintln!("{:<10} {bytes} metadata bytes per page", kind.name());
        for &size in &sizes {
            let st = sim::simulate_kind(kind, size, &trace);
            println!(
                "{:<10} {:>8} {:>9} {:.6}",
                kind.name(),
                size,
                st.misses,
                st.miss_ratio()
            );
        }
    }
}
