//! Loading errors that name the file and the tensor, and the built-in tiny model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Device;
use common::{fixture, max_abs_diff};
use easel::model::builtin;
use easel::model::pipeline::{LoadOptions, StableDiffusion};

mod common;

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() { copy_folder(&path, &target) } else { std::fs::copy(&path, &target).map(drop).unwrap() }
    }
}

fn load_error(path: &Path) -> String {
    format!("{:#}", StableDiffusion::load(path, &LoadOptions::default()).unwrap_err())
}

#[test]
fn pickle_checkpoints_are_refused_with_a_hint() {
    for name in ["model.ckpt", "model.pt", "unet.bin"] {
        let error = load_error(Path::new(name));
        assert!(error.contains(name) && error.contains("pickle") && error.contains("safetensors"), "{error}");
    }
    // Inside a diffusers folder, a part stored only as a pickle is refused too.
    let dir = tempfile::tempdir().unwrap();
    copy_folder(&fixture("diffusers"), dir.path());
    let unet = dir.path().join("unet");
    std::fs::rename(unet.join("diffusion_pytorch_model.safetensors"), unet.join("diffusion_pytorch_model.bin"))
        .unwrap();
    let error = load_error(dir.path());
    assert!(error.contains("diffusion_pytorch_model.bin") && error.contains("pickle"), "{error}");
    // A transformers part (the text encoder) names its pickle pytorch_model.bin.
    std::fs::rename(unet.join("diffusion_pytorch_model.bin"), unet.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    let text_encoder = dir.path().join("text_encoder");
    std::fs::rename(text_encoder.join("model.safetensors"), text_encoder.join("pytorch_model.bin")).unwrap();
    let error = load_error(dir.path());
    assert!(error.contains("pytorch_model.bin") && error.contains("pickle"), "{error}");
}

#[test]
fn a_missing_part_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_folder(&fixture("diffusers"), dir.path());
    std::fs::remove_dir_all(dir.path().join("vae")).unwrap();
    let error = load_error(dir.path());
    assert!(error.contains("missing `vae/`"), "{error}");
    assert!(load_error(&dir.path().join("nowhere")).contains("no such model file or folder"));
}

#[test]
fn a_tensor_of_the_wrong_shape_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    copy_folder(&fixture("diffusers"), dir.path());
    let config = dir.path().join("unet/config.json");
    let text =
        std::fs::read_to_string(&config).unwrap().replace("\"cross_attention_dim\": 32", "\"cross_attention_dim\": 48");
    std::fs::write(&config, text).unwrap();
    let error = load_error(dir.path());
    assert!(error.contains("unet/diffusion_pytorch_model.safetensors"), "{error}");
    assert!(error.contains("attn2.to_k.weight") && error.contains("[32, 32]") && error.contains("[32, 48]"), "{error}");
}

#[test]
fn a_tensor_missing_from_a_single_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors =
        candle_core::safetensors::load(fixture("tiny-sd15.single_file.safetensors"), &Device::Cpu).unwrap();
    tensors.remove("model.diffusion_model.middle_block.1.proj_out.weight").unwrap();
    let path = dir.path().join("broken.safetensors");
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let options = LoadOptions { config_folder: Some(fixture("diffusers")), ..LoadOptions::default() };
    let error = format!("{:#}", StableDiffusion::load(&path, &options).unwrap_err());
    assert!(error.contains("broken.safetensors"), "{error}");
    assert!(
        error.contains("model.diffusion_model.*") && error.contains("mid_block.attentions.0.proj_out.weight"),
        "{error}"
    );
    // A tensor present under the wrong shape names its stored key.
    let mut tensors =
        candle_core::safetensors::load(fixture("tiny-sd15.single_file.safetensors"), &Device::Cpu).unwrap();
    let key = "model.diffusion_model.middle_block.1.proj_out.weight";
    tensors
        .insert(key.into(), candle_core::Tensor::zeros((64, 32, 1, 1), candle_core::DType::F16, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let error = format!("{:#}", StableDiffusion::load(&path, &options).unwrap_err());
    assert!(error.contains("broken.safetensors") && error.contains(key) && error.contains("[64, 32, 1, 1]"), "{error}");

    // Something that is not a Stable Diffusion checkpoint at all.
    let lora = fixture("lora/lora_attn.kohya.safetensors");
    let error = load_error(&lora);
    assert!(error.contains("not a Stable Diffusion checkpoint"), "{error}");
}

#[test]
fn the_builtin_tiny_model_is_deterministic_and_loads() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let folder = builtin::ensure_tiny(a.path()).unwrap();
    for part in [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/vocab.json",
        "tokenizer/merges.txt",
        "scheduler/scheduler_config.json",
    ] {
        assert!(folder.join(part).is_file(), "{part} missing");
    }
    // Written once, then reused; a second cache gets identical bytes.
    let modified =
        std::fs::metadata(folder.join("unet/diffusion_pytorch_model.safetensors")).unwrap().modified().unwrap();
    assert_eq!(builtin::ensure_tiny(a.path()).unwrap(), folder);
    assert_eq!(
        std::fs::metadata(folder.join("unet/diffusion_pytorch_model.safetensors")).unwrap().modified().unwrap(),
        modified
    );
    let other = builtin::ensure_tiny(b.path()).unwrap();
    for part in [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
    ] {
        assert!(
            std::fs::read(folder.join(part)).unwrap() == std::fs::read(other.join(part)).unwrap(),
            "{part} differs between caches"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(a.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary folders left behind: {leftovers:?}");

    let model = StableDiffusion::load(&folder, &LoadOptions::default()).unwrap();
    assert_eq!(model.family, easel::model::Family::Sd1);
    let conditioning = model.encode_prompts(&["a zeltmug"], (128, 128)).unwrap();
    let sample = candle_core::Tensor::randn(0f32, 1.0, (1, 4, 16, 16), &Device::Cpu).unwrap();
    let t = candle_core::Tensor::new(&[500f32], &Device::Cpu).unwrap();
    let output = model.unet.forward(&sample, &t, &conditioning.context, None).unwrap();
    let spread = max_abs_diff(&output, &output.zeros_like().unwrap());
    assert!(spread.is_finite() && spread > 0.01, "the tiny UNet's output is degenerate: {spread}");
    let parameters: HashMap<&str, usize> = ["unet", "vae", "text_encoder"]
        .into_iter()
        .map(|part| {
            let file = if part == "text_encoder" { "model" } else { "diffusion_pytorch_model" };
            let tensors =
                candle_core::safetensors::load(folder.join(part).join(format!("{file}.safetensors")), &Device::Cpu)
                    .unwrap();
            (part, tensors.values().map(|t| t.elem_count()).sum())
        })
        .collect();
    eprintln!("builtin:tiny parameters: {parameters:?}");
    assert!(parameters["unet"] < 2_000_000, "the tiny UNet is not tiny");
}
