//! The whole model against diffusers' reference outputs (tolerances from
//! tests/fixtures/README.md), loaded from the diffusers folder and from the
//! single-file checkpoint.

use candle_core::{DType, Device, Tensor};
use common::{fixture, max_abs_diff, refs, unet_output};
use easel::model::Family;
use easel::model::pipeline::{LoadOptions, StableDiffusion};
use easel::model::sampling::{self, NoiseSource, SampleRequest, SamplerKind};

mod common;

fn diffusers() -> StableDiffusion {
    StableDiffusion::load(&fixture("diffusers"), &LoadOptions::default()).unwrap()
}

/// The single file, with the diffusers folder's configs: attention head
/// counts are not stored in weights, and this tiny model's are not SD1's 8.
fn single_file() -> StableDiffusion {
    let options = LoadOptions { config_folder: Some(fixture("diffusers")), ..LoadOptions::default() };
    StableDiffusion::load(&fixture("tiny-sd15.single_file.safetensors"), &options).unwrap()
}

/// max |a − b| ≤ atol + rtol·max|b|.
fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, atol: f32, rtol: f32) {
    let diff = max_abs_diff(actual, expected);
    let scale = expected.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    eprintln!("{what}: max |Δ| {diff:e} (max |ref| {scale:.3})");
    assert!(diff <= atol + rtol * scale, "{what}: max |Δ| {diff} exceeds {atol} + {rtol}·{scale}");
}

#[test]
fn unet_matches_diffusers_from_both_layouts() {
    let expected = &refs()["unet_out"];
    assert_close("unet (diffusers folder)", &unet_output(&diffusers()), expected, 1e-4, 1e-4);
    assert_close("unet (single file)", &unet_output(&single_file()), expected, 1e-4, 1e-4);
}

#[test]
fn vae_encode_and_decode_match_diffusers() {
    let refs = refs();
    for (layout, model) in [("diffusers folder", diffusers()), ("single file", single_file())] {
        let latent = model.vae.encode(&refs["vae_image"]).unwrap();
        assert_close(&format!("vae mean ({layout})"), &latent.mean, &refs["vae_latent_mean"], 1e-4, 0.0);
        assert_close(&format!("vae logvar ({layout})"), &latent.logvar, &refs["vae_latent_logvar"], 1e-4, 0.0);
        let scaled = (latent.mean * model.vae.config.scaling_factor).unwrap();
        assert_close(&format!("vae scaled mean ({layout})"), &scaled, &refs["vae_latent_mean_scaled"], 1e-4, 0.0);
        let decoded = model.vae.decode(&refs["vae_decode_input"]).unwrap();
        assert_close(&format!("vae decode ({layout})"), &decoded, &refs["vae_decode_output"], 5e-4, 0.0);
    }
}

#[test]
fn prompt_encoding_matches_diffusers() {
    let model = diffusers();
    let conditioning =
        model.encode_prompts(&["a photo of a cat, wearing a red hat", "blurry, low quality"], (128, 128)).unwrap();
    assert_close("prompt embeddings", &conditioning.context, &refs()["te_last_hidden_state"], 1e-5, 0.0);
    assert!(conditioning.added.is_none(), "SD1 has no pooled conditioning");
    assert_eq!(model.family, Family::Sd1);
}

fn reference_request(sampler: SamplerKind) -> SampleRequest {
    SampleRequest {
        prompt: "a photo of a cat, wearing a red hat".into(),
        negative: "blurry, low quality".into(),
        width: 128,
        height: 128,
        steps: 10,
        guidance: 7.5,
        sampler,
        seed: 0,
        initial_latents: Some(refs()["sample_init_latents"].clone()),
    }
}

/// Replays the noise diffusers drew at each Euler-a step.
struct Replay {
    steps: Vec<Tensor>,
}

impl NoiseSource for Replay {
    fn next(&mut self, _: &[usize], _: &Device) -> candle_core::Result<Tensor> {
        let noise = self.steps.remove(0);
        noise.unsqueeze(0)
    }
}

