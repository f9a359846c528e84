//! `easel bench conformance`: the numeric checks of the test suite that must
//! also hold on a GPU, runnable where there is no Rust toolchain (the GPU
//! machine gets the binary and the repository's fixtures):
//! - every fused op's output and input gradients on the device against the
//!   CPU op on the same inputs, in f32 and bf16;
//! - the fixture UNet's output against diffusers' reference tensors in f32
//!   (the tests' tolerance) and bf16;
//! - `bench train`'s LoRA step, repeated on its one fixed batch of the real
//!   architecture (random weights): the loss must fall.
//!
//! Prints one JSON line per check and fails when one is out of tolerance.

use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use serde_json::{Value, json};

use super::train::{Arch, LoraStep};
use crate::model::fused;
use crate::model::gradcheck::weighted_sum;
use crate::model::pipeline::{LoadOptions, StableDiffusion};

fn largest(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
}

/// max |a − b| relative to max |b|, both moved to the CPU in f32.
fn relative_difference(a: &Tensor, b: &Tensor) -> Result<f32> {
    let (a, b) = (a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?, b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?);
    Ok(largest(&(a - &b)?)? / largest(&b)?.max(f32::MIN_POSITIVE))
}

type Op = fn(&[Tensor]) -> candle_core::Result<Tensor>;

/// The output and the gradients of `op` (`weighted_sum` as the loss) for the
/// inputs that get one (a norm's affine weights are frozen).
fn run_op(op: Op, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    let vars: Vec<Var> = inputs.iter().map(Var::from_tensor).collect::<candle_core::Result<_>>()?;
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = op(&tensors)?;
    let grads = weighted_sum(&y.to_dtype(DType::F32)?)?.backward()?;
    let mut out = vec![y];
    out.extend(tensors.iter().filter_map(|t| grads.get(t).cloned()));
    if out.len() == 1 {
        bail!("no input got a gradient");
    }
    Ok(out)
}

/// Each fused op on `device` in `dtype` against the CPU op in f32.
fn fused_ops(device: &Device, dtype: DType, tolerance: f64) -> Result<Vec<Value>> {
    let cpu = Device::Cpu;
    let random = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &cpu);
    let cases: Vec<(&str, Op, Vec<Tensor>)> = vec![
        (
            "group_norm_silu",
            |t| fused::group_norm(&t[0], &t[1], &t[2], 32, 1e-5, true),
            vec![random(&[2, 64, 16, 16])?, random(&[64])?, random(&[64])?],
        ),
        (
            "layer_norm",
            |t| fused::layer_norm(&t[0], &t[1], &t[2], 1e-5),
            vec![random(&[2, 77, 320])?, random(&[320])?, random(&[320])?],
        ),
        ("geglu", |t| fused::geglu(&t[0]), vec![random(&[2, 64, 2 * 1280])?]),
        (
            "attention_self_d40",
            |t| fused::attention(&t[0], &t[1], &t[2], false),
            vec![random(&[16, 1024, 40])?, random(&[16, 1024, 40])?, random(&[16, 1024, 40])?],
        ),
        (
            "attention_cross_d64",
            |t| fused::attention(&t[0], &t[1], &t[2], false),
            vec![random(&[10, 256, 64])?, random(&[10, 77, 64])?, random(&[10, 77, 64])?],
        ),
        (
            "attention_d80",
            |t| fused::attention(&t[0], &t[1], &t[2], false),
            vec![random(&[4, 100, 80])?, random(&[4, 100, 80])?, random(&[4, 100, 80])?],
        ),
        (
            "attention_causal_d160",
            |t| fused::attention(&t[0], &t[1], &t[2], true),
            vec![random(&[2, 77, 160])?, random(&[2, 77, 160])?, random(&[2, 77, 160])?],
        ),
    ];
    let mut lines = Vec::new();
    for (name, op, inputs) in cases {
        // The reference sees the same (rounded) inputs, so only the op's own error remains.
        let rounded: Vec<Tensor> =
            inputs.iter().map(|t| t.to_dtype(dtype)?.to_dtype(DType::F32)).collect::<candle_core::Result<_>>()?;
        let reference = run_op(op, &rounded)?;
        let moved: Vec<Tensor> =
            inputs.iter().map(|t| t.to_device(device)?.to_dtype(dtype)).collect::<candle_core::Result<_>>()?;
        let result = run_op(op, &moved)?;
        let differences: Vec<f32> =
            result.iter().zip(&reference).map(|(a, b)| relative_difference(a, b)).collect::<Result<_>>()?;
        let worst = differences.iter().copied().fold(0f32, f32::max);
        lines.push(json!({
            "check": format!("fused {name}"), "dtype": format!("{dtype:?}").to_lowercase(),
            "relative_difference": {"output": differences[0], "gradients": &differences[1..]},
            "tolerance": tolerance, "pass": f64::from(worst) <= tolerance,
        }));
    }
    Ok(lines)
}

