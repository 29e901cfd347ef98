//! The `folio` command line: benchmarks, trace simulation, an NBD server over the cache, and
//! image management for object stores.

mod bench;
mod image;
mod serve;
mod sim;
mod target;
mod units;

use clap::{Parser, Subcommand};

/// Folio: a bounded, fault-tolerant page cache. Benchmarks, trace simulation, NBD server.
#[derive(Parser, Debug)]
#[command(name = "folio", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a workload through the cache (by default on a temporary 1 GiB image) and reports
    /// throughput, hit ratio and latency.
    Bench(bench::BenchArgs),
    /// Replays a trace through the eviction policies and reports miss ratios.
    Sim(sim::SimArgs),
    /// Serves an image over NBD through the page cache.
    Serve(serve::ServeArgs),
    /// Creates images, or copies them between files and object stores (`s3://BUCKET/PREFIX`).
    Image(image::ImageArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Image(args) => image::run(args),
    };
    if let Err(e) = result {
        eprintln!("folio: {e}");
        let mut source = e.source();
        while let Some(s) = source {
            eprintln!("  caused by: {s}");
            source = s.source();
        }
        std::process::exit(1);
    }
}
