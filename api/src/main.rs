//! The `berth` command line: train and evaluate placement policies, benchmark the gym, and
//! serve the REST API.
//! Errors are reported here, at the edge, with `anyhow`.

mod admission;
mod auth;
mod backup;
mod bench_api;
mod cli;
mod cluster;
mod continuous;
mod deploy;
mod emulate;
mod experiment;
mod http_error;
mod job;
mod prometheus;
mod rate_limit;
mod record;
mod request_guard;
mod routes;
mod runner;
mod serve;
mod store;
mod store_figures;
mod table;
mod telemetry;
mod turn;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
