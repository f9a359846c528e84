use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::FolderError;
use crate::project::IMAGE_EXTENSIONS;

/// The caption beside an image (`name.txt` for `name.png`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptionState {
    Missing,
    /// The file exists but holds only whitespace.
    Empty,
    Text(String),
    /// The file exists but cannot be used as it is (not UTF-8, unreadable).
    Unreadable(String),
}

/// One image of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    /// Path relative to the dataset folder.
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: Option<SystemTime>,
    /// Width and height from the image header, when it could be read.
    pub dimensions: Option<(u32, u32)>,
    /// Format name from the header (`PNG`, `JPEG`, …).
    pub format: Option<String>,
    /// Why the header could not be read, when it could not.
    pub header_error: Option<String>,
    pub caption: CaptionState,
}

/// Every image under the dataset folder, sorted by path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inventory {
    pub entries: Vec<DatasetEntry>,
    /// Set when the folder itself could not be listed (missing, no
    /// permission): a [`FolderError`], which names the folder.
    pub folder_error: Option<String>,
}

impl Inventory {
    /// Lists `dir`. Headers of files unchanged (same size and mtime) since
    /// `previous` are not read again, so refreshing a large dataset is cheap.
    /// Folders whose names start with `_` or `.` (such as `_rejected`) are skipped.
    pub fn read(dir: &Path, caption_extension: &str, previous: Option<&Inventory>) -> Self {
        let known: HashMap<&Path, &DatasetEntry> =
            previous.map(|p| p.entries.iter().map(|e| (e.path.as_path(), e)).collect()).unwrap_or_default();
        let mut images = Vec::new();
        if let Err(error) = collect_images(dir, dir, &mut images) {
            let folder_error = FolderError::listing(dir, error).to_string();
            return Self { entries: Vec::new(), folder_error: Some(folder_error) };
        }
        images.sort();
        let entries = images.into_iter().map(|relative| read_entry(dir, relative, caption_extension, &known)).collect();
        Self { entries, folder_error: None }
    }

    pub fn image_count(&self) -> usize {
        self.entries.len()
    }

    pub fn captioned_count(&self) -> usize {
        self.entries.iter().filter(|e| matches!(e.caption, CaptionState::Text(_))).count()
    }

    /// Images that need caption work: missing, empty or unreadable captions.
    pub fn uncaptioned_count(&self) -> usize {
        self.image_count() - self.captioned_count()
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|ext| IMAGE_EXTENSIONS.iter().any(|known| ext.eq_ignore_ascii_case(known)))
}

