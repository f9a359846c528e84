//! Stable Diffusion model parts: tokenizer, noise schedule and the CLIP text
//! encoder so far; the UNet, VAE, loaders, the built-in tiny model and LoRA
//! come next.

use std::path::Path;

use serde::de::DeserializeOwned;

pub mod clip;
pub mod gradcheck;
pub mod nn;
pub mod schedule;
pub mod tokenizer;

/// Reads a model part's JSON config (`config.json`, `scheduler_config.json`);
/// the error names the file.
pub fn read_json_config<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}
