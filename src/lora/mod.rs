//! LoRA files as artifacts: tools that inspect, convert, merge, resize, bake
//! and extract them. Training and applying a LoRA live in `model`; this module
//! works on the files and the weight updates they hold.

pub mod bake;
pub mod command;
pub mod extract;
pub mod factor;
pub mod info;
pub mod merge;
