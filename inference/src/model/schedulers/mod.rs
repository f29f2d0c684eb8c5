//! Samplers: DDIM, Euler and Euler Ancestral, configured from the checkout's
//! `scheduler/scheduler_config.json` (prediction type, betas, timestep
//! spacing), with every random draw from our seeded [`NoiseRng`].
//!
//! candle's own schedulers draw ancestral noise from the unseedable CPU
//! device and its presets fix DDIM with v-prediction, which is wrong for
//! SD-Turbo (Euler, epsilon, trailing); hence these.

pub mod schedule;

use std::path::Path;

use candle_core::{Result, Tensor};

type ReadResult<T> = std::result::Result<T, FieldError>;
use serde_json::json;

use super::fields::{FieldError, Fields};
use super::rng::NoiseRng;
use schedule::{BetaSchedule, Spacing};

/// Which sampler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Deterministic DDIM (eta = 0).
    Ddim,
    /// Euler (k-diffusion's `sample_euler`), deterministic.
    Euler,
    /// Euler Ancestral: fresh noise at every step.
    EulerAncestral,
}

impl SamplerKind {
    /// Allowed spellings for the `--scheduler` override.
    pub const ALLOWED: &'static str = "ddim, euler, euler-ancestral";

    /// Parses a `--scheduler` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ddim" => Some(Self::Ddim),
            "euler" => Some(Self::Euler),
            "euler-ancestral" | "euler_ancestral" => Some(Self::EulerAncestral),
            _ => None,
        }
    }
}

/// What the UNet predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The added noise (SD 1.x, 2.1-base, Turbo).
    Epsilon,
    /// v = alpha * noise - sigma * x0 (SD 2.1 768).
    V,
    /// The clean sample itself.
    Sample,
}

/// Everything read from `scheduler_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// The sampler.
    pub kind: SamplerKind,
    /// What the model predicts.
    pub prediction: Prediction,
    /// Beta schedule.
    pub beta_schedule: BetaSchedule,
    /// First beta.
    pub beta_start: f64,
    /// Last beta.
    pub beta_end: f64,
    /// Training timesteps (T).
    pub train_steps: usize,
    /// Inference timestep spacing.
    pub spacing: Spacing,
    /// Added to leading-spaced timesteps.
    pub steps_offset: usize,
    /// DDIM: the final step's alpha is 1 (else alphas_cumprod[0]).
    pub set_alpha_to_one: bool,
    /// DDIM: clamp the predicted clean sample to this range.
    pub clip_sample: Option<f64>,
}

