//! What the dataset folder holds: images and their sidecar captions.
//!
//! This is the quick inventory the workbench shows (names, sizes, caption
//! state); it reads image headers only, never whole images.

mod inventory;

pub use inventory::{CaptionState, DatasetEntry, IMAGE_EXTENSIONS, Inventory};
