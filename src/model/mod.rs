//! Stable Diffusion model parts: the tokenizer so far; loaders, the
//! trainable modules, the built-in tiny model and LoRA come next.

pub mod schedule;
pub mod tokenizer;
