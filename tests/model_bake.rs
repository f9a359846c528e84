//! Baking layer edits into a model's weight files (model::rewrite): diffusers
//! folders and single files rewritten in their own layout, and diffusers
//! folders written as original-layout single files, checked against the
//! fixture's single file (made by diffusers), the tests' own SGM spelling
//! (common/sgm.rs) and Easel's loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::families::{sd2, sdxl};
use common::{fixture, max_abs_diff};
use easel::model::builtin::{self, RandomModel};
use easel::model::pipeline::{LoadOptions, StableDiffusion};
use easel::model::rewrite::{self, BakeOptions, BakeReport, Dtype, ModelWeights, OutputLayout, SourceFile};

mod common;

type Edits = HashMap<String, Tensor>;

fn bake(base: &Path, edits: &Edits, out: &Path, layout: OutputLayout) -> anyhow::Result<BakeReport> {
    rewrite::bake_weights(&ModelWeights::open(base)?, edits, out, &BakeOptions { layout, metadata: HashMap::new() })
}

/// `configs`: a diffusers folder whose configs a single file is read with
/// (these tiny models' head counts are not the families' own).
fn load(path: &Path, configs: Option<&Path>) -> StableDiffusion {
    let options = LoadOptions { config_folder: configs.map(Path::to_path_buf), ..LoadOptions::default() };
    StableDiffusion::load(path, &options).unwrap()
}

/// Every tensor of a file: dtype, shape and stored bytes.
fn contents(path: &Path) -> HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let file = SourceFile::open(path).unwrap();
    let entry = |key: &str| {
        let info = file.info(key).unwrap();
        (info.dtype, info.shape.clone(), file.bytes(key).unwrap().to_vec())
    };
    file.names().into_iter().map(|key| (key.clone(), entry(&key))).collect()
}

/// Asserts that two files hold the same tensors, bit for bit, except `changed`.
fn same_tensors_except(a: &Path, b: &Path, changed: &[&str]) {
    let (a, b) = (contents(a), contents(b));
    let mut missing: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let mut extra: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    missing.sort();
    extra.sort();
    assert!(missing.is_empty() && extra.is_empty(), "missing {missing:?}, extra {extra:?}");
    for (key, value) in &a {
        let same = b[key] == *value;
        assert_eq!(same, !changed.contains(&key.as_str()), "{key}: changed: {}", !same);
    }
}

/// A random ΔW for each module, shaped from the base's headers.
fn random_edits(base: &Path, modules: &[&str]) -> Edits {
    let weights = ModelWeights::open(base).unwrap();
    modules
        .iter()
        .map(|module| {
            let layer = weights.layer(module).unwrap();
            let delta = Tensor::randn(0f32, 0.05, (layer.rows.len(), layer.shape[1]), &Device::Cpu).unwrap();
            (module.to_string(), delta)
        })
        .collect()
}

fn layer_weight(model: &mut StableDiffusion, module: &str) -> Tensor {
    let layers = model.lora_layers();
    let (_, layer) = layers.into_iter().find(|(path, _)| path == module).unwrap_or_else(|| panic!("no {module}"));
    layer.base.weight.clone()
}

/// The baked model's layers are the base's plus ΔW, rounded once to the
/// stored dtype; every other layer is the base's.
fn check_layers(base: &mut StableDiffusion, baked: &mut StableDiffusion, edits: &Edits, stored: DType) {
    for (module, delta) in edits {
        let expected = (layer_weight(base, module) + delta).unwrap().to_dtype(stored).unwrap().to_dtype(DType::F32);
        assert_eq!(max_abs_diff(&layer_weight(baked, module), &expected.unwrap()), 0.0, "{module}");
    }
    let paths: Vec<String> = base.lora_layers().into_iter().map(|(path, _)| path).collect();
    for path in paths.iter().filter(|path| !edits.contains_key(*path)) {
        assert_eq!(max_abs_diff(&layer_weight(baked, path), &layer_weight(base, path)), 0.0, "{path}");
    }
}

