//! `edge-inference`: parse the command line, size the CPU thread pool, run.

use std::ops::ControlFlow;

use anyhow::Context;
use clap::Parser;
use edge_inference::cli::{Cli, Command};
use edge_inference::model::Model;
use edge_inference::model::pipeline::Params;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = edge_inference::threads::threads_for(std::path::Path::new("/sys/fs/cgroup"));
        // SAFETY: no other thread exists yet (the runtime is built below), so
        // nothing reads the environment concurrently. candle and rayon read
        // this variable when they size their pools.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    }
    edge_telemetry::daemon::init_tracing("EDGE_INFERENCE_LOG", edge_telemetry::daemon::LogFormat::Text);
    match cli.command {
        Command::TinyModel { arch, dir, inpainting } => {
            let written = if inpainting {
                edge_inference::tiny::write_inpainting_arch(&dir, arch)
            } else {
                edge_inference::tiny::write_arch(&dir, arch)
            };
            written.with_context(|| format!("writing the tiny {arch:?} model to {}", dir.display()))
        }
        Command::RandomModel { preset, dir } => edge_inference::random_model::write(&dir, preset)
            .with_context(|| format!("writing the random {preset:?} model to {}", dir.display())),
        Command::Generate(args) => {
            let options = edge_inference::serve::load_options(&args.model)?;
            let model = Model::load(&args.model.model_dir, &options)?;
            let rec = model.recommended();
            let size = args.size.clone().unwrap_or_else(|| format!("{}x{}", rec.size.0, rec.size.1));
            let (width, height) = edge_inference::config::parse_size(&size)
                .filter(|(w, h): &(usize, usize)| {
                    *w > 0
                        && *h > 0
                        && w.is_multiple_of(model.size_multiple())
                        && h.is_multiple_of(model.size_multiple())
                })
                .with_context(|| {
                    format!("--size {size:?}: expected WIDTHxHEIGHT, multiples of {}", model.size_multiple())
                })?;
            for (flag, text) in [("--prompt", &args.prompt), ("--negative-prompt", &args.negative_prompt)] {
                model.check_prompt(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
            }
            let params = Params {
                prompt: args.prompt,
                negative_prompt: args.negative_prompt,
                width,
                height,
                steps: args.steps.unwrap_or(rec.steps).max(1),
                guidance_scale: args.guidance_scale.unwrap_or(rec.guidance),
                seed: args.seed,
            };
            let image = model.generate(&params, |_| ControlFlow::Continue(()))?;
            std::fs::write(&args.out, image.to_png()).with_context(|| format!("--out {}", args.out.display()))
        }
        Command::Bench(args) => edge_inference::bench::run(*args),
        Command::Serve(args) => {
            let settings = args.validate()?;
            let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
            tracing::info!(threads = %threads, "candle CPU threads");
            runtime()?.block_on(edge_inference::serve::run(settings))
        }
        Command::Proxy(args) => runtime()?.block_on(edge_inference::proxy::run(*args)),
    }
}

/// Two async threads: the HTTP side is light; candle has its own pool.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
