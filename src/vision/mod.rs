//! Image models' shared parts: the vision transformer the CLIP, DINOv2 and
//! BLIP checkpoints load into, and the image processors that make their input
//! as transformers does. Evaluation and captioning both build on it.

pub mod preprocess;
pub mod vit;
