//! Samplers: DDIM, Euler, Euler Ancestral, DPM-Solver++ 2M (Karras sigmas
//! or not) and LCM, configured from the checkout's
//! `scheduler/scheduler_config.json` (prediction type, betas, timestep
//! spacing), with every random draw from our seeded [`NoiseRng`].
//!
//! candle's own schedulers draw ancestral noise from the unseedable CPU
//! device and its presets fix DDIM with v-prediction, which is wrong for
//! SD-Turbo (Euler, epsilon, trailing); hence these.

mod config;
pub mod schedule;

use candle_core::{Result, Tensor};

use super::rng::NoiseRng;
pub use config::SchedulerConfig;
use schedule::Spacing;

/// Which sampler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    /// Deterministic DDIM (eta = 0).
    Ddim,
    /// Euler (k-diffusion's `sample_euler`), deterministic.
    Euler,
    /// Euler Ancestral: fresh noise at every step.
    EulerAncestral,
    /// DPM-Solver++ 2M (k-diffusion's `sample_dpmpp_2m`), deterministic,
    /// second order from the second step on.
    DpmSolver2m,
    /// Latent Consistency Models: a denoised estimate each step, renoised
    /// to the next step's level.
    Lcm,
}

impl SamplerKind {
    /// Every sampler, in the order [`SamplerKind::ALLOWED`] names them.
    pub const ALL: [SamplerKind; 5] = [Self::Ddim, Self::Euler, Self::EulerAncestral, Self::DpmSolver2m, Self::Lcm];

    /// Allowed spellings for the `--scheduler` override.
    pub const ALLOWED: &'static str = "ddim, euler, euler-ancestral, dpm++-2m, lcm";

    /// Parses a `--scheduler` value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ddim" => Some(Self::Ddim),
            "euler" => Some(Self::Euler),
            "euler-ancestral" | "euler_ancestral" => Some(Self::EulerAncestral),
            "dpm++-2m" | "dpmpp-2m" | "dpmpp_2m" => Some(Self::DpmSolver2m),
            "lcm" => Some(Self::Lcm),
            _ => None,
        }
    }

    /// Runs on latents scaled by sigma (k-diffusion's form) rather than
    /// variance-preserving ones.
    pub fn in_sigma_space(self) -> bool {
        matches!(self, Self::Euler | Self::EulerAncestral | Self::DpmSolver2m)
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

/// One generation's sampler state.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SchedulerConfig,
    steps: usize,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    /// DPM-Solver++ 2M: the last step's denoised estimate and its sigma.
    previous: Option<(Tensor, f64)>,
}

impl Sampler {
    /// The UNet timesteps, highest first; one per step.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// Standard deviation of the initial latent noise.
    pub fn init_noise_sigma(&self) -> f64 {
        match self.config.kind {
            SamplerKind::Ddim | SamplerKind::Lcm => 1.0,
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
            SamplerKind::Ddim | SamplerKind::Lcm => Ok(sample.clone()),
            _ => sample / (self.sigmas[i].powi(2) + 1.0).sqrt(),
        }
    }

    /// The latents after step `i`, given the (guided) model output.
    pub fn step(&mut self, output: &Tensor, i: usize, sample: &Tensor, rng: &mut NoiseRng) -> Result<Tensor> {
        self.step_batch(output, i, sample, std::slice::from_mut(rng))
    }

    /// [`Sampler::step`] for a batch of images, image `b` drawing its noise from `rngs[b]`
    /// (so an image's noise is its own seed's whatever it is batched with).
    pub fn step_batch(&mut self, output: &Tensor, i: usize, sample: &Tensor, rngs: &mut [NoiseRng]) -> Result<Tensor> {
        match self.config.kind {
            SamplerKind::Ddim => self.ddim(output, i, sample),
            SamplerKind::Euler | SamplerKind::EulerAncestral => self.euler(output, i, sample, rngs),
            SamplerKind::DpmSolver2m => self.dpm_2m(output, i, sample),
            SamplerKind::Lcm => self.lcm(output, i, sample, rngs),
        }
    }

