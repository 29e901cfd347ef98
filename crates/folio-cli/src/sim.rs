//! `folio sim`: replays a block or object trace through the eviction policies and reports miss
//! ratios (table, JSON lines, or an SVG miss-ratio curve).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use folio::sim::{self, CacheSize, SimStats, TraceFormat};
use folio::PolicyKind;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Arguments of `folio sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Trace file to replay.
    #[arg(long)]
    pub trace: PathBuf,
    /// Trace layout: csv, vscsi, oracle-general or lines [default: from the file extension].
    #[arg(long)]
    pub format: Option<TraceFormat>,
    /// Page size in bytes, for splitting block requests (csv, vscsi) into pages.
    #[arg(long, default_value_t = 4096)]
    pub page_size: u64,
    /// Cache sizes: pages (2692) or percentages of the trace's distinct pages (1%), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1%,5%,10%,20%,50%")]
    pub sizes: Vec<CacheSize>,
    /// Policies: all, default, or a comma-separated list (lru,fifo,clock,clock2,sieve,s3fifo,...).
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Print one JSON object per (policy, size) line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG miss-ratio curve to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn parse_policies(spec: &str) -> Result<Vec<PolicyKind>, folio::Error> {
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok(PolicyKind::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind: PolicyKind = name.parse()?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    if out.is_empty() {
        return Err(folio::Error::InvalidConfig("no policy given".into()));
    }
    Ok(out)
}

/// Runs `folio sim`.
pub fn run(args: &SimArgs) -> Result<(), Box<dyn std::error::Error>> {
    let format = match args.format {
        Some(f) => f,
        None => TraceFormat::from_path(&args.trace)
            .ok_or_else(|| sim::TraceError::UnknownExtension(args.trace.clone()))?,
    };
    let policies = parse_policies(&args.policy)?;
    if args.sizes.is_empty() {
        return Err("no cache size given".into());
    }

    let load_start = Instant::now();
    let trace = sim::read_pages(&args.trace, format, args.page_size)?;
    let distinct = sim::distinct_pages(&trace);
    let load_time = load_start.elapsed();
    let sizes: Vec<usize> = args.sizes.iter().map(|s| s.resolve(distinct)).collect();
    if !args.json {
        println!(
            "trace {} ({format}): {} page accesses, {distinct} distinct pages of {} bytes; read in {:.2?}",
            args.trace.display(),
            trace.len(),
            args.page_size,
            load_time
        );
    }

    // The bar appears only once the replay has taken more than a second.
    let total = (policies.len() * sizes.len()) as u64 * trace.len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
    bar.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {percent:>3}% eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let replay_start = Instant::now();
    let mut shown = false;
    let mut results: Vec<Vec<SimStats>> = Vec::new();
    let mut done_before = 0u64;
    for &kind in &policies {
        let mut row = Vec::new();
        for &size in &sizes {
            bar.set_message(format!("{kind} {size}"));
            let policy = kind.build(size);
            let stats = sim::simulate_with_progress(&*policy, &trace, &mut |done| {
                if !shown && replay_start.elapsed() > Duration::from_secs(1) {
                    bar.set_draw_target(ProgressDrawTarget::stderr());
                    shown = true;
                }
                bar.set_position(done_before + done as u64);
            });
            done_before += trace.len() as u64;
            if args.json {
                let line = serde_json::json!({
                    "policy": stats.policy,
                    "cache_pages": stats.cache_pages,
                    "accesses": stats.accesses,
                    "misses": stats.misses,
                    "miss_ratio": stats.miss_ratio(),
                    "accesses_per_sec": stats.accesses_per_sec().round(),
                    "metadata_bytes_per_page": policy.metadata_bytes_per_page(),
                    "distinct_pages": distinct,
                    "trace": args.trace.display().to_string(),
                });
                bar.suspend(|| println!("{line}"));
            }
            row.push(stats);
        }
        results.push(row);
    }
    bar.finish_and_clear();

    if !args.json {
        print_table(args, &sizes, distinct, &results);
    }
    if let Some(path) = &args.plot {
        plot(path, args, &sizes, &results)?;
        if !args.json {
            println!("miss-ratio curve written to {}", path.display());
        }
    }
    Ok(())
}

fn print_table(args: &SimArgs, sizes: &[usize], distinct: usize, results: &[Vec<SimStats>]) {
    println!();
    print!("{:<10}", "policy");
    for (spec, size) in args.sizes.iter().zip(sizes) {
        let label = match spec {
            CacheSize::Percent(_) => format!("{size} ({spec})"),
            CacheSize::Pages(_) => format!(
                "{size} ({:.1}%)",
                *size as f64 * 100.0 / distinct.max(1) as f64
            ),
        };
        print!(" {label:>15}");
    }
    println!(" {:>14} {:>10}", "accesses/s", "bytes/page");
    for row in results {
        let name = row.first().map(|s| s.policy).unwrap_or("?");
        print!("{name:<10}");
        for s in row {
            print!(" {:>15.4}", s.miss_ratio());
        }
        let accesses: u64 = row.iter().map(|s| s.accesses).sum();
        let secs: f64 = row.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        let rate = accesses as f64 / secs.max(1e-9);
        let bytes = name
            .parse::<PolicyKind>()
            .map(|k| {
                k.build(sizes[0].max(1))
                    .metadata_bytes_per_page()
                    .to_string()
            })
            .unwrap_or_default();
        println!(" {:>13.1}M {bytes:>10}", rate / 1e6);
    }
    println!("\nmiss ratio = misses / page accesses; accesses/s is one core replaying through the simulator.");
}

fn plot(
    path: &std::path::Path,
    args: &SimArgs,
    sizes: &[usize],
    results: &[Vec<SimStats>],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let x_max = sizes.iter().copied().max().unwrap_or(1) as f64 * 1.05;
    let ratios = results.iter().flatten().map(|s| s.miss_ratio());
    let (lo, hi) = ratios.fold((1.0f64, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let pad = ((hi - lo) * 0.08).max(0.01);
    let (y_lo, y_hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let name = args
        .trace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Miss-ratio curve: {name} ({} B pages)", args.page_size),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("cache size (pages)")
        .y_desc("miss ratio (lower is better)")
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 14))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    for (i, row) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = row
            .iter()
            .map(|s| (s.cache_pages as f64, s.miss_ratio()))
            .collect();
        let label = row.first().map(|s| s.policy).unwrap_or("?");
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
