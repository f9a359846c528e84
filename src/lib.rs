//! Easel: a terminal workbench for training your own image generator.
//!
//! The crate is organised by domain (see ARCHITECTURE.md): `project` owns
//! project.toml, `dataset` what the dataset folder holds, `train` the run
//! directories, `tui` the workbench, and `cli` the command line that ties
//! them together.

pub mod bench;
pub mod captioner;
pub mod captions;
pub mod cli;
pub mod console;
pub mod dataset;
pub mod device;
pub mod evaluate;
pub mod fsutil;
pub mod generate;
pub mod lora;
pub mod model;
pub mod project;
pub mod train;
pub mod tui;
pub mod utc;
pub mod vision;
pub mod words;
