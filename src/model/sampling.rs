//! Text-to-image sampling: DDIM (η = 0) and Euler ancestral, stepping the
//! model's own noise schedule, with classifier-free guidance.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

use super::Family;
use super::pipeline::{Conditioning, StableDiffusion};
use super::schedule::{NoiseSchedule, PredictionType, SchedulerConfig, TimestepSpacing};
use super::unet::AddedConditioning;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    Ddim,
    EulerAncestral,
}

/// A scheduler name Easel does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown scheduler `{0}` (use ddim or euler-a)")]
pub struct UnknownSampler(String);

impl FromStr for SamplerKind {
    type Err = UnknownSampler;
    fn from_str(text: &str) -> Result<Self, UnknownSampler> {
        match text {
            "ddim" => Ok(Self::Ddim),
            "euler-a" | "euler_a" | "euler-ancestral" => Ok(Self::EulerAncestral),
            other => Err(UnknownSampler(other.to_string())),
        }
    }
}

impl fmt::Display for SamplerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ddim => "ddim",
            Self::EulerAncestral => "euler-a",
        })
    }
}

/// Standard-normal noise from a seed: the same seed gives the same numbers
/// on every device, since they are drawn on the CPU.
pub struct SeededNoise {
    rng: rand::rngs::StdRng,
}

impl SeededNoise {
    pub fn new(seed: u64) -> Self {
        Self { rng: rand::rngs::StdRng::seed_from_u64(seed) }
    }

    pub fn next(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let count = shape.iter().product();
        let values: Vec<f32> = (0..count).map(|_| StandardNormal.sample(&mut self.rng)).collect();
        Tensor::from_vec(values, shape, device)
    }
}

/// The descending inference timesteps for `steps` steps, as diffusers
/// spaces them (`np.round` rounds halves to even). Linspace spacing keeps
/// fractional timesteps, as Euler schedulers do; DDIM rounds them.
pub fn inference_timesteps(config: &SchedulerConfig, spacing: TimestepSpacing, steps: usize) -> Vec<f64> {
    let n = config.num_train_timesteps;
    match spacing {
        TimestepSpacing::Leading => (0..steps).rev().map(|i| (i * (n / steps) + config.steps_offset) as f64).collect(),
        TimestepSpacing::Trailing => {
            let ratio = n as f64 / steps as f64;
            (0..steps).map(|i| (n as f64 - i as f64 * ratio).round_ties_even() - 1.0).collect()
        }
        TimestepSpacing::Linspace => {
            let last = (n - 1) as f64;
            (0..steps).rev().map(|i| if steps == 1 { 0.0 } else { i as f64 * last / (steps - 1) as f64 }).collect()
        }
    }
}

/// DDIM with η = 0 and no sample clipping.
pub struct Ddim {
    pub timesteps: Vec<usize>,
    schedule: NoiseSchedule,
    step_size: usize,
    final_alpha: f32,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let schedule = NoiseSchedule::new(config.clone());
        let final_alpha = if config.set_alpha_to_one { 1.0 } else { schedule.alphas_cumprod[0] };
        // DDIM's default spacing is leading; its timesteps are whole numbers.
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Leading);
        Self {
            timesteps: inference_timesteps(config, spacing, steps)
                .into_iter()
                .map(|t| t.round_ties_even() as usize)
                .collect(),
            step_size: config.num_train_timesteps / steps,
            schedule,
            final_alpha,
        }
    }

    /// The latents after step `i` given the model output at `sample`.
    pub fn step(&self, i: usize, output: &Tensor, sample: &Tensor) -> candle_core::Result<Tensor> {
        let t = self.timesteps[i];
        let alpha = self.schedule.alphas_cumprod[t];
        let alpha_prev =
            t.checked_sub(self.step_size).map_or(self.final_alpha, |prev| self.schedule.alphas_cumprod[prev]);
        let (sqrt_alpha, sqrt_beta) = (f64::from(alpha.sqrt()), f64::from((1.0 - alpha).sqrt()));
        let (x0, eps) = match self.schedule.config.prediction_type {
            PredictionType::Epsilon => (((sample - (output * sqrt_beta)?)? / sqrt_alpha)?, output.clone()),
            PredictionType::VPrediction => {
                (((sample * sqrt_alpha)? - (output * sqrt_beta)?)?, ((output * sqrt_alpha)? + (sample * sqrt_beta)?)?)
            }
            PredictionType::Sample => (output.clone(), ((sample - (output * sqrt_alpha)?)? / sqrt_beta)?),
        };
        (x0 * f64::from(alpha_prev.sqrt()))? + (eps * f64::from((1.0 - alpha_prev).sqrt()))?
    }
}