/// Same conditioning and the same UNet prediction, exactly.
fn same_outputs(a: &StableDiffusion, b: &StableDiffusion) {
    let (x, y) =
        (a.encode_prompts(&["a zeltmug"], (64, 64)).unwrap(), b.encode_prompts(&["a zeltmug"], (64, 64)).unwrap());
    assert_eq!(max_abs_diff(&x.context, &y.context), 0.0, "text encoder output");
    if let (Some(p), Some(q)) = (&x.added, &y.added) {
        assert_eq!(max_abs_diff(&p.text_embeds, &q.text_embeds), 0.0, "pooled text");
    }
    let sample = Tensor::randn(0f32, 1.0, (1, 4, 8, 8), &Device::Cpu).unwrap();
    let t = Tensor::new(&[500f32], &Device::Cpu).unwrap();
    let run = |model: &StableDiffusion, c: &easel::model::pipeline::Conditioning| {
        model.unet.forward(&sample, &t, &c.context, c.added.as_ref()).unwrap()
    };
    assert_eq!(max_abs_diff(&run(a, &x), &run(b, &y)), 0.0, "UNet output");
}

fn random_model(dir: &Path, name: &str, spec: &RandomModel) -> PathBuf {
    let folder = dir.join(name);
    builtin::write_random_model(&folder, spec).unwrap();
    folder
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn the_fixture_folder_written_as_one_file_is_the_fixture_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.safetensors");
    let report = bake(&fixture("diffusers"), &Edits::new(), &out, OutputLayout::SingleFile).unwrap();
    assert_eq!(report.written, std::slice::from_ref(&out));
    assert_eq!((report.edited.len(), report.unchanged), (0, 580));
    // Names, dtypes, shapes and bytes as diffusers' own conversion wrote them.
    same_tensors_except(&fixture("tiny-sd15.single_file.safetensors"), &out, &[]);
    same_outputs(&load(&fixture("diffusers"), None), &load(&out, Some(&fixture("diffusers"))));
}

#[test]
fn sd2_and_sdxl_folders_written_as_one_file_load_as_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    for (name, spec) in [("sd2", sd2()), ("sdxl", sdxl())] {
        let folder = random_model(dir.path(), name, &spec);
        let out = dir.path().join(format!("{name}.safetensors"));
        bake(&folder, &Edits::new(), &out, OutputLayout::SingleFile).unwrap();
        let (original, file) = (load(&folder, None), load(&out, Some(&folder)));
        assert_eq!(file.family, original.family);
        same_outputs(&original, &file);
    }
    // SDXL: exactly the tests' own spelling of the SGM layout.
    let reference = dir.path().join("sgm.safetensors");
    common::sgm::write_sdxl_single_file(&dir.path().join("sdxl"), &reference);
    same_tensors_except(&reference, &dir.path().join("sdxl.safetensors"), &[]);
    // SD2 files hold one text layer more than the model runs (loaders skip
    // the last): a copy of the last one.
    let sd2 = contents(&dir.path().join("sd2.safetensors"));
    let layer = |n: usize| &sd2[&format!("cond_stage_model.model.transformer.resblocks.{n}.attn.in_proj_weight")];
    assert_eq!(layer(2), layer(1));
    assert!(!sd2.keys().any(|key| key.contains("resblocks.3.")));
}

#[test]
fn edits_baked_into_the_fixture_folder_change_those_layers_alone() {
    let base = fixture("diffusers");
    let modules = [
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q",
        // A 1×1 convolution in SD1, stored [out, in, 1, 1].
        "unet.mid_block.attentions.0.proj_in",
        "text_encoder.text_model.encoder.layers.1.mlp.fc1",
    ];
    let edits = random_edits(&base, &modules);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("baked");
    let metadata = HashMap::from([("easel_baked".to_string(), "yes".to_string())]);
    let weights = ModelWeights::open(&base).unwrap();
    let report =
        rewrite::bake_weights(&weights, &edits, &out, &BakeOptions { layout: OutputLayout::Same, metadata }).unwrap();

    let unet_file = out.join("unet/diffusion_pytorch_model.safetensors");
    let proj_in = report.edited.iter().find(|e| e.module == modules[1]).unwrap();
    assert_eq!(
        (&proj_in.file, proj_in.key.as_str(), proj_in.rows.clone()),
        (&unet_file, "mid_block.attentions.0.proj_in.weight", 0..64)
    );
    for (part, changed) in [
        (
            "unet/diffusion_pytorch_model.safetensors",
            vec![
                "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight",
                "mid_block.attentions.0.proj_in.weight",
            ],
        ),
        ("vae/diffusion_pytorch_model.safetensors", vec![]),
        ("text_encoder/model.safetensors", vec!["text_model.encoder.layers.1.mlp.fc1.weight"]),
    ] {
        same_tensors_except(&base.join(part), &out.join(part), &changed);
        let written = SourceFile::open(&out.join(part)).unwrap();
        let metadata = written.metadata().unwrap();
        assert_eq!((metadata["format"].as_str(), metadata["easel_baked"].as_str()), ("pt", "yes"), "{part}");
    }
    assert_eq!(
        SourceFile::open(&unet_file).unwrap().info("mid_block.attentions.0.proj_in.weight").unwrap().shape,
        [64, 64, 1, 1]
    );
    for config in ["model_index.json", "unet/config.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json"] {
        assert_eq!(std::fs::read(out.join(config)).unwrap(), std::fs::read(base.join(config)).unwrap(), "{config}");
    }
    check_layers(&mut load(&base, None), &mut load(&out, None), &edits, DType::F16);
    assert_eq!(listing(dir.path()), ["baked"], "no partial folder left");
}

