//! `folio sim`: replays block or object traces through the eviction policies and reports miss
//! ratios (a table per trace, JSON lines, or an SVG of miss-ratio curves, one panel per trace).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use folio::sim::{self, CacheSize, SimStats, TraceFormat};
use folio::PolicyKind;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Arguments of `folio sim`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimArgs {
    /// Trace files to replay (repeat the flag or separate with commas); .gz, .xz and .zst files
    /// are decompressed.
    #[arg(long, required = true, value_delimiter = ',')]
    pub trace: Vec<PathBuf>,
    /// Trace layout: csv, vscsi, oracle-general, lines, lis or u32 [default: from the file
    /// name, and for `.trace` files from the content].
    #[arg(long)]
    pub format: Option<TraceFormat>,
    /// Page size in bytes, for splitting block requests (csv, vscsi) into pages.
    #[arg(long, default_value_t = 4096)]
    pub page_size: u64,
    /// Cache sizes: pages (2692) or percentages of each trace's distinct pages (1%), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1%,5%,10%,20%,50%")]
    pub sizes: Vec<CacheSize>,
    /// Policies: all, default, or a comma-separated list (lru,fifo,clock,clock2,sieve,s3fifo,...).
    #[arg(long, default_value = "all")]
    pub policy: String,
    /// Print one JSON object per (policy, size) line instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG of miss-ratio curves to this file, one panel per trace.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

fn parse_policies(spec: &str) -> Result<Vec<PolicyKind>, Box<dyn std::error::Error>> {
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
        return Err("no policy given".into());
    }
    Ok(out)
}

/// One trace's results: its name, size in pages and distinct pages, and a row of stats per
/// policy.
struct TraceResults {
    name: String,
    format: TraceFormat,
    distinct: usize,
    sizes: Vec<usize>,
    rows: Vec<Vec<SimStats>>,
}

/// Runs `folio sim`.
pub fn run(args: &SimArgs) -> Result<(), Box<dyn std::error::Error>> {
    let policies = parse_policies(&args.policy)?;
    if args.sizes.is_empty() {
        return Err("no cache size given".into());
    }
    let mut all = Vec::new();
    for path in &args.trace {
        all.push(run_trace(args, path, &policies)?);
    }
    if let Some(path) = &args.plot {
        plot(path, args, &all)?;
        if !args.json {
            println!("miss-ratio curves written to {}", path.display());
        }
    }
    Ok(())
}

fn run_trace(
    args: &SimArgs,
    path: &std::path::Path,
    policies: &[PolicyKind],
) -> Result<TraceResults, Box<dyn std::error::Error>> {
    let load_start = Instant::now();
    let (trace, format) = sim::read_trace(path, args.format, args.page_size)?;
    let distinct = sim::distinct_pages(&trace);
    let load_time = load_start.elapsed();
    let sizes: Vec<usize> = args.sizes.iter().map(|s| s.resolve(distinct)).collect();
    if !args.json {
        let unit = match format {
            TraceFormat::Csv | TraceFormat::Vscsi => format!("pages of {} bytes", args.page_size),
            _ => "keys".to_string(),
        };
        println!(
            "trace {} ({format}): {} accesses, {distinct} distinct {unit}; read in {:.2?}",
            path.display(),
            trace.len(),
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
    for &kind in policies {
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
                    "trace": path.display().to_string(),
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
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(TraceResults {
        name,
        format,
        distinct,
        sizes,
        rows: results,
    })
}

fn print_table(args: &SimArgs, sizes: &[usize], distinct: usize, results: &[Vec<SimStats>]) {
    println!();
    print!("{:<18}", "policy");
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
        print!("{name:<18}");
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
    traces: &[TraceResults],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let n = traces.len().max(1);
    let cols = if n == 1 { 1 } else { 2 };
    let rows = n.div_ceil(cols);
    let root = SVGBackend::new(path, (720 * cols as u32, 480 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((rows, cols));
    for (t, area) in traces.iter().zip(panels.iter()) {
        panel(area, args, t)?;
    }
    root.present()?;
    Ok(())
}

/// One trace's curves: miss ratio against cache size in percent of its distinct keys.
fn panel<DB: plotters::prelude::DrawingBackend>(
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    args: &SimArgs,
    t: &TraceResults,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    use plotters::prelude::*;

    let pct = |pages: usize| pages as f64 * 100.0 / t.distinct.max(1) as f64;
    let x_max = t.sizes.iter().map(|&s| pct(s)).fold(0.0f64, f64::max) * 1.05;
    let ratios = t.rows.iter().flatten().map(|s| s.miss_ratio());
    let (lo, hi) = ratios.fold((1.0f64, 0.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let pad = ((hi - lo) * 0.08).max(0.01);
    let (y_lo, y_hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let unit = match t.format {
        TraceFormat::Csv | TraceFormat::Vscsi => format!(", {} B pages", args.page_size),
        _ => String::new(),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{} ({} distinct keys{unit})", t.name, t.distinct),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max.max(1.0), y_lo..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("cache size (% of distinct keys)")
        .y_desc("miss ratio (lower is better)")
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 12))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    for (i, row) in t.rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = row
            .iter()
            .map(|s| (pct(s.cache_pages), s.miss_ratio()))
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
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