/// The fixture UNet on `device` against diffusers' output.
fn fixture_unet(fixtures: &Path, device: &Device, dtype: DType, tolerance: f64) -> Result<Value> {
    let folder = fixtures.join("tiny-sd15");
    let refs = candle_core::safetensors::load(folder.join("refs.safetensors"), &Device::Cpu)
        .with_context(|| format!("cannot read {}", folder.join("refs.safetensors").display()))?;
    let model = StableDiffusion::load(
        &folder.join("diffusers"),
        &LoadOptions { dtype, device: device.clone(), ..LoadOptions::default() },
    )?;
    let input = |name: &str| -> Result<Tensor> {
        Ok(refs.get(name).with_context(|| format!("refs.safetensors has no {name}"))?.to_device(device)?)
    };
    let output = model.unet.forward(
        &input("unet_sample")?,
        &input("unet_timesteps")?.to_dtype(DType::F32)?,
        &input("unet_encoder_hidden_states")?.to_dtype(dtype)?,
        None,
    )?;
    let difference = relative_difference(&output, &refs["unet_out"])?;
    Ok(json!({
        "check": "fixture unet vs diffusers", "dtype": format!("{dtype:?}").to_lowercase(),
        "relative_difference": difference, "tolerance": tolerance, "pass": f64::from(difference) <= tolerance,
    }))
}

/// `easel bench train`'s step (rank 16), repeated on its one fixed batch of
/// the real architecture: the loss must fall.
fn loss_falls(arch: Arch, device: &Device, dtype: DType, steps: usize) -> Result<Value> {
    let mut bench = LoraStep::new(arch, dtype, device, (16, 1, arch.default_resolution()))?;
    let mut losses = Vec::new();
    for _ in 0..steps {
        losses.push(bench.step(1e-3)?.to_scalar::<f32>()?);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    Ok(json!({
        "check": "loss falls on a fixed batch", "arch": format!("{arch:?}").to_lowercase(),
        "dtype": format!("{dtype:?}").to_lowercase(), "losses": losses, "pass": last < first,
    }))
}

/// Runs every check on `device`, printing a JSON line each; an error names the failures.
pub fn run(fixtures: &Path, device: &Device, arch: Arch, steps: usize) -> Result<()> {
    let mut lines = fused_ops(device, DType::F32, 1e-4)?;
    if device.is_cuda() {
        lines.extend(fused_ops(device, DType::BF16, 3e-2)?);
    }
    lines.push(fixture_unet(fixtures, device, DType::F32, 1e-4)?);
    if device.is_cuda() {
        lines.push(fixture_unet(fixtures, device, DType::BF16, 5e-2)?);
    }
    let dtype = if device.is_cuda() { DType::BF16 } else { DType::F32 };
    lines.push(loss_falls(arch, device, dtype, steps)?);
    let failed: Vec<&str> = lines.iter().filter(|l| l["pass"] == false).filter_map(|l| l["check"].as_str()).collect();
    for line in &lines {
        println!("{line}");
    }
    if !failed.is_empty() {
        bail!("out of tolerance: {}", failed.join(", "));
    }
    Ok(())
}
