//! `easel generate` as a real process: the built-in model writes a PNG, the
//! fixture model started from given latents reproduces diffusers' DDIM
//! result, LoRAs change it, an SDXL single file draws what its diffusers
//! folder draws, pickles and misfitting parts are refused at load, a project
//! draws with its newest trained LoRA unless told otherwise, an output that
//! cannot be written is refused before the model loads, and progress in a
//! log is plain lines.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use candle_core::{Device, Tensor};
use common::{demo_copy, fixture, max_abs_diff, refs};

mod common;

fn easel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_easel")).args(args).stdin(Stdio::null()).output().expect("run easel")
}

fn succeeded(output: &Output) {
    assert!(output.status.success(), "easel failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Pixel values of a PNG, and their variance.
fn pixels(png: &Path) -> (Vec<f64>, f64) {
    let image = image::open(png).unwrap().to_rgb8();
    assert_eq!((image.width(), image.height()), (128, 128));
    let values: Vec<f64> = image.into_raw().into_iter().map(f64::from).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
    (values, variance)
}

#[test]
fn the_builtin_model_writes_a_png_for_a_project() {
    let project = demo_copy();
    let draw = |prompt: &str, seed: &str| {
        let out = project.path().join(format!("{seed}-{}.png", prompt.len()));
        let output = easel(&[
            "generate",
            "--project",
            path(project.path()),
            "--prompt",
            prompt,
            "--steps",
            "3",
            "--scheduler",
            "euler-a",
            "--seed",
            seed,
            "--out",
            path(&out),
        ]);
        succeeded(&output);
        assert!(String::from_utf8_lossy(&output.stdout).contains("wrote"));
        pixels(&out)
    };
    let (picture, variance) = draw("a zeltmug on a table", "5");
    eprintln!("builtin model picture: pixel variance {variance:.1}");
    assert!(variance > 100.0, "a flat picture (variance {variance:.1})");
    assert!(
        project.path().join("cache/builtin-tiny-v2/model_index.json").is_file(),
        "the tiny model was not cached in the project"
    );
    let differs = |other: &[f64]| picture.iter().zip(other).filter(|(a, b)| a != b).count() * 10 > picture.len();
    assert!(differs(&draw("a zeltmug on a table", "6").0), "another seed drew the same picture");
    assert!(differs(&draw("a red bicycle in the snow", "5").0), "another prompt drew the same picture");
    assert_eq!(draw("a zeltmug on a table", "5").0, picture, "the same seed and prompt draw the same picture");
}

/// Runs DDIM on the fixture from its initial latents and returns the final latents.
fn fixture_ddim(extra: &[&str]) -> Tensor {
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    candle_core::safetensors::save(&HashMap::from([("latents", refs()["sample_init_latents"].clone())]), &init)
        .unwrap();
    let latents = dir.path().join("final.safetensors");
    let model = fixture("diffusers");
    let mut args = vec![
        "generate",
        "--model",
        path(&model),
        "--prompt",
        "a photo of a cat, wearing a red hat",
        "--negative",
        "blurry, low quality",
        "--steps",
        "10",
        "--guidance",
        "7.5",
        "--scheduler",
        "ddim",
        "--latents",
        path(&init),
        "--save-latents",
        path(&latents),
    ];
    let out = dir.path().join("cat.png");
    args.extend_from_slice(&["--out", path(&out)]);
    args.extend_from_slice(extra);
    succeeded(&easel(&args));
    assert!(out.is_file());
    candle_core::safetensors::load(&latents, &Device::Cpu).unwrap().remove("latents").unwrap()
}

/// How many elements of `actual` lie outside the fixtures README's trajectory
/// tolerance around `expected`: rtol 1e-3 plus atol 1e-3 × max|expected|.
fn beyond_trajectory_tolerance(actual: &Tensor, expected: &Tensor) -> usize {
    let scale = expected.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let bound = ((expected.abs().unwrap() * 1e-3).unwrap() + f64::from(1e-3 * scale)).unwrap();
    let outside = (actual - expected).unwrap().abs().unwrap().gt(&bound).unwrap();
    outside.to_dtype(candle_core::DType::F32).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as usize
}

#[test]
fn ddim_from_given_latents_reproduces_diffusers() {
    let latents = fixture_ddim(&[]);
    let expected = &refs()["ddim_final_latents"];
    let diff = max_abs_diff(&latents, expected);
    let scale = expected.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    eprintln!("easel generate vs diffusers DDIM final latents: max |Δ| {diff:e} (max |ref| {scale:.2})");
    assert_eq!(beyond_trajectory_tolerance(&latents, expected), 0, "final latents differ by up to {diff}");

    // The LoRA's effect must be one the same tolerance would notice, many times over.
    let lora = fixture("lora/lora_attn.kohya.safetensors");
    let with_lora = fixture_ddim(&["--lora", &format!("{}:0.5", path(&lora))]);
    let effect = max_abs_diff(&with_lora, &latents);
    let moved = beyond_trajectory_tolerance(&with_lora, &latents);
    eprintln!("the LoRA at 0.5 moves the final latents by up to {effect:e}; {moved} of 1024 beyond the tolerance");
    assert!(moved > 512, "the LoRA moved only {moved} of 1024 final latents beyond the tolerance");
}

#[test]
fn pickles_and_bad_sizes_are_refused_clearly() {
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("x.png");
    let output = easel(&["generate", "--model", "sd15.ckpt", "--prompt", "x", "--out", path(&png)]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("sd15.ckpt") && stderr.contains("pickle") && stderr.contains(".safetensors"), "{stderr}");
    let output = easel(&[
        "generate",
        "--model",
        path(&fixture("diffusers")),
        "--prompt",
        "x",
        "--size",
        "100x64",
        "--out",
        path(&png),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("multiple of 16"), "{stderr}");
    assert!(!png.exists());
}

/// A small SDXL: heads 64 wide and text encoders as the single-file rules
/// infer them, but size embeddings 8 wide instead of SDXL's 256, so the add
/// embedding takes 32 (pooled) + 6 × 8 = 80 inputs instead of 2816.
fn narrow_sdxl() -> easel::model::builtin::RandomModel {
    use easel::model::builtin::{RandomModel, TextEncoderSpec};
    use serde_json::json;
    let text_encoder = |activation: &str| {
        json!({"vocab_size": 49408, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 1, "max_position_embeddings": 77, "hidden_act": activation, "layer_norm_eps": 1e-5})
    };
    RandomModel {
        unet: json!({"in_channels": 4, "out_channels": 4, "block_out_channels": [64, 128],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 2, "attention_head_dim": [1, 2], "transformer_layers_per_block": [1, 2],
            "cross_attention_dim": 128, "use_linear_projection": true, "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 80, "sample_size": 8}),
        vae: json!({"block_out_channels": [32, 32, 32, 32], "layers_per_block": 1, "latent_channels": 4,
            "scaling_factor": 0.13025}),
        text_encoders: vec![
            TextEncoderSpec { config: text_encoder("quick_gelu"), pad_token: "<|endoftext|>", projection: None },
            TextEncoderSpec { config: text_encoder("gelu"), pad_token: "!", projection: Some(32) },
        ],
        scheduler: json!({"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "steps_offset": 1, "set_alpha_to_one": false,
            "timestep_spacing": "leading"}),
    }
}

/// `easel generate` with a fixed prompt, seed and size; the final latents.
fn generate_latents(model: &Path, extra: &[&str]) -> Result<Tensor, String> {
    let dir = tempfile::tempdir().unwrap();
    let (out, latents) = (dir.path().join("out.png"), dir.path().join("latents.safetensors"));
    let mut args = vec!["generate", "--model", path(model), "--prompt", "a zeltmug on a table", "--negative", "blurry"];
    args.extend(["--steps", "3", "--size", "64x64", "--seed", "3", "--scheduler", "ddim"]);
    args.extend(["--out", path(&out), "--save-latents", path(&latents)]);
    args.extend_from_slice(extra);
    let output = easel(&args);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(candle_core::safetensors::load(&latents, &Device::Cpu).unwrap().remove("latents").unwrap())
}

#[test]
fn an_sdxl_single_file_with_narrow_size_embeddings_draws_what_its_diffusers_folder_draws() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("narrow-sdxl");
    easel::model::builtin::write_random_model(&folder, &narrow_sdxl()).unwrap();
    let file = dir.path().join("narrow-sdxl.safetensors");
    common::sgm::write_sdxl_single_file(&folder, &file);

    let from_folder = generate_latents(&folder, &[]).unwrap();
    let from_file = generate_latents(&file, &[]).unwrap();
    let scale = from_folder.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let diff = max_abs_diff(&from_file, &from_folder);
    eprintln!("SDXL single file vs diffusers folder: final latents max |Δ| {diff:e} (max |latent| {scale:.2})");
    assert!(scale > 0.1, "the model drew nothing");
    assert!(diff <= 1e-5 * scale, "the single file draws differently: {diff}");

    // Configs that do not fit the weights are refused at load, naming the file and key.
    let wrong = dir.path().join("wrong-config");
    for part in ["unet", "vae", "text_encoder", "text_encoder_2", "scheduler", "tokenizer", "tokenizer_2"] {
        std::fs::create_dir_all(wrong.join(part)).unwrap();
        for item in std::fs::read_dir(folder.join(part)).unwrap() {
            let item = item.unwrap().path();
            if item.extension().is_some_and(|e| e != "safetensors") {
                std::fs::copy(&item, wrong.join(part).join(item.file_name().unwrap())).unwrap();
            }
        }
    }
    let unet_config = wrong.join("unet/config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&unet_config).unwrap()).unwrap();
    config["addition_time_embed_dim"] = 256.into();
    std::fs::write(&unet_config, config.to_string()).unwrap();
    let error = generate_latents(&file, &["--config", path(&wrong)]).unwrap_err();
    assert!(
        error.contains("wrong-config/unet/config.json")
            && error.contains("addition_time_embed_dim")
            && !error.contains("matmul"),
        "{error}"
    );
}

/// `easel generate --project` with a fixed prompt, seed and size: its stderr
/// and the final latents (`extra` adds to or overrides the arguments).
fn generate_for_project(project: &Path, extra: &[&str]) -> (String, Tensor) {
    let (out, latents) = (project.join("out.png"), project.join("latents.safetensors"));
    let mut args = vec!["generate", "--project", path(project), "--prompt", "a zeltmug on a table"];
    args.extend(["--steps", "2", "--seed", "3", "--out", path(&out), "--save-latents", path(&latents)]);
    args.extend_from_slice(extra);
    let output = easel(&args);
    succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (stderr, candle_core::safetensors::load(&latents, &Device::Cpu).unwrap().remove("latents").unwrap())
}

/// Copies the fixture run folder (the demo at 4 steps, its step-2 checkpoint kept) into `project`'s runs/.
fn copy_fixture_run(project: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run/20261130-163154");
    let run = project.join("runs/20261130-163154");
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    for file in ["metrics.jsonl", "project.toml"] {
        std::fs::copy(source.join(file), run.join(file)).unwrap();
    }
    for file in ["step-000002.safetensors", "step-000002.state.safetensors"] {
        std::fs::copy(source.join("checkpoints").join(file), run.join("checkpoints").join(file)).unwrap();
    }
    run
}

#[test]
fn a_project_draws_with_its_newest_trained_lora_unless_told_otherwise() {
    let project = demo_copy();
    let (stderr, base) = generate_for_project(project.path(), &[]);
    assert!(stderr.contains("no trained LoRA in"), "no runs: the base model alone, said so: {stderr}");
    assert!(!stderr.contains("applied"), "{stderr}");

    // A run with a checkpoint but no final LoRA (stopped by a kill): its newest checkpoint.
    let run = copy_fixture_run(project.path());
    let checkpoint = run.join("checkpoints/step-000002.safetensors");
    let (stderr, from_checkpoint) = generate_for_project(project.path(), &[]);
    let said = "using LoRA runs/20261130-163154/checkpoints/step-000002.safetensors (its checkpoint at step 2) \
                from run 20261130-163154; --no-lora for the base model alone";
    assert!(stderr.contains(said), "{stderr}");
    assert!(stderr.contains(&format!("applied {} × 1", checkpoint.display())), "{stderr}");
    assert_ne!(max_abs_diff(&from_checkpoint, &base), 0.0, "the LoRA changed nothing");

    let (stderr, alone) = generate_for_project(project.path(), &["--no-lora"]);
    assert!(!stderr.contains("using LoRA") && !stderr.contains("applied"), "{stderr}");
    assert_eq!(max_abs_diff(&alone, &base), 0.0, "--no-lora draws with the base model alone");

    // The run's final LoRA comes first; a newer run without any LoRA yet is passed over.
    std::fs::copy(&checkpoint, run.join("demo.safetensors")).unwrap();
    std::fs::create_dir_all(project.path().join("runs/20261201-090000")).unwrap();
    let (stderr, _) = generate_for_project(project.path(), &[]);
    let said =
        "using LoRA runs/20261130-163154/demo.safetensors from run 20261130-163154; --no-lora for the base model alone";
    assert!(stderr.contains(said), "{stderr}");

    // Given LoRAs are the only ones: the project's is not added to them.
    let other = fixture("lora/lora_attn.kohya.safetensors");
    let (stderr, _) = generate_for_project(project.path(), &["--lora", &format!("{}:0.5", path(&other))]);
    assert!(!stderr.contains("using LoRA"), "{stderr}");
    assert_eq!(stderr.matches("applied").count(), 1, "{stderr}");
    let (_, explicit) = generate_for_project(project.path(), &["--lora", path(&checkpoint)]);
    assert_eq!(max_abs_diff(&explicit, &from_checkpoint), 0.0, "the default is the same file, given");

    let both = easel(&[
        "generate",
        "--project",
        path(project.path()),
        "--prompt",
        "x",
        "--out",
        "x.png",
        "--no-lora",
        "--lora",
        path(&other),
    ]);
    assert_eq!(both.status.code(), Some(2), "--no-lora and --lora contradict each other");
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_the_model_loads() {
    let project = demo_copy();
    let dir = project.path();
    let file = dir.join("project.toml");
    let missing = dir.join("no/such/folder");
    for (out_flag, out, problem) in [
        ("--out", missing.join("mug.png"), format!("the folder {} does not exist", missing.display())),
        ("--out", dir.join("dataset"), "is a folder".to_string()),
        ("--out", file.join("mug.png"), format!("{} is not a folder", file.display())),
        (
            "--save-latents",
            missing.join("latents.safetensors"),
            format!("the folder {} does not exist", missing.display()),
        ),
    ] {
        let mut args = vec!["generate", "--project", path(dir), "--prompt", "x", "--steps", "2"];
        let png = dir.join("mug.png");
        if out_flag == "--out" {
            args.extend(["--out", path(&out)]);
        } else {
            args.extend(["--out", path(&png), "--save-latents", path(&out)]);
        }
        let output = easel(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.starts_with(&format!("easel: error: {out_flag} {}: ", out.display())), "{stderr}");
        assert!(stderr.contains(&problem), "{stderr}");
        assert!(!dir.join("cache").exists(), "the model was not loaded (builtin:tiny is written into cache/ first)");
        assert!(!png.exists());
    }
}

#[test]
fn progress_in_a_log_is_plain_lines() {
    let project = demo_copy();
    let out = project.path().join("mug.png");
    let output =
        easel(&["generate", "--project", path(project.path()), "--prompt", "x", "--steps", "3", "--out", path(&out)]);
    succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\r') && !stderr.contains('\x1b'), "terminal redraws in a log: {stderr:?}");
    for step in 1..=3 {
        assert!(stderr.lines().any(|line| line == format!("ddim step {step}/3")), "{stderr}");
    }
}
