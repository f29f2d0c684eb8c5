//! `edge-inference bench`: load a model once and time generations over a grid
//! of sizes, batch sizes and step counts — per-step and whole-batch latency,
//! images per second, cold start (process start to the first image) and peak
//! RSS. `scripts/bench-gpu` and `scripts/bench-cpu-diffusers` drive it on the
//! full-size random models of `random-model`; it prints one line per case and,
//! with `--json`, one JSON object per case to a file.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use crate::config::{ModelArgs, parse_size};
use crate::model::Model;
use crate::model::pipeline::Params;

/// `bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model to load.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Image sizes, WIDTHxHEIGHT, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "512x512")]
    pub sizes: Vec<String>,
    /// Images per batch (one UNet call per step for all of them), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub batches: Vec<usize>,
    /// Denoising steps, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub steps: Vec<usize>,
    /// Guidance scale (above 1 doubles the UNet's batch; Turbo models run 0).
    #[arg(long, default_value_t = 0.0)]
    pub guidance_scale: f64,
    /// Timed runs per case, after one untimed warm-up run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip the warm-up run (the first timed run then includes the device's first-use costs).
    #[arg(long)]
    pub no_warmup: bool,
    /// Also append one JSON object per case to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 { xs[m] } else { (xs[m - 1] + xs[m]) / 2.0 }
}

/// Peak resident set size of this process, MiB (`VmHWM`), where /proc has it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kb / 1024.0)
}

fn unix_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// Seconds since this process started (from /proc; else since `fallback`).
fn since_process_start(fallback: Instant) -> f64 {
    let from_proc = || -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Field 22 (starttime, clock ticks since boot), after the parenthesised command name.
        let start_ticks: f64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
        let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
        // USER_HZ, the unit of starttime, is 100 on every Linux ABI we build for.
        let hz = 100.0;
        Some(uptime - start_ticks / hz)
    };
    from_proc().unwrap_or_else(|| fallback.elapsed().as_secs_f64())
}

