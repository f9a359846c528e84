//! Keep or reject: a rejected image moves with its caption into
//! `dataset/_rejected/` (the scan and training skip `_` folders), never
//! deleted, and restore moves them back. A move of two files is journaled
//! first, so one interrupted half-way is completed next time: nothing is lost.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::scan::ScanReport;
use crate::fsutil::atomic_write;

pub const REJECTED: &str = "_rejected";
const PENDING: &str = ".pending-moves";
/// The kept list, in the dataset folder so that it travels with the images.
const KEPT: &str = ".easel-kept";

/// The files that travel together: the image and its caption, when present.
fn companions(image: &Path, caption_extension: &str) -> Vec<PathBuf> {
    let caption = image.with_extension(caption_extension);
    let mut files = vec![image.to_path_buf()];
    if caption.exists() {
        files.push(caption);
    }
    files
}

/// Completes a move that was interrupted: every listed file not yet at its
/// destination is moved there. Safe to call at any time.
pub fn recover(dataset: &Path) -> Result<()> {
    let journal = dataset.join(REJECTED).join(PENDING);
    let Ok(text) = fs::read_to_string(&journal) else { return Ok(()) };
    for line in text.lines() {
        let Some((from, to)) = line.split_once('\t') else { continue };
        let (from, to) = (dataset.join(from), dataset.join(to));
        if from.exists() && !to.exists() {
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&from, &to).with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
        }
    }
    fs::remove_file(&journal).with_context(|| format!("cannot remove {}", journal.display()))
}

/// Moves `relative` files of the dataset to `target` (relative) names, journaled.
fn move_files(dataset: &Path, moves: &[(PathBuf, PathBuf)]) -> Result<()> {
    recover(dataset)?;
    for (_, to) in moves {
        if dataset.join(to).exists() {
            bail!("{} already exists; not overwriting it", dataset.join(to).display());
        }
    }
    let rejected = dataset.join(REJECTED);
    fs::create_dir_all(&rejected).with_context(|| format!("cannot create {}", rejected.display()))?;
    let journal: String = moves.iter().map(|(from, to)| format!("{}\t{}\n", from.display(), to.display())).collect();
    atomic_write(&rejected.join(PENDING), journal.as_bytes())?;
    recover(dataset)
}

/// Rejects the image at `relative` (with its caption): returns where it went.
pub fn reject(dataset: &Path, relative: &Path, caption_extension: &str) -> Result<PathBuf> {
    if relative.starts_with(REJECTED) {
        bail!("{} is already rejected", relative.display());
    }
    let moves: Vec<(PathBuf, PathBuf)> = companions(&dataset.join(relative), caption_extension)
        .into_iter()
        .map(|file| {
            let from = file.strip_prefix(dataset).unwrap_or(&file).to_path_buf();
            let to = Path::new(REJECTED).join(&from);
            (from, to)
        })
        .collect();
    if !dataset.join(relative).is_file() {
        bail!("{}: no such image", dataset.join(relative).display());
    }
    move_files(dataset, &moves)?;
    Ok(Path::new(REJECTED).join(relative))
}

/// Restores a rejected image (`_rejected/…` or the original relative path).
pub fn restore(dataset: &Path, relative: &Path, caption_extension: &str) -> Result<PathBuf> {
    let original = relative.strip_prefix(REJECTED).unwrap_or(relative).to_path_buf();
    let rejected = Path::new(REJECTED).join(&original);
    if !dataset.join(&rejected).is_file() {
        bail!("{}: not among the rejected images", dataset.join(&rejected).display());
    }
    let moves: Vec<(PathBuf, PathBuf)> = companions(&dataset.join(&rejected), caption_extension)
        .into_iter()
        .map(|file| {
            let from = file.strip_prefix(dataset).unwrap_or(&file).to_path_buf();
            let to = from.strip_prefix(REJECTED).unwrap_or(&from).to_path_buf();
            (from, to)
        })
        .collect();
    move_files(dataset, &moves)?;
    Ok(original)
}

