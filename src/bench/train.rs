//! `easel bench train`: the time and memory of a LoRA training step (forward,
//! loss, backward, clipping, AdamW) of a UNet with random weights, and with
//! `--python` the same step in diffusers + PEFT (benches/lora_step.py) on the
//! same architecture, batch, resolution, rank, precision and device, in the
//! same command. One JSON line per side; Easel's carries the ratios.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use serde_json::{Value, json};

use crate::device::{peak_memory, reset_peak_memory};
use crate::model::builtin::{random_weights, tiny};
use crate::model::lora::{LoraHost, LoraNetwork, is_unet_target};
use crate::model::unet::{AddedConditioning, UNet, UNetConfig};
use crate::model::{checkpoint, flops};
use crate::project::LoraTargets;
use crate::train::optim::{self, AdamW};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// The built-in tiny model (128 px).
    Tiny,
    /// SD 1.5's UNet, 860 M parameters (512 px).
    Sd15,
    /// SDXL's UNet, 2.6 B parameters, with its text_time conditioning (1024 px).
    Sdxl,
}

impl Arch {
    /// The UNet's config.json, as the model's diffusers folder ships it.
    pub fn unet_config(self) -> Value {
        match self {
            Arch::Tiny => tiny().unet,
            Arch::Sd15 => json!({
                "in_channels": 4, "out_channels": 4, "sample_size": 64,
                "block_out_channels": [320, 640, 1280, 1280],
                "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32
            }),
            Arch::Sdxl => json!({
                "in_channels": 4, "out_channels": 4, "sample_size": 128,
                "block_out_channels": [320, 640, 1280],
                "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
                "layers_per_block": 2, "attention_head_dim": [5, 10, 20], "transformer_layers_per_block": [1, 2, 10],
                "cross_attention_dim": 2048, "use_linear_projection": true, "norm_num_groups": 32,
                "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                "projection_class_embeddings_input_dim": 2816
            }),
        }
    }

