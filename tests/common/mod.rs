//! Helpers shared by the integration tests. Each test crate uses a part of
//! them, so unused ones are expected there.
#![allow(dead_code)]

pub mod families;
pub mod sgm;
pub mod workbench;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

/// A copy of the demo project's project.toml, vocabulary.toml and dataset in a temporary
/// folder: tests can write into it, and runs made in the checkout do not leak in.
pub fn demo_copy() -> tempfile::TempDir {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("projects/demo");
    let dir = tempfile::tempdir().unwrap();
    fs::copy(source.join("project.toml"), dir.path().join("project.toml")).unwrap();
    fs::copy(source.join("vocabulary.toml"), dir.path().join("vocabulary.toml")).unwrap();
    let dataset = dir.path().join("dataset");
    fs::create_dir(&dataset).unwrap();
    for item in fs::read_dir(source.join("dataset")).unwrap() {
        let path = item.unwrap().path();
        fs::copy(&path, dataset.join(path.file_name().unwrap())).unwrap();
    }
    dir
}

/// A file of the tiny SD1.5 fixture (made by diffusers, see tests/fixtures/README.md).
pub fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-sd15").join(path)
}

/// The fixture's reference tensors.
pub fn refs() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("refs.safetensors"), &Device::Cpu).unwrap()
}

/// The fixture model from its diffusers folder, in f32.
pub fn fixture_model() -> easel::model::pipeline::StableDiffusion {
    let options = easel::model::pipeline::LoadOptions::default();
    easel::model::pipeline::StableDiffusion::load(&fixture("diffusers"), &options).unwrap()
}

/// The UNet's output on the fixture's reference inputs (`unet_sample`, …).
pub fn unet_output(model: &easel::model::pipeline::StableDiffusion) -> Tensor {
    let refs = refs();
    let timesteps = refs["unet_timesteps"].to_dtype(candle_core::DType::F32).unwrap();
    model.unet.forward(&refs["unet_sample"], &timesteps, &refs["unet_encoder_hidden_states"], None).unwrap()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Every caption file (`.txt`) of a dataset with its text, in name order.
pub fn captions_of(dataset: &Path) -> Vec<(String, String)> {
    let mut captions: Vec<(String, String)> = fs::read_dir(dataset)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), fs::read_to_string(&p).unwrap()))
        .collect();
    captions.sort();
    captions
}
