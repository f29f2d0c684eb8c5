//! Image to image and inpainting, after diffusers' `StableDiffusionImg2ImgPipeline`
//! and `StableDiffusionInpaintPipeline`:
//!
//! - the init image is encoded by our [`VaeEncoder`](super::vae_encoder::VaeEncoder),
//!   its latent drawn from a second seeded stream (so the denoising stream is
//!   exactly the one text to image uses);
//! - `strength` skips the first `steps - ⌊steps × strength⌋` steps and starts
//!   from the init latents noised to that level; at strength 1 the start is
//!   pure noise, as diffusers' inpainting pipeline does (`is_strength_max`),
//!   so an img2img at strength 1 is byte-for-byte the text to image of the
//!   same seed (diffusers' img2img would still add the init latents);
//! - with a mask (white = repaint), a 9-channel inpainting UNet gets the mask
//!   and the masked image's latents as extra input; a plain UNet has the kept
//!   region reset to the init latents, noised to the next step's level, after
//!   every step (diffusers' legacy inpainting);
//! - after decoding, the kept pixels are pasted back from the init image, so
//!   they come out unchanged whatever the VAE's round trip does to them.

use std::ops::ControlFlow;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::Model;
pub use super::pipeline::EditInput;
use super::pipeline::{GenerateError, Image, Params, StepInfo};
use super::rng::NoiseRng;

/// Steps an edit really runs: `⌊steps × strength⌋`, as diffusers counts them.
pub fn steps_run(steps: usize, strength: f64) -> usize {
    ((steps as f64 * strength) as usize).min(steps)
}

/// Mixed into the seed for the encoder's stream; any constant would do, it
/// only has to differ from the denoising stream.
const ENCODER_STREAM: u64 = 0xE4C0_DE00_1A7E_4750;

impl Model {
    /// Whether the UNet takes the mask and masked image too (9 input channels).
    pub fn is_inpainting(&self) -> bool {
        self.unet_spec.in_channels == 2 * self.vae_spec.config.latent_channels + 1
    }

    /// Edits `e.image` by the prompt of `p`. `p.steps` is the full schedule;
    /// [`steps_run`] of them run. `on_step` as for [`Model::generate`].
    pub fn edit(
        &self,
        p: &Params,
        e: &EditInput,
        mut on_step: impl FnMut(StepInfo) -> ControlFlow<()>,
    ) -> Result<Image, GenerateError> {
        let context = self.context(p)?;
        let mut sampler = self.scheduler.build(p.steps);
        let timesteps = sampler.timesteps().to_vec();
        let total = timesteps.len();
        let start = total - steps_run(total, e.strength).max(1);
        let mut rng = NoiseRng::new(p.seed);
        let mut enc_rng = NoiseRng::new(p.seed ^ ENCODER_STREAM);
        let scale = self.size_multiple();
        let (h, w) = (p.height / scale, p.width / scale);
        let noise32 = rng.randn(&[1, self.vae_spec.config.latent_channels, h, w], &self.device)?;
        let noise = noise32.to_dtype(self.dtype)?;

        let pixels = self.pixels(&e.image)?;
        let sf = self.vae_spec.scaling_factor;
        let init = (self.vae_encoder.encode(&pixels)?.sample(&mut enc_rng)? * sf)?;
        let mut latents = if e.strength >= 1.0 {
            (noise32 * sampler.init_noise_sigma())?.to_dtype(self.dtype)?
        } else {
            sampler.add_noise(&init, &noise, start)?
        };
        let mask = e.mask.as_ref().map(|m| self.latent_mask(m, p.width, p.height)).transpose()?;
        let extra = match (&mask, self.is_inpainting()) {
            (Some(m), true) => {
                let keep = (1.0 - self.pixel_mask(e.mask.as_deref().unwrap_or_default(), p.width, p.height)?)?;
                let masked = pixels.broadcast_mul(&keep)?;
                let masked = (self.vae_encoder.encode(&masked)?.sample(&mut enc_rng)? * sf)?;
                Some(Tensor::cat(&[m, &masked], 1)?)
            }
            // An inpainting UNet on img2img: repaint everything.
            (None, true) => {
                let ones = Tensor::ones((1, 1, h, w), self.dtype, &self.device)?;
                Some(Tensor::cat(&[&ones, &init.zeros_like()?], 1)?)
            }
            _ => None,
        };

        for (i, &t) in timesteps.iter().enumerate().skip(start) {
            let started = Instant::now();
            let out = self.predict(&sampler, &latents, i, t, &context, p.guidance_scale, extra.as_ref())?;
            latents = sampler.step(&out, i, &latents, &mut rng)?;
            if let (Some(m), None) = (&mask, &extra) {
                let kept = if i + 1 < total { sampler.add_noise(&init, &noise, i + 1)? } else { init.clone() };
                latents = (kept.broadcast_mul(&(1.0 - m)?)? + latents.broadcast_mul(m)?)?;
            }
            self.device.synchronize()?;
            if on_step(StepInfo { index: i - start, total: total - start, elapsed: started.elapsed() }).is_break() {
                return Err(GenerateError::Cancelled);
            }
        }
        let mut out = self.decode(&latents, p.width, p.height)?;
        if let Some(m) = &e.mask {
            for (px, (&keep, orig)) in out.rgb.chunks_mut(3).zip(m.iter().zip(e.image.rgb.chunks(3))) {
                if keep < 128 {
                    px.copy_from_slice(orig);
                }
            }
        }
        Ok(out)
    }

    /// `[1, 3, H, W]` in -1..1, the VAE's input range.
    fn pixels(&self, image: &Image) -> candle_core::Result<Tensor> {
        let t = Tensor::from_slice(&image.rgb, (image.height, image.width, 3), &Device::Cpu)?;
        let t = ((t.permute((2, 0, 1))?.to_dtype(DType::F32)? / 127.5)? - 1.0)?;
        t.unsqueeze(0)?.to_dtype(self.dtype)?.to_device(&self.device)
    }

    /// `[1, 1, H, W]`: 1 where the mask repaints (diffusers binarises at 0.5).
    fn pixel_mask(&self, mask: &[u8], width: usize, height: usize) -> candle_core::Result<Tensor> {
        let v: Vec<f32> = mask.iter().map(|&m| if m >= 128 { 1.0 } else { 0.0 }).collect();
        Tensor::from_vec(v, (1, 1, height, width), &Device::Cpu)?.to_dtype(self.dtype)?.to_device(&self.device)
    }

    /// The mask at latent size: a latent pixel repaints if any image pixel it
    /// covers does, so the seam is regenerated rather than kept stale (the
    /// pixel paste-back keeps the unmasked pixels exact anyway).
    fn latent_mask(&self, mask: &[u8], width: usize, height: usize) -> candle_core::Result<Tensor> {
        let s = self.size_multiple();
        let (w, h) = (width / s, height / s);
        let mut v = vec![0f32; w * h];
        for (i, &m) in mask.iter().enumerate() {
            if m >= 128 {
                v[(i / width / s) * w + (i % width) / s] = 1.0;
            }
        }
        Tensor::from_vec(v, (1, 1, h, w), &Device::Cpu)?.to_dtype(self.dtype)?.to_device(&self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_counts_as_diffusers_does() {
        assert_eq!(steps_run(20, 1.0), 20);
        assert_eq!(steps_run(20, 0.5), 10);
        assert_eq!(steps_run(20, 0.76), 15);
        assert_eq!(steps_run(4, 0.2), 0);
    }
}
