//! `scheduler/scheduler_config.json`: which sampler runs and the noise
//! schedule it runs on, with diffusers' per-class defaults for absent fields.

use std::path::Path;

use serde_json::json;

use super::schedule::{self, BetaSchedule, Spacing};
use super::{Prediction, Sampler, SamplerKind};
use crate::model::fields::{FieldError, Fields};

type ReadResult<T> = std::result::Result<T, FieldError>;

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
    /// Euler and DPM-Solver++: Karras et al.'s sigmas (`use_karras_sigmas`).
    pub karras_sigmas: bool,
    /// LCM: the distillation's step count its timesteps are drawn from.
    pub lcm_original_steps: usize,
    /// LCM: the timestep scale of its boundary condition.
    pub lcm_timestep_scaling: f64,
}

const SUPPORTED: &str = "DDIMScheduler, EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, \
                         DPMSolverMultistepScheduler (dpmsolver++, order 2), LCMScheduler, PNDMScheduler (run as DDIM)";

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
            "DPMSolverMultistepScheduler" => (SamplerKind::DpmSolver2m, Spacing::Linspace, None),
            "LCMScheduler" => (SamplerKind::Lcm, Spacing::Leading, None),
            other => {
                return Err(f.error("_class_name", format!("{other:?} is not supported; supported: {SUPPORTED}")));
            }
        };
        let ddim = kind == SamplerKind::Ddim;
        let prediction = match f.or("prediction_type", "a string", "epsilon".to_owned())?.as_str() {
            "epsilon" => Prediction::Epsilon,
            "v_prediction" => Prediction::V,
            "sample" if matches!(kind, SamplerKind::Ddim | SamplerKind::Lcm) => Prediction::Sample,
            other => {
                let allowed = if matches!(kind, SamplerKind::Ddim | SamplerKind::Lcm) {
                    "epsilon, v_prediction, sample"
                } else {
                    "epsilon, v_prediction"
                };
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
        let clip = f.or("clip_sample", "true or false", ddim && class == "DDIMScheduler")?;
        let clip_range: f64 = f.or("clip_sample_range", "a number", 1.0)?;
        // Karras sigmas are a sigma-space schedule: the Euler family and DPM-Solver++.
        let karras_sigmas = if kind.in_sigma_space() {
            f.or("use_karras_sigmas", "true or false", false)?
        } else {
            f.only("use_karras_sigmas", &[json!(false)])?;
            false
        };
        let lcm_original_steps: usize = f.or("original_inference_steps", "an integer", 50)?;
        if !(1..=train_steps).contains(&lcm_original_steps) {
            let reason = format!("{lcm_original_steps} is outside 1..=num_train_timesteps ({train_steps})");
            return Err(f.error("original_inference_steps", reason));
        }
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
            karras_sigmas,
            lcm_original_steps,
            lcm_timestep_scaling: f.or("timestep_scaling", "a number", 10.0)?,
        };
        for off in
            ["thresholding", "use_exponential_sigmas", "use_beta_sigmas", "rescale_betas_zero_snr", "use_lu_lambdas"]
        {
            f.only(off, &[json!(false)])?;
        }
        f.only("interpolation_type", &[json!("linear")])?;
        f.only("timestep_type", &[json!("discrete")])?;
        f.only("final_sigmas_type", &[json!("zero")])?;
        // DPM-Solver++ as k-diffusion's sample_dpmpp_2m runs it.
        f.only("algorithm_type", &[json!("dpmsolver++")])?;
        f.only("solver_order", &[json!(2)])?;
        f.only("solver_type", &[json!("midpoint")])?;
        f.only("variance_type", &[json!(null)])?;
        for absent in ["trained_betas", "sigma_min", "sigma_max"] {
            f.only(absent, &[])?;
        }
        // Settings of samplers we do not run, of thresholding (refused above),
        // or that change nothing with a zero final sigma (the last step is
        // first order then, as lower_order_final and euler_at_final ask).
        f.ignore(&[
            "skip_prk_steps",
            "sample_max_value",
            "dynamic_thresholding_ratio",
            "eta",
            "lower_order_final",
            "euler_at_final",
            "lambda_min_clipped",
        ]);
        f.finish()?;
        Ok((config, note))
    }

    /// A sampler for one `steps`-step generation.
    pub fn build(&self, steps: usize) -> Sampler {
        let alphas_cumprod =
            schedule::alphas_cumprod(self.beta_schedule, self.beta_start, self.beta_end, self.train_steps);
        let all_sigmas: Vec<f64> = alphas_cumprod.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let steps = steps.max(1);
        let (timesteps, mut sigmas) = match self.kind {
            SamplerKind::Lcm => (schedule::lcm_timesteps(self.train_steps, self.lcm_original_steps, steps), vec![]),
            kind if self.karras_sigmas && kind.in_sigma_space() => {
                let sigmas = schedule::karras_sigmas(all_sigmas[0], all_sigmas[all_sigmas.len() - 1], steps);
                let round = kind == SamplerKind::DpmSolver2m;
                let log_sigmas: Vec<f64> = all_sigmas.iter().map(|s| s.ln()).collect();
                let ts = sigmas
                    .iter()
                    .map(|s| schedule::sigma_to_t(*s, &log_sigmas))
                    .map(|t| if round { t.round() } else { t });
                (ts.collect(), sigmas)
            }
            kind => {
                let ts = match kind {
                    SamplerKind::DpmSolver2m => {
                        schedule::multistep_timesteps(self.spacing, self.train_steps, steps, self.steps_offset)
                    }
                    _ => schedule::timesteps(
                        self.spacing,
                        self.train_steps,
                        steps,
                        self.steps_offset,
                        kind == SamplerKind::Ddim,
                    ),
                };
                let sigmas = ts.iter().map(|t| schedule::interp(*t, &all_sigmas)).collect();
                (ts, sigmas)
            }
        };
        sigmas.push(0.0);
        Sampler { config: self.clone(), steps: timesteps.len(), timesteps, sigmas, alphas_cumprod, previous: None }
    }
}