#[test]
fn edits_baked_into_single_files_change_those_rows_alone() {
    // SD1 (the fixture): CLIP and the UNet renamed.
    let base = fixture("tiny-sd15.single_file.safetensors");
    let configs = fixture("diffusers");
    let modules =
        ["unet.up_blocks.1.attentions.2.proj_out", "text_encoder.text_model.encoder.layers.0.self_attn.q_proj"];
    let edits = random_edits(&base, &modules);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("baked.safetensors");
    bake(&base, &edits, &out, OutputLayout::Same).unwrap();
    let changed = [
        "model.diffusion_model.output_blocks.5.1.proj_out.weight",
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
    ];
    same_tensors_except(&base, &out, &changed);
    check_layers(&mut load(&base, Some(&configs)), &mut load(&out, Some(&configs)), &edits, DType::F16);

    // SDXL: the second encoder's q and v are rows of one fused tensor.
    let folder = random_model(dir.path(), "sdxl", &sdxl());
    let base = dir.path().join("sdxl.safetensors");
    common::sgm::write_sdxl_single_file(&folder, &base);
    let modules = [
        "text_encoder_2.text_model.encoder.layers.1.self_attn.q_proj",
        "text_encoder_2.text_model.encoder.layers.1.self_attn.v_proj",
        "unet.down_blocks.1.attentions.1.transformer_blocks.1.ff.net.2",
    ];
    let edits = random_edits(&base, &modules);
    let weights = ModelWeights::open(&base).unwrap();
    assert_eq!(weights.layer(modules[1]).unwrap().rows, 64..96);
    let out = dir.path().join("sdxl-baked.safetensors");
    let report = bake(&base, &edits, &out, OutputLayout::Same).unwrap();
    let fused = "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight";
    assert_eq!(report.edited.iter().filter(|e| e.key == fused).count(), 2);
    same_tensors_except(
        &base,
        &out,
        &[fused, "model.diffusion_model.input_blocks.5.1.transformer_blocks.1.ff.net.2.weight"],
    );
    let (before, after) = (&contents(&base)[fused].2, &contents(&out)[fused].2);
    let row_bytes = 32 * 4;
    assert_eq!(before[32 * row_bytes..64 * row_bytes], after[32 * row_bytes..64 * row_bytes], "k rows kept");
    check_layers(&mut load(&base, Some(&folder)), &mut load(&out, Some(&folder)), &edits, DType::F32);
}

#[test]
fn edits_reach_an_sdxl_folder_written_as_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = random_model(dir.path(), "sdxl", &sdxl());
    let modules = [
        "text_encoder_2.text_model.encoder.layers.0.self_attn.k_proj",
        "text_encoder.text_model.encoder.layers.1.self_attn.out_proj",
        "unet.mid_block.attentions.0.transformer_blocks.1.attn2.to_v",
    ];
    let edits = random_edits(&folder, &modules);
    let out = dir.path().join("sdxl.safetensors");
    let report = bake(&folder, &edits, &out, OutputLayout::SingleFile).unwrap();
    let k = report.edited.iter().find(|e| e.module == modules[0]).unwrap();
    assert_eq!(
        (k.key.as_str(), k.rows.clone()),
        ("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight", 32..64)
    );
    check_layers(&mut load(&folder, None), &mut load(&out, Some(&folder)), &edits, DType::F32);
}

