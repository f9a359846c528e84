//! Stable Diffusion, owned here: tokenizer, text encoders, UNet, VAE, noise
//! schedule and samplers, the loaders for diffusers folders and single-file
//! checkpoints, the built-in tiny model, and LoRA (layers, training
//! variables, kohya and PEFT files).

use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;

pub mod base;
pub mod builtin;
pub mod checkpoint;
pub mod clip;
pub mod flops;
pub mod fused;
pub mod gradcheck;
pub mod lora;
pub mod lora_file;
pub mod nn;
pub mod pipeline;
pub mod resnet;
pub mod rewrite;
pub mod sampling;
pub mod schedule;
pub mod single_file;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

/// Reads a model part's JSON config (`config.json`, `scheduler_config.json`);
/// the error names the file.
pub fn read_json_config<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| path.display().to_string())
}

/// The Stable Diffusion generation a model belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// SD 1.x: CLIP ViT-L text encoder, 768-wide context.
    Sd1,
    /// SD 2.x: OpenCLIP ViT-H, 1024-wide context, ε or v prediction.
    Sd2,
    /// SDXL: two text encoders, pooled and size conditioning.
    Sdxl,
}

impl Family {
    pub fn default_resolution(self) -> usize {
        match self {
            Self::Sd1 => 512,
            Self::Sd2 => 768,
            Self::Sdxl => 1024,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Sd1 => "SD 1.x",
            Self::Sd2 => "SD 2.x",
            Self::Sdxl => "SDXL",
        }
    }
}