fn collect_images(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let name = item.file_name();
        let hidden = name.to_string_lossy().starts_with(['.', '_']);
        let file_type = item.file_type()?;
        if file_type.is_dir() {
            if !hidden {
                // A subfolder that cannot be read should not hide the rest of the dataset.
                let _ = collect_images(root, &path, out);
            }
        } else if !hidden && is_image(&path) {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

fn read_entry(
    root: &Path,
    relative: PathBuf,
    caption_extension: &str,
    known: &HashMap<&Path, &DatasetEntry>,
) -> DatasetEntry {
    let path = root.join(&relative);
    let metadata = fs::metadata(&path).ok();
    let bytes = metadata.as_ref().map_or(0, |m| m.len());
    let modified = metadata.as_ref().and_then(|m| m.modified().ok());
    let caption = caption_for(&path, caption_extension);
    if let Some(old) = known.get(relative.as_path())
        && old.bytes == bytes
        && old.modified == modified
    {
        return DatasetEntry { caption, ..(*old).clone() };
    }
    let (dimensions, format, header_error) = match read_header(&path) {
        Ok((dimensions, format)) => (Some(dimensions), Some(format), None),
        Err(error) => (None, None, Some(error)),
    };
    DatasetEntry { path: relative, bytes, modified, dimensions, format, header_error, caption }
}

fn read_header(path: &Path) -> Result<((u32, u32), String), String> {
    let reader = image::ImageReader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let format = reader.format().ok_or("unknown image format")?;
    let name = format.extensions_str().first().copied().unwrap_or("?").to_ascii_uppercase();
    let dimensions = reader.into_dimensions().map_err(|e| e.to_string())?;
    Ok((dimensions, name))
}

/// The caption beside the image at `image` (its sidecar with `extension`).
pub fn caption_for(image: &Path, extension: &str) -> CaptionState {
    read_caption(&image.with_extension(extension))
}

fn read_caption(path: &Path) -> CaptionState {
    match fs::read(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => CaptionState::Missing,
        Err(error) => CaptionState::Unreadable(error.to_string()),
        Ok(bytes) => match String::from_utf8(bytes) {
            Err(_) => CaptionState::Unreadable("not valid UTF-8".to_string()),
            Ok(text) if text.trim().is_empty() => CaptionState::Empty,
            Ok(text) => CaptionState::Text(text.trim().to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, width: u32, height: u32) {
        image::RgbImage::new(width, height).save(path).unwrap();
    }

    #[test]
    fn lists_images_with_captions_and_skips_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_png(&root.join("b.PNG"), 8, 4);
        fs::write(root.join("b.txt"), "  a red mug \n").unwrap();
        write_png(&root.join("a.png"), 2, 2);
        fs::write(root.join("c.jpg"), b"not a jpeg").unwrap();
        fs::write(root.join("c.txt"), b"\xff\xfe").unwrap();
        fs::create_dir(root.join("_rejected")).unwrap();
        write_png(&root.join("_rejected/x.png"), 2, 2);
        fs::create_dir(root.join("10_mug")).unwrap();
        write_png(&root.join("10_mug/d.png"), 3, 3);
        fs::write(root.join("10_mug/d.txt"), "\n").unwrap();
        fs::write(root.join("notes.md"), "ignored").unwrap();

        let inventory = Inventory::read(root, "txt", None);
        let names: Vec<_> = inventory.entries.iter().map(|e| e.path.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["10_mug/d.png", "a.png", "b.PNG", "c.jpg"]);
        let [d, a, b, c] = &inventory.entries[..] else { unreachable!() };
        assert_eq!(d.caption, CaptionState::Empty);
        assert_eq!(a.caption, CaptionState::Missing);
        assert_eq!(b.caption, CaptionState::Text("a red mug".into()));
        assert_eq!(b.dimensions, Some((8, 4)));
        assert_eq!(b.format.as_deref(), Some("PNG"));
        assert!(c.header_error.is_some() && c.dimensions.is_none());
        assert_eq!(c.caption, CaptionState::Unreadable("not valid UTF-8".into()));
        assert_eq!((inventory.image_count(), inventory.captioned_count(), inventory.uncaptioned_count()), (4, 1, 3));
    }

    #[test]
    fn refresh_picks_up_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("a.png");
        write_png(&image, 2, 2);
        let first = Inventory::read(dir.path(), "txt", None);
        write_png(&image, 16, 2);
        fs::write(dir.path().join("a.txt"), "new caption").unwrap();
        let second = Inventory::read(dir.path(), "txt", Some(&first));
        assert_eq!(second.entries[0].dimensions, Some((16, 2)));
        assert_eq!(second.entries[0].caption, CaptionState::Text("new caption".into()));
    }

    #[test]
    fn the_caption_extension_is_the_projects_choice() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a.png"), 2, 2);
        fs::write(dir.path().join("a.caption"), "a mug").unwrap();
        fs::write(dir.path().join("a.txt"), "notes, not the caption").unwrap();
        let inventory = Inventory::read(dir.path(), "caption", None);
        assert_eq!(inventory.entries[0].caption, CaptionState::Text("a mug".into()));
        let mut config = crate::project::ProjectConfig { caption_extension: ".txt".into(), ..Default::default() };
        assert_eq!(config.validate().unwrap_err().key, "caption_extension", "a dot is refused");
        config.caption_extension = "PNG".into();
        assert_eq!(config.validate().unwrap_err().key, "caption_extension", "an image extension is refused");
        config.caption_extension = "caption".into();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn missing_folder_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let inventory = Inventory::read(&dir.path().join("nope"), "txt", None);
        assert!(inventory.folder_error.unwrap().contains("does not exist"));
        assert!(inventory.entries.is_empty());
    }
}
