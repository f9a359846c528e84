//! Evaluation (`easel eval`): a grid of prompt × seed × LoRA scale ×
//! checkpoint rendered from a run, contact sheets, and `eval.json` with the
//! scores (CLIP and DINO embeddings from local transformers folders).

pub mod command;
pub mod embed;
pub mod plan;
pub mod render;
pub mod report;
pub mod scores;
pub mod scoring;
pub mod sheet;