impl SchedulerConfig {
    /// Parses `scheduler/scheduler_config.json`. diffusers' per-class
    /// defaults apply to absent fields. SD 1.5 ships `PNDMScheduler`, which we
    /// run as DDIM with the same betas (the `serve` log says so).
    pub fn read(path: &Path) -> ReadResult<(Self, Option<String>)> {
        let mut f = Fields::read(path)?;
        let class: String = f.req("_class_name", "a scheduler class name")?;
        let (kind, default_spacing, note) = match class.as_str() {
            "DDIMScheduler" => (SamplerKind::Ddim, Spacing::Leading, None),
            "PNDMScheduler" => {
                (SamplerKind::Ddim, Spacing::Leading, Some("PNDMScheduler is not implemented; running DDIM".to_owned()))
            }
            "EulerDiscreteScheduler" => (SamplerKind::Euler, Spacing::Linspace, None),
            "EulerAncestralDiscreteScheduler" => (SamplerKind::EulerAncestral, Spacing::Linspace, None),
            other => {
                return Err(f.error(
                    "_class_name",
                    format!(
                        "{other:?} is not supported; supported: DDIMScheduler, EulerDiscreteScheduler, \
                         EulerAncestralDiscreteScheduler, PNDMScheduler (run as DDIM)"
                    ),
                ));
            }
        };
        let prediction = match f.or("prediction_type", "a string", "epsilon".to_owned())?.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::V,
            "sample" if kind == SamplerKind::Ddim => Prediction::Sample,
            other => {
                let allowed =
                    if kind == SamplerKind::Ddim { "epsilon, v_prediction, sample" } else { "epsilon, v_prediction" };
                return Err(f.error("prediction_type", format!("{other:?} is not supported; supported: {allowed}")));
            }
        };
        let beta_schedule = match f.or("beta_schedule", "a string", "linear".to_owned())?.as_str() {
            "linear" => BetaSchedule::Linear,
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "squaredcos_cap_v2" => BetaSchedule::SquaredCosCapV2,
            other => {
                return Err(f.error(
                    "beta_schedule",
                    format!("{other:?} is not supported; supported: linear, scaled_linear, squaredcos_cap_v2"),
                ));
            }
        };
        let spacing = match f.opt::<String>("timestep_spacing", "a string")?.as_deref() {
            None => default_spacing,
            Some("linspace") => Spacing::Linspace,
            Some("leading") => Spacing::Leading,
            Some("trailing") => Spacing::Trailing,
            Some(other) => {
                return Err(f.error(
                    "timestep_spacing",
                    format!("{other:?} is not supported; supported: linspace, leading, trailing"),
                ));
            }
        };
        let train_steps: usize = f.or("num_train_timesteps", "an integer", 1000)?;
        if !(1..=100_000).contains(&train_steps) {
            return Err(f.error("num_train_timesteps", format!("{train_steps} is outside 1..=100000")));
        }
        let ddim = kind == SamplerKind::Ddim;
        let clip = f.or("clip_sample", "true or false", ddim && class == "DDIMScheduler")?;
        let clip_range: f64 = f.or("clip_sample_range", "a number", 1.0)?;
        let config = Self {
            kind,
            prediction,
            beta_schedule,
            beta_start: f.or("beta_start", "a number", 0.0001)?,
            beta_end: f.or("beta_end", "a number", 0.02)?,
            train_steps,
            spacing,
            steps_offset: f.or("steps_offset", "an integer", 0)?,
            set_alpha_to_one: f.or("set_alpha_to_one", "true or false", class == "DDIMScheduler")?,
            clip_sample: (clip && ddim).then_some(clip_range),
        };
        for off in
            ["thresholding", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "rescale_betas_zero_snr"]
        {
            f.only(off, &[json!(false)])?;
        }
        f.only("interpolation_type", &[json!("linear")])?;
        f.only("timestep_type", &[json!("discrete")])?;
        f.only("final_sigmas_type", &[json!("zero")])?;
        for absent in ["trained_betas", "sigma_min", "sigma_max"] {
            f.only(absent, &[])?;
        }
        // Settings of samplers we do not run, or of thresholding (refused above).
        f.ignore(&["skip_prk_steps", "sample_max_value", "dynamic_thresholding_ratio", "eta"]);
        f.finish()?;
        Ok((config, note))
    }

    /// A sampler for one `steps`-step generation.
    pub fn build(&self, steps: usize) -> Sampler {
        let alphas_cumprod =
            schedule::alphas_cumprod(self.beta_schedule, self.beta_start, self.beta_end, self.train_steps);
        let integer = self.kind == SamplerKind::Ddim;
        let timesteps = schedule::timesteps(self.spacing, self.train_steps, steps, self.steps_offset, integer);
        let all_sigmas: Vec<f64> = alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let mut sigmas: Vec<f64> = timesteps.iter().map(|t| schedule::interp(*t, &all_sigmas)).collect();
        sigmas.push(0.0);
        Sampler { config: self.clone(), steps: steps.max(1), timesteps, sigmas, alphas_cumprod }
    }
}

/// One generation's sampler state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SchedulerConfig,
    steps: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
}

impl Sampler {
    /// The UNet timesteps, highest first; one per step.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// Standard deviation of the initial latent noise.
    pub fn init_noise_sigma(&self) -> f64 {
        match self.config.kind {
            SamplerKind::Ddim => 1.0,
            _ => {
                let max = self.sigmas.iter().copied().fold(0.0, f64::max);
                match self.config.spacing {
                    Spacing::Linspace | Spacing::Trailing => max,
                    Spacing::Leading => (max * max + 1.0).sqrt(),
                }
            }
        }
    }

    /// Scales the latents before they enter the UNet at step `i`.
    pub fn scale_model_input(&self, sample: &Tensor, i: usize) -> Result<Tensor> {
        match self.config.kind {
            SamplerKind::Ddim => Ok(sample.clone()),
            _ => sample / (self.sigmas[i].powi(2) + 1.0).sqrt(),
        }
    }

