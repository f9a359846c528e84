//! LoRA against diffusers: the fixture's kohya and PEFT files at scales 1
//! and 0.5, zero-initialised adapters, merging, several LoRAs at once, and
//! Easel's own files read back.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{fixture, fixture_model, max_abs_diff, refs, unet_output};
use easel::model::lora::{LoraNetwork, is_unet_target};
use easel::model::lora_file::{self, LoraFile, LoraFormat, TrainingInfo};
use easel::model::pipeline::StableDiffusion;
use easel::project::LoraTargets;

mod common;

fn with_lora(file: &str, weight: f64) -> (Tensor, LoraFile) {
    let mut model = fixture_model();
    let lora = LoraFile::read(&fixture(&format!("lora/{file}")), &mut model).unwrap();
    lora.apply(&mut model, weight, "test").unwrap();
    (unet_output(&model), lora)
}

#[test]
fn fixture_loras_match_diffusers_at_both_scales() {
    let refs = refs();
    for (name, modules) in [("lora_attn", 48), ("lora_kohya_default", 72)] {
        for (format, expected_format) in [("kohya", LoraFormat::Kohya), ("diffusers", LoraFormat::Peft)] {
            let mut outputs = Vec::new();
            for (weight, suffix) in [(1.0, "1"), (0.5, "0_5")] {
                let (output, lora) = with_lora(&format!("{name}.{format}.safetensors"), weight);
                assert_eq!(lora.format, expected_format);
                assert_eq!(lora.modules.len(), modules, "{name}.{format}: modules matched");
                assert!(lora.unmatched.is_empty(), "{name}.{format}: unmatched {:?}", lora.unmatched);
                assert!(lora.modules.iter().all(|m| m.alpha == 8.0), "{name}.{format}: alpha 8 expected");
                let expected = &refs[&format!("unet_out_{name}_scale{suffix}")];
                let diff = max_abs_diff(&output, expected);
                eprintln!("{name}.{format} × {weight}: max |Δ| {diff:e}");
                assert!(diff < 1e-4 + 1e-4 * 1.5, "{name}.{format} × {weight}: max |Δ| {diff}");
                outputs.push(output);
            }
            let effect = max_abs_diff(&outputs[0], &outputs[1]);
            assert!(effect > 0.03, "{name}.{format}: scales 1 and 0.5 differ by only {effect}");
        }
    }
}

/// A network over the chosen layers with a non-zero up matrix, as after training.
fn trained_network(model: &mut StableDiffusion, targets: LoraTargets, text_encoder: bool) -> LoraNetwork {
    let layers: Vec<_> = model
        .lora_layers()
        .into_iter()
        .filter(|(path, _)| if path.starts_with("unet.") { is_unet_target(path, targets) } else { text_encoder })
        .collect();
    let network = LoraNetwork::create(&layers, 4, 8.0, 42, &Device::Cpu).unwrap();
    for module in &network.modules {
        let shape = module.up.as_tensor().shape().clone();
        module.up.set(&Tensor::randn(0f32, 0.05, shape, &Device::Cpu).unwrap()).unwrap();
    }
    network
}

#[test]
fn a_zero_initialised_lora_leaves_the_output_unchanged() {
    let mut model = fixture_model();
    let base = unet_output(&model);
    let mut layers = model.lora_layers();
    let network = LoraNetwork::create(&layers, 4, 4.0, 1, &Device::Cpu).unwrap();
    assert_eq!(network.modules.len(), layers.len());
    network.attach(&mut layers, "fresh");
    assert!(layers.iter().all(|(_, layer)| layer.adapters.len() == 1), "every layer carries the adapter");
    drop(layers);
    assert_eq!(max_abs_diff(&unet_output(&model), &base), 0.0, "B = 0: exactly the base model");
    // The attached adapters are live: the first step of training makes B
    // non-zero in place, and the same layers then compute the low-rank path.
    for module in &network.modules {
        let shape = module.up.as_tensor().shape().clone();
        module.up.set(&Tensor::randn(0f32, 0.05, shape, &Device::Cpu).unwrap()).unwrap();
    }
    let trained = max_abs_diff(&unet_output(&model), &base);
    eprintln!("attached adapters with B ~ N(0, 0.05²): max |Δ unet_out| {trained:e}");
    assert!(trained > 1e-2, "the attached adapters compute nothing: {trained}");
}

