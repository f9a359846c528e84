//! `easel generate` as a real process: the built-in model writes a PNG, the
//! fixture model started from given latents reproduces diffusers' DDIM
//! result, LoRAs change it, and pickles are refused.

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

#[test]
fn the_builtin_model_writes_a_png_for_a_project() {
    let project = demo_copy();
    let out = project.path().join("zeltmug.png");
    let output = easel(&[
        "generate",
        "--project",
        path(project.path()),
        "--prompt",
        "a zeltmug on a table",
        "--steps",
        "3",
        "--scheduler",
        "euler-a",
        "--seed",
        "5",
        "--out",
        path(&out),
    ]);
    succeeded(&output);
    let image = image::open(&out).unwrap();
    assert_eq!((image.width(), image.height()), (128, 128));
    assert!(String::from_utf8_lossy(&output.stdout).contains("wrote"));
    assert!(
        project.path().join("cache/builtin-tiny-v2/model_index.json").is_file(),
        "the tiny model was not cached in the project"
    );
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

#[test]
fn ddim_from_given_latents_reproduces_diffusers() {
    let latents = fixture_ddim(&[]);
    let expected = &refs()["ddim_final_latents"];
    let diff = max_abs_diff(&latents, expected);
    let scale = expected.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    eprintln!("easel generate vs diffusers DDIM final latents: max |Δ| {diff:e} (max |ref| {scale:.2})");
    assert!(diff < 1e-3 * scale + 1e-3 * scale, "final latents differ by {diff}");

    let lora = fixture("lora/lora_attn.kohya.safetensors");
    let with_lora = fixture_ddim(&["--lora", &format!("{}:0.5", path(&lora))]);
    assert!(max_abs_diff(&with_lora, &latents) > 1e-2, "the LoRA changed nothing");
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
