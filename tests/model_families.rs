//! SD2- and SDXL-shaped models (tiny, random weights, written as diffusers
//! folders): family detection, tokenizer padding, conditioning shapes,
//! v-prediction sampling, and kohya LoRA names round-tripping. There are no
//! diffusers references for these shapes; SD1 numerics are checked in
//! model_pipeline.rs and share all of this code.

use candle_core::{Device, Tensor};
use common::families::{sd2, sdxl};
use common::max_abs_diff;
use easel::model::Family;
use easel::model::builtin::{self, RandomModel};
use easel::model::lora::LoraNetwork;
use easel::model::lora_file::{self, LoraFile, TrainingInfo};
use easel::model::pipeline::{LoadOptions, StableDiffusion};
use easel::model::sampling::{self, SampleRequest, SamplerKind, SeededNoise};

mod common;

fn load(spec: &RandomModel) -> (tempfile::TempDir, StableDiffusion) {
    let dir = tempfile::tempdir().unwrap();
    builtin::write_random_model(dir.path(), spec).unwrap();
    let model = StableDiffusion::load(dir.path(), &LoadOptions::default()).unwrap();
    (dir, model)
}

fn draw(model: &StableDiffusion, sampler: SamplerKind) -> Tensor {
    let request = SampleRequest {
        prompt: "a zeltmug".into(),
        negative: "blurry".into(),
        width: 64,
        height: 64,
        steps: 2,
        guidance: 5.0,
        sampler,
        seed: 3,
        initial_latents: None,
    };
    let latents = sampling::sample(model, &request, &mut SeededNoise::new(3), &mut |_, _, _| {}).unwrap();
    let values = latents.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| v.is_finite()), "non-finite latents");
    latents
}

/// A trained-looking network over every adaptable layer, saved in kohya's
/// format, read back and applied: the output must be identical.
fn kohya_round_trip(model: &mut StableDiffusion, expected_keys: &[&str]) {
    let layers = model.lora_layers();
    let network = LoraNetwork::create(&layers, 2, 2.0, 9, &Device::Cpu).unwrap();
    drop(layers);
    for module in &network.modules {
        let shape = module.up.as_tensor().shape().clone();
        module.up.set(&Tensor::randn(0f32, 0.1, shape, &Device::Cpu).unwrap()).unwrap();
    }
    let mut attached = model.clone();
    network.attach(&mut attached.lora_layers(), "trained");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lora.safetensors");
    let metadata =
        lora_file::kohya_metadata(&network, model.family, model.scheduler.prediction_type, &TrainingInfo::default());
    lora_file::save_kohya(&path, &network, model, metadata).unwrap();
    let keys: Vec<String> = candle_core::safetensors::load(&path, &Device::Cpu).unwrap().into_keys().collect();
    for expected in expected_keys {
        assert!(keys.iter().any(|k| k == expected), "no key {expected} among {} keys", keys.len());
    }
    let mut reloaded = model.clone();
    let lora = LoraFile::read(&path, &mut reloaded).unwrap();
    assert!(lora.unmatched.is_empty(), "unmatched: {:?}", lora.unmatched);
    assert_eq!(lora.modules.len(), network.modules.len());
    lora.apply(&mut reloaded, 1.0, "reloaded").unwrap();
    let a = draw(&attached, SamplerKind::Ddim);
    assert_eq!(max_abs_diff(&draw(&reloaded, SamplerKind::Ddim), &a), 0.0);
    assert!(max_abs_diff(&a, &draw(model, SamplerKind::Ddim)) > 1e-4, "the LoRA had no effect");
}

