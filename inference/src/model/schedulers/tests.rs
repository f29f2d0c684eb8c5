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
        (r#""_class_name": "LCMScheduler""#, "_class_name"),
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
    for kind in [SamplerKind::Ddim, SamplerKind::Euler, SamplerKind::EulerAncestral] {
        for prediction in [Prediction::Epsilon, Prediction::V] {
            let mut c = config(TURBO);
            c.kind = kind;
            c.prediction = prediction;
            c.set_alpha_to_one = true;
            let s = c.build(1);
            let t = s.timesteps()[0] as usize;
            let a = s.alphas_cumprod[t];
            let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
            // The sampler's own latent space: variance-preserving for DDIM, sigma-scaled for Euler.
            let sample = match kind {
                SamplerKind::Ddim => ((&x0 * sa).unwrap() + (&eps * sb).unwrap()).unwrap(),
                _ => (&x0 + (&eps * s.sigmas[0]).unwrap()).unwrap(),
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
fn ancestral_noise_follows_the_seed() {
    let dev = Device::Cpu;
    let mut c = config(TURBO);
    c.kind = SamplerKind::EulerAncestral;
    let s = c.build(4);
    let sample = Tensor::ones(8, candle_core::DType::F32, &dev).unwrap();
    let output = Tensor::zeros(8, candle_core::DType::F32, &dev).unwrap();
    let run = |seed| -> Vec<f32> {
        let mut rng = NoiseRng::new(seed);
        s.step(&output, 0, &sample, &mut rng).unwrap().to_vec1().unwrap()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}
