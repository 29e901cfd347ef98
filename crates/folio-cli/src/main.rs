//! The `folio` command line.
mod sim;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "folio",
    version,
    about = "The folio page cache: bench, sim, serve"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a trace through the eviction policies and report miss ratios.
    Sim(sim::SimArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse().command {
        Command::Sim(args) => match sim::run(&args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("folio sim: error: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
