//! The command line: one subcommand each, with its flags from the module that
//! runs it (shared ones in [`crate::config`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The Stable Diffusion worker.
#[derive(Debug, Parser)]
#[command(name = "edge-inference", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API on a model directory.
    Serve(Box<crate::config::ServeArgs>),
    /// Write a small random model in the diffusers layout (for tests and local runs).
    TinyModel {
        /// Which architecture of the SD family, at toy widths.
        #[arg(long, value_enum, default_value = "default")]
        arch: crate::tiny::Arch,
        /// Directory to write (created if needed).
        dir: PathBuf,
        /// Write a 9-channel inpainting UNet instead (SD 1.5-, SD 2- and SDXL-inpainting's layout).
        #[arg(long)]
        inpainting: bool,
    },
    /// Write a full-size model with random weights (f16) in the diffusers layout, loadable by
    /// this worker and by diffusers: real per-step cost without downloading a checkpoint.
    RandomModel {
        /// Which published architecture.
        #[arg(long, value_enum)]
        preset: crate::random_model::Preset,
        /// Directory to write (created if needed).
        dir: PathBuf,
    },
    /// Generate one image to a PNG file, without a server.
    Generate(crate::config::GenerateArgs),
    /// Time generations over sizes, batch sizes and step counts (per step, whole image,
    /// images/s, cold start, peak RSS): what scripts/bench-gpu and bench-cpu-diffusers run.
    Bench(Box<crate::bench::BenchArgs>),
    /// Run in front of another Stable Diffusion server (A1111, ComfyUI, sd-server, a
    /// torch-neuronx server…): own its bounded queue and report it to the node agent.
    Proxy(Box<crate::proxy::ProxyArgs>),
}
