//! `easel bench lora`: merging and resizing LoRAs over every transformer
//! layer of SDXL's UNet and both text encoders (random weights, the real
//! shapes), with the memory each operation adds; with --python, the same
//! operations as kohya's scripts do them (dense ΔW, torch SVD) beside it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::lora::factor::RankRule;
use crate::lora::merge::{self, ErrorReport};
use crate::model::Family;
use crate::model::lora::{LoraTargets, fnv1a, is_unet_target};
use crate::model::lora_file::{LoraFile, LoraFormat, LoraModule, Naming};
use crate::model::unet::{UNet, UNetConfig};

#[derive(Debug, Clone)]
pub struct BenchLora {
    /// Rank of the two random LoRAs.
    pub rank: usize,
    /// Where the random LoRAs (and the model, for --bake) are written.
    pub dir: PathBuf,
    /// benches/lora_tools.py, run on the same files.
    pub python: Option<PathBuf>,
}

/// (module path, out, in, 1×1 convolution) of every layer a kohya-default
/// LoRA adapts in SDXL: the UNet's transformer layers and the text encoders'
/// attention and MLP layers.
fn sdxl_targets() -> Result<Vec<(String, usize, usize, bool)>> {
    let config: UNetConfig = serde_json::from_value(super::train::Arch::Sdxl.unet_config())?;
    let mut unet = UNet::load(crate::model::builtin::weightless(), &config)?;
    let mut layers = Vec::new();
    use crate::model::lora::LoraHost;
    unet.lora_layers("unet", &mut layers);
    let mut targets: Vec<(String, usize, usize, bool)> = layers
        .iter()
        .filter(|(path, _)| is_unet_target(path, LoraTargets::Transformer))
        .map(|(path, layer)| (path.clone(), layer.out_features(), layer.in_features(), false))
        .collect();
    for (encoder, width, layers) in [("text_encoder", 768, 12), ("text_encoder_2", 1280, 32)] {
        for layer in 0..layers {
            let prefix = format!("{encoder}.text_model.encoder.layers.{layer}");
            for projection in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                targets.push((format!("{prefix}.self_attn.{projection}"), width, width, false));
            }
            targets.push((format!("{prefix}.mlp.fc1"), 4 * width, width, false));
            targets.push((format!("{prefix}.mlp.fc2"), width, 4 * width, false));
        }
    }
    Ok(targets)
}

/// A trained-looking random LoRA: f16 factors, alpha = rank / 2.
fn random_lora(targets: &[(String, usize, usize, bool)], rank: usize, seed: u64) -> Result<LoraFile> {
    let modules = targets
        .par_iter()
        .map(|(path, out, input, _)| {
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

/// The resident memory in bytes (Linux), to measure what an operation adds.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok());
    kib.unwrap_or(0) * 1024
}

/// Times `operation` and the peak memory it adds over what was resident before.
fn measure<T>(operation: impl FnOnce() -> Result<T>) -> Result<(T, f64, u64)> {
    crate::device::reset_peak_memory(&Device::Cpu);
    let before = resident();
    let started = Instant::now();
    let result = operation()?;
    let seconds = started.elapsed().as_secs_f64();
    let peak = crate::device::peak_memory(&Device::Cpu).unwrap_or(0);
    Ok((result, seconds, peak.saturating_sub(before)))
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

pub fn run(options: &BenchLora) -> Result<Vec<Value>> {
    std::fs::create_dir_all(&options.dir).with_context(|| format!("cannot create {}", options.dir.display()))?;
    let targets = sdxl_targets()?;
    let rank = options.rank;
    let (a_path, b_path) = (options.dir.join("sdxl-a.safetensors"), options.dir.join("sdxl-b.safetensors"));
    let a = random_lora(&targets, rank, 1)?;
    let b = random_lora(&targets, rank, 2)?;
    a.save(&a_path, LoraFormat::Kohya)?;
    b.save(&b_path, LoraFormat::Kohya)?;
    let names = vec![a_path.display().to_string(), b_path.display().to_string()];
    let both = vec![(a, 1.0), (b, 0.5)];
    let half = (rank / 2).max(1);
    let operations: Vec<(&str, Vec<(LoraFile, f64)>, Option<RankRule>, String)> = vec![
        ("merge_concat", both.clone(), None, rank.to_string()),
        ("merge_svd", both.clone(), Some(RankRule::Fixed(rank)), rank.to_string()),
        ("resize", both[..1].to_vec(), Some(RankRule::Fixed(half)), half.to_string()),
        ("resize_sv_fro", both[..1].to_vec(), Some(RankRule::SvFro(0.9)), "sv_fro=0.9".to_string()),
    ];
    let mut lines = Vec::new();
    for (operation, inputs, rule, rank_text) in operations {
        let ((merged, report), seconds, added) = measure(|| merge::merge(&inputs, &names[..inputs.len()], rule))?;
        let mut line = json!({
            "bench": "lora", "operation": operation, "rank": rank_text, "modules": merged.modules.len(),
            "side": "easel", "seconds": seconds, "peak_added_bytes": added,
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
    Ok(lines)
}
