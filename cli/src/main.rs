//! `edge-diffusion`: the whole loop on one machine.
//!
//! - `up` starts an agent, a scaler and a CPU worker as child processes and
//!   shows what KEDA would see;
//! - `load` sends a burst of prompts to a worker;
//! - `bench-activation` measures queue wake-up → KEDA told, against a real
//!   Prometheus scraping the same agent.
//!
//! This is an interactive tool, not a daemon: what it prints is its interface
//! (the children log to files), so it writes to stdout through [`ui`].

mod bench;
mod children;
mod http;
mod keda;
mod load;
mod paths;
mod status;
mod ui;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run edge-diffusion on this machine.
#[derive(Debug, Parser)]
#[command(name = "edge-diffusion", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Start agent, scaler and a CPU inference worker; Ctrl-C stops them.
    Up(up::UpArgs),
    /// Send a burst of prompts to a worker and show progress.
    Load(load::LoadArgs),
    /// Measure queue wake-up → KEDA told: StreamIsActive vs a real Prometheus.
    BenchActivation(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            ui::error(&format!("cannot start the async runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => up::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::BenchActivation(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the contexts joined, never a backtrace.
            ui::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