#[test]
fn sd2_shaped_models_load_pad_with_exclamation_and_sample_with_v_prediction() {
    let (_dir, mut model) = load(&sd2());
    assert_eq!(model.family, Family::Sd2);
    assert_eq!(model.scheduler.prediction_type, easel::model::schedule::PredictionType::VPrediction);
    let ids = model.text_encoders[0].tokenizer.encode("a zeltmug");
    assert_eq!(*ids.last().unwrap(), 0, "SD2's tokenizer pads with `!` (id 0)");
    let conditioning = model.encode_prompts(&["a zeltmug"], (64, 64)).unwrap();
    assert_eq!(conditioning.context.dims(), &[1, 77, 32]);
    assert!(conditioning.added.is_none());
    let ddim = draw(&model, SamplerKind::Ddim);
    let euler = draw(&model, SamplerKind::EulerAncestral);
    assert!(max_abs_diff(&ddim, &euler) > 1e-3);
    kohya_round_trip(
        &mut model,
        &[
            "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0_attn2_to_k.lora_down.weight",
            "lora_te_text_model_encoder_layers_1_self_attn_out_proj.alpha",
        ],
    );
}

#[test]
fn sdxl_shaped_models_condition_on_both_encoders_and_pooled_size_ids() {
    let (_dir, mut model) = load(&sdxl());
    assert_eq!(model.family, Family::Sdxl);
    assert_eq!(model.text_encoders.len(), 2);
    assert_eq!(*model.text_encoders[0].tokenizer.encode("a").last().unwrap(), 49407);
    assert_eq!(*model.text_encoders[1].tokenizer.encode("a").last().unwrap(), 0);
    let conditioning = model.encode_prompts(&["a zeltmug", "a cup"], (64, 96)).unwrap();
    assert_eq!(conditioning.context.dims(), &[2, 77, 64], "both encoders' penultimate states side by side");
    let added = conditioning.added.as_ref().expect("SDXL needs pooled text and size ids");
    assert_eq!(added.text_embeds.dims(), &[2, 16], "the second encoder's projected pooled output");
    assert_eq!(added.time_ids.to_vec2::<f32>().unwrap()[0], vec![64.0, 96.0, 0.0, 0.0, 64.0, 96.0]);
    // The size ids reach the UNet: another size changes the prediction.
    let sample = Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &Device::Cpu).unwrap();
    let t = Tensor::new(&[500f32, 500.0], &Device::Cpu).unwrap();
    let other = model.encode_prompts(&["a zeltmug", "a cup"], (128, 128)).unwrap();
    let a = model.unet.forward(&sample, &t, &conditioning.context, conditioning.added.as_ref()).unwrap();
    let b = model.unet.forward(&sample, &t, &other.context, other.added.as_ref()).unwrap();
    assert!(max_abs_diff(&a, &b) > 1e-5, "size conditioning has no effect");
    assert_eq!(model.vae.config.scaling_factor, 0.13025);
    // No negative prompt: zero context and pooled embedding (diffusers' force_zeros_for_empty_prompt).
    let guided = sampling::guidance_conditioning(&model, "a zeltmug", "", 5.0, (64, 64)).unwrap();
    let negative_row = guided.context.narrow(0, 0, 1).unwrap();
    assert_eq!(max_abs_diff(&negative_row, &negative_row.zeros_like().unwrap()), 0.0);
    let pooled = guided.added.as_ref().unwrap().text_embeds.narrow(0, 0, 1).unwrap();
    assert_eq!(max_abs_diff(&pooled, &pooled.zeros_like().unwrap()), 0.0);
    let with_negative = sampling::guidance_conditioning(&model, "a zeltmug", "blurry", 5.0, (64, 64)).unwrap();
    assert!(max_abs_diff(&with_negative.context.narrow(0, 0, 1).unwrap(), &negative_row) > 1e-3);
    draw(&model, SamplerKind::EulerAncestral);
    kohya_round_trip(
        &mut model,
        &[
            // SDXL LoRA keys use the original SGM block names, as kohya writes them.
            "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_up.weight",
            "lora_unet_middle_block_1_proj_in.lora_down.weight",
            "lora_unet_output_blocks_2_1_transformer_blocks_0_ff_net_2.alpha",
            "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight",
            "lora_te2_text_model_encoder_layers_1_self_attn_v_proj.lora_up.weight",
        ],
    );
}
