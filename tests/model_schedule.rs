//! The noise schedule against diffusers' own numbers (tests/fixtures/tiny-sd15/refs.safetensors).

use candle_core::Device;
use common::{fixture, max_abs_diff, refs};
use easel::model::schedule::{NoiseSchedule, PredictionType, SchedulerConfig};

mod common;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(SchedulerConfig::from_file(&fixture("diffusers/scheduler/scheduler_config.json")).unwrap())
}

#[test]
fn reads_the_models_scheduler_config() {
    let config = schedule().config;
    assert_eq!(config.num_train_timesteps, 1000);
    assert_eq!(config.prediction_type, PredictionType::Epsilon);
    assert_eq!((config.beta_start, config.beta_end, config.steps_offset), (0.00085, 0.012, 1));
}

#[test]
fn alphas_cumprod_match_diffusers() {
    let refs = refs();
    let ours = schedule().alphas_cumprod_tensor(&Device::Cpu).unwrap();
    let diff = max_abs_diff(&ours, &refs["ddpm_alphas_cumprod"]);
    eprintln!("alphas_cumprod max |Δ| = {diff:e}");
    assert!(diff < 1e-6, "max |Δ| = {diff}");
}

#[test]
fn add_noise_and_velocity_match_diffusers() {
    let refs = refs();
    let timesteps: Vec<usize> =
        refs["noise_timesteps"].to_vec1::<i64>().unwrap().into_iter().map(|t| t as usize).collect();
    assert_eq!(timesteps, [1, 500, 999]);
    let schedule = schedule();
    let (x0, noise) = (&refs["noise_x0"], &refs["noise_noise"]);
    let noisy = schedule.add_noise(x0, noise, &timesteps).unwrap();
    let diff = max_abs_diff(&noisy, &refs["noise_noisy"]);
    eprintln!("add_noise max |Δ| = {diff:e}");
    assert!(diff < 1e-6, "add_noise max |Δ| = {diff}");
    let velocity = schedule.velocity(x0, noise, &timesteps).unwrap();
    let diff = max_abs_diff(&velocity, &refs["noise_velocity"]);
    eprintln!("velocity max |Δ| = {diff:e}");
    assert!(diff < 1e-6, "velocity max |Δ| = {diff}");
}
