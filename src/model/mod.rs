//! Stable Diffusion model parts: tokenizer, noise schedule and the CLIP text
//! encoder so far; the UNet, VAE, loaders, the built-in tiny model and LoRA
//! come next.

pub mod clip;
pub mod gradcheck;
pub mod nn;
pub mod schedule;
pub mod tokenizer;
