//! The `folio` command line.
mod serve;

use clap::Parser;

#[derive(Parser)]
#[command(name = "folio", version, about)]
enum Cli {
    /// Serve an image over NBD through the page cache.
    Serve(serve::ServeArgs),
}

fn main() -> std::process::ExitCode {
    match Cli::parse() {
        Cli::Serve(args) => match serve::run(&args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("folio serve: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
