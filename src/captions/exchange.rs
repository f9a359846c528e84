//! Other tools' dataset layouts, in and out: kohya's `N_concept` folders
//! (images with sidecar captions; N is the repeat count) and Hugging Face
//! imagefolder's `metadata.jsonl` (`{"file_name": …, "text": …}` per line).
//! Imports never overwrite: a name already in the dataset is skipped and
//! reported.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Caption;
use crate::dataset::scan::image_files;
use crate::fsutil::atomic_write;

/// What an import brought in and what it left out, with why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub images: usize,
    pub captions: usize,
    pub skipped: Vec<(PathBuf, String)>,
}

/// A hard link where the file system allows, else a copy. An existing
/// target is removed first: copying onto it could truncate the source
/// itself, when an earlier export linked the two.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if to.symlink_metadata().is_ok() {
        fs::remove_file(to).with_context(|| format!("cannot replace {}", to.display()))?;
    }
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// Brings one image (and its caption text, if any) into the dataset as `relative`.
fn bring_in(
    image: &Path,
    caption: Option<&str>,
    dataset: &Path,
    relative: &Path,
    extension: &str,
    imported: &mut Imported,
) -> Result<()> {
    let target = dataset.join(relative);
    let caption_target = target.with_extension(extension);
    if target.exists() || caption_target.exists() {
        imported.skipped.push((relative.to_path_buf(), "already in the dataset".into()));
        return Ok(());
    }
    link_or_copy(image, &target)?;
    imported.images += 1;
    if let Some(text) = caption {
        atomic_write(&caption_target, text.as_bytes())
            .with_context(|| format!("cannot write {}", caption_target.display()))?;
        imported.captions += 1;
    }
    Ok(())
}

/// The repeat count and concept of a kohya folder name (`10_zeltmug`).
fn kohya_folder(name: &str) -> Option<(u32, &str)> {
    let (repeats, concept) = name.split_once('_')?;
    Some((repeats.parse().ok()?, concept))
}

