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
use crate::validation::Limits;

mod error;
mod parse;
pub use error::ConfigError;
pub use parse::{parse_advertise_url, parse_labels, parse_size};
use parse::{parse_dtype, parse_sampler, parse_size_flag};

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

/// Request bounds and defaults.
#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Largest image side in pixels.
    #[arg(long, env = "EDGE_INFERENCE_MAX_SIDE", default_value_t = 1024)]
    pub max_side: usize,
    /// Smallest image side in pixels.
    #[arg(long, env = "EDGE_INFERENCE_MIN_SIDE", default_value_t = 64)]
    pub min_side: usize,
    /// Most denoising steps per image.
    #[arg(long, env = "EDGE_INFERENCE_MAX_STEPS", default_value_t = 50)]
    pub max_steps: usize,
    /// Most images per request.
    #[arg(long, env = "EDGE_INFERENCE_MAX_IMAGES", default_value_t = 4)]
    pub max_images: usize,
    /// Steps when a request names none (default: the model's; 1 for a Turbo checkout, else 20).
    #[arg(long, env = "EDGE_INFERENCE_DEFAULT_STEPS")]
    pub default_steps: Option<usize>,
    /// Guidance scale when a request names none (default: the model's; 0 for a Turbo checkout,
    /// 5 for SDXL, else 7.5).
    #[arg(long, env = "EDGE_INFERENCE_DEFAULT_GUIDANCE")]
    pub default_guidance: Option<f64>,
    /// Image size when a request names none, WIDTHxHEIGHT (default: the model's trained size,
    /// unet sample_size x the VAE factor: 512 for SD 1.5 and the Turbos, 768 for SD 2.1, 1024
    /// for SDXL).
    #[arg(long, env = "EDGE_INFERENCE_DEFAULT_SIZE", value_parser = parse_size_flag)]
    pub default_size: Option<(usize, usize)>,
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

impl LimitArgs {
    /// Checks the flags against each other before a model is read, taking
    /// every model's size multiple to be at least SD's 8 (the VAE factor):
    /// a bad flag fails at start, not after minutes of loading.
    pub fn validate(self) -> Result<LimitSettings, ConfigError> {
        let any_model = crate::model::Recommended {
            steps: 1,
            guidance: 0.0,
            size: (self.min_side, self.min_side),
            why: "flag check",
        };
        self.limits(8, &any_model)?;
        Ok(LimitSettings(self))
    }

    /// Checks the flags against each other and the model's size multiple;
    /// `model` supplies the defaults the flags leave unset (kept within the bounds).
    fn limits(&self, multiple: usize, model: &crate::model::Recommended) -> Result<Limits, ConfigError> {
        let default_size = match self.default_size {
            Some(size) => size,
            None => {
                let fit = |side: usize| side.clamp(self.min_side, self.max_side.max(self.min_side));
                (fit(model.size.0), fit(model.size.1))
            }
        };
        let l = Limits {
            min_side: self.min_side,
            max_side: self.max_side,
            multiple,
            max_steps: self.max_steps,
            max_n: self.max_images,
            default_steps: self.default_steps.unwrap_or(model.steps.min(self.max_steps.max(1))),
            default_guidance: self.default_guidance.unwrap_or(model.guidance),
            default_size,
            ..Limits::default()
        };
        if l.min_side == 0
            || !l.min_side.is_multiple_of(multiple)
            || !l.max_side.is_multiple_of(multiple)
            || l.min_side > l.max_side
        {
            return Err(ConfigError::SideBounds { min: l.min_side, max: l.max_side, multiple });
        }
        for (flag, side) in [("width", default_size.0), ("height", default_size.1)] {
            if side < l.min_side || side > l.max_side || !side.is_multiple_of(multiple) {
                return Err(ConfigError::DefaultSizeSide { flag, side, multiple });
            }
        }
        if l.max_steps == 0 || !(1..=l.max_steps).contains(&l.default_steps) {
            return Err(ConfigError::DefaultSteps { steps: l.default_steps, max: l.max_steps });
        }
        if l.max_n == 0 {
            return Err(ConfigError::MaxImages);
        }
        if !(0.0..=l.max_guidance).contains(&l.default_guidance) {
            return Err(ConfigError::DefaultGuidance { value: l.default_guidance, max: l.max_guidance });
        }
        Ok(l)
    }
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

/// Request bounds checked at start; the model read later supplies its
/// size multiple and the defaults the flags leave unset.
#[derive(Debug, Clone)]
pub struct LimitSettings(LimitArgs);

impl LimitSettings {
    /// The limits for the model that was read ([`LimitArgs::limits`]).
    pub fn for_model(&self, multiple: usize, model: &crate::model::Recommended) -> Result<Limits, ConfigError> {
        self.0.limits(multiple, model)
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
            simulated_accelerator: self.simulated_accelerator,
        })
    }
}

impl ServeSettings {
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
