//! The flags the subcommands share (model, queue, reports, limits) and the
//! `serve` and `generate` flags built from them; every flag also reads
//! `EDGE_INFERENCE_*`. The command line itself is [`crate::cli`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use candle_core::DType;
use clap::Args;
use edge_telemetry::{AcceleratorType, WorkerReport};

use crate::model::device::DeviceRequest;
use crate::model::schedulers::SamplerKind;
use crate::report::AgentAddr;

mod error;
mod limits;
mod parse;
pub use error::ConfigError;
pub use limits::{LimitArgs, LimitSettings};
pub use parse::{parse_advertise_url, parse_labels, parse_size};
use parse::{parse_dtype, parse_sampler};

/// Model loading flags shared by `serve` and `generate`.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// A diffusers-layout model directory (text_encoder/, unet/, vae/, tokenizer/, scheduler/).
    #[arg(long, env = "EDGE_INFERENCE_MODEL_DIR")]
    pub model_dir: PathBuf,
    /// Compute device: auto (CUDA if built in and a GPU is visible, else Metal likewise, else
    /// the CPU), cpu, cuda[:N] (feature `cuda`), metal[:N] (feature `metal`). cuda or metal
    /// refuse to start when the build lacks the feature or no such GPU is visible.
    #[arg(long, env = "EDGE_INFERENCE_DEVICE", default_value = "auto", value_parser = DeviceRequest::parse)]
    pub device: DeviceRequest,
    /// Weight type: f32, f16 or bf16 (default: f32 on cpu, f16 on a GPU).
    #[arg(long, env = "EDGE_INFERENCE_DTYPE", value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    /// Run this sampler instead of the one scheduler_config.json names.
    #[arg(long, env = "EDGE_INFERENCE_SCHEDULER", value_parser = parse_sampler)]
    pub scheduler: Option<SamplerKind>,
}

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Model to load.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Listener, queue and drain.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Who reports to the node agent, and where.
    #[command(flatten)]
    pub report: ReportArgs,
    /// Request bounds and defaults.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Most images in one batch: text-to-image requests of the same size, steps and guidance
    /// that wait in the queue together run as one batch (one UNet call per step for all, each
    /// image keeping its prompt and seed). Default: 1 on the CPU (a batch of 4 makes 1.2x the images/s
    /// there but delays its first image 3.3x; docs/benchmarks.md), 4 on a GPU. Above 1, a seed reproduces an image to within rounding
    /// (a pixel may differ by 1 with other batch-mates); 1 reproduces it byte for byte.
    #[arg(long, env = "EDGE_INFERENCE_MAX_BATCH", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_batch: Option<u32>,
    /// Tests only: report this accelerator type whatever the device (the whole-loop test runs
    /// an `nvidia` and a `neuron` worker on the CPU). Never set in a deployment: the scaler
    /// would send this type's work to a worker that is not one.
    #[arg(long, hide = true)]
    pub simulated_accelerator: Option<AcceleratorType>,
}

/// The listener, the bounded queue and the drain: the same flags for the
/// worker (`serve`) and the reporting proxy (`proxy`).
#[derive(Debug, Args, Clone)]
pub struct QueueArgs {
    /// HTTP listen address.
    #[arg(long, env = "EDGE_INFERENCE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Requests accepted at once, waiting and running (beyond it: 429).
    #[arg(long, env = "EDGE_INFERENCE_QUEUE_CAPACITY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub queue_capacity: u32,
    /// Requests generating at the same time on this device.
    #[arg(long, env = "EDGE_INFERENCE_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
    /// After SIGTERM, how long queued and running requests may take to finish.
    #[arg(long, env = "EDGE_INFERENCE_DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// The identity reported to the node agent and where the agent listens: the
/// same flags for `serve` and `proxy`.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The node agent's report endpoint: a Unix socket path or a loopback HOST:PORT. Unset: no reports.
    #[arg(long, env = "EDGE_INFERENCE_AGENT")]
    pub agent: Option<AgentAddr>,
    /// Heartbeat period of reports to the agent (changes are sent at once).
    #[arg(long, env = "EDGE_INFERENCE_REPORT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub report_interval: Duration,
    /// Accelerator type reported to the agent: nvidia, neuron, cpu. proxy: required. serve:
    /// follows the device it computes on (cuda: nvidia, cpu: cpu); given, it must agree.
    #[arg(long, env = "EDGE_INFERENCE_ACCELERATOR")]
    pub accelerator: Option<AcceleratorType>,
    /// Deployment reported to the agent (the scaler's worker selector matches it).
    #[arg(long, env = "EDGE_INFERENCE_DEPLOYMENT", default_value = "edge-inference")]
    pub deployment: String,
    /// Pod name (Kubernetes downward API).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod: String,
    /// Pod namespace (Kubernetes downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub namespace: String,
    /// Worker id reported to the agent (default: the pod name, else edge-inference-PID).
    #[arg(long, env = "EDGE_INFERENCE_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Labels reported to the agent, KEY=VALUE,KEY=VALUE (Kubernetes label syntax, at most 16;
    /// in Kubernetes the pod's labels): a scaler trigger's labelSelector matches on them.
    #[arg(long, env = "EDGE_INFERENCE_LABELS", default_value = "", value_parser = parse_labels)]
    pub labels: BTreeMap<String, String>,
    /// The URL clients reach this worker at, http(s)://HOST:PORT (in Kubernetes the node's
    /// address and the Service's NodePort), reported to the agent for the scaler's endpoint
    /// inventory while the worker accepts requests. An unbracketed IPv6 host is bracketed.
    /// Unset or empty: not in the inventory.
    #[arg(long, env = "EDGE_INFERENCE_ADVERTISE_URL", value_parser = parse_advertise_url)]
    pub advertise_url: Option<String>,
}

