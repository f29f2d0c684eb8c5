//! The noise schedule shared by every sampler: training betas, their
//! cumulative alphas, and which training timesteps an n-step run visits.
//! Formulas follow diffusers so a checkout's `scheduler_config.json` means
//! here what it means there.

/// How betas grow over training timesteps (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BetaSchedule {
    /// `linear`.
    Linear,
    /// `scaled_linear`: linear in sqrt(beta) (Stable Diffusion).
    ScaledLinear,
    /// `squaredcos_cap_v2`: the Glide cosine schedule.
    SquaredCosCapV2,
}

/// How the inference timesteps are spread (`timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// Evenly from 0 to T-1, endpoints included.
    Linspace,
    /// Multiples of T/n from 0, plus `steps_offset`.
    Leading,
    /// Multiples of T/n counted down from T-1 (SD-Turbo: 1 step = t 999).
    Trailing,
}

/// Cumulative products of (1 - beta) for each training timestep.
pub fn alphas_cumprod(schedule: BetaSchedule, beta_start: f64, beta_end: f64, train_steps: usize) -> Vec<f64> {
    let t = train_steps;
    let lin = |a: f64, b: f64, i: usize| if t == 1 { a } else { a + (b - a) * i as f64 / (t - 1) as f64 };
    let betas: Vec<f64> = match schedule {
        BetaSchedule::Linear => (0..t).map(|i| lin(beta_start, beta_end, i)).collect(),
        BetaSchedule::ScaledLinear => (0..t).map(|i| lin(beta_start.sqrt(), beta_end.sqrt(), i).powi(2)).collect(),
        BetaSchedule::SquaredCosCapV2 => {
            let bar = |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
            (0..t).map(|i| (1.0 - bar((i + 1) as f64 / t as f64) / bar(i as f64 / t as f64)).min(0.999)).collect()
        }
    };
    let mut acc = 1.0;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// The timesteps of an `steps`-step run, highest first. `integer` rounds them
/// (DDIM); the Euler samplers keep linspace's fractional values.
pub fn timesteps(spacing: Spacing, train_steps: usize, steps: usize, offset: usize, integer: bool) -> Vec<f64> {
    let t = train_steps as f64;
    let n = steps.max(1);
    let ts: Vec<f64> = match spacing {
        Spacing::Linspace => (0..n)
            .map(|i| if n == 1 { 0.0 } else { (t - 1.0) * i as f64 / (n - 1) as f64 })
            .map(|x| if integer { x.round() } else { x })
            .rev()
            .collect(),
        Spacing::Leading => {
            let ratio = (train_steps / n) as f64;
            (0..n).map(|i| (i as f64 * ratio).round() + offset as f64).rev().collect()
        }
        Spacing::Trailing => {
            let ratio = t / n as f64;
            (0..n).map(|i| (t - i as f64 * ratio).round() - 1.0).collect()
        }
    };
    ts.into_iter().map(|x| x.clamp(0.0, t - 1.0)).collect()
}

/// DPM-Solver++'s timesteps (diffusers' `DPMSolverMultistepScheduler`):
/// n + 1 points spread over the training steps, the lowest dropped.
pub fn multistep_timesteps(spacing: Spacing, train_steps: usize, steps: usize, offset: usize) -> Vec<f64> {
    let t = train_steps as f64;
    let n = steps.max(1);
    let ts: Vec<f64> = match spacing {
        Spacing::Linspace => (1..=n).rev().map(|i| ((t - 1.0) * i as f64 / n as f64).round()).collect(),
        Spacing::Leading => {
            let ratio = (train_steps / (n + 1)) as f64;
            (1..=n).rev().map(|i| (i as f64 * ratio).round() + offset as f64).collect()
        }
        Spacing::Trailing => return timesteps(spacing, train_steps, steps, offset, true),
    };
    ts.into_iter().map(|x| x.clamp(0.0, t - 1.0)).collect()
}

/// Karras et al. (2022)'s noise levels, `sigma_max` down to `sigma_min` in
/// `steps` points, rho = 7 (diffusers' `_convert_to_karras`).
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / RHO), sigma_max.powf(1.0 / RHO));
    let n = steps.max(1);
    (0..n)
        .map(|i| if n == 1 { 0.0 } else { i as f64 / (n - 1) as f64 })
        .map(|ramp| (max_inv + ramp * (min_inv - max_inv)).powf(RHO))
        .collect()
}

