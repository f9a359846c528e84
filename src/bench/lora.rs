//! `easel bench lora`: merging and resizing LoRAs over every transformer
//! layer of SDXL's UNet and both text encoders (random weights, the real
//! shapes), with the memory each operation adds; with --python, the same
//! operations as kohya's scripts do them (dense ΔW, torch SVD) beside it;
//! with --bake, a bake of a random full-size SDXL into one file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::lora::factor::{RankChoice, RankRule};
use crate::lora::merge::{self, ErrorReport};
use crate::model::Family;
use crate::model::builtin::{RandomModel, TextEncoderSpec, write_random_model_as};
use crate::model::clip::{ClipTextConfig, ClipTextModel};
use crate::model::lora::{LoraTargets, fnv1a, is_unet_target};
use crate::model::lora_file::{LoraFile, LoraFormat, LoraModule, Naming};
use crate::model::unet::{UNet, UNetConfig};

#[derive(Debug, Clone)]
pub struct BenchLora {
    /// Rank of the two random LoRAs.
    pub rank: usize,
    /// Where the random LoRAs are written.
    pub dir: PathBuf,
    /// Only every Nth layer (1: all), for a quicker run beside a slow reference.
    pub every: usize,
    /// Also bake LoRA A into a random full-size SDXL (written once into `dir`, 7 GB in f16).
    pub bake: bool,
    /// benches/lora_tools.py, run on the same files.
    pub python: Option<PathBuf>,
}