    /// The latents after step `i`, given the (guided) model output.
    pub fn step(&self, output: &Tensor, i: usize, sample: &Tensor, rng: &mut NoiseRng) -> Result<Tensor> {
        self.step_batch(output, i, sample, std::slice::from_mut(rng))
    }

    /// [`Sampler::step`] for a batch of images, image `b` drawing its noise from `rngs[b]`
    /// (so an image's noise is its own seed's whatever it is batched with).
    pub fn step_batch(&self, output: &Tensor, i: usize, sample: &Tensor, rngs: &mut [NoiseRng]) -> Result<Tensor> {
        match self.config.kind {
            SamplerKind::Ddim => self.ddim(output, i, sample),
            SamplerKind::Euler | SamplerKind::EulerAncestral => self.euler(output, i, sample, rngs),
        }
    }

    /// `original` noised to the level the latents have entering step `i`
    /// (diffusers' `add_noise`): where an edit starts part-way, and what the
    /// kept region of a plain-UNet inpainting is reset to after each step.
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        match self.config.kind {
            SamplerKind::Ddim => {
                let a = self.alphas_cumprod[self.timesteps[i] as usize];
                (original * a.sqrt())? + (noise * (1.0 - a).sqrt())?
            }
            SamplerKind::Euler | SamplerKind::EulerAncestral => original + (noise * self.sigmas[i])?,
        }
    }

    fn ddim(&self, output: &Tensor, i: usize, sample: &Tensor) -> Result<Tensor> {
        let t = self.timesteps[i] as usize;
        let prev = t as i64 - (self.config.train_steps / self.steps) as i64;
        let a_t = self.alphas_cumprod[t];
        let a_prev = if prev >= 0 {
            self.alphas_cumprod[prev as usize]
        } else if self.config.set_alpha_to_one {
            1.0
        } else {
            self.alphas_cumprod[0]
        };
        let b_t = 1.0 - a_t;
        let (x0, eps) = match self.config.prediction {
            Prediction::Epsilon => (((sample - (output * b_t.sqrt())?)? / a_t.sqrt())?, output.clone()),
            Prediction::V => {
                (((sample * a_t.sqrt())? - (output * b_t.sqrt())?)?, ((output * a_t.sqrt())? + (sample * b_t.sqrt())?)?)
            }
            Prediction::Sample => (output.clone(), ((sample - (output * a_t.sqrt())?)? / b_t.sqrt())?),
        };
        let x0 = match self.config.clip_sample {
            Some(r) => x0.clamp(-r, r)?,
            None => x0,
        };
        (x0 * a_prev.sqrt())? + (eps * (1.0 - a_prev).sqrt())?
    }

    fn euler(&self, output: &Tensor, i: usize, sample: &Tensor, rngs: &mut [NoiseRng]) -> Result<Tensor> {
        let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
        let x0 = match self.config.prediction {
            Prediction::Epsilon => (sample - (output * sigma)?)?,
            Prediction::V => ((output * (-sigma / (sigma * sigma + 1.0).sqrt()))? + (sample / (sigma * sigma + 1.0))?)?,
            Prediction::Sample => output.clone(),
        };
        let derivative = ((sample - &x0)? / sigma)?;
        if self.config.kind == SamplerKind::Euler {
            return sample + (derivative * (next - sigma))?;
        }
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).max(0.0).sqrt();
        let down = (next * next - up * up).max(0.0).sqrt();
        let moved = (sample + (derivative * (down - sigma))?)?;
        if up == 0.0 {
            return Ok(moved);
        }
        let noise = batch_noise(rngs, sample)?;
        moved + (noise * up)?
    }
}

/// Noise shaped like `sample`: one draw per image from its own generator
/// (one generator: the whole tensor from it).
pub fn batch_noise(rngs: &mut [NoiseRng], sample: &Tensor) -> Result<Tensor> {
    let dims = sample.dims();
    let noise = match rngs {
        [rng] => rng.randn(dims, sample.device())?,
        _ if dims.first() == Some(&rngs.len()) => {
            let mut one = dims.to_vec();
            one[0] = 1;
            let rows = rngs.iter_mut().map(|r| r.randn(&one, sample.device())).collect::<Result<Vec<_>>>()?;
            Tensor::cat(&rows, 0)?
        }
        _ => candle_core::bail!("{} noise generators for a batch of {:?}", rngs.len(), dims.first()),
    };
    noise.to_dtype(sample.dtype())
}

#[cfg(test)]
mod tests;
