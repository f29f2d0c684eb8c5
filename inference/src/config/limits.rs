//! Request bounds and defaults: the flags, checked against each other at
//! start and against the model once it is read.

use clap::Args;

use super::ConfigError;
use super::parse::parse_size_flag;
use crate::validation::Limits;

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
