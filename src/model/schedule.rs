//! The diffusion noise schedule, read from a model's own
//! `scheduler/scheduler_config.json`: the DDPM betas that training noises
//! with and that the samplers step through.

use std::path::Path;

use candle_core::{Device, Result as CandleResult, Tensor};
use serde::Deserialize;

/// The parts of a diffusers scheduler config that define the schedule.
/// Other keys (the sampler's own options) are ignored here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    pub trained_betas: Option<Vec<f64>>,
    pub prediction_type: PredictionType,
    pub steps_offset: usize,
    /// Absent in older configs; each sampler then uses diffusers' own default.
    pub timestep_spacing: Option<TimestepSpacing>,
    pub set_alpha_to_one: bool,
}

impl Default for SchedulerConfig {
    /// diffusers' defaults for a key the file leaves out.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            prediction_type: PredictionType::Epsilon,
            steps_offset: 0,
            timestep_spacing: None,
            set_alpha_to_one: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    /// Linear in √β, as Stable Diffusion is trained.
    ScaledLinear,
    /// The cosine schedule ("squaredcos_cap_v2").
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// What the model predicts, and so what training regresses on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    /// v = √ᾱ·ε − √(1−ᾱ)·x₀ (SD 2.x 768-v models).
    VPrediction,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

impl SchedulerConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        super::read_json_config(path)
    }

    /// The schedule Stable Diffusion 1.x, 2.x and XL were trained with, for
    /// single-file checkpoints, which carry no scheduler config.
    pub fn stable_diffusion() -> Self {
        Self {
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: BetaSchedule::ScaledLinear,
            steps_offset: 1,
            set_alpha_to_one: false,
            timestep_spacing: Some(TimestepSpacing::Leading),
            ..Self::default()
        }
    }
}

/// ᾱ for every training timestep, and the noising it implies.
///
/// Computed the way diffusers computes it (betas in f32, the running product
/// accumulated in f64 and stored in f32, square roots in f32), so that noised
/// latents agree with the reference implementation to the last bits.
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub config: SchedulerConfig,
    /// ᾱ_t = Π_{s≤t} (1 − β_s).
    pub alphas_cumprod: Vec<f32>,
}

impl NoiseSchedule {
    pub fn new(config: SchedulerConfig) -> Self {
        let n = config.num_train_timesteps;
        let betas: Vec<f32> = match (&config.trained_betas, config.beta_schedule) {
            (Some(betas), _) => betas.iter().map(|&b| b as f32).collect(),
            (None, BetaSchedule::Linear) => linspace_f32(config.beta_start, config.beta_end, n),
            (None, BetaSchedule::ScaledLinear) => {
                linspace_f32(config.beta_start.sqrt(), config.beta_end.sqrt(), n).into_iter().map(|b| b * b).collect()
            }
            (None, BetaSchedule::SquaredCosCapV2) => {
                let alpha_bar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n)
                    .map(|i| {
                        let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                    })
                    .collect()
            }
        };
        let mut product = 1.0f64;
        let alphas_cumprod = betas
            .iter()
            .map(|&beta| {
                product *= f64::from(1.0f32 - beta);
                product as f32
            })
            .collect();
        Self { config, alphas_cumprod }
    }

    /// `[B,1,1,1]` tensors of √ᾱ_t and √(1−ᾱ_t), one row per timestep.
    fn coefficients(&self, timesteps: &[usize], like: &Tensor) -> CandleResult<(Tensor, Tensor)> {
        let column = |f: fn(f32) -> f32| -> CandleResult<Tensor> {
            let values = timesteps.iter().map(|&t| f(self.alphas_cumprod[t])).collect();
            Tensor::from_vec(values, (timesteps.len(), 1, 1, 1), like.device())?.to_dtype(like.dtype())
        };
        Ok((column(|a| a.sqrt())?, column(|a| (1.0 - a).sqrt())?))
    }

    /// x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε, one timestep per batch item.
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, timesteps: &[usize]) -> CandleResult<Tensor> {
        let (signal, sigma) = self.coefficients(timesteps, x0)?;
        x0.broadcast_mul(&signal)? + noise.broadcast_mul(&sigma)?
    }

    /// The v-prediction target v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀.
    pub fn velocity(&self, x0: &Tensor, noise: &Tensor, timesteps: &[usize]) -> CandleResult<Tensor> {
        let (signal, sigma) = self.coefficients(timesteps, x0)?;
        noise.broadcast_mul(&signal)? - x0.broadcast_mul(&sigma)?
    }

    /// ᾱ as an f32 tensor, for comparisons and samplers.
    pub fn alphas_cumprod_tensor(&self, device: &Device) -> CandleResult<Tensor> {
        Tensor::new(self.alphas_cumprod.as_slice(), device)
    }
}

/// `n` evenly spaced f32 values from `start` to `end`, computed as torch's
/// linspace does: from the start for the first half, back from the end for
/// the second, so both ends are exact.
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    let (start, end) = (start as f32, end as f32);
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n).map(|i| if i < half { start + step * i as f32 } else { end - step * (n - 1 - i) as f32 }).collect()
}