    /// `original` noised to the level the latents have entering step `i`
    /// (diffusers' `add_noise`): where an edit starts part-way, and what the
    /// kept region of a plain-UNet inpainting is reset to after each step.
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Result<Tensor> {
        match self.config.kind {
            SamplerKind::Ddim | SamplerKind::Lcm => {
                let a = self.alphas_cumprod[self.timesteps[i] as usize];
                (original * a.sqrt())? + (noise * (1.0 - a).sqrt())?
            }
            SamplerKind::Euler | SamplerKind::EulerAncestral | SamplerKind::DpmSolver2m => {
                original + (noise * self.sigmas[i])?
            }
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

    /// The clean sample the model's output implies at noise level `sigma`
    /// (sigma-space latents).
    fn denoised(&self, output: &Tensor, sample: &Tensor, sigma: f64) -> Result<Tensor> {
        match self.config.prediction {
            Prediction::Epsilon => sample - (output * sigma)?,
            Prediction::V => (output * (-sigma / (sigma * sigma + 1.0).sqrt()))? + (sample / (sigma * sigma + 1.0))?,
            Prediction::Sample => Ok(output.clone()),
        }
    }

    fn euler(&self, output: &Tensor, i: usize, sample: &Tensor, rngs: &mut [NoiseRng]) -> Result<Tensor> {
        let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
        let x0 = self.denoised(output, sample, sigma)?;
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

impl Sampler {
    /// k-diffusion's `sample_dpmpp_2m`: in log-sigma time t = -ln sigma, step
    /// h = t_next - t; x ← (sigma_next / sigma) x - expm1(-h) D, where D is
    /// the denoised estimate, corrected with the previous step's from the
    /// second step on. The last step (to sigma 0) is first order: x = D, as
    /// diffusers' `final_sigmas_type: zero` has it.
    fn dpm_2m(&mut self, output: &Tensor, i: usize, sample: &Tensor) -> Result<Tensor> {
        let (sigma, next) = (self.sigmas[i], self.sigmas[i + 1]);
        let denoised = self.denoised(output, sample, sigma)?;
        let previous = self.previous.replace((denoised.clone(), sigma));
        if next == 0.0 {
            return Ok(denoised);
        }
        let (t, t_next) = (-sigma.ln(), -next.ln());
        let h = t_next - t;
        let d = match previous {
            Some((old, old_sigma)) => {
                let r = (t + old_sigma.ln()) / h;
                ((&denoised * (1.0 + 1.0 / (2.0 * r)))? - (old * (1.0 / (2.0 * r)))?)?
            }
            None => denoised,
        };
        (sample * (next / sigma))? - (d * (-h).exp_m1())?
    }

    /// diffusers' `LCMScheduler.step`: the consistency function's denoised
    /// estimate (boundary-condition scalings c_skip, c_out), renoised to the
    /// next timestep's level from the image's own generator; the last step
    /// returns the estimate.
    fn lcm(&self, output: &Tensor, i: usize, sample: &Tensor, rngs: &mut [NoiseRng]) -> Result<Tensor> {
        const SIGMA_DATA: f64 = 0.5;
        let t = self.timesteps[i];
        let a_t = self.alphas_cumprod[t as usize];
        let b_t = 1.0 - a_t;
        let scaled = t * self.config.lcm_timestep_scaling;
        let c_skip = SIGMA_DATA * SIGMA_DATA / (scaled * scaled + SIGMA_DATA * SIGMA_DATA);
        let c_out = scaled / (scaled * scaled + SIGMA_DATA * SIGMA_DATA).sqrt();
        let x0 = match self.config.prediction {
            Prediction::Epsilon => ((sample - (output * b_t.sqrt())?)? / a_t.sqrt())?,
            Prediction::V => ((sample * a_t.sqrt())? - (output * b_t.sqrt())?)?,
            Prediction::Sample => output.clone(),
        };
        let denoised = ((x0 * c_out)? + (sample * c_skip)?)?;
        let Some(&next) = self.timesteps.get(i + 1) else {
            return Ok(denoised);
        };
        let a_prev = self.alphas_cumprod[next as usize];
        let noise = batch_noise(rngs, sample)?;
        (denoised * a_prev.sqrt())? + (noise * (1.0 - a_prev).sqrt())?
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
