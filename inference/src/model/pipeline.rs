//! Text to image: encode the prompt (and the negative prompt for
//! classifier-free guidance), denoise seeded latent noise step by step, decode
//! with the VAE.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, IndexOp, Tensor};

use super::Model;
use super::edit::EditInput;
use super::rng::NoiseRng;
use super::schedulers::Sampler;

/// One image's settings, already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// What to draw.
    pub prompt: String,
    /// What to steer away from (empty: unconditional).
    pub negative_prompt: String,
    /// Image width in pixels (a multiple of [`Model::size_multiple`]).
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale; at or below 1 guidance is off (SD-Turbo uses 0).
    pub guidance_scale: f64,
    /// Fixes the initial noise and every later random draw.
    pub seed: u64,
}

/// A generated image, 8-bit RGB, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// Why a generation stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A tensor operation failed (out of memory, device error, …).
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    /// The caller asked to stop (its client went away).
    #[error("cancelled")]
    Cancelled,
}

/// What happened at one step, for the step callback.
#[derive(Debug, Clone, Copy)]
pub struct StepInfo {
    /// 0-based step index.
    pub index: usize,
    /// Steps in this generation.
    pub total: usize,
    /// How long the step (UNet + sampler) took.
    pub elapsed: Duration,
}

impl Model {
    /// Generates one image. `on_step` runs after every denoising step and may
    /// stop the generation by returning `Break`.
    pub fn generate(
        &self,
        p: &Params,
        mut on_step: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Image, GenerateError> {
        if self.is_inpainting() {
            // An inpainting UNet draws from text as an inpainting of everything.
            let image = Image { width: p.width, height: p.height, rgb: vec![128; p.width * p.height * 3] };
            let all = EditInput { image, mask: Some(vec![255; p.width * p.height]), strength: 1.0 };
            return self.edit(p, &all, on_step);
        }
        let context = self.context(p)?;

        let sampler = self.scheduler.build(p.steps);
        let mut rng = NoiseRng::new(p.seed);
        let scale = self.size_multiple();
        let shape = [1, self.vae_spec.config.latent_channels, p.height / scale, p.width / scale];
        let noise = rng.randn(&shape, &self.device)?;
        let mut latents = (noise * sampler.init_noise_sigma())?.to_dtype(self.dtype)?;

        let total = sampler.timesteps().len();
        for (i, &t) in sampler.timesteps().iter().enumerate() {
            let started = Instant::now();
            let out = self.predict(&sampler, &latents, i, t, &context, p.guidance_scale, None)?;
            latents = sampler.step(&out, i, &latents, &mut rng)?;
            // Block until the device is done so the step time is real.
            self.device.synchronize()?;
            if on_step(StepInfo { index: i, total, elapsed: started.elapsed() }).is_break() {
                return Err(GenerateError::Cancelled);
            }
        }
        self.decode(&latents, p.width, p.height)
    }

    /// The text context: the prompt's embedding, or the negative and positive
    /// prompts' stacked when guidance is on (scale above 1).
    pub(super) fn context(&self, p: &Params) -> candle_core::Result<Tensor> {
        let guided = p.guidance_scale > 1.0;
        let cond = self.embed(&p.prompt)?;
        if guided { Tensor::cat(&[&self.embed(&p.negative_prompt)?, &cond], 0) } else { Ok(cond) }
    }

    /// The (guided) UNet output at step `i`. `extra` is concatenated to the
    /// scaled latents along channels (an inpainting UNet's mask and masked image).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn predict(
        &self,
        sampler: &Sampler,
        latents: &Tensor,
        i: usize,
        t: f64,
        context: &Tensor,
        guidance_scale: f64,
        extra: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        let guided = context.dim(0)? == 2;
        let input = if guided { Tensor::cat(&[latents, latents], 0)? } else { latents.clone() };
        let input = sampler.scale_model_input(&input, i)?;
        let input = match extra {
            Some(e) => Tensor::cat(&[&input, &Tensor::cat(&vec![e; input.dim(0)?], 0)?], 1)?,
            None => input,
        };
        let out = self.unet.forward(&input, t, context)?;
        if guided {
            let (uncond, text) = (out.i(0..1)?, out.i(1..2)?);
            &uncond + ((text - &uncond)? * guidance_scale)?
        } else {
            Ok(out)
        }
    }

    fn embed(&self, text: &str) -> candle_core::Result<Tensor> {
        let len = self.text_encoder.config().max_position_embeddings;
        let ids = self.tokenizer.encode_padded(text, len);
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        self.text_encoder.forward(&ids)
    }

    pub(super) fn decode(&self, latents: &Tensor, width: usize, height: usize) -> Result<Image, GenerateError> {
        let x = self.vae.decode(&(latents / self.vae_spec.scaling_factor)?)?;
        let x = ((x.to_dtype(DType::F32)? / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
        let x = (x * 255.0)?.round()?.to_dtype(DType::U8)?.to_device(&Device::Cpu)?;
        let rgb = x.i(0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<u8>()?;
        Ok(Image { width, height, rgb })
    }
}

impl Image {
    /// The image as PNG bytes (deterministic for the same pixels).
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        // Writing to a Vec cannot fail, and the sizes match by construction.
        let mut writer = enc.write_header().expect("PNG header into memory");
        writer.write_image_data(&self.rgb).expect("PNG data into memory");
        writer.finish().expect("PNG end into memory");
        out
    }
}
