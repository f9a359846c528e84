//! Training runs. Each run lives in `runs/<run-id>/` with its frozen config,
//! `metrics.jsonl`, `checkpoints/` and `samples/`; the workbench reads these
//! folders, so it can follow runs started by another process.

pub mod data;
pub mod faults;
pub mod headless;
pub mod latents;
pub mod optim;
pub mod overfit;
pub mod records;
pub mod run_dir;
mod runs;
mod setup;
pub mod smoothing;
pub mod trainer;

pub use records::StepMetrics;
pub use runs::{RunMetrics, RunSummary, list_runs, read_metrics};
pub use setup::file_stem;
pub use trainer::{Command, Event, Resume, TrainOptions, TrainerHandle, spawn};