/// `generate` flags.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model to load.
    #[command(flatten)]
    pub model: ModelArgs,
    /// What to draw.
    #[arg(long)]
    pub prompt: String,
    /// What to avoid.
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// Image size, WIDTHxHEIGHT (default: the model's, as for `serve`).
    #[arg(long)]
    pub size: Option<String>,
    /// Denoising steps (default: the model's, as for `serve`).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Guidance scale (default: the model's, as for `serve`).
    #[arg(long)]
    pub guidance_scale: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output PNG file.
    #[arg(long)]
    pub out: PathBuf,
}

impl ReportArgs {
    /// The identity part of every report, checked as the agent would check
    /// it. `accelerator` is used when `--accelerator` is not given; `None`
    /// makes the flag required. `capacity` is the queue's.
    pub fn template(&self, accelerator: Option<AcceleratorType>, capacity: u32) -> Result<WorkerReport, ConfigError> {
        let worker_id = self.worker_id.clone().unwrap_or_else(|| {
            if self.pod.is_empty() { format!("edge-inference-{}", std::process::id()) } else { self.pod.clone() }
        });
        let accelerator = self.accelerator.or(accelerator).ok_or(ConfigError::AcceleratorRequired)?;
        let template = WorkerReport {
            worker_id,
            pod: self.pod.clone(),
            namespace: self.namespace.clone(),
            deployment: self.deployment.clone(),
            accelerator,
            queue_depth: 0,
            in_flight: 0,
            capacity,
            latency_p50_seconds: None,
            latency_p99_seconds: None,
            labels: self.labels.clone(),
            endpoint: self.advertise_url.clone().filter(|u| !u.is_empty()),
        };
        template.validate().map_err(|e| {
            let flag = match e.field.as_str() {
                "worker_id" => "--worker-id",
                "pod" => "--pod (POD_NAME)",
                "namespace" => "--namespace (POD_NAMESPACE)",
                "deployment" => "--deployment",
                f if f.starts_with("labels") => "--labels",
                "endpoint" => "--advertise-url",
                _ => "--queue-capacity",
            };
            ConfigError::Report { flag, reason: e.reason }
        })?;
        Ok(template)
    }
}

/// `serve`'s flags once checked: what the worker runs with.
#[derive(Debug)]
pub struct ServeSettings {
    /// See [`ServeArgs::model`].
    pub model: ModelArgs,
    /// See [`ServeArgs::queue`].
    pub queue: QueueArgs,
    /// See [`ServeArgs::report`].
    pub report: ReportArgs,
    /// Bounds checked against each other; the model is checked when read.
    pub limits: LimitSettings,
    /// See [`ServeArgs::max_batch`].
    pub max_batch: Option<u32>,
    /// See [`ServeArgs::simulated_accelerator`].
    pub simulated_accelerator: Option<AcceleratorType>,
}

impl ServeArgs {
    /// Checks every flag that needs no device or model: the request bounds,
    /// and the report identity as the agent would check it (the reported
    /// type is checked against the device once it is open).
    pub fn validate(self) -> Result<ServeSettings, ConfigError> {
        let limits = self.limits.validate()?;
        let provisional = self.report.accelerator.or(self.simulated_accelerator).unwrap_or(AcceleratorType::Cpu);
        self.report.template(Some(provisional), self.queue.queue_capacity)?;
        Ok(ServeSettings {
            model: self.model,
            queue: self.queue,
            report: self.report,
            limits,
            max_batch: self.max_batch,
            simulated_accelerator: self.simulated_accelerator,
        })
    }
}

impl ServeSettings {
    /// Images per batch on `device`: `--max-batch`, else 1 on the CPU and 4 on a GPU.
    pub fn max_batch(&self, device: &candle_core::Device) -> usize {
        let default = if device.is_cpu() { 1 } else { 4 };
        self.max_batch.map_or(default, |n| n as usize)
    }

    /// The identity part of every report. The accelerator type is the one of the device the
    /// worker computes on ([`crate::model::device::accelerator_of`]); `--accelerator`, when
    /// given (the chart sets it), must agree. `None`: nothing to report (no `--agent`, on a
    /// device that is no reportable type).
    pub fn report_template(&self, device: &candle_core::Device) -> Result<Option<WorkerReport>, ConfigError> {
        let own = match self.simulated_accelerator {
            Some(a) => Ok(a),
            None => crate::model::device::accelerator_of(device),
        };
        let accelerator = match own {
            Ok(a) => a,
            // A Metal worker serves locally, unreported.
            Err(_) if self.report.agent.is_none() => return Ok(None),
            Err(reason) => return Err(ConfigError::Device(reason)),
        };
        if let Some(given) = self.report.accelerator
            && given != accelerator
        {
            return Err(ConfigError::AcceleratorMismatch {
                given,
                device: crate::model::device::name(device),
                request: self.model.device.to_string(),
                accelerator,
            });
        }
        self.report.template(Some(accelerator), self.queue.queue_capacity).map(Some)
    }
}

#[cfg(test)]
mod tests;