/// Imports every `N_concept` folder under `source` into `dataset/<concept>/`.
pub fn import_kohya(source: &Path, dataset: &Path, extension: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    let mut folders: Vec<PathBuf> = fs::read_dir(source)
        .with_context(|| format!("cannot read {}", source.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    let mut found = false;
    for folder in folders {
        let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some((_, concept)) = kohya_folder(&name) else {
            imported.skipped.push((folder.clone(), "not an N_concept folder".into()));
            continue;
        };
        found = true;
        for image in image_files(&folder) {
            // kohya reads `.caption` or `.txt` sidecars.
            let caption = [extension, "txt", "caption"]
                .iter()
                .find_map(|ext| fs::read_to_string(folder.join(&image).with_extension(ext)).ok());
            let relative = Path::new(concept).join(&image);
            bring_in(&folder.join(&image), caption.as_deref(), dataset, &relative, extension, &mut imported)?;
        }
    }
    if !found {
        bail!("{}: no kohya N_concept folders (like 10_zeltmug) in it", source.display());
    }
    Ok(imported)
}

/// Exports the captioned images as `out/<repeats>_<concept>/`.
pub fn export_kohya(
    dataset: &Path,
    captions: &[Caption],
    out: &Path,
    repeats: u32,
    concept: &str,
    extension: &str,
) -> Result<usize> {
    let folder = out.join(format!("{repeats}_{concept}"));
    let mut count = 0;
    let mut names = std::collections::HashSet::new();
    for caption in captions {
        let Some(text) = caption.text() else { continue };
        // kohya wants one flat folder: sub-folders become name prefixes.
        let flat = caption.image.to_string_lossy().replace(['/', '\\'], "_");
        if !names.insert(flat.clone()) {
            bail!("{} and another image both become {flat} in one flat folder; rename one", caption.image.display());
        }
        let target = folder.join(&flat);
        link_or_copy(&dataset.join(&caption.image), &target)?;
        atomic_write(&target.with_extension(extension), text.as_bytes())?;
        count += 1;
    }
    Ok(count)
}

/// Imports a `metadata.jsonl` (images relative to its folder) into `dataset`.
pub fn import_metadata(file: &Path, dataset: &Path, extension: &str) -> Result<Imported> {
    let text = fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let root = file.parent().unwrap_or(Path::new("."));
    let mut imported = Imported::default();
    for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a JSON object", file.display(), number + 1))?;
        let Some(name) = value["file_name"].as_str() else {
            bail!("{}:{}: no \"file_name\"", file.display(), number + 1);
        };
        let relative = Path::new(name);
        if relative.is_absolute() || relative.components().any(|c| c == std::path::Component::ParentDir) {
            imported.skipped.push((relative.to_path_buf(), "file_name leaves the folder".into()));
            continue;
        }
        let caption = ["text", "caption", "prompt"].iter().find_map(|key| value[key].as_str());
        if !root.join(relative).is_file() {
            imported.skipped.push((relative.to_path_buf(), "no such image".into()));
            continue;
        }
        bring_in(&root.join(relative), caption, dataset, relative, extension, &mut imported)?;
    }
    Ok(imported)
}

/// Exports the captioned images and `metadata.jsonl` into `out`.
pub fn export_metadata(dataset: &Path, captions: &[Caption], out: &Path) -> Result<usize> {
    let mut lines = String::new();
    for caption in captions {
        let Some(text) = caption.text() else { continue };
        link_or_copy(&dataset.join(&caption.image), &out.join(&caption.image))?;
        let line = serde_json::json!({ "file_name": caption.image.to_string_lossy(), "text": text });
        lines.push_str(&format!("{line}\n"));
    }
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    atomic_write(&out.join("metadata.jsonl"), lines.as_bytes())?;
    Ok(lines.lines().count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::captions::read_all;

    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, caption) in
            [("a.png", Some("zeltmug, a mug")), ("sub/b.png", Some("zeltmug, a cup")), ("c.png", None)]
        {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::new(4, 4).save(&path).unwrap();
            if let Some(text) = caption {
                fs::write(path.with_extension("txt"), text).unwrap();
            }
        }
        dir
    }

    #[test]
    fn kohya_folders_round_trip() {
        let source = dataset();
        let out = tempfile::tempdir().unwrap();
        let captions = read_all(source.path(), "txt");
        assert_eq!(export_kohya(source.path(), &captions, out.path(), 10, "zeltmug", "txt").unwrap(), 2);
        assert_eq!(fs::read_to_string(out.path().join("10_zeltmug/sub_b.txt")).unwrap(), "zeltmug, a cup");
        let target = tempfile::tempdir().unwrap();
        let imported = import_kohya(out.path(), target.path(), "caption").unwrap();
        assert_eq!((imported.images, imported.captions), (2, 2));
        assert_eq!(fs::read_to_string(target.path().join("zeltmug/a.caption")).unwrap(), "zeltmug, a mug");
        let again = import_kohya(out.path(), target.path(), "caption").unwrap();
        assert_eq!((again.images, again.skipped.len()), (0, 2), "nothing is overwritten");
        assert!(import_kohya(target.path().join("zeltmug").as_path(), target.path(), "txt").is_err());
        // Exporting again over linked copies leaves the dataset's images whole.
        let size = fs::metadata(source.path().join("a.png")).unwrap().len();
        export_kohya(source.path(), &captions, out.path(), 10, "zeltmug", "txt").unwrap();
        assert_eq!(fs::metadata(source.path().join("a.png")).unwrap().len(), size);
    }

    #[test]
    fn metadata_jsonl_round_trip() {
        let source = dataset();
        let out = tempfile::tempdir().unwrap();
        let captions = read_all(source.path(), "txt");
        assert_eq!(export_metadata(source.path(), &captions, out.path()).unwrap(), 2);
        let jsonl = fs::read_to_string(out.path().join("metadata.jsonl")).unwrap();
        assert!(jsonl.contains(r#""file_name":"sub/b.png""#), "{jsonl}");
        let target = tempfile::tempdir().unwrap();
        let imported = import_metadata(&out.path().join("metadata.jsonl"), target.path(), "txt").unwrap();
        assert_eq!((imported.images, imported.captions), (2, 2));
        assert_eq!(fs::read_to_string(target.path().join("sub/b.txt")).unwrap(), "zeltmug, a cup");
        fs::write(out.path().join("bad.jsonl"), "{\"file_name\": \"../x.png\"}\n").unwrap();
        let refused = import_metadata(&out.path().join("bad.jsonl"), target.path(), "txt").unwrap();
        assert_eq!(refused.skipped.len(), 1);
    }
}