#[test]
fn merged_equals_unmerged_and_unload_restores_the_base() {
    let mut model = fixture_model();
    let base = unet_output(&model);
    let lora = LoraFile::read(&fixture("lora/lora_kohya_default.kohya.safetensors"), &mut model).unwrap();
    lora.apply(&mut model, 0.8, "style").unwrap();
    let unmerged = unet_output(&model);
    let mut merged_model = model.clone();
    merged_model.merge_adapters().unwrap();
    assert!(merged_model.lora_layers().iter().all(|(_, layer)| layer.adapters.is_empty()));
    let diff = max_abs_diff(&unet_output(&merged_model), &unmerged);
    eprintln!("merged vs unmerged: max |Δ| {diff:e}");
    assert!(diff < 1e-5, "merged differs from unmerged by {diff}");
    model.unload_adapters(Some("style"));
    assert_eq!(max_abs_diff(&unet_output(&model), &base), 0.0);
}

#[test]
fn several_loras_add_up_with_their_weights() {
    let mut model = fixture_model();
    let attn = LoraFile::read(&fixture("lora/lora_attn.kohya.safetensors"), &mut model).unwrap();
    let default = LoraFile::read(&fixture("lora/lora_kohya_default.diffusers.safetensors"), &mut model).unwrap();
    // The same LoRA twice at 0.5 is the LoRA once at 1.
    attn.apply(&mut model, 0.5, "a").unwrap();
    attn.apply(&mut model, 0.5, "b").unwrap();
    let diff = max_abs_diff(&unet_output(&model), &refs()["unet_out_lora_attn_scale1"]);
    assert!(diff < 2e-4, "two halves vs one whole: {diff}");
    // A second, different LoRA changes the result; unloading it restores it.
    let both_halves = unet_output(&model);
    default.apply(&mut model, 0.7, "c").unwrap();
    assert!(max_abs_diff(&unet_output(&model), &both_halves) > 0.05);
    model.unload_adapters(Some("c"));
    assert_eq!(max_abs_diff(&unet_output(&model), &both_halves), 0.0);
    model.unload_adapters(None);
    assert_eq!(max_abs_diff(&unet_output(&model), &unet_output(&self::fixture_model())), 0.0);
}

