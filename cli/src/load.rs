//! `edge-diffusion load`: a burst of prompts against a worker, with a live
//! progress line, so one can watch the queue rise, the scaler turn active and
//! the queue drain (in `up`'s status line).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use tokio::sync::Semaphore;

use crate::{http, ui};

/// `load` flags.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The worker's base URL (as `up` prints it, with or without `/generate`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// How many prompts to send.
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub requests: u32,
    /// How many are open at once.
    #[arg(short = 'c', long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub concurrency: u32,
    /// The prompt (each request gets its own seed).
    #[arg(long, default_value = "a lighthouse at dusk, detailed painting")]
    pub prompt: String,
    /// Denoising steps per image (default: the worker's).
    #[arg(long)]
    pub steps: Option<u32>,
    /// Image size WIDTHxHEIGHT (default: the worker's; with `--edit`, the image's).
    #[arg(long)]
    pub size: Option<String>,
    /// Send edits of this image (PNG, JPEG or WebP) instead of text to image:
    /// img2img, or inpainting with `--mask`.
    #[arg(long, value_name = "IMAGE")]
    pub edit: Option<std::path::PathBuf>,
    /// The inpainting mask (white = repaint), the image's size.
    #[arg(long, value_name = "MASK", requires = "edit")]
    pub mask: Option<std::path::PathBuf>,
    /// How much an edit changes the image, above 0 and at most 1 (default: the
    /// worker's, 0.8 for img2img and 1 with a mask).
    #[arg(long, requires = "edit")]
    pub strength: Option<f64>,
}

/// The edit fields of every request: the files read once, base64-encoded.
fn edit_fields(args: &LoadArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    use base64::Engine as _;
    let mut fields = serde_json::Map::new();
    let read = |path: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes).into())
    };
    if let Some(image) = &args.edit {
        fields.insert("init_image".into(), read(image)?);
    }
    if let Some(mask) = &args.mask {
        fields.insert("mask".into(), read(mask)?);
    }
    if let Some(strength) = args.strength {
        fields.insert("strength".into(), strength.into());
    }
    Ok(fields)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU32,
    rejected: AtomicU32,
    failed: AtomicU32,
    running: AtomicU32,
}

impl Counts {
    fn done(&self) -> u32 {
        self.ok.load(Ordering::Relaxed) + self.rejected.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    /// The progress without the clock (what changed), and the full line.
    fn line(&self, total: u32, started: Instant) -> (String, String) {
        let progress = format!(
            "load  {}/{total} done: {} ok, {} rejected (429), {} failed; {} open",
            self.done(),
            self.ok.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.running.load(Ordering::Relaxed),
        );
        let line = format!("{progress}; {:.1} s", started.elapsed().as_secs_f64());
        (progress, line)
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let url = args.url.trim_end_matches('/');
    let base = url.strip_suffix("/generate").unwrap_or(url);
    let (addr, prefix) = http::parse_url(base).await?;
    let health = format!("{prefix}/healthz");
    if http::get(addr, &health, Duration::from_secs(5)).await.is_err() {
        bail!("no worker answers at {base}: is `edge-diffusion up` running? (or pass --url)");
    }
    let path = format!("{prefix}/generate");
    let edit = edit_fields(&args)?;
    let counts = Arc::new(Counts::default());
    let permits = Arc::new(Semaphore::new(args.concurrency as usize));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for seed in 0..args.requests {
        let mut body = serde_json::json!({ "prompt": args.prompt, "seed": seed });
        if let Some(steps) = args.steps {
            body["steps"] = steps.into();
        }
        if let Some(size) = &args.size {
            body["size"] = size.clone().into();
        }
        for (k, v) in &edit {
            body[k] = v.clone();
        }
        let (counts, permits, latencies, path) =
            (Arc::clone(&counts), Arc::clone(&permits), Arc::clone(&latencies), path.clone());
        tasks.spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else { return None };
            counts.running.fetch_add(1, Ordering::Relaxed);
            let sent = Instant::now();
            let result = http::post_json(addr, &path, &body.to_string(), Duration::from_secs(3600)).await;
            counts.running.fetch_sub(1, Ordering::Relaxed);
            match result {
                Ok(r) if r.status == 200 => {
                    counts.ok.fetch_add(1, Ordering::Relaxed);
                    latencies.lock().map(|mut l| l.push(sent.elapsed())).ok();
                    None
                }
                Ok(r) if r.status == 429 => {
                    counts.rejected.fetch_add(1, Ordering::Relaxed);
                    None
                }
                Ok(r) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    Some(format!("HTTP {}: {}", r.status, r.text().trim()))
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    Some(format!("{e:#}"))
                }
            }
        });
    }
    let mut live = ui::Live::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut first_error = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (progress, line) = counts.line(args.requests, started);
                live.show_keyed(&progress, &line);
            }
            joined = tasks.join_next() => match joined {
                Some(Ok(Some(e))) => { first_error.get_or_insert(e); }
                Some(_) => {}
                None => break,
            },
        }
    }
    let (progress, line) = counts.line(args.requests, started);
    live.show_keyed(&progress, &line);
    live.finish();
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort();
    if !lat.is_empty() {
        let pick = |q: f64| lat[((lat.len() - 1) as f64 * q).round() as usize].as_secs_f64();
        ui::line(&format!("latency of the {} answered: p50 {:.2} s, p99 {:.2} s", lat.len(), pick(0.5), pick(0.99)));
    }
    if let Some(e) = first_error {
        bail!("{} of {} requests failed; the first: {e}", counts.failed.load(Ordering::Relaxed), args.requests);
    }
    Ok(())
}
