//! Whether the dataset folder can be used at all: said the same way by every
//! command that reads it and by the workbench's Dataset pane.

use std::io;
use std::path::{Path, PathBuf};

/// Why the dataset folder cannot be used. Each names the folder once.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("the dataset folder {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("cannot list the dataset folder {}: {}", .0.display(), .1)]
    Unlistable(PathBuf, io::Error),
    #[error("no images in {}: put images there, each with a .{} caption", .0.display(), .1)]
    Empty(PathBuf, String),
}

impl FolderError {
    /// What listing `dir` failing with `error` means.
    pub(super) fn listing(dir: &Path, error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::NotFound {
            Self::Missing(dir.to_path_buf())
        } else {
            Self::Unlistable(dir.to_path_buf(), error)
        }
    }
}

/// Fails unless `dir` is a folder that can be listed: a command must not
/// report on a missing dataset as if it were an empty one.
pub fn check_folder(dir: &Path) -> Result<(), FolderError> {
    std::fs::read_dir(dir).map(drop).map_err(|error| FolderError::listing(dir, error))
}

/// Fails unless `dir` can be listed and holds an image, for the commands
/// whose report on no images would only look like a clean bill of health.
pub fn require_images(dir: &Path, caption_extension: &str) -> Result<(), FolderError> {
    check_folder(dir)?;
    if super::scan::image_files(dir).is_empty() {
        return Err(FolderError::Empty(dir.to_path_buf(), caption_extension.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_an_unlistable_and_an_empty_folder_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(check_folder(&missing), Err(FolderError::Missing(_))));
        assert_eq!(
            require_images(&missing, "txt").unwrap_err().to_string(),
            format!("the dataset folder {} does not exist", missing.display())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(check_folder(&file), Err(FolderError::Unlistable(..))));
        check_folder(dir.path()).unwrap();
        assert_eq!(
            require_images(dir.path(), "caption").unwrap_err().to_string(),
            format!("no images in {}: put images there, each with a .caption caption", dir.path().display())
        );
        image::RgbImage::new(2, 2).save(dir.path().join("a.png")).unwrap();
        require_images(dir.path(), "txt").unwrap();
    }
}