/// (module path, out, in) of every layer a kohya-default LoRA adapts in
/// SDXL: the UNet's transformer layers and every adaptable layer of both
/// text encoders, read from the module code built weightless.
fn sdxl_targets() -> Result<Vec<(String, usize, usize)>> {
    use crate::model::lora::LoraHost;
    let spec = sdxl_model();
    let config: UNetConfig = serde_json::from_value(spec.unet.clone())?;
    let mut unet = UNet::load(crate::model::builtin::weightless(), &config)?;
    let mut encoders = spec
        .text_encoders
        .iter()
        .map(|encoder| {
            let config: ClipTextConfig = serde_json::from_value(encoder.config.clone())?;
            Ok(ClipTextModel::load(crate::model::builtin::weightless(), &config)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut layers = Vec::new();
    unet.lora_layers("unet", &mut layers);
    layers.retain(|(path, _)| is_unet_target(path, LoraTargets::Transformer));
    for (encoder, prefix) in encoders.iter_mut().zip(["text_encoder", "text_encoder_2"]) {
        encoder.lora_layers(prefix, &mut layers);
    }
    Ok(layers.iter().map(|(path, layer)| (path.clone(), layer.out_features(), layer.in_features())).collect())
}

/// SDXL base 1.0 as its diffusers folder describes it, for random weights.
fn sdxl_model() -> RandomModel {
    let clip = |hidden: usize, layers: usize, heads: usize, activation: &str| {
        json!({"vocab_size": 49408, "hidden_size": hidden, "intermediate_size": 4 * hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "max_position_embeddings": 77, "hidden_act": activation, "layer_norm_eps": 1e-5,
            "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407})
    };
    RandomModel {
        unet: super::train::Arch::Sdxl.unet_config(),
        vae: json!({"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 1024,
            "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
            "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
            "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
            "scaling_factor": 0.13025}),
        text_encoders: vec![
            TextEncoderSpec { config: clip(768, 12, 12, "quick_gelu"), pad_token: "<|endoftext|>", projection: None },
            TextEncoderSpec { config: clip(1280, 32, 20, "gelu"), pad_token: "!", projection: Some(1280) },
        ],
        scheduler: json!({"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "steps_offset": 1, "set_alpha_to_one": false}),
    }
}

/// Bakes `lora` into a random-weight SDXL (f16, written once) as a single
/// SGM file: the heaviest bake, every tensor renamed and the second text
/// encoder's attention fused.
fn bake(dir: &Path, lora: &Path) -> Result<Value> {
    let model = dir.join("sdxl-random-f16");
    if !model.join("model_index.json").is_file() {
        eprintln!("writing a random SDXL (f16, about 7 GB) into {} …", model.display());
        let _ = std::fs::remove_dir_all(&model);
        write_random_model_as(&model, &sdxl_model(), DType::F16)?;
    }
    let out = dir.join("sdxl-baked.safetensors");
    let _ = std::fs::remove_file(&out);
    let weighted = [merge::Weighted { path: lora.to_path_buf(), weight: 1.0 }];
    let (report, measured) = measure(|| crate::lora::bake::bake(&model, &weighted, &out))?;
    let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(&out).ok();
    Ok(json!({
        "bench": "lora", "operation": "bake_sdxl_single_file", "side": "easel", "seconds": measured.seconds,
        "peak_added_bytes": measured.added, "peak_anonymous_bytes": measured.anonymous, "model_bytes": bytes,
        "layers_changed": report.edited.len(), "anonymous_vs_model": measured.anonymous as f64 / bytes.max(1) as f64,
    }))
}

/// A trained-looking random LoRA: f16 factors, alpha = rank / 2.
fn random_lora(targets: &[(String, usize, usize)], rank: usize, seed: u64) -> Result<LoraFile> {
    let modules = targets
        .par_iter()
        .map(|(path, out, input)| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ fnv1a(path.as_bytes()));
            let mut draw = |rows: usize, cols: usize, std: f32| -> Result<Tensor> {
                let normal = Normal::new(0.0, std).context("normal distribution")?;
                let values: Vec<f32> = (0..rows * cols).map(|_| normal.sample(&mut rng)).collect();
                Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?.to_dtype(DType::F16)?)
            };
            Ok(LoraModule {
                path: path.clone(),
                name: path.clone(),
                down: draw(rank, *input, 1.0 / (*input as f32).sqrt())?,
                up: draw(*out, rank, 0.01)?,
                alpha: rank as f64 / 2.0,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let naming = Naming::standard(Family::Sdxl);
    let family = crate::model::lora_file::FamilyGuess { family: Family::Sdxl, evidence: "the benchmark" };
    Ok(LoraFile { format: LoraFormat::Kohya, family, naming, modules, metadata: Default::default(), unmatched: vec![] })
}

/// A `/proc/self/status` figure in bytes (Linux): `VmRSS`, `RssAnon`, …
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kib.unwrap_or(0) * 1024
}

/// What an operation took: seconds, the peak resident memory it added
/// (VmHWM, which counts the pages of memory-mapped files read), and the peak
/// anonymous memory it added (sampled every 10 ms: what it allocated).
struct Measured {
    seconds: f64,
    added: u64,
    anonymous: u64,
}

fn measure<T>(operation: impl FnOnce() -> Result<T>) -> Result<(T, Measured)> {
    crate::device::reset_peak_memory(&Device::Cpu);
    let (before, anonymous_before) = (status_bytes("VmRSS:"), status_bytes("RssAnon:"));
    let done = std::sync::atomic::AtomicBool::new(false);
    let peak_anonymous = std::sync::atomic::AtomicU64::new(anonymous_before);
    let started = Instant::now();
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak_anonymous.fetch_max(status_bytes("RssAnon:"), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        });
        let result = operation();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = crate::device::peak_memory(&Device::Cpu).unwrap_or(0);
    let anonymous = peak_anonymous.into_inner().saturating_sub(anonymous_before);
    Ok((result, Measured { seconds, added: peak.saturating_sub(before), anonymous }))
}

fn python(script: &Path, operation: &str, files: &[&Path], rank: &str) -> Result<Value> {
    let mut command = std::process::Command::new("python3");
    command.arg(script).arg(operation).arg("--rank").arg(rank);
    for file in files {
        command.arg(file);
    }
    let output = command.output().with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !output.status.success() {
        bail!("{} {operation} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("{}: output {text}", script.display()))
}

/// A timed operation: its name, inputs (file, weight), rank rule and the rank as the reference takes it.
type Operation<'a> = (&'a str, Vec<(LoraFile, f64)>, Option<RankChoice>, String);

pub fn run(options: &BenchLora) -> Result<Vec<Value>> {
    std::fs::create_dir_all(&options.dir).with_context(|| format!("cannot create {}", options.dir.display()))?;
    let targets: Vec<_> = sdxl_targets()?.into_iter().step_by(options.every.max(1)).collect();
    let rank = options.rank;
    let (a_path, b_path) = (options.dir.join("sdxl-a.safetensors"), options.dir.join("sdxl-b.safetensors"));
    let a = random_lora(&targets, rank, 1)?;
    let b = random_lora(&targets, rank, 2)?;
    a.save(&a_path, LoraFormat::Kohya)?;
    b.save(&b_path, LoraFormat::Kohya)?;
    let names = [a_path.display().to_string(), b_path.display().to_string()];
    let both = vec![(a, 1.0), (b, 0.5)];
    let half = (rank / 2).max(1);
    let operations: [Operation; 4] = [
        ("merge_concat", both.clone(), None, rank.to_string()),
        ("merge_svd", both.clone(), Some(RankRule::Fixed(rank).into()), rank.to_string()),
        ("resize", both[..1].to_vec(), Some(RankRule::Fixed(half).into()), half.to_string()),
        ("resize_sv_fro", both[..1].to_vec(), Some(RankRule::SvFro(0.9).into()), "sv_fro=0.9".to_string()),
    ];
    let mut lines = Vec::new();
    for (operation, inputs, rule, rank_text) in operations {
        let ((merged, report), measured) = measure(|| merge::merge(&inputs, &names[..inputs.len()], rule))?;
        let (seconds, added) = (measured.seconds, measured.added);
        let mut line = json!({
            "bench": "lora", "operation": operation, "rank": rank_text, "modules": merged.modules.len(),
            "side": "easel", "seconds": seconds, "peak_added_bytes": added, "peak_anonymous_bytes": measured.anonymous,
            "threads": rayon::current_num_threads(),
            "overall_error": report.as_ref().map(ErrorReport::overall),
        });
        if let Some(script) = &options.python {
            let files: Vec<&Path> = [&a_path, &b_path][..inputs.len()].iter().map(|p| p.as_path()).collect();
            let reference = python(script, operation, &files, &rank_text)?;
            if let Some(theirs) = reference["seconds"].as_f64() {
                line["speed_vs_reference"] = json!(theirs / seconds);
            }
            if let Some(theirs) = reference["peak_added_bytes"].as_f64() {
                line["peak_memory_vs_reference"] = json!(added as f64 / theirs.max(1.0));
            }
            lines.push(reference);
        }
        lines.push(line);
    }
    if options.bake {
        lines.push(bake(&options.dir, &a_path)?);
    }
    Ok(lines)
}