/// The members of a duplicate group (indices into the findings), sharpest
/// first: the one to keep when the rest are rejected.
pub fn sharpest_first(report: &ScanReport, group: &[usize]) -> Vec<usize> {
    let sharpness = |i: usize| report.findings[i].record.stats.map_or(f64::MIN, |s| s.sharpness);
    let mut members = group.to_vec();
    members.sort_by(|&a, &b| sharpness(b).total_cmp(&sharpness(a)));
    members
}

/// The rejected images, relative to `_rejected/`, sorted.
pub fn rejected_images(dataset: &Path) -> Vec<PathBuf> {
    super::scan::image_files(&dataset.join(REJECTED))
}

/// Images the operator looked at and kept despite their flags, each with
/// the content hash it had then: a file changed since is reviewed again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept(BTreeMap<PathBuf, u64>);

impl Kept {
    /// Reads the kept list for showing: a missing or unreadable one shows nothing kept.
    pub fn read(dataset: &Path) -> Self {
        Self::read_strict(dataset).unwrap_or_default()
    }

    /// Reads the kept list before changing it: only a missing one is empty, so
    /// an unreadable or hand-broken list is reported, never overwritten.
    fn read_strict(dataset: &Path) -> Result<Self> {
        let file = dataset.join(KEPT);
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let mut entries = BTreeMap::new();
        for (number, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
            let parsed =
                line.split_once('\t').and_then(|(hash, path)| Some((path, u64::from_str_radix(hash, 16).ok()?)));
            let Some((path, hash)) = parsed else {
                bail!("{}:{}: not `hash<TAB>path`; fix or remove the line", file.display(), number + 1);
            };
            entries.insert(PathBuf::from(path), hash);
        }
        Ok(Self(entries))
    }

    pub fn contains(&self, path: &Path, content_hash: u64) -> bool {
        self.0.get(path) == Some(&content_hash)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Marks `path` kept (or no longer kept) and writes the list.
    fn set(dataset: &Path, path: &Path, content_hash: u64, keep: bool) -> Result<()> {
        let mut kept = Self::read_strict(dataset)?;
        if keep {
            kept.0.insert(path.to_path_buf(), content_hash);
        } else {
            kept.0.remove(path);
        }
        let text: String = kept.0.iter().map(|(path, hash)| format!("{hash:016x}\t{}\n", path.display())).collect();
        let file = dataset.join(KEPT);
        atomic_write(&file, text.as_bytes()).with_context(|| format!("cannot write {}", file.display()))
    }
}

/// What the operator decided about images; paths relative to the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Keep {
        path: PathBuf,
        content_hash: u64,
    },
    Unkeep {
        path: PathBuf,
    },
    Reject(Vec<PathBuf>),
    /// Paths as they were before rejection.
    Restore(PathBuf),
}