/// Euler ancestral: an Euler step down to σ_down, then fresh noise up to σ_to.
pub struct EulerAncestral {
    /// Fractional with linspace spacing, as diffusers keeps them.
    pub timesteps: Vec<f64>,
    /// σ per step, then a final 0.
    pub sigmas: Vec<f32>,
    prediction: PredictionType,
    spacing: TimestepSpacing,
}

impl EulerAncestral {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Self {
        let schedule = NoiseSchedule::new(config.clone());
        // Euler's default spacing is linspace (diffusers), unlike DDIM's.
        let spacing = config.timestep_spacing.unwrap_or(TimestepSpacing::Linspace);
        let timesteps = inference_timesteps(config, spacing, steps);
        // σ per training timestep in f32, then interpolated linearly at
        // fractional timesteps in f64, as np.interp does.
        let table: Vec<f32> = schedule.alphas_cumprod.iter().map(|&alpha| ((1.0 - alpha) / alpha).sqrt()).collect();
        let mut sigmas: Vec<f32> = timesteps
            .iter()
            .map(|&t| {
                let t = t.clamp(0.0, (table.len() - 1) as f64);
                let (low, fraction) = (t.floor() as usize, t.fract());
                let high = (low + 1).min(table.len() - 1);
                (f64::from(table[low]) * (1.0 - fraction) + f64::from(table[high]) * fraction) as f32
            })
            .collect();
        sigmas.push(0.0);
        Self { timesteps, sigmas, prediction: config.prediction_type, spacing }
    }

    /// What the initial standard-normal latents are multiplied by.
    pub fn init_noise_sigma(&self) -> f32 {
        let max = self.sigmas.iter().copied().fold(0.0, f32::max);
        match self.spacing {
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
            _ => max,
        }
    }

    /// The model sees x / √(σ² + 1).
    pub fn scale_input(&self, i: usize, sample: &Tensor) -> candle_core::Result<Tensor> {
        let sigma = self.sigmas[i];
        sample / f64::from((sigma * sigma + 1.0).sqrt())
    }

    pub fn step(&self, i: usize, output: &Tensor, sample: &Tensor, noise: &Tensor) -> candle_core::Result<Tensor> {
        let (sigma, sigma_to) = (self.sigmas[i], self.sigmas[i + 1]);
        let x0 = match self.prediction {
            PredictionType::Epsilon => (sample - (output * f64::from(sigma))?)?,
            PredictionType::VPrediction => {
                let s2 = f64::from(sigma * sigma + 1.0);
                ((output * (-f64::from(sigma) / s2.sqrt()))? + (sample / s2)?)?
            }
            PredictionType::Sample => output.clone(),
        };
        let sigma_up = (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma)).sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();
        let derivative = ((sample - x0)? / f64::from(sigma))?;
        let moved = (sample + (derivative * f64::from(sigma_down - sigma))?)?;
        moved + (noise * f64::from(sigma_up))?
    }
}

/// What to draw.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub prompt: String,
    pub negative: String,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    pub guidance: f64,
    pub sampler: SamplerKind,
    pub seed: u64,
    /// Start from these `[1, 4, h/8, w/8]` latents instead of seeded noise
    /// (before the sampler's initial scaling, as diffusers' `latents=`).
    pub initial_latents: Option<Tensor>,
}