/// Runs the sampler and checks every step's latents against the reference
/// (rtol 1e-3 plus atol 1e-3·max|ref|, per the fixtures README).
fn check_trajectory(model: &StableDiffusion, sampler: SamplerKind, prefix: &str, noise: &mut dyn NoiseSource) {
    let refs = refs();
    let expected = &refs[&format!("{prefix}_step_latents")];
    let mut steps = Vec::new();
    let final_latents =
        sampling::sample(model, &reference_request(sampler), noise, &mut |_, _, x| steps.push(x.clone())).unwrap();
    assert_eq!(steps.len(), 10);
    // Each step's latents, then the final ones the sampler returns.
    let reference_steps = (0..steps.len()).map(|i| expected.get(i).unwrap().unsqueeze(0).unwrap());
    let compared = steps
        .iter()
        .zip(reference_steps)
        .chain(std::iter::once((&final_latents, refs[&format!("{prefix}_final_latents")].clone())));
    let mut worst = 0f32;
    for (i, (actual, reference)) in compared.enumerate() {
        let scale = reference.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let diff = max_abs_diff(actual, &reference);
        let relative = (actual - &reference).unwrap().abs().unwrap();
        let bound = ((reference.abs().unwrap() * 1e-3).unwrap() + f64::from(1e-3 * scale)).unwrap();
        let violations =
            relative.gt(&bound).unwrap().to_dtype(DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        let what = if i < steps.len() { format!("step {i}") } else { "final latents".to_string() };
        assert_eq!(violations, 0.0, "{prefix} {what}: max |Δ| {diff} beyond rtol 1e-3 + 1e-3·{scale}");
        worst = worst.max(diff / scale);
    }
    eprintln!("{prefix}: worst max |Δ|/max|ref| over the steps and the final latents {worst:e}");
}

#[test]
fn ddim_trajectory_matches_diffusers_from_both_layouts() {
    let refs = refs();
    let model = diffusers();
    let ddim = sampling::Ddim::new(&model.scheduler, 10);
    let expected: Vec<i64> = refs["ddim_timesteps"].to_vec1().unwrap();
    assert_eq!(ddim.timesteps.iter().map(|&t| t as i64).collect::<Vec<_>>(), expected);
    check_trajectory(&model, SamplerKind::Ddim, "ddim", &mut sampling::SeededNoise::new(0));
    check_trajectory(&single_file(), SamplerKind::Ddim, "ddim", &mut sampling::SeededNoise::new(0));
}

#[test]
fn euler_ancestral_trajectory_matches_diffusers_with_its_noise() {
    let refs = refs();
    let model = diffusers();
    let euler = sampling::EulerAncestral::new(&model.scheduler, 10);
    let expected: Vec<i64> = refs["euler_a_timesteps"].to_dtype(DType::I64).unwrap().to_vec1().unwrap();
    assert_eq!(euler.timesteps.iter().map(|&t| t as i64).collect::<Vec<_>>(), expected);
    assert!(euler.timesteps.iter().all(|t| t.fract() == 0.0), "leading spacing gives whole timesteps");
    let sigmas = Tensor::new(euler.sigmas.as_slice(), &Device::Cpu).unwrap();
    assert_close("euler-a sigmas", &sigmas, &refs["euler_a_sigmas"], 1e-5, 1e-6);
    let init_sigma = refs["euler_a_init_noise_sigma"].to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    assert!(
        (euler.init_noise_sigma() - init_sigma).abs() < 1e-5,
        "init sigma {} vs {init_sigma}",
        euler.init_noise_sigma()
    );
    let noise = refs["euler_a_step_noise"].clone();
    let mut replay = Replay { steps: (0..10).map(|i| noise.get(i).unwrap()).collect() };
    check_trajectory(&model, SamplerKind::EulerAncestral, "euler_a", &mut replay);
}

#[test]
fn sampling_is_deterministic_per_seed() {
    let model = diffusers();
    let mut request = reference_request(SamplerKind::EulerAncestral);
    request.initial_latents = None;
    request.steps = 3;
    let run = |seed: u64| {
        let mut request = request.clone();
        request.seed = seed;
        sampling::sample(&model, &request, &mut sampling::SeededNoise::new(seed), &mut |_, _, _| {}).unwrap()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(max_abs_diff(&a, &b), 0.0, "same seed, different latents");
    assert!(max_abs_diff(&a, &c) > 1e-2, "different seeds gave the same latents");
}

#[test]
fn single_file_shapes_give_the_structure_without_help() {
    // Without the config folder only the head counts differ (SD1's 8 is assumed).
    let model = StableDiffusion::load(&fixture("tiny-sd15.single_file.safetensors"), &LoadOptions::default()).unwrap();
    let reference = diffusers();
    assert_eq!(model.family, Family::Sd1);
    let (inferred, actual) = (&model.unet.config, &reference.unet.config);
    assert_eq!(inferred.block_out_channels, actual.block_out_channels);
    assert_eq!(inferred.down_block_types, actual.down_block_types);
    assert_eq!(inferred.up_block_types, actual.up_block_types);
    assert_eq!(inferred.cross_attention_dim, actual.cross_attention_dim);
    assert_eq!(inferred.layers_per_block, actual.layers_per_block);
    assert_eq!(inferred.use_linear_projection, actual.use_linear_projection);
    assert_eq!(model.vae.config.block_out_channels, reference.vae.config.block_out_channels);
    assert_eq!(model.vae.config.latent_channels, 4);
    assert_eq!(model.text_encoders[0].model.config.num_hidden_layers, 2);
    assert_eq!(model.text_encoders[0].model.config.vocab_size, 49408);
}

#[test]
fn runs_in_f16_and_refuses_bf16_on_the_cpu() {
    let options = LoadOptions { dtype: DType::F16, ..LoadOptions::default() };
    let model = StableDiffusion::load(&fixture("diffusers"), &options).unwrap();
    assert_eq!(model.unet.dtype(), DType::F16);
    assert_eq!(model.vae.dtype(), DType::F32, "force_upcast keeps the VAE in f32, as diffusers does");
    let output = unet_output(&model).to_dtype(DType::F32).unwrap();
    let diff = max_abs_diff(&output, &refs()["unet_out"]);
    eprintln!("unet in f16: max |Δ| {diff:e}");
    assert!(diff < 1e-2, "f16 UNet strays by {diff}");
    let options = LoadOptions { dtype: DType::BF16, ..LoadOptions::default() };
    let error = StableDiffusion::load(&fixture("diffusers"), &options).unwrap_err().to_string();
    assert!(error.contains("bf16 needs a CUDA GPU"), "{error}");
}

/// A diffusers folder like the fixture's, with every weight stored in `dtype`.
fn folder_stored_as(dtype: DType) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for part in ["unet", "vae", "text_encoder", "tokenizer", "scheduler"] {
        let (from, to) = (fixture("diffusers").join(part), dir.path().join(part));
        std::fs::create_dir(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.extension().is_some_and(|e| e == "safetensors") {
                let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
                let converted: std::collections::HashMap<_, _> =
                    tensors.into_iter().map(|(k, v)| (k, v.to_dtype(dtype).unwrap())).collect();
                candle_core::safetensors::save(&converted, &target).unwrap();
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    dir
}

#[test]
fn reads_weights_stored_in_bf16_and_f32() {
    for dtype in [DType::BF16, DType::F32] {
        let folder = folder_stored_as(dtype);
        let model = StableDiffusion::load(folder.path(), &LoadOptions::default()).unwrap();
        let diff = max_abs_diff(&unet_output(&model), &refs()["unet_out"]);
        eprintln!("unet from {dtype:?} weights: max |Δ| {diff:e}");
        // f16 → f32 is exact. f16 → bf16 keeps 8 of 11 mantissa bits (each
        // weight off by up to 2⁻⁹ relative), which moves these outputs (up to
        // 1.48) by about 9e-3; 0.03 leaves room for that and stays five times
        // below the smallest LoRA effect the fixtures carry (0.153), so a
        // misread layer still fails.
        let tolerance = if dtype == DType::F32 { 1e-4 } else { 0.03 };
        assert!(diff < tolerance, "{dtype:?} weights: max |Δ| {diff}");
    }
}
