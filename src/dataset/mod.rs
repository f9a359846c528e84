//! What the dataset folder holds: images and their sidecar captions.
//!
//! The inventory is the quick view the workbench shows (names, sizes,
//! caption state), from image headers only; the scan decodes every image
//! and flags what would harm training.

pub mod analysis;
pub mod buckets;
pub mod decisions;
mod folder;
pub mod integrity;
mod inventory;
pub mod scan;
pub mod summary;

pub use folder::{FolderError, check_folder, require_images};
pub use inventory::{CaptionState, DatasetEntry, Inventory, caption_for};