/// Where the noise comes from: seeded, or replayed (tests use the reference's).
pub trait NoiseSource {
    fn next(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor>;
}

impl NoiseSource for SeededNoise {
    fn next(&mut self, shape: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        SeededNoise::next(self, shape, device)
    }
}

/// The model's noise prediction with classifier-free guidance for a batch
/// of `n` images of one prompt: the UNet sees every conditioning row for
/// every image, `[unconditional × n, conditional × n]` when guidance is above 1.
fn guided_prediction(
    model: &StableDiffusion,
    x: &Tensor,
    t: f64,
    conditioning: &Conditioning,
    guidance: f64,
) -> Result<Tensor> {
    let (n, rows) = (x.dim(0)?, conditioning.context.dim(0)?);
    let input = Tensor::cat(&vec![x; rows], 0)?;
    let timesteps = Tensor::full(t as f32, rows * n, x.device())?;
    let context = each_row_n_times(&conditioning.context, n)?;
    let added = conditioning
        .added
        .as_ref()
        .map(|added| -> candle_core::Result<_> {
            Ok(AddedConditioning {
                text_embeds: each_row_n_times(&added.text_embeds, n)?,
                time_ids: each_row_n_times(&added.time_ids, n)?,
            })
        })
        .transpose()?;
    let output = model.unet.forward(&input, &timesteps, &context, added.as_ref())?.to_dtype(DType::F32)?;
    if rows == 1 {
        return Ok(output);
    }
    let (unconditional, conditional) = (output.narrow(0, 0, n)?, output.narrow(0, n, n)?);
    Ok((&unconditional + ((conditional - &unconditional)? * guidance)?)?)
}

/// `[a, b]` → `[a × n, b × n]` along the batch.
fn each_row_n_times(rows: &Tensor, n: usize) -> candle_core::Result<Tensor> {
    if n == 1 {
        return Ok(rows.clone());
    }
    let repeated: Vec<Tensor> =
        (0..rows.dim(0)?).map(|r| rows.narrow(0, r, 1)?.repeat(n)).collect::<candle_core::Result<_>>()?;
    Tensor::cat(&repeated, 0)
}

/// The UNet's conditioning for a prompt: `[negative, prompt]` when guidance
/// is above 1, the prompt alone otherwise.
pub fn guidance_conditioning(
    model: &StableDiffusion,
    prompt: &str,
    negative: &str,
    guidance: f64,
    size: (usize, usize),
) -> Result<Conditioning> {
    let positive = model.encode_prompts(&[prompt], size)?;
    if guidance <= 1.0 {
        return Ok(positive);
    }
    if negative.is_empty() && model.family == Family::Sdxl {
        // SDXL (force_zeros_for_empty_prompt): no negative prompt means zero
        // context and pooled embedding, not the encoding of "".
        let added = positive.added.as_ref().map(|added| -> candle_core::Result<_> {
            Ok(AddedConditioning { text_embeds: added.text_embeds.zeros_like()?, time_ids: added.time_ids.clone() })
        });
        let negative = Conditioning { context: positive.context.zeros_like()?, added: added.transpose()? };
        return Ok(Conditioning::concat(&negative, &positive)?);
    }
    Ok(Conditioning::concat(&model.encode_prompts(&[negative], size)?, &positive)?)
}

/// Runs the sampler and returns the final latents (unscaled, as the VAE's
/// `decode` wants them after dividing by its scaling factor). `on_step` hears
/// (step done, total, latents).
pub fn sample(
    model: &StableDiffusion,
    request: &SampleRequest,
    noise: &mut dyn NoiseSource,
    on_step: &mut dyn FnMut(usize, usize, &Tensor),
) -> Result<Tensor> {
    run(model, request, &mut [noise], on_step)
}

/// `request` once per seed, in one batch: each image starts from (and, with
/// a stochastic sampler, is stirred by) its own seed's noise, so each is the
/// image `sample` draws for that seed alone. The latents, one per seed.
pub fn sample_seeds(model: &StableDiffusion, request: &SampleRequest, seeds: &[u64]) -> Result<Vec<Tensor>> {
    let mut noises: Vec<SeededNoise> = seeds.iter().map(|&seed| SeededNoise::new(seed)).collect();
    let mut sources: Vec<&mut dyn NoiseSource> = noises.iter_mut().map(|n| n as &mut dyn NoiseSource).collect();
    let latents = run(model, request, &mut sources, &mut |_, _, _| {})?;
    Ok((0..seeds.len()).map(|i| latents.narrow(0, i, 1)).collect::<candle_core::Result<_>>()?)
}

/// The sampler over a batch of one image per noise source.
fn run(
    model: &StableDiffusion,
    request: &SampleRequest,
    noises: &mut [&mut dyn NoiseSource],
    on_step: &mut dyn FnMut(usize, usize, &Tensor),
) -> Result<Tensor> {
    if request.steps == 0 {
        bail!("steps must be at least 1");
    }
    let (latent_h, latent_w) = model.latent_size(request.height, request.width)?;
    let device = &model.device;
    let size = (request.height, request.width);
    let conditioning = guidance_conditioning(model, &request.prompt, &request.negative, request.guidance, size)?;
    let channels = model.unet.config.in_channels;
    let one = [1, channels, latent_h, latent_w];
    // Each image's noise comes from its own source, as if drawn alone.
    let draw = |noises: &mut [&mut dyn NoiseSource]| -> Result<Tensor> {
        let parts: Vec<Tensor> = noises.iter_mut().map(|n| n.next(&one, device)).collect::<candle_core::Result<_>>()?;
        Ok(Tensor::cat(&parts, 0)?)
    };
    let mut x = match &request.initial_latents {
        Some(latents) => {
            if latents.dims() != one {
                bail!(
                    "the given latents have shape {:?}, expected {one:?} for {}×{}",
                    latents.dims(),
                    request.width,
                    request.height
                );
            }
            latents.to_device(device)?.to_dtype(DType::F32)?
        }
        None => draw(noises)?,
    };
    match request.sampler {
        SamplerKind::Ddim => {
            let ddim = Ddim::new(&model.scheduler, request.steps);
            for (i, &t) in ddim.timesteps.iter().enumerate() {
                let output = guided_prediction(model, &x, t as f64, &conditioning, request.guidance)?;
                x = ddim.step(i, &output, &x)?;
                on_step(i + 1, request.steps, &x);
            }
        }
        SamplerKind::EulerAncestral => {
            let euler = EulerAncestral::new(&model.scheduler, request.steps);
            x = (x * f64::from(euler.init_noise_sigma()))?;
            for (i, &t) in euler.timesteps.iter().enumerate() {
                let output = guided_prediction(model, &euler.scale_input(i, &x)?, t, &conditioning, request.guidance)?;
                let step_noise = draw(noises)?;
                x = euler.step(i, &output, &x, &step_noise)?;
                on_step(i + 1, request.steps, &x);
            }
        }
    }
    Ok(x)
}

/// Decodes final latents to an RGB image.
pub fn decode_image(model: &StableDiffusion, latents: &Tensor) -> Result<image::RgbImage> {
    let decoded = model.vae.decode(&(latents / model.vae.config.scaling_factor)?)?.to_dtype(DType::F32)?;
    let pixels = ((decoded / 2.0)? + 0.5)?.clamp(0f32, 1f32)?.affine(255.0, 0.0)?.round()?.to_dtype(DType::U8)?;
    let (_, _, height, width) = pixels.dims4()?;
    let data = pixels.squeeze(0)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<u8>()?;
    image::RgbImage::from_raw(width as u32, height as u32, data)
        .ok_or_else(|| anyhow::anyhow!("decoded image has the wrong size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timesteps_are_spaced_and_rounded_as_diffusers_does() {
        let mut config = SchedulerConfig::stable_diffusion();
        config.timestep_spacing = None;
        // Without a spacing in the config, DDIM defaults to leading and Euler to linspace.
        assert_eq!(Ddim::new(&config, 4).timesteps, vec![751, 501, 251, 1]);
        let euler = EulerAncestral::new(&config, 20);
        assert_eq!(euler.timesteps[0], 999.0);
        assert!((euler.timesteps[1] - 946.421_052_631_578_9).abs() < 1e-9, "{}", euler.timesteps[1]);
        assert_eq!(euler.init_noise_sigma(), euler.sigmas[0], "linspace: the largest σ, not √(σ²+1)");
        let sigma = euler.sigmas[1];
        assert!(sigma > EulerAncestral::new(&config, 2).sigmas[1] && sigma < euler.sigmas[0]);
        // np.round rounds halves to even: 16 trailing steps hit 812.5 → 812.
        config.timestep_spacing = Some(TimestepSpacing::Trailing);
        let trailing = inference_timesteps(&config, TimestepSpacing::Trailing, 16);
        assert_eq!(trailing[3], 811.0, "{trailing:?}");
        assert_eq!(&trailing[..3], &[999.0, 937.0, 874.0]);
    }
}
