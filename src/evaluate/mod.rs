//! Evaluation (`easel eval`): a grid of prompt × seed × LoRA scale ×
//! checkpoint rendered from a run, contact sheets, and `eval.json`.

pub mod command;
pub mod plan;
pub mod render;
pub mod report;
pub mod sheet;
