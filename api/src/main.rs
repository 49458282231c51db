//! The `berth` command line: train and evaluate placement policies, benchmark the gym, and
//! serve the REST API.
//! Errors are reported here, at the edge, with `anyhow`.

// The layers, each importing only those below it: cli -> http -> service -> infra -> store
// (api/tests/layers.rs checks it).
mod cli;
mod http;
mod infra;
mod service;
mod store;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    infra::allocator::keep_freed_memory();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