/// Carries out a decision; returns what happened, in words.
pub fn apply(dataset: &Path, decision: &Decision, caption_extension: &str) -> Result<String> {
    match decision {
        Decision::Keep { path, content_hash } => {
            Kept::set(dataset, path, *content_hash, true)?;
            Ok(format!("Kept {}.", path.display()))
        }
        Decision::Unkeep { path } => {
            Kept::set(dataset, path, 0, false)?;
            Ok(format!("{} is to review again.", path.display()))
        }
        Decision::Reject(paths) => {
            // Every image is tried: one that cannot move does not stop the rest.
            let failures: Vec<String> = paths
                .iter()
                .filter_map(|path| reject(dataset, path, caption_extension).err().map(|e| format!("{e:#}")))
                .collect();
            if !failures.is_empty() {
                let moved = paths.len() - failures.len();
                bail!("rejected {moved} of {}; {}", paths.len(), failures.join("; "));
            }
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            Ok(format!("Rejected {} (moved to {REJECTED}/; u restores).", names.join(", ")))
        }
        Decision::Restore(path) => {
            restore(dataset, path, caption_extension)?;
            Ok(format!("Restored {}.", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/a.png"), b"image").unwrap();
        fs::write(dir.path().join("sub/a.txt"), b"caption").unwrap();
        dir
    }

    #[test]
    fn reject_and_restore_move_the_caption_too() {
        let dir = dataset();
        let d = dir.path();
        assert_eq!(reject(d, Path::new("sub/a.png"), "txt").unwrap(), Path::new("_rejected/sub/a.png"));
        assert!(!d.join("sub/a.png").exists() && !d.join("sub/a.txt").exists());
        assert_eq!(fs::read(d.join("_rejected/sub/a.txt")).unwrap(), b"caption");
        assert_eq!(restore(d, Path::new("_rejected/sub/a.png"), "txt").unwrap(), Path::new("sub/a.png"));
        assert_eq!(fs::read(d.join("sub/a.png")).unwrap(), b"image");
        assert_eq!(fs::read(d.join("sub/a.txt")).unwrap(), b"caption");
        assert!(!d.join(REJECTED).join(PENDING).exists());
        assert!(restore(d, Path::new("sub/a.png"), "txt").is_err(), "nothing to restore");
    }

    #[test]
    fn kept_images_are_remembered_until_they_change() {
        let dir = dataset();
        let d = dir.path();
        let path = Path::new("sub/a.png");
        apply(d, &Decision::Keep { path: path.into(), content_hash: 7 }, "txt").unwrap();
        let kept = Kept::read(d);
        assert!(kept.contains(path, 7));
        assert!(!kept.contains(path, 8), "a changed file is reviewed again");
        apply(d, &Decision::Unkeep { path: path.into() }, "txt").unwrap();
        assert!(Kept::read(d).is_empty());
    }

    #[test]
    fn a_broken_kept_list_is_reported_not_overwritten() {
        let dir = dataset();
        let d = dir.path();
        fs::write(d.join(KEPT), "not a kept line\n").unwrap();
        assert!(apply(d, &Decision::Keep { path: "sub/a.png".into(), content_hash: 1 }, "txt").is_err());
        assert_eq!(fs::read_to_string(d.join(KEPT)).unwrap(), "not a kept line\n");
        assert!(Kept::read(d).is_empty(), "shown as nothing kept");
    }

    #[test]
    fn rejected_images_are_listed_and_restored_by_their_old_name() {
        let dir = dataset();
        let d = dir.path();
        apply(d, &Decision::Reject(vec!["sub/a.png".into()]), "txt").unwrap();
        assert_eq!(rejected_images(d), vec![PathBuf::from("sub/a.png")]);
        apply(d, &Decision::Restore("sub/a.png".into()), "txt").unwrap();
        assert!(rejected_images(d).is_empty());
        assert!(d.join("sub/a.png").is_file() && d.join("sub/a.txt").is_file());
    }

    #[test]
    fn an_interrupted_move_is_completed_and_loses_nothing() {
        let dir = dataset();
        let d = dir.path();
        // As if killed after the journal and the first rename.
        fs::create_dir_all(d.join("_rejected/sub")).unwrap();
        fs::write(d.join(REJECTED).join(PENDING), "sub/a.png\t_rejected/sub/a.png\nsub/a.txt\t_rejected/sub/a.txt\n")
            .unwrap();
        fs::rename(d.join("sub/a.png"), d.join("_rejected/sub/a.png")).unwrap();
        recover(d).unwrap();
        assert_eq!(fs::read(d.join("_rejected/sub/a.png")).unwrap(), b"image");
        assert_eq!(fs::read(d.join("_rejected/sub/a.txt")).unwrap(), b"caption");
        assert!(!d.join(REJECTED).join(PENDING).exists());
    }
}