/// Runs the benchmark; prints to stdout.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let options = crate::serve::load_options(&args.model)?;
    let device = crate::model::device::name(&options.device);
    let dtype = format!("{:?}", options.dtype).to_lowercase();
    let model = Model::load(&args.model.model_dir, &options)
        .with_context(|| format!("loading {}", args.model.model_dir.display()))?;
    let loaded_s = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let mut json = match &args.json {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("--json {}", p.display()))?,
        ),
        None => None,
    };
    writeln!(
        out,
        "model {} device {device} dtype {dtype} flash_attn {} loaded in {loaded_s:.2}s",
        args.model.model_dir.display(),
        options.flash_attn
    )?;
    let mut first_image: Option<f64> = None;
    let mut table: Vec<String> = Vec::new();
    for size in &args.sizes {
        let (width, height) = parse_size(size).with_context(|| format!("--sizes {size:?}: expected WIDTHxHEIGHT"))?;
        for &batch in &args.batches {
            for &steps in &args.steps {
                let params: Vec<Params> = (0..batch.max(1))
                    .map(|i| Params {
                        prompt: "a rusty robot holding a candle".into(),
                        negative_prompt: String::new(),
                        width,
                        height,
                        steps: steps.max(1),
                        guidance_scale: args.guidance_scale,
                        seed: i as u64,
                    })
                    .collect();
                let mut step_ms = Vec::new();
                let mut whole_ms = Vec::new();
                let runs = args.runs.max(1) + usize::from(!args.no_warmup);
                for run in 0..runs {
                    let mut steps_this = Vec::new();
                    let t = Instant::now();
                    model.generate_batch(&params, |s| {
                        steps_this.push(s.elapsed);
                        ControlFlow::Continue(())
                    })?;
                    let whole = t.elapsed();
                    if first_image.is_none() {
                        first_image = Some(since_process_start(started));
                    }
                    if run == 0 && !args.no_warmup {
                        continue;
                    }
                    step_ms.extend(steps_this.iter().map(|d: &Duration| d.as_secs_f64() * 1e3));
                    whole_ms.push(whole.as_secs_f64() * 1e3);
                }
                let step = median(&mut step_ms);
                let whole = median(&mut whole_ms);
                let ips = params.len() as f64 / (whole / 1e3);
                writeln!(
                    out,
                    "size {width}x{height} batch {batch} steps {steps}: step {step:.1} ms, whole {whole:.1} ms, {ips:.3} images/s"
                )?;
                table.push(format!(
                    "| generate | {width}×{height} | {batch} | {steps} | {step:.1} | {whole:.1} | {ips:.2} |"
                ));
                if let Some(f) = json.as_mut() {
                    let line = serde_json::json!({
                        "model": args.model.model_dir.display().to_string(), "device": device, "dtype": dtype,
                        "flash_attn": options.flash_attn, "width": width, "height": height, "batch": batch,
                        "steps": steps, "guidance_scale": args.guidance_scale, "runs": args.runs.max(1),
                        "step_ms_median": step, "whole_ms_median": whole, "images_per_s": ips,
                        "load_s": loaded_s, "cold_start_s": first_image, "peak_rss_mib": peak_rss_mib(),
                        "finished_unix_ms": unix_ms(),
                    });
                    writeln!(f, "{line}")?;
                }
                // Edits beside generation at the same size: one image, as the edit route runs them.
                if batch == 1 {
                    for (kind, mask) in [("img2img", false), ("inpaint", true)] {
                        let (step, whole) = time_edit(&model, &params[0], mask, runs, !args.no_warmup)?;
                        let kind = if mask && !model.is_inpainting() { "inpaint (latent blend)" } else { kind };
                        writeln!(
                            out,
                            "size {width}x{height} {kind} steps {steps}: step {step:.1} ms, whole {whole:.1} ms"
                        )?;
                        table.push(format!(
                            "| {kind} | {width}×{height} | 1 | {steps} | {step:.1} | {whole:.1} | {:.2} |",
                            1e3 / whole
                        ));
                    }
                }
            }
        }
    }
    writeln!(out, "\n| kind | size | batch | steps | per step (ms) | whole batch (ms) | images/s |")?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for row in &table {
        writeln!(out, "{row}")?;
    }
    writeln!(
        out,
        "cold start (process start to first image) {:.2}s, peak RSS {:.0} MiB",
        first_image.unwrap_or(f64::NAN),
        peak_rss_mib().unwrap_or(f64::NAN)
    )?;
    Ok(())
}

/// Strength of the benchmarked edits: diffusers' img2img default, so a fifth of the steps skip.
const EDIT_STRENGTH: f64 = 0.8;

/// Median (per-step, whole) milliseconds of an img2img (or, with `mask`, an inpainting: left
/// half repainted) of a gradient image at `p`'s size and steps.
fn time_edit(model: &Model, p: &Params, mask: bool, runs: usize, warmup: bool) -> anyhow::Result<(f64, f64)> {
    let (w, h) = (p.width, p.height);
    let rgb = (0..w * h).flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 128]).collect();
    let input = crate::model::edit::EditInput {
        image: crate::model::pipeline::Image { width: w, height: h, rgb },
        mask: mask.then(|| (0..w * h).map(|i| if i % w < w / 2 { 255 } else { 0 }).collect()),
        strength: EDIT_STRENGTH,
    };
    let (mut step_ms, mut whole_ms) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut steps_this = Vec::new();
        let t = Instant::now();
        model.edit(p, &input, |s| {
            steps_this.push(s.elapsed);
            ControlFlow::Continue(())
        })?;
        if run == 0 && warmup {
            continue;
        }
        whole_ms.push(t.elapsed().as_secs_f64() * 1e3);
        step_ms.extend(steps_this.iter().map(|d: &Duration| d.as_secs_f64() * 1e3));
    }
    Ok((median(&mut step_ms), median(&mut whole_ms)))
}