/// The (fractional) training timestep whose noise level is `sigma`,
/// interpolating in log sigma as diffusers' `_sigma_to_t` does;
/// `log_sigmas` is ln sigma per training timestep, increasing.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    if log_sigmas.len() < 2 {
        return 0.0;
    }
    let log_sigma = sigma.max(1e-10).ln();
    let low = log_sigmas.iter().rposition(|l| *l <= log_sigma).unwrap_or(0).min(log_sigmas.len() - 2);
    let (l0, l1) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((l0 - log_sigma) / (l0 - l1)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// LCM's timesteps (diffusers' `LCMScheduler`): `steps` of the
/// distillation's `original_steps` evenly spaced ones, highest first; at
/// most `original_steps` of them.
pub fn lcm_timesteps(train_steps: usize, original_steps: usize, steps: usize) -> Vec<f64> {
    let k = train_steps / original_steps;
    let origin: Vec<usize> = (1..=original_steps).rev().map(|i| i * k - 1).collect();
    let n = steps.clamp(1, original_steps);
    (0..n).map(|i| origin[i * origin.len() / n] as f64).collect()
}

/// Linear interpolation of `ys` (given at 0, 1, 2, …) at `x`.
pub fn interp(x: f64, ys: &[f64]) -> f64 {
    let last = ys.len() - 1;
    if x <= 0.0 {
        return ys[0];
    }
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let frac = x - i as f64;
    ys[i] * (1.0 - frac) + ys[i + 1] * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacings_match_diffusers() {
        // Values as diffusers computes them for 1000 training steps.
        assert_eq!(timesteps(Spacing::Leading, 1000, 4, 1, true), vec![751.0, 501.0, 251.0, 1.0]);
        assert_eq!(timesteps(Spacing::Trailing, 1000, 4, 0, true), vec![999.0, 749.0, 499.0, 249.0]);
        assert_eq!(timesteps(Spacing::Trailing, 1000, 1, 0, false), vec![999.0]);
        assert_eq!(timesteps(Spacing::Linspace, 1000, 3, 0, false), vec![999.0, 499.5, 0.0]);
        assert_eq!(timesteps(Spacing::Linspace, 1000, 3, 0, true), vec![999.0, 500.0, 0.0]);
    }

    #[test]
    fn scaled_linear_schedule_matches_sd() {
        let ac = alphas_cumprod(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000);
        assert!((ac[0] - (1.0 - 0.00085)).abs() < 1e-12);
        // diffusers: alphas_cumprod[-1] for SD's schedule is about 0.00466.
        assert!((ac[999] - 0.004660).abs() < 2e-5, "{}", ac[999]);
        let cos = alphas_cumprod(BetaSchedule::SquaredCosCapV2, 0.0, 0.0, 1000);
        assert!(cos.windows(2).all(|w| w[1] < w[0]));
        let lin = alphas_cumprod(BetaSchedule::Linear, 0.0001, 0.02, 1000);
        assert!((lin[0] - 0.9999).abs() < 1e-12);
    }

    #[test]
    fn multistep_karras_and_lcm_timesteps_match_diffusers() {
        // DPMSolverMultistepScheduler, 1000 training steps, 20 steps, linspace.
        let ts = multistep_timesteps(Spacing::Linspace, 1000, 20, 0);
        assert_eq!((ts.len(), ts[0], ts[1], ts[19]), (20, 999.0, 949.0, 50.0));
        assert_eq!(multistep_timesteps(Spacing::Leading, 1000, 4, 1), [801.0, 601.0, 401.0, 201.0]);
        // LCMScheduler's published 4-step schedule.
        assert_eq!(lcm_timesteps(1000, 50, 4), [999.0, 759.0, 499.0, 259.0]);
        assert_eq!(lcm_timesteps(1000, 50, 1), [999.0]);
        assert_eq!(lcm_timesteps(1000, 50, 80).len(), 50, "never more than the distillation's steps");
        // Karras: the endpoints, and decreasing.
        let k = karras_sigmas(0.0292, 14.6146, 10);
        assert!((k[0] - 14.6146).abs() < 1e-9 && (k[9] - 0.0292).abs() < 1e-9, "{k:?}");
        assert!(k.windows(2).all(|w| w[0] > w[1]), "{k:?}");
    }

    #[test]
    fn sigma_to_t_inverts_the_schedule() {
        let ac = alphas_cumprod(BetaSchedule::ScaledLinear, 0.00085, 0.012, 1000);
        let sigmas: Vec<f64> = ac.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let logs: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
        for t in [0usize, 1, 250, 999] {
            assert!((sigma_to_t(sigmas[t], &logs) - t as f64).abs() < 1e-9, "{t}");
        }
        let between = sigma_to_t((sigmas[500] * sigmas[501]).sqrt(), &logs);
        assert!((between - 500.5).abs() < 1e-9, "log-linear between two steps: {between}");
    }

    #[test]
    fn interp_is_linear_between_points() {
        assert_eq!(interp(1.5, &[0.0, 1.0, 3.0]), 2.0);
        assert_eq!(interp(9.0, &[0.0, 1.0, 3.0]), 3.0);
    }
}
