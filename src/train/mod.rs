//! Training runs. Each run lives in `runs/<run-id>/` with its frozen config,
//! `metrics.jsonl`, `checkpoints/` and `samples/`; the workbench reads these
//! folders, so it can follow runs started by another process.

mod runs;

pub use runs::{RunSummary, list_runs};
