//! Evaluating a trained LoRA: images and prompts embedded by CLIP and DINOv2
//! (`embed`), and the scores computed from the embeddings (`scores`).

pub mod embed;
pub mod scores;