#[test]
fn layers_the_base_lacks_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let base = fixture("diffusers");
    let mut edits = random_edits(&base, &["unet.mid_block.attentions.0.proj_out"]);
    for module in ["unet.nowhere.to_q", "text_encoder.text_model.encoder.layers.9.self_attn.q_proj"] {
        edits.insert(module.into(), Tensor::zeros((32, 32), DType::F32, &Device::Cpu).unwrap());
    }
    for (out, layout) in [
        (dir.path().join("folder"), OutputLayout::Same),
        (dir.path().join("file.safetensors"), OutputLayout::SingleFile),
    ] {
        let error = format!("{:#}", bake(&base, &edits, &out, layout).unwrap_err());
        assert!(error.contains("`unet.nowhere.to_q`") && error.contains("layers.9.self_attn.q_proj"), "{error}");
        assert!(error.contains("nothing written") && !error.contains("proj_out"), "{error}");
    }
    // A layer that is no matrix: a 3×3 convolution.
    let conv =
        HashMap::from([("unet.conv_in".to_string(), Tensor::zeros((32, 36), DType::F32, &Device::Cpu).unwrap())]);
    let error = format!("{:#}", bake(&base, &conv, &dir.path().join("x"), OutputLayout::Same).unwrap_err());
    assert!(error.contains("conv_in") && error.contains("neither a linear layer nor a 1×1 convolution"), "{error}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_failed_bake_leaves_no_output_and_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let wrong = HashMap::from([(
        "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k".to_string(),
        Tensor::zeros((32, 31), DType::F32, &Device::Cpu).unwrap(),
    )]);
    let folder = dir.path().join("folder");
    let error = format!("{:#}", bake(&fixture("diffusers"), &wrong, &folder, OutputLayout::Same).unwrap_err());
    assert!(error.contains("attn2.to_k") && error.contains("[32, 31]") && error.contains("[32, 32]"), "{error}");
    let file = dir.path().join("model.safetensors");
    std::fs::write(&file, b"an older bake").unwrap();
    bake(&fixture("tiny-sd15.single_file.safetensors"), &wrong, &file, OutputLayout::Same).unwrap_err();
    assert_eq!(std::fs::read(&file).unwrap(), b"an older bake");
    assert_eq!(listing(dir.path()), ["model.safetensors"]);

    // Outputs that would replace the base or a folder, or not be a safetensors file.
    let base = fixture("tiny-sd15.single_file.safetensors");
    let error = format!("{:#}", bake(&base, &Edits::new(), &base, OutputLayout::Same).unwrap_err());
    assert!(error.contains("would replace the base model"), "{error}");
    let error =
        format!("{:#}", bake(&fixture("diffusers"), &Edits::new(), dir.path(), OutputLayout::Same).unwrap_err());
    assert!(error.contains("already exists"), "{error}");
    let error =
        format!("{:#}", bake(&base, &Edits::new(), &dir.path().join("model.ckpt"), OutputLayout::Same).unwrap_err());
    assert!(error.contains("model.ckpt") && error.contains("`.safetensors` file"), "{error}");
}

#[test]
fn stale_weight_files_and_hidden_folders_are_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let folder = random_model(dir.path(), "sd2", &sd2());
    let stale = folder.join("unet/diffusion_pytorch_model.fp16.safetensors");
    std::fs::copy(folder.join("unet/diffusion_pytorch_model.safetensors"), &stale).unwrap();
    std::fs::create_dir_all(folder.join(".cache")).unwrap();
    std::fs::write(folder.join(".cache/download"), "x").unwrap();
    std::fs::write(folder.join("README.md"), "a model").unwrap();
    let out = dir.path().join("baked");
    let report = bake(&folder, &Edits::new(), &out, OutputLayout::Same).unwrap();
    assert_eq!(report.left_out, [stale]);
    assert_eq!(
        listing(&out),
        ["README.md", "model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    );
    assert_eq!(listing(&out.join("unet")), ["config.json", "diffusion_pytorch_model.safetensors"]);
    same_outputs(&load(&folder, None), &load(&out, None));
}
