use candle_core::{Device, Tensor};

use super::*;

fn config(text: &str) -> SchedulerConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler_config.json");
    std::fs::write(&path, text).unwrap();
    SchedulerConfig::read(&path).unwrap().0
}

/// SD 2.1's scheduler as published (DDIM, v-prediction, leading).
const SD21: &str = r#"{"_class_name": "DDIMScheduler", "_diffusers_version": "0.8.0", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "num_train_timesteps": 1000,
  "prediction_type": "v_prediction", "set_alpha_to_one": false, "skip_prk_steps": true, "steps_offset": 1,
  "trained_betas": null}"#;

/// SD-Turbo's scheduler as published (Euler, epsilon, trailing).
const TURBO: &str = r#"{"_class_name": "EulerDiscreteScheduler", "_diffusers_version": "0.24.0", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "interpolation_type": "linear",
  "num_train_timesteps": 1000, "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": false,
  "skip_prk_steps": true, "steps_offset": 1, "timestep_spacing": "trailing", "timestep_type": "discrete",
  "trained_betas": null, "use_karras_sigmas": false}"#;

#[test]
fn reads_published_configs() {
    let c = config(SD21);
    assert_eq!(
        (c.kind, c.prediction, c.spacing, c.steps_offset),
        (SamplerKind::Ddim, Prediction::V, Spacing::Leading, 1)
    );
    assert_eq!(c.build(50).timesteps()[..2], [981.0, 961.0]);
    let t = config(TURBO);
    assert_eq!((t.kind, t.prediction, t.spacing), (SamplerKind::Euler, Prediction::Epsilon, Spacing::Trailing));
    // SD-Turbo's single step starts from pure noise at t = 999.
    let s = t.build(1);
    assert_eq!(s.timesteps(), &[999.0]);
    assert!((s.init_noise_sigma() - 14.6146).abs() < 1e-3, "{}", s.init_noise_sigma());
}