#[test]
fn loras_written_by_easel_read_back_identically() {
    let mut model = fixture_model();
    let base = unet_output(&model);
    let network = trained_network(&mut model, LoraTargets::Transformer, true);
    let mut attached = model.clone();
    network.attach(&mut attached.lora_layers(), "trained");
    let expected = unet_output(&attached);
    assert!(max_abs_diff(&expected, &base) > 1e-3, "the test network has no effect");
    let text = |m: &StableDiffusion| m.encode_prompts(&["a zeltmug on a table"], (128, 128)).unwrap().context;
    let expected_text = text(&attached);

    let dir = tempfile::tempdir().unwrap();
    let info = TrainingInfo {
        output_name: "zeltmug".into(),
        steps: 200,
        seed: 7,
        resolution: (128, 128),
        base_model_name: "/home/operator/models/realistic-v5.safetensors".into(),
        trigger: "zeltmug".into(),
        ..Default::default()
    };
    let metadata = lora_file::kohya_metadata(&network, model.family, model.scheduler.prediction_type, &info);
    let kohya = dir.path().join("zeltmug.safetensors");
    lora_file::save_kohya(&kohya, &network, &model, metadata).unwrap();
    let peft = dir.path().join("pytorch_lora_weights.safetensors");
    lora_file::save_peft(&peft, &network, &model).unwrap();

    for (path, format) in [(&kohya, LoraFormat::Kohya), (&peft, LoraFormat::Peft)] {
        let mut reloaded = model.clone();
        let lora = LoraFile::read(path, &mut reloaded).unwrap();
        assert_eq!(lora.format, format);
        assert_eq!(lora.modules.len(), network.modules.len());
        assert!(lora.unmatched.is_empty());
        lora.apply(&mut reloaded, 1.0, "reloaded").unwrap();
        assert_eq!(max_abs_diff(&unet_output(&reloaded), &expected), 0.0, "{format:?}: UNet output changed");
        assert_eq!(max_abs_diff(&text(&reloaded), &expected_text), 0.0, "{format:?}: text encoding changed");
    }

    let (_, header) = safetensors::SafeTensors::read_metadata(&std::fs::read(&kohya).unwrap()).unwrap();
    let metadata: &HashMap<String, String> = header.metadata().as_ref().unwrap();
    for (key, value) in [
        ("ss_network_module", "networks.lora"),
        ("ss_network_dim", "4"),
        ("ss_network_alpha", "8.0"),
        ("ss_base_model_version", "sd_v1"),
        ("ss_v2", "False"),
        ("ss_resolution", "(128, 128)"),
        ("ss_steps", "200"),
        ("ss_seed", "7"),
        ("ss_output_name", "zeltmug"),
        // Only the model's file name, never the operator's path to it.
        ("ss_sd_model_name", "realistic-v5.safetensors"),
        ("modelspec.sai_model_spec", "1.0.1"),
        ("modelspec.architecture", "stable-diffusion-v1/lora"),
        ("modelspec.implementation", "diffusers"),
        ("modelspec.resolution", "128x128"),
        ("modelspec.trigger_phrase", "zeltmug"),
    ] {
        assert_eq!(metadata.get(key).map(String::as_str), Some(value), "{key}");
    }
    for key in [
        "ss_tag_frequency",
        "ss_num_train_images",
        "ss_learning_rate",
        "ss_training_started_at",
        "ss_training_finished_at",
        "modelspec.date",
    ] {
        assert!(metadata.contains_key(key), "{key} missing");
    }
    // kohya's key names, including a 1×1 conv stored 4-D and its alpha.
    let tensors = candle_core::safetensors::load(&kohya, &Device::Cpu).unwrap();
    let proj_in = "lora_unet_down_blocks_0_attentions_0_proj_in";
    assert_eq!(tensors[&format!("{proj_in}.lora_down.weight")].dims(), &[4, 32, 1, 1]);
    assert_eq!(tensors[&format!("{proj_in}.alpha")].to_scalar::<f32>().unwrap(), 8.0);
    assert!(tensors.contains_key("lora_te_text_model_encoder_layers_1_mlp_fc2.lora_up.weight"));
}

#[test]
fn a_lora_for_another_model_is_refused_by_shape() {
    let mut model = fixture_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.safetensors");
    let name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    let tensors = HashMap::from([
        (format!("{name}.lora_down.weight"), Tensor::zeros((4, 320), DType::F32, &Device::Cpu).unwrap()),
        (format!("{name}.lora_up.weight"), Tensor::zeros((320, 4), DType::F32, &Device::Cpu).unwrap()),
    ]);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let lora = LoraFile::read(&path, &mut model).unwrap();
    let error = lora.apply(&mut model, 1.0, "wrong.safetensors").unwrap_err().to_string();
    assert!(error.contains("attn1.to_q") && error.contains("another model"), "{error}");
}

#[test]
fn a_lora_whose_modules_match_nothing_is_refused() {
    let mut model = fixture_model();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sdxl.safetensors");
    let name = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q";
    let tensors = HashMap::from([
        (format!("{name}.lora_down.weight"), Tensor::zeros((4, 640), DType::F32, &Device::Cpu).unwrap()),
        (format!("{name}.lora_up.weight"), Tensor::zeros((640, 4), DType::F32, &Device::Cpu).unwrap()),
    ]);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let error = format!("{:#}", LoraFile::read(&path, &mut model).unwrap_err());
    assert!(
        error.contains("sdxl.safetensors") && error.contains("its one module matches no layer") && error.contains(name),
        "{error}"
    );
}
