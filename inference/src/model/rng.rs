//! A small seeded random number generator for diffusion noise.
//!
//! candle's CPU device cannot be seeded, so a seed given by a client would not
//! reproduce an image. Drawing every random number (initial latents and the
//! ancestral scheduler's noise) from this generator on the host makes a seed
//! give the same image on every run and every device.

use candle_core::{Device, Result, Tensor};

/// xoshiro256** seeded through SplitMix64: fast, small, and stable across
/// versions (we own the algorithm, so a crate upgrade never changes images).
#[derive(Debug, Clone)]
pub struct NoiseRng {
    s: [u64; 4],
    /// A second normal sample kept from the last Box–Muller pair.
    spare: Option<f32>,
}

impl NoiseRng {
    /// A generator whose whole sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Self { s: [next(), next(), next(), next()], spare: None }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// A uniform sample in the open interval (0, 1).
    fn uniform(&mut self) -> f64 {
        // 53 random bits, shifted by half a unit so 0 is never returned (ln(0)).
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        self.spare = Some((r * theta.sin()) as f32);
        (r * theta.cos()) as f32
    }

    /// A tensor of standard normal samples in f32 on `device`.
    pub fn randn(&mut self, shape: &[usize], device: &Device) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.normal()).collect();
        Tensor::from_vec(data, shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_other_seed_differs() {
        let a: Vec<f32> = {
            let mut r = NoiseRng::new(42);
            (0..64).map(|_| r.normal()).collect()
        };
        let b: Vec<f32> = {
            let mut r = NoiseRng::new(42);
            (0..64).map(|_| r.normal()).collect()
        };
        let c: Vec<f32> = {
            let mut r = NoiseRng::new(43);
            (0..64).map(|_| r.normal()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn samples_look_standard_normal() {
        let mut r = NoiseRng::new(7);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal() as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }
}
