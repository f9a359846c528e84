//! VAE latents of the training images, computed once and cached in the
//! project's `cache/latents/`, keyed by the image's content, its bucket and
//! the VAE, so an edited image or another model gets fresh latents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use super::data::{Example, load_pixels};
use crate::model::lora::fnv1a;
use crate::model::pipeline::StableDiffusion;

/// A fingerprint of the VAE: its config and origin.
pub fn vae_fingerprint(model: &StableDiffusion) -> u64 {
    fnv1a(format!("{:?}|{}", model.vae.config, model.origin).as_bytes())
}

fn cache_path(cache_dir: &Path, example: &Example, vae: u64) -> Result<PathBuf> {
    let bytes = std::fs::read(&example.image).with_context(|| format!("cannot read {}", example.image.display()))?;
    let key = fnv1a(&bytes)
        ^ vae.rotate_left(17)
        ^ (u64::from(example.bucket.width) << 32 | u64::from(example.bucket.height));
    Ok(cache_dir.join(format!("{key:016x}.safetensors")))
}

/// Scaled latents (`[4, h/8, w/8]`, the VAE mean × scaling factor) for every
/// example, from the cache or freshly encoded. `progress` hears (done, total).
pub fn latents_for(
    model: &StableDiffusion,
    examples: &[&Example],
    cache_dir: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Tensor>> {
    std::fs::create_dir_all(cache_dir).with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let vae = vae_fingerprint(model);
    let device = &model.device;
    let mut out = Vec::with_capacity(examples.len());
    for (index, example) in examples.iter().enumerate() {
        let path = cache_path(cache_dir, example, vae)?;
        let cached = candle_core::safetensors::load(&path, &Device::Cpu)
            .ok()
            .and_then(|mut t: HashMap<_, _>| t.remove("latent"));
        let latent = match cached {
            Some(latent) => latent,
            None => {
                let pixels = load_pixels(example, device)?.unsqueeze(0)?;
                let mean = model.vae.encode(&pixels)?.mean;
                let latent = (mean.to_dtype(DType::F32)? * model.vae.config.scaling_factor)?
                    .squeeze(0)?
                    .to_device(&Device::Cpu)?;
                let bytes = safetensors::serialize([("latent", latent.clone())], None)
                    .map_err(|e| anyhow::anyhow!("cannot encode a latent: {e}"))?;
                crate::fsutil::atomic_write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                latent
            }
        };
        out.push(latent.to_device(device)?);
        progress(index + 1, examples.len());
    }
    Ok(out)
}