    pub fn default_resolution(self) -> usize {
        match self {
            Arch::Tiny => 128,
            Arch::Sd15 => 512,
            Arch::Sdxl => 1024,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchTrain {
    pub arch: Arch,
    pub batch: usize,
    pub steps: usize,
    /// Image side in pixels (latents are 1/8 of it).
    pub resolution: usize,
    pub dtype: DType,
    pub rank: usize,
    pub checkpointing: bool,
    /// The reference script to run beside (benches/lora_step.py).
    pub python: Option<PathBuf>,
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "f32",
    }
}

/// Both sides' JSON lines: the reference's (when asked for) first, then Easel's with the ratios.
pub fn run(options: &BenchTrain, device: &Device) -> Result<Vec<Value>> {
    let mut easel = crate::device::on_compute_threads(device, || easel_step(options, device))?;
    let Some(script) = &options.python else { return Ok(vec![easel]) };
    let reference = python_step(script, options, device)?;
    let ratio = |key: &str| Some(easel[key].as_f64()? / reference[key].as_f64()?);
    let (speed, memory) = (ratio("samples_per_s"), ratio("peak_memory_bytes"));
    easel["speed_vs_reference"] = json!(speed);
    easel["peak_memory_vs_reference"] = json!(memory);
    Ok(vec![reference, easel])
}

/// A random-weight UNet with attention LoRA, one fixed random batch, and the
/// trainer's step on it (loss, backward, clipping at 1, AdamW).
pub(super) struct LoraStep {
    unet: UNet,
    network: LoraNetwork,
    vars: Vec<Var>,
    optimizer: AdamW,
    latents: Tensor,
    noise: Tensor,
    context: Tensor,
    timesteps: Tensor,
    added: Option<AddedConditioning>,
    device: Device,
}

impl LoraStep {
    pub(super) fn new(
        arch: Arch,
        dtype: DType,
        device: &Device,
        (rank, batch, resolution): (usize, usize, usize),
    ) -> Result<Self> {
        let config: UNetConfig = serde_json::from_value(arch.unet_config())?;
        let mut unet = UNet::load(random_weights(dtype, device), &config)?;
        let mut layers = Vec::new();
        unet.lora_layers("unet", &mut layers);
        let mut layers: Vec<_> =
            layers.into_iter().filter(|(path, _)| is_unet_target(path, LoraTargets::Attention)).collect();
        let network = LoraNetwork::create(&layers, rank, rank as f64, 0, device)?;
        network.attach(&mut layers, "bench");
        drop(layers);
        let vars = network.vars();
        let optimizer = AdamW::new(vars.clone(), 0.01)?;
        let side = resolution / 8;
        let random = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, device);
        let added = match config.addition_embed_type.as_deref() {
            Some("text_time") => Some(AddedConditioning {
                text_embeds: random(&[batch, 1280])?.to_dtype(dtype)?,
                time_ids: Tensor::new(&[[1024f32, 1024.0, 0.0, 0.0, 1024.0, 1024.0]], device)?.repeat((batch, 1))?,
            }),
            _ => None,
        };
        Ok(Self {
            latents: random(&[batch, config.in_channels, side, side])?,
            noise: random(&[batch, config.in_channels, side, side])?,
            context: random(&[batch, 77, config.cross_attention_dim])?.to_dtype(dtype)?,
            timesteps: Tensor::new(vec![500f32; batch], device)?,
            unet,
            network,
            vars,
            optimizer,
            added,
            device: device.clone(),
        })
    }

    fn forward(&self) -> Result<Tensor> {
        Ok(self.unet.forward(&self.latents, &self.timesteps, &self.context, self.added.as_ref())?)
    }

    /// One training step at learning rate `lr`; the loss before it.
    pub(super) fn step(&mut self, lr: f64) -> Result<Tensor> {
        let prediction = self.forward()?.to_dtype(DType::F32)?;
        let loss = (prediction - &self.noise)?.sqr()?.mean_all()?;
        let grads = optim::collect_grads(&self.vars, &checkpoint::backward(&loss)?);
        let mut grads = optim::FlatGrads::new(&self.vars, &grads)?;
        grads.clip(1.0)?;
        self.optimizer.step(&grads, lr)?;
        self.device.synchronize()?;
        Ok(loss)
    }
}

fn easel_step(options: &BenchTrain, device: &Device) -> Result<Value> {
    let started = Instant::now();
    let shape = (options.rank, options.batch, options.resolution);
    let mut bench = LoraStep::new(options.arch, options.dtype, device, shape)?;
    bench.unet.gradient_checkpointing = options.checkpointing;
    let load_seconds = started.elapsed().as_secs_f64();
    // Warm-up: kernel compilation, allocator growth.
    bench.step(1e-4)?;
    bench.step(1e-4)?;
    let (_, counted) = flops::count(|| bench.forward());
    reset_peak_memory(device);
    let mut step_times = Vec::new();
    for _ in 0..options.steps {
        let t0 = Instant::now();
        bench.step(1e-4)?;
        step_times.push(t0.elapsed().as_secs_f64());
    }
    let peak = peak_memory(device);
    let mut forward_times = Vec::new();
    for _ in 0..options.steps.div_ceil(2) {
        let t0 = Instant::now();
        bench.forward()?;
        device.synchronize()?;
        forward_times.push(t0.elapsed().as_secs_f64());
    }
    let (step_s, forward_s) = (median(step_times), median(forward_times));
    let (b, flops_per_step) = (options.batch, counted.training_step());
    Ok(json!({
        "side": "easel", "arch": format!("{:?}", options.arch).to_lowercase(), "batch": b,
        "resolution": options.resolution, "dtype": dtype_name(options.dtype), "lora_rank": options.rank,
        "lora_modules": bench.network.modules.len(), "device": if device.is_cuda() { "cuda" } else { "cpu" },
        "threads": rayon::current_num_threads(), "checkpointing": options.checkpointing,
        "step_s": step_s, "samples_per_s": b as f64 / step_s, "peak_memory_bytes": peak,
        "flops_per_step": flops_per_step, "tflops": flops_per_step as f64 / step_s / 1e12,
        "forward_s": forward_s, "step_over_forward": step_s / forward_s,
        "weights_load_s": load_seconds, "steps_timed": options.steps,
    }))
}

/// Runs the reference script on the same configuration; its one JSON line.
fn python_step(script: &Path, options: &BenchTrain, device: &Device) -> Result<Value> {
    let mut command = std::process::Command::new("python3");
    command.arg(script).args([
        "--config",
        &options.arch.unet_config().to_string(),
        "--batch",
        &options.batch.to_string(),
        "--resolution",
        &options.resolution.to_string(),
        "--rank",
        &options.rank.to_string(),
        "--dtype",
        dtype_name(options.dtype),
        "--device",
        if device.is_cuda() { "cuda" } else { "cpu" },
        "--steps",
        &options.steps.to_string(),
        "--threads",
        &rayon::current_num_threads().to_string(),
    ]);
    if options.checkpointing {
        command.arg("--checkpointing");
    }
    let output = command.output().with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "python3 {} failed (it needs `pip install torch diffusers peft`):\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().rev().find(|line| line.starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("python3 {} printed no JSON line:\n{stdout}", script.display()))
}
