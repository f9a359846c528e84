//! File-system helpers shared by every module that writes files.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `contents` to `path` so that a crash at any moment leaves either the
/// old file or the new one, never a torn mix: the bytes go to a temporary file
/// in the same folder (same file system, so the rename is atomic), are flushed
/// to disk, and the temporary file is renamed over the target.
pub fn atomic_write(path: &Path, contents: &[u8]) -> io::Result<()> {
    atomic_write_with(path, |file| file.write_all(contents))
}

/// Copies `from` to `to` the way `atomic_write` writes: a crash leaves the
/// old `to` or the whole copy. Streams the bytes, so a large file (a
/// checkpoint's optimizer state) is never held in memory whole.
pub fn atomic_copy(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    atomic_write_with(to, |file| io::copy(&mut source, file).map(drop))
}

/// [`atomic_write`] for contents made while writing (files too large to hold
/// in memory): `write` fills the temporary file; on any error, its own or
/// the file system's, the temporary file is removed and the target is untouched.
pub fn atomic_write_with<E: From<io::Error>>(
    path: &Path,
    write: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let file_name =
        path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp_path = folder.join(tmp_name);

    let result = (|| {
        let mut file = File::create(&tmp_path)?;
        write(&mut file)?;
        file.sync_all()?;
        fs::rename(&tmp_path, path)?;
        // The rename itself is only durable once the folder entry is synced.
        if let Ok(dir) = File::open(folder) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp_path);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.txt");
        atomic_write(&target, b"old").unwrap();
        atomic_write(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.txt")]);
    }

    #[test]
    fn copies_whole_files_over_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("a.bin"), dir.path().join("b.bin"));
        let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        fs::write(&from, &bytes).unwrap();
        fs::write(&to, b"old").unwrap();
        atomic_copy(&from, &to).unwrap();
        assert_eq!(fs::read(&to).unwrap(), bytes);
        assert!(atomic_copy(&dir.path().join("missing"), &to).is_err());
        assert_eq!(fs::read(&to).unwrap(), bytes, "a failed copy leaves the old file");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn fails_cleanly_when_folder_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("missing").join("a.txt");
        assert!(atomic_write(&target, b"x").is_err());
    }
}
