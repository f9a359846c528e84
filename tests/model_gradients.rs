//! Training-path gradients through the whole model: finite-difference checks
//! of LoRA variables in the UNet and the text encoder, and every LoRA
//! variable getting a gradient once its B matrix has moved off zero.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use common::fixture;
use easel::model::gradcheck::{max_gradient_error, weighted_sum};
use easel::model::lora::{LoraAdapter, LoraNetwork, is_unet_target};
use easel::model::pipeline::{LoadOptions, StableDiffusion};
use easel::project::LoraTargets;

mod common;

fn model(dtype: DType) -> StableDiffusion {
    StableDiffusion::load(&fixture("diffusers"), &LoadOptions { dtype, ..LoadOptions::default() }).unwrap()
}

/// The training forward pass: prompt → text encoder → UNet on a small
/// noised latent, reduced to a scalar that depends on every output.
fn scalar_output(model: &StableDiffusion, sample: &Tensor) -> candle_core::Result<Tensor> {
    let context = model.encode_prompts(&["a zeltmug on a table"], (64, 64)).map_err(candle_core::Error::wrap)?.context;
    let timesteps = Tensor::new(&[500f64], sample.device())?;
    weighted_sum(&model.unet.forward(sample, &timesteps, &context, None)?)
}

/// Backpropagated vs central-difference gradient of the output with respect
/// to the down matrix of the adapter on `path` (its up matrix random).
fn lora_gradient_error(path: &str) -> f64 {
    let base = model(DType::F64);
    let sample = Tensor::randn(0f64, 1.0, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let mut probe = base.clone();
    let (in_features, out_features) = {
        let layers = probe.lora_layers();
        let (_, layer) = layers.iter().find(|(p, _)| p == path).expect("layer exists");
        (layer.in_features(), layer.out_features())
    };
    let up = Tensor::randn(0f64, 0.5, (out_features, 2), &Device::Cpu).unwrap();
    let down = Tensor::randn(0f64, 0.5, (2, in_features), &Device::Cpu).unwrap();
    let f = |down: &Tensor| {
        let mut model = base.clone();
        let mut layers = model.lora_layers();
        let (_, layer) = layers.iter_mut().find(|(p, _)| p == path).unwrap();
        layer.adapters.push(LoraAdapter { down: down.clone(), up: up.clone(), scale: 1.0, source: Arc::from("probe") });
        scalar_output(&model, &sample)
    };
    max_gradient_error(f, &down, 1e-5).unwrap()
}

#[test]
fn unet_lora_gradients_match_finite_differences() {
    // The first adapted layer: its gradient flows back through every later block.
    let error = lora_gradient_error("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q");
    eprintln!("UNet LoRA (down_blocks.0 attn1.to_q) gradient: max |Δ| vs finite differences {error:e}");
    assert!(error < 1e-5, "gradient error {error}");
    let error = lora_gradient_error("unet.up_blocks.1.attentions.2.proj_out");
    eprintln!("UNet LoRA (up_blocks.1 proj_out) gradient: max |Δ| vs finite differences {error:e}");
    assert!(error < 1e-5, "gradient error {error}");
}

#[test]
fn text_encoder_lora_gradients_match_finite_differences() {
    let error = lora_gradient_error("text_encoder.text_model.encoder.layers.0.self_attn.q_proj");
    eprintln!("text encoder LoRA (layer 0 q_proj) gradient: max |Δ| vs finite differences {error:e}");
    assert!(error < 1e-5, "gradient error {error}");
}

fn loss(model: &StableDiffusion, noisy: &Tensor, noise: &Tensor) -> Tensor {
    let context = model.encode_prompts(&["a zeltmug on a table", "a zeltmug, side view"], (128, 128)).unwrap().context;
    let timesteps = Tensor::new(&[250f32, 750.0], &Device::Cpu).unwrap();
    let prediction = model.unet.forward(noisy, &timesteps, &context, None).unwrap();
    (prediction - noise).unwrap().sqr().unwrap().mean_all().unwrap()
}

fn nonzero(grads: &candle_core::backprop::GradStore, var: &Var) -> bool {
    grads.get(var.as_tensor()).is_some_and(|g| g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0)
}

#[test]
fn after_one_step_every_lora_variable_has_a_gradient() {
    let mut model = model(DType::F32);
    let mut layers: Vec<_> = model
        .lora_layers()
        .into_iter()
        .filter(|(path, _)| !path.starts_with("unet.") || is_unet_target(path, LoraTargets::Transformer))
        .collect();
    let network = LoraNetwork::create(&layers, 4, 4.0, 3, &Device::Cpu).unwrap();
    network.attach(&mut layers, "training");
    drop(layers);
    assert_eq!(network.modules.len(), 72 + 12, "UNet transformer layers plus text encoder layers");
    let noisy = Tensor::randn(0f32, 1.0, (2, 4, 16, 16), &Device::Cpu).unwrap();
    let noise = Tensor::randn(0f32, 1.0, (2, 4, 16, 16), &Device::Cpu).unwrap();

    // B starts at zero, so only B gets a gradient at first (A's is B-weighted).
    let grads = loss(&model, &noisy, &noise).backward().unwrap();
    for module in &network.modules {
        assert!(nonzero(&grads, &module.up), "{}: B has no gradient at step 0", module.path);
    }
    for var in network.vars() {
        if let Some(grad) = grads.get(var.as_tensor()) {
            var.set(&(var.as_tensor() - (grad * 0.1).unwrap()).unwrap()).unwrap();
        }
    }
    let grads = loss(&model, &noisy, &noise).backward().unwrap();
    let missing: Vec<&str> = network
        .modules
        .iter()
        .filter(|m| !nonzero(&grads, &m.down) || !nonzero(&grads, &m.up))
        .map(|m| m.path.as_str())
        .collect();
    assert!(missing.is_empty(), "no gradient after one step for {missing:?}");
}