#[test]
fn refuses_what_it_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scheduler_config.json");
    for (patch, field) in [
        (r#""_class_name": "KDPM2DiscreteScheduler""#, "_class_name"),
        (r#""_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++""#, "algorithm_type"),
        (r#""_class_name": "DPMSolverMultistepScheduler", "solver_order": 3"#, "solver_order"),
        (r#""_class_name": "LCMScheduler", "use_karras_sigmas": true"#, "use_karras_sigmas"),
        (r#""_class_name": "DDIMScheduler", "use_karras_sigmas": true"#, "use_karras_sigmas"),
        (r#""_class_name": "DDIMScheduler", "timestep_spacing": "cosine""#, "timestep_spacing"),
        (r#""_class_name": "EulerDiscreteScheduler", "prediction_type": "sample""#, "prediction_type"),
    ] {
        std::fs::write(&path, format!("{{{patch}}}")).unwrap();
        let err = SchedulerConfig::read(&path).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
    // A key newer diffusers added is a warning, not a refusal.
    std::fs::write(&path, r#"{"_class_name": "DDIMScheduler", "made_up": 1}"#).unwrap();
    assert!(SchedulerConfig::read(&path).is_ok());
}

/// An oracle model that knows the clean sample returns exactly what each
/// parameterisation asks for; one step to the end must then give back the
/// clean sample, whatever the sampler and prediction type.
#[test]
fn an_oracle_denoiser_recovers_the_clean_sample() {
    let dev = Device::Cpu;
    let x0 = Tensor::new(&[0.5f32, -1.0, 0.25], &dev).unwrap();
    let eps = Tensor::new(&[1.0f32, 0.3, -0.7], &dev).unwrap();
    for kind in
        [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::EulerAncestral, SamplerKind::DpmSolver2m, SamplerKind::Lcm]
    {
        for prediction in [Prediction::Epsilon, Prediction::V] {
            let mut c = config(TURBO);
            c.kind = kind;
            c.prediction = prediction;
            c.set_alpha_to_one = true;
            let mut s = c.build(1);
            let t = s.timesteps()[0] as usize;
            let a = s.alphas_cumprod[t];
            let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
            // The sampler's own latent space: variance-preserving for DDIM, sigma-scaled for Euler.
            let sample = if kind.in_sigma_space() {
                (&x0 + (&eps * s.sigmas[0]).unwrap()).unwrap()
            } else {
                ((&x0 * sa).unwrap() + (&eps * sb).unwrap()).unwrap()
            };
            let output = match prediction {
                Prediction::Epsilon => eps.clone(),
                _ => ((&eps * sa).unwrap() - (&x0 * sb).unwrap()).unwrap(),
            };
            let mut rng = NoiseRng::new(0);
            let out = s.step(&output, 0, &sample, &mut rng).unwrap();
            let diff: f32 = (out - &x0).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(diff < 1e-3, "{kind:?} {prediction:?}: off by {diff}");
        }
    }
}

#[test]
fn ancestral_and_lcm_noise_follow_the_seed() {
    let dev = Device::Cpu;
    let mut ancestral = config(TURBO);
    ancestral.kind = SamplerKind::EulerAncestral;
    for c in [ancestral, config(LCM)] {
        let s = c.build(4);
        let sample = Tensor::ones(8, candle_core::DType::F32, &dev).unwrap();
        let output = Tensor::zeros(8, candle_core::DType::F32, &dev).unwrap();
        let run = |seed| -> Vec<f32> {
            let mut rng = NoiseRng::new(seed);
            s.clone().step(&output, 0, &sample, &mut rng).unwrap().to_vec1().unwrap()
        };
        assert_eq!(run(1), run(1), "{:?}", c.kind);
        assert_ne!(run(1), run(2), "{:?}", c.kind);
    }
}

/// A DPM-Solver++ 2M Karras config as diffusers saves it (Python's JSON:
/// `-Infinity`), and an LCM one as LCM-LoRA checkouts ship it.
const DPM_KARRAS: &str = r#"{"_class_name": "DPMSolverMultistepScheduler", "_diffusers_version": "0.27.2",
  "algorithm_type": "dpmsolver++", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
  "dynamic_thresholding_ratio": 0.995, "euler_at_final": false, "final_sigmas_type": "zero",
  "lambda_min_clipped": -Infinity, "lower_order_final": true, "num_train_timesteps": 1000,
  "prediction_type": "epsilon", "sample_max_value": 1.0, "solver_order": 2, "solver_type": "midpoint",
  "steps_offset": 1, "thresholding": false, "timestep_spacing": "linspace", "trained_betas": null,
  "use_karras_sigmas": true, "use_lu_lambdas": false, "variance_type": null}"#;
const LCM: &str = r#"{"_class_name": "LCMScheduler", "_diffusers_version": "0.27.2", "beta_end": 0.012,
  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false, "clip_sample_range": 1.0,
  "num_train_timesteps": 1000, "original_inference_steps": 50, "prediction_type": "epsilon",
  "rescale_betas_zero_snr": false, "sample_max_value": 1.0, "set_alpha_to_one": true, "steps_offset": 1,
  "thresholding": false, "timestep_scaling": 10.0, "timestep_spacing": "leading", "trained_betas": null}"#;

#[test]
fn reads_dpm_karras_and_lcm_configs() {
    let d = config(DPM_KARRAS);
    assert_eq!((d.kind, d.karras_sigmas, d.prediction), (SamplerKind::DpmSolver2m, true, Prediction::Epsilon));
    let s = d.build(4);
    // Karras from SD's sigma_max (t 999) down to its sigma_min (t 0), then 0.
    assert!((s.sigmas[0] - 14.6146).abs() < 1e-3 && (s.sigmas[3] - 0.0292).abs() < 1e-3, "{:?}", s.sigmas);
    assert_eq!((s.timesteps()[0], s.timesteps()[3], s.sigmas[4]), (999.0, 0.0, 0.0));
    assert!(s.timesteps().iter().all(|t| t.fract() == 0.0), "DPM rounds Karras timesteps: {:?}", s.timesteps());
    let l = config(LCM);
    assert_eq!((l.kind, l.lcm_original_steps, l.lcm_timestep_scaling), (SamplerKind::Lcm, 50, 10.0));
    let s = l.build(4);
    assert_eq!(s.timesteps(), &[999.0, 759.0, 499.0, 259.0]);
    assert_eq!(s.init_noise_sigma(), 1.0);
}

/// Over several steps, a model that always knows the clean sample leads
/// every sampler back to it: each step's latents are at the next step's
/// noise level (DPM-Solver++'s second-order correction included, since the
/// denoised estimates agree), and the last is the clean sample.
#[test]
fn an_oracle_denoiser_recovers_the_clean_sample_over_several_steps() {
    let dev = Device::Cpu;
    let x0 = Tensor::new(&[0.5f32, -1.0, 0.25], &dev).unwrap();
    let eps = Tensor::new(&[1.0f32, 0.3, -0.7], &dev).unwrap();
    for (name, text) in [("turbo", TURBO), ("dpm karras", DPM_KARRAS), ("lcm", LCM), ("sd21", SD21)] {
        for (kind, prediction) in [(None, Prediction::Epsilon), (Some(SamplerKind::DpmSolver2m), Prediction::V)] {
            let mut c = config(text);
            c.kind = kind.unwrap_or(c.kind);
            c.prediction = prediction;
            c.set_alpha_to_one = true;
            let mut s = c.build(6);
            let sigma_space = c.kind.in_sigma_space();
            let mut sample = if sigma_space {
                (&x0 + (&eps * s.sigmas[0]).unwrap()).unwrap()
            } else {
                let a = s.alphas_cumprod[s.timesteps()[0] as usize];
                ((&x0 * a.sqrt()).unwrap() + (&eps * (1.0 - a).sqrt()).unwrap()).unwrap()
            };
            let mut rng = NoiseRng::new(3);
            for i in 0..s.timesteps().len() {
                // The noise the latents carry now, and what the model would say of it.
                let (sa, sb, noise) = if sigma_space {
                    let sigma = s.sigmas[i];
                    let a = 1.0 / (sigma * sigma + 1.0);
                    (a.sqrt(), (1.0 - a).sqrt(), ((&sample - &x0).unwrap() / sigma).unwrap())
                } else {
                    let a = s.alphas_cumprod[s.timesteps()[i] as usize];
                    let noise = ((&sample - (&x0 * a.sqrt()).unwrap()).unwrap() / (1.0 - a).sqrt()).unwrap();
                    (a.sqrt(), (1.0 - a).sqrt(), noise)
                };
                let output = match prediction {
                    Prediction::Epsilon => noise,
                    _ => ((&noise * sa).unwrap() - (&x0 * sb).unwrap()).unwrap(),
                };
                sample = s.step(&output, i, &sample, &mut rng).unwrap();
                // Deterministic samplers keep the very noise they started
                // with, at the next step's level.
                let next = i + 1;
                if next < s.timesteps().len() && matches!(c.kind, SamplerKind::Euler | SamplerKind::DpmSolver2m) {
                    let want = (&x0 + (&eps * s.sigmas[next]).unwrap()).unwrap();
                    let off: f32 = (&sample - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                    assert!(off < 1e-4, "{name} {:?} {prediction:?} after step {i}: off by {off}", c.kind);
                }
            }
            let diff: f32 = (sample - &x0).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(diff < 1e-3, "{name} {:?} {prediction:?}: off by {diff}", c.kind);
        }
    }
}
