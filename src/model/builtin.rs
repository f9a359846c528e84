//! `builtin:tiny`: a tiny SD1.5-shaped model with deterministic random
//! weights, written on first use as a real diffusers folder in the project's
//! cache so the ordinary loader reads it. It makes the demo and the tests run
//! on a CPU in seconds; it draws nothing recognisable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use rand::SeedableRng;
use rand_distr::{Distribution, Uniform};
use serde_json::json;

use super::clip::{ClipTextConfig, ClipTextModel};
use super::lora::fnv1a;
use super::rewrite::{Bytes, PendingTensor, write_safetensors};
use super::unet::{UNet, UNetConfig};
use super::vae::{Vae, VaeConfig};

/// Bump when the configs or the weight recipe change, so old caches are not reused.
const VERSION: u32 = 2;
const SEED: u64 = 0x5eed_7175;

/// SD1.5's layout (attention at the top level and in the middle, 1×1 conv
/// projections, 2 heads) shrunk: two levels of 32 and 64 channels and one
/// residual block per level, so a LoRA step on a CPU takes a fraction of a second.
fn unet_config() -> serde_json::Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "in_channels": 4, "out_channels": 4, "sample_size": 16,
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "layers_per_block": 1, "attention_head_dim": 2, "cross_attention_dim": 32,
        "norm_num_groups": 32, "norm_eps": 1e-5, "flip_sin_to_cos": true, "freq_shift": 0,
        "use_linear_projection": false, "transformer_layers_per_block": 1
    })
}

fn vae_config() -> serde_json::Value {
    json!({
        "_class_name": "AutoencoderKL",
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 128,
        "block_out_channels": [32, 32, 32, 32],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
        "layers_per_block": 2, "norm_num_groups": 32, "scaling_factor": 0.18215
    })
}

fn text_encoder_config() -> serde_json::Value {
    json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
        "vocab_size": 49408, "hidden_size": 32, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
        "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
        "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407
    })
}

/// SD1.5's own noise schedule.
fn scheduler_config() -> serde_json::Value {
    json!({
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "prediction_type": "epsilon",
        "set_alpha_to_one": false, "steps_offset": 1, "timestep_spacing": "leading", "clip_sample": false
    })
}

/// Deterministic random weights, each tensor drawn from its own name.
struct Generator;

impl Generator {
    /// PyTorch-like initialisation: norms start at weight 1 and bias 0, other
    /// tensors uniform in ±1/√fan_in, embeddings small. Seeded by name, so
    /// the load order does not matter.
    fn make(name: &str, shape: &Shape) -> candle_core::Result<Tensor> {
        let dims = shape.dims();
        // Any case: BERT-style models name theirs `LayerNorm`.
        let is_norm = name.to_ascii_lowercase().contains("norm");
        if is_norm && name.ends_with(".weight") {
            return Tensor::ones(shape, DType::F32, &Device::Cpu);
        }
        if is_norm && name.ends_with(".bias") {
            return Tensor::zeros(shape, DType::F32, &Device::Cpu);
        }
        let bound = if name.contains("embedding.weight") {
            0.05
        } else {
            let fan_in: usize = if dims.len() > 1 { dims[1..].iter().product() } else { dims[0] };
            1.0 / (fan_in as f32).sqrt()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(SEED ^ fnv1a(name.as_bytes()));
        let uniform = Uniform::new(-bound, bound).map_err(candle_core::Error::wrap)?;
        let values: Vec<f32> = (0..shape.elem_count()).map(|_| uniform.sample(&mut rng)).collect();
        Tensor::from_vec(values, shape, &Device::Cpu)
    }
}

impl SimpleBackend for Generator {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        Self::make(name, &shape)?.to_dtype(dtype)?.to_device(device)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("the random weight generator needs a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

/// The tensors module code asks for, with their shapes, in the order asked:
/// what to write so that loading the module code finds exactly its weights.
pub(crate) fn weight_shapes(load: impl FnOnce(VarBuilder) -> candle_core::Result<()>) -> Result<Vec<(String, Shape)>> {
    let asked = Arc::new(Mutex::new(Vec::new()));
    load(VarBuilder::from_backend(Box::new(Weightless { asked: Some(asked.clone()) }), DType::F32, Device::Cpu))?;
    let asked = std::mem::take(&mut *asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    Ok(asked)
}

/// Deterministic random weights for any module code, straight onto `device`
/// in `dtype`, without files: for benchmarks of full-size architectures.
pub fn random_weights(dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Generator), dtype, device.clone())
}

/// Weights that take no memory, every tensor a broadcast zero: building
/// module code with them reads out its structure (layer names and sizes),
/// e.g. SDXL's LoRA targets, without gigabytes of weights.
pub fn weightless() -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(Weightless { asked: None }), DType::F32, Device::Cpu)
}

/// Broadcast zeros for every tensor, optionally noting what was asked for.
struct Weightless {
    asked: Option<Asked>,
}

/// The tensors module code asked for, with their shapes.
type Asked = Arc<Mutex<Vec<(String, Shape)>>>;

impl SimpleBackend for Weightless {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(asked) = &self.asked {
            asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((name.to_string(), shape.clone()));
        }
        Tensor::zeros((), dtype, device)?.broadcast_as(shape)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("weightless module code needs a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        false
    }
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The folder holding the tiny model under `cache_dir`, written if missing.
/// It is built in a temporary folder and renamed into place, so an
/// interrupted first run never leaves a half-written model behind.
pub fn ensure_tiny(cache_dir: &Path) -> Result<PathBuf> {
    let folder = cache_dir.join(format!("builtin-tiny-v{VERSION}"));
    if folder.join("model_index.json").is_file() {
        return Ok(folder);
    }
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let partial = cache_dir.join(format!(".builtin-tiny-v{VERSION}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    write_tiny(&partial)?;
    match std::fs::rename(&partial, &folder) {
        Ok(()) => Ok(folder),
        // Another process finished first: use its copy.
        Err(_) if folder.join("model_index.json").is_file() => {
            let _ = std::fs::remove_dir_all(&partial);
            Ok(folder)
        }
        Err(e) => Err(e).with_context(|| format!("cannot move the tiny model into {}", folder.display())),
    }
}

/// The configs of a random-weight model to write as a diffusers folder.
#[derive(Debug, Clone)]
pub struct RandomModel {
    pub unet: serde_json::Value,
    pub vae: serde_json::Value,
    /// One per text encoder; the second (SDXL) is written as `text_encoder_2/`.
    pub text_encoders: Vec<TextEncoderSpec>,
    pub scheduler: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct TextEncoderSpec {
    pub config: serde_json::Value,
    /// `!` for OpenCLIP-style tokenizers (SD2, SDXL's second), else the end token.
    pub pad_token: &'static str,
    /// Width of a `text_projection` to add (SDXL's second encoder).
    pub projection: Option<usize>,
}

/// The built-in tiny model's configs.
pub fn tiny() -> RandomModel {
    RandomModel {
        unet: unet_config(),
        vae: vae_config(),
        text_encoders: vec![TextEncoderSpec {
            config: text_encoder_config(),
            pad_token: "<|endoftext|>",
            projection: None,
        }],
        scheduler: scheduler_config(),
    }
}

fn write_tiny(folder: &Path) -> Result<()> {
    write_random_model(folder, &tiny())
}

/// Writes `config.json` and the weights named in `shapes`, each drawn when
/// the writer reaches it, so no more than one tensor is ever in memory.
pub(crate) fn write_weights(
    folder: &Path,
    stem: &str,
    config: &serde_json::Value,
    shapes: Vec<(String, Shape)>,
    dtype: DType,
) -> Result<()> {
    std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    write_json(&folder.join("config.json"), config)?;
    let path = folder.join(format!("{stem}.safetensors"));
    let stored: safetensors::Dtype = match dtype {
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        _ => safetensors::Dtype::F32,
    };
    let pending = shapes
        .into_iter()
        .map(|(name, shape)| PendingTensor {
            name: name.clone(),
            dtype: stored,
            shape: shape.dims().to_vec(),
            bytes: Box::new(move || -> Result<Bytes<'static>> {
                let tensor = Generator::make(&name, &shape)?.to_dtype(dtype)?;
                Ok(Box::new(safetensors::View::data(&tensor).into_owned()))
            }),
        })
        .collect();
    write_safetensors(&path, None, pending)
}

/// Writes a diffusers folder with deterministic random weights for `spec`
/// (the built-in model, and SD2/SDXL-shaped models for tests), in f32.
pub fn write_random_model(folder: &Path, spec: &RandomModel) -> Result<()> {
    write_random_model_as(folder, spec, DType::F32)
}

/// [`write_random_model`] storing the weights in `dtype`; streamed, so a
/// full-size model (SDXL: 7 GB in f16) is never held in memory.
pub fn write_random_model_as(folder: &Path, spec: &RandomModel, dtype: DType) -> Result<()> {
    let unet: UNetConfig = serde_json::from_value(spec.unet.clone())?;
    let vae: VaeConfig = serde_json::from_value(spec.vae.clone())?;
    write_weights(
        &folder.join("unet"),
        "diffusion_pytorch_model",
        &spec.unet,
        weight_shapes(|vb| UNet::load(vb, &unet).map(drop))?,
        dtype,
    )?;
    write_weights(
        &folder.join("vae"),
        "diffusion_pytorch_model",
        &spec.vae,
        weight_shapes(|vb| Vae::load(vb, &vae).map(drop))?,
        dtype,
    )?;
    for (index, encoder) in spec.text_encoders.iter().enumerate() {
        let suffix = if index == 0 { "" } else { "_2" };
        let config: ClipTextConfig = serde_json::from_value(encoder.config.clone())?;
        let mut shapes = weight_shapes(|vb| ClipTextModel::load(vb, &config).map(drop))?;
        if let Some(width) = encoder.projection {
            shapes.push(("text_projection.weight".into(), Shape::from((width, config.hidden_size))));
        }
        write_weights(&folder.join(format!("text_encoder{suffix}")), "model", &encoder.config, shapes, dtype)?;
        let tokenizer = folder.join(format!("tokenizer{suffix}"));
        std::fs::create_dir_all(&tokenizer)?;
        std::fs::write(tokenizer.join("vocab.json"), super::tokenizer::SHIPPED_VOCAB)?;
        std::fs::write(tokenizer.join("merges.txt"), super::tokenizer::SHIPPED_MERGES)?;
        write_json(
            &tokenizer.join("tokenizer_config.json"),
            &json!({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "pad_token": encoder.pad_token}),
        )?;
    }
    std::fs::create_dir_all(folder.join("scheduler"))?;
    write_json(&folder.join("scheduler/scheduler_config.json"), &spec.scheduler)?;
    write_json(
        &folder.join("model_index.json"),
        &json!({
            "_class_name": if spec.text_encoders.len() > 1 { "StableDiffusionXLPipeline" } else { "StableDiffusionPipeline" },
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
            "scheduler": ["diffusers", "DDIMScheduler"]
        }),
    )
}
